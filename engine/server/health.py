"""What /v1/health reports, known before it is asked: the check itself never waits on work.

The vector store (Milvus may be away for a while) is probed in the background; the answer is
the engine's state and the last probe's outcome.
"""

from __future__ import annotations

import asyncio
import logging

from engine.async_engine import AsyncEngine

log = logging.getLogger(__name__)


class Readiness:
    def __init__(self, engine: AsyncEngine, every_s: float) -> None:
        self._engine = engine
        self._every_s = every_s
        self.vectors_ready = False

    async def probe(self) -> None:
        try:
            self.vectors_ready = await self._engine.vectors_ready()
        except Exception as exc:  # a probe that fails says "not ready", and the probing goes on
            log.warning("the vector store's readiness could not be checked: %s", exc)
            self.vectors_ready = False

    async def probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            await self.probe()
