"""`vectors.f16`: every reference's descriptor as a float16 row at its label.

hnswlib keeps the vectors inside its graph and hands them back only slowly (tens of µs each),
and its filtered search calls a Python predicate at every node it visits. A search area that
holds few references is therefore scored exactly from this file instead: one read of those
rows and a matrix product. Rows are written as references are added; a row whose reference is
not (yet) marked indexed is never read, so a crash between the two loses nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROWS_NAME = "vectors.f16"
_DTYPE = np.dtype(np.float16)


class VectorRows:
    def __init__(self, path: Path, dim: int) -> None:
        self._path = path
        self._dim = dim
        self._row_bytes = dim * _DTYPE.itemsize
        self._map: np.memmap | None = None

    def covers(self, labels: np.ndarray) -> bool:
        """Whether the file reaches every label (an index built before it had none)."""
        size = self._path.stat().st_size if self._path.is_file() else 0
        return not len(labels) or size >= (int(labels.max()) + 1) * self._row_bytes

    def write(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Put each vector at its label's row (replacing what was there)."""
        rows = np.ascontiguousarray(vectors, dtype=_DTYPE).reshape(len(labels), self._dim)
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for label, row in zip(labels.tolist(), rows, strict=True):
                os.pwrite(fd, row.tobytes(), int(label) * self._row_bytes)
        finally:
            os.close(fd)
        self._map = None  # a reader maps the file afresh after it grew

    def scores(self, vector: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Inner products of `vector` with the rows at `labels` (all covered)."""
        if self._map is None:
            self._map = np.memmap(self._path, dtype=_DTYPE, mode="r").reshape(-1, self._dim)
        rows = np.asarray(self._map[labels], dtype=np.float32)
        return rows @ vector.reshape(-1).astype(np.float32)
