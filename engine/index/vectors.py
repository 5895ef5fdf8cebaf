"""The hnswlib graph over the reference descriptors (inner product on L2-normalised vectors)."""

from __future__ import annotations

import os
from pathlib import Path

import hnswlib
import numpy as np

from engine.errors import IndexCorrupt

VECTORS_NAME = "vectors.hnsw"


class VectorIndex:
    def __init__(self, index: hnswlib.Index) -> None:
        self._index = index

    @classmethod
    def create(cls, dim: int, *, m: int, ef_construction: int, capacity: int = 1024) -> VectorIndex:
        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=capacity, M=m, ef_construction=ef_construction,
                         allow_replace_deleted=False)
        return cls(index)

    @classmethod
    def load(cls, path: Path, dim: int) -> VectorIndex:
        index = hnswlib.Index(space="ip", dim=dim)
        try:
            index.load_index(str(path))
        except (RuntimeError, OSError) as exc:
            raise IndexCorrupt(str(path.parent), f"{path.name}: {exc}") from exc
        return cls(index)

    def __len__(self) -> int:
        return self._index.get_current_count()

    def add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Add (or, for a label already present, replace) vectors; grows capacity as needed."""
        needed = len(self) + len(labels)
        capacity = self._index.get_max_elements()
        if needed > capacity:
            self._index.resize_index(max(needed, capacity * 2))
        self._index.add_items(vectors.astype(np.float32), labels.astype(np.int64), num_threads=1)

    def delete(self, labels: np.ndarray) -> None:
        """Take labels out of every search (a label not in the graph is skipped)."""
        if not len(labels):
            return
        present = set(self._index.get_ids_list())
        for label in labels.tolist():
            if label in present:
                self._index.mark_deleted(int(label))

    def search(
        self, vector: np.ndarray, k: int, *, ef: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, similarities), best first; `allowed` is a boolean table by label.

        The filter runs inside the graph search, so a small area still yields a full top-k.
        """
        k = min(k, len(self))
        if k == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        self._index.set_ef(max(ef, k))
        predicate = None
        if allowed is not None:
            table = allowed

            def predicate(label: int) -> bool:
                return label < len(table) and bool(table[label])

        labels, distances = self._index.knn_query(
            vector.reshape(1, -1).astype(np.float32), k=k, num_threads=1, filter=predicate
        )
        return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)

    def labels(self) -> np.ndarray:
        return np.asarray(self._index.get_ids_list(), dtype=np.int64)

    def vectors_of(self, labels: np.ndarray) -> np.ndarray:
        """The stored vectors (slow: tens of µs each; for a one-time copy, not for queries)."""
        return np.asarray(self._index.get_items(labels.tolist()), dtype=np.float32)

    def save(self, path: Path) -> None:
        """Write atomically, so a crash mid-save keeps the previous checkpoint."""
        tmp = path.with_suffix(".tmp")
        self._index.save_index(str(tmp))
        os.replace(tmp, path)
