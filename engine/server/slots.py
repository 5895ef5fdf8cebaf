"""A bound on work in progress that refuses at once (503) instead of making callers queue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from engine.server.errors import ServerBusy


class Slots:
    def __init__(self, size: int, what: str) -> None:
        self._size = size
        self._what = what
        self._held = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        """One slot while the block runs; `ServerBusy` when all are taken."""
        if self._held >= self._size:
            raise ServerBusy(f"The server is busy ({self._held} {self._what} at once)."
                             " Try again in a moment.")
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
