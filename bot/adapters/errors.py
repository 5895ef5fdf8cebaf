"""Why the bot process stops: each is one line for the operator, and a non-zero exit."""

from __future__ import annotations

import asyncio

from engine.errors import GeoSleuthError


class StartupFailed(GeoSleuthError):
    """A chat platform could not be reached or refused the token; nothing was left running."""


class ServiceDied(GeoSleuthError):
    """Something the bot cannot answer without (the engine worker, a platform connection)
    ended while running: exit so that a service manager restarts the process."""


def why_it_ended(task: asyncio.Task) -> str:
    """Why a finished task ended, in a few words (for the one line the operator reads)."""
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return f"{type(exc).__name__}: {exc}" if exc is not None else "it returned"
