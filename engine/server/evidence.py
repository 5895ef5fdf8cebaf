"""Recent answers' photos, so `GET /v1/evidence/{id}` can draw the evidence picture afterwards.

Photos stay in memory only, for `evidence_ttl_s` and within `evidence_store_mb` (the oldest
go first when a new one does not fit), and only for the token that sent them: to another
client an id is as unknown as one never issued. Nothing is kept for an answer without
verified correspondences.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from engine.results import LocateResult


@dataclass(frozen=True)
class _Kept:
    owner: bytes  # a digest of the client's token, never the token itself
    photo: bytes
    result: LocateResult
    expires_at: float


class EvidenceStore:
    def __init__(self, ttl_s: float, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._kept: OrderedDict[str, _Kept] = OrderedDict()  # oldest first
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def keep(self, token: str, photo: bytes, result: LocateResult) -> str | None:
        """An id for this answer's evidence, or None when it has none or cannot be kept."""
        if (not result.correspondences or result.best_reference is None
                or self.ttl_s <= 0 or len(photo) > self._max_bytes):
            return None
        self._forget_expired()
        while self._bytes + len(photo) > self._max_bytes:
            self._drop(next(iter(self._kept)))
        evidence_id = secrets.token_urlsafe(18)
        self._kept[evidence_id] = _Kept(_digest(token), photo, result,
                                        self._clock() + self.ttl_s)
        self._bytes += len(photo)
        return evidence_id

    def find(self, token: str, evidence_id: str) -> tuple[bytes, LocateResult] | None:
        """The photo and answer behind `evidence_id`, if this token made it and it is fresh."""
        self._forget_expired()
        kept = self._kept.get(evidence_id)
        if kept is None or not secrets.compare_digest(kept.owner, _digest(token)):
            return None
        return kept.photo, kept.result

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._kept:
            oldest = next(iter(self._kept))
            if self._kept[oldest].expires_at > now:
                return
            self._drop(oldest)

    def _drop(self, evidence_id: str) -> None:
        self._bytes -= len(self._kept.pop(evidence_id).photo)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
