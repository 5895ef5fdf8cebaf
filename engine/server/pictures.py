"""Evidence and reference pictures, drawn by threads of their own, a bounded number at once.

Drawing an evidence picture costs a few hundred ms of CPU. In the loop's default pool, 16 of
them at once held up every other use of that pool (the health check waited 8 s behind them);
here they wait for their own threads, and past `queue` a request is refused (503) at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from engine.server.slots import Slots

T = TypeVar("T")


class PicturePool:
    def __init__(self, workers: int, queue: int) -> None:
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pictures")
        self._slots = Slots(queue, "pictures being drawn")

    async def draw(self, make: Callable[[], T]) -> T:
        """`make()` in the pool; `ServerBusy` when `queue` pictures are already on their way."""
        with self._slots.hold():
            return await asyncio.get_running_loop().run_in_executor(self._threads, make)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
