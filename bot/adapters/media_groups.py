"""Telegram albums arrive as separate messages: gather them back into one.

Telegram sends each photo of an album (a "media group") as its own message, sharing one
`media_group_id`, moments apart, and says nowhere how many will come. The first part's
handler waits until no part has arrived for `quiet_s`, then takes them all; later parts only
join. Bounded, since the parts come from the client: at most `max_parts` per album (Telegram's
own limit is 10) and `max_pending` albums gathering at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

Part = TypeVar("Part")
Key = tuple[int, str]  # (chat id, media group id)


class Joined(Enum):
    FIRST = "first"  # its handler gathers the album and answers it
    LATER = "later"  # the first part's handler answers for it
    FULL = "full"  # too many albums are gathering: answer this part on its own


@dataclass
class _Gathering(Generic[Part]):
    parts: list[Part] = field(default_factory=list)
    last_s: float = field(default_factory=time.monotonic)


class MediaGroups(Generic[Part]):
    def __init__(self, quiet_s: float = 1.5, max_parts: int = 10, max_pending: int = 256) -> None:
        self._quiet_s = quiet_s
        self._max_parts = max_parts
        self._max_pending = max_pending
        self._gathering: dict[Key, _Gathering[Part]] = {}

    def join(self, key: Key, part: Part) -> Joined:
        """Add a part. A part past `max_parts` is left out of its album (Telegram sends no
        more than 10)."""
        gathering = self._gathering.get(key)
        if gathering is None:
            if len(self._gathering) >= self._max_pending:
                return Joined.FULL
            self._gathering[key] = _Gathering([part])
            return Joined.FIRST
        if len(gathering.parts) < self._max_parts:
            gathering.parts.append(part)
            gathering.last_s = time.monotonic()
        return Joined.LATER

    async def gather(self, key: Key) -> list[Part]:
        """Every part of the album, once none has come for `quiet_s`."""
        gathering = self._gathering[key]
        try:
            while (wait := gathering.last_s + self._quiet_s - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            return list(gathering.parts)
        finally:
            del self._gathering[key]
