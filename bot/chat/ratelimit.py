"""Sliding-window rate limits per key (a user, a chat), kept in memory.

Restarting the bot forgets them, which errs towards answering; state worth keeping across
restarts (requests, feedback) lives in the store.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(self, limit: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._next_prune = clock() + window_s

    def __len__(self) -> int:
        """Keys remembered: those with a try inside the window, plus at most one window's worth
        of stale ones (a bot up for months sees every user once and must forget them)."""
        return len(self._hits)

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0 means allowed now (and the try is counted)."""
        now = self._clock()
        if now >= self._next_prune:
            self._prune(now)
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= self._window_s:
            hits.popleft()
        if len(hits) >= self._limit:
            return self._window_s - (now - hits[0])
        hits.append(now)
        return 0.0

    def refund(self, key: str) -> None:
        """Uncount the last try (it was refused for another reason and cost nothing)."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()

    def _prune(self, now: float) -> None:
        """Forget keys whose last try left the window: at most once per window, so O(1) a try."""
        self._hits = {key: hits for key, hits in self._hits.items()
                      if hits and now - hits[-1] < self._window_s}
        self._next_prune = now + self._window_s
