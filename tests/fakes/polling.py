"""Bounded waiting for recorded calls, shared by the fake chat servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

CallT = TypeVar("CallT")
POLL_S = 0.01


async def wait_for_calls(
    calls: Sequence[CallT],
    matches: Callable[[CallT], bool],
    count: int,
    timeout: float,
    label: str,
    summary: Callable[[], str],
) -> list[CallT]:
    """The matching calls once there are `count`; a TimeoutError says what was seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = [call for call in calls if matches(call)]
        if len(found) >= count:
            return found
        if loop.time() >= deadline:
            raise TimeoutError(f"waited {timeout:g} s for {count} call(s) matching {label}, "
                               f"saw {len(found)}.\n{summary()}")
        await asyncio.sleep(POLL_S)
