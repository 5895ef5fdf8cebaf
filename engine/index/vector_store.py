"""What the index asks of the place its vectors live: hnswlib files beside it, or Milvus.

The catalogue (SQLite) stays the source of truth for every reference's metadata and status; a
vector store holds id, vector and position, and searches top-N inside a search area. Adding a
label already present replaces it, so a build redone after a crash duplicates nothing.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engine.geo import SearchArea
from engine.index.manifest import Manifest


class VectorStore(Protocol):
    backend: str

    def __len__(self) -> int:
        """Vectors stored (a crashed build's pending ones included)."""
        ...

    def add(self, vectors: np.ndarray, labels: np.ndarray, lats: np.ndarray,
            lons: np.ndarray) -> None:
        """Add or replace one batch."""
        ...

    def delete(self, labels: np.ndarray) -> None:
        """Take labels out of every later search."""
        ...

    def commit(self) -> None:
        """Make what was added durable; the catalogue marks rows indexed only after this."""
        ...

    def search(self, vector: np.ndarray, k: int, *, ef: int,
               area: SearchArea | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, similarities), best first; inside `area`, still a full top-k.

        Raises SearchAreaError when no reference lies in `area`.
        """
        ...

    def check_ready(self) -> None:
        """Raise VectorStoreUnavailable unless a search would be answered now."""
        ...

    def close(self) -> None:
        ...


def store_key(manifest: Manifest) -> str:
    """The index version a stored vector belongs to: vectors of another descriptor (or of
    another vocabulary) are incomparable, so a store holding them is refused."""
    return f"{manifest.descriptor}-{manifest.descriptor_fingerprint[:16]}"
