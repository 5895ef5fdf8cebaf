"""Recent photos kept in memory by request id, within a byte budget: the evidence button and a
cover's second look need the photo, which the store does not keep unless configured to."""

from __future__ import annotations

from collections import OrderedDict

from engine import LocateResult


class RecentPhotos:
    """Recent photos by request id, bounded in bytes, in memory only (the evidence button)."""

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._items: OrderedDict[int, tuple[bytes, LocateResult]] = OrderedDict()
        self._size = 0

    def put(self, request_id: int, image: bytes, result: LocateResult) -> None:
        self._items[request_id] = (image, result)
        self._size += len(image)
        while self._size > self._budget and self._items:
            _, (old, _) = self._items.popitem(last=False)
            self._size -= len(old)

    def get(self, request_id: int) -> tuple[bytes, LocateResult] | None:
        return self._items.get(request_id)

    def drop(self, request_ids: set[int]) -> None:
        for request_id in request_ids & self._items.keys():
            image, _ = self._items.pop(request_id)
            self._size -= len(image)
