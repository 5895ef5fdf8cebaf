"""The vectors in files beside the index: an hnswlib graph plus float16 rows for small areas."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import SearchAreaError
from engine.geo import SearchArea
from engine.index.manifest import Manifest
from engine.index.vector_rows import ROWS_NAME, VectorRows
from engine.index.vectors import VECTORS_NAME, VectorIndex

# Up to this many references in a search area are scored exactly from `vectors.f16`; hnswlib's
# filtered search calls a Python predicate at each node it visits instead, which costs most
# when the area is small (bench/bench_area.py: 68-90 ms filtered against 0.4-1.2 ms exact for
# areas of 100-400 of 20,000 references; 48 against 19 ms at 2,000).
EXACT_AREA_MAX = 4_000

Positions = tuple[np.ndarray, np.ndarray, np.ndarray]  # (ids, lats, lons) of indexed refs


class HnswStore:
    backend = "hnswlib"

    def __init__(self, directory: Path, graph: VectorIndex, rows: VectorRows,
                 positions: Positions | None = None) -> None:
        self._directory = directory
        self.graph = graph
        self._rows = rows
        empty = np.empty(0, np.int64)
        self._ids, self._lats, self._lons = positions or (empty, empty, empty)
        # An index built before rows were kept searches areas through the graph's filter.
        self._exact = rows.covers(self._ids)

    @classmethod
    def open(cls, directory: Path, manifest: Manifest,
             positions: Positions | None) -> HnswStore:
        """For queries: `positions` are the catalogue's searchable references."""
        graph = VectorIndex.load(directory / VECTORS_NAME, manifest.dim)
        return cls(directory, graph, VectorRows(directory / ROWS_NAME, manifest.dim), positions)

    @classmethod
    def open_for_build(cls, directory: Path, manifest: Manifest) -> HnswStore:
        """Load or create the graph; an index built before rows existed gets them copied once."""
        path = directory / VECTORS_NAME
        if path.is_file():
            graph = VectorIndex.load(path, manifest.dim)
        else:
            graph = VectorIndex.create(manifest.dim, m=manifest.hnsw_m,
                                       ef_construction=manifest.hnsw_ef_construction)
        rows = VectorRows(directory / ROWS_NAME, manifest.dim)
        labels = graph.labels()
        if len(labels) and not rows.covers(labels):
            rows.write(graph.vectors_of(labels), labels)
        return cls(directory, graph, rows)

    def __len__(self) -> int:
        return len(self.graph)

    def add(self, vectors: np.ndarray, labels: np.ndarray, lats: np.ndarray,
            lons: np.ndarray) -> None:
        # Positions live in the catalogue; queries read them from there.
        self.graph.add(vectors, labels)
        self._rows.write(vectors, labels)

    def delete(self, labels: np.ndarray) -> None:
        self.graph.delete(labels)

    def commit(self) -> None:
        self.graph.save(self._directory / VECTORS_NAME)

    def area_labels(self, area: SearchArea) -> np.ndarray:
        """The labels of the searchable references inside `area`, in ascending order."""
        inside = self._ids[area.contains(self._lats, self._lons)]
        if not len(inside):
            raise SearchAreaError("no reference photos lie in that search area")
        return inside

    def search(self, vector: np.ndarray, k: int, *, ef: int,
               area: SearchArea | None = None) -> tuple[np.ndarray, np.ndarray]:
        """An area of few references is scored exactly from their rows; in a larger one the
        graph search keeps to the area through a filter."""
        if area is None:
            # Deleted and not-yet-committed labels are in the graph but not in the catalogue.
            return self.graph.search(vector, min(k, len(self._ids)), ef=ef)
        inside = self.area_labels(area)
        if self._exact and len(inside) <= EXACT_AREA_MAX:
            scores = self._rows.scores(vector, inside)
            best = np.argsort(-scores, kind="stable")[:k]
            return inside[best], scores[best]
        allowed = np.zeros(int(self._ids.max()) + 1, dtype=bool)
        allowed[inside] = True
        return self.graph.search(vector, min(k, len(inside)), ef=ef, allowed=allowed)

    def vectors_of(self, labels: np.ndarray) -> np.ndarray:
        return self.graph.vectors_of(labels)

    def check_ready(self) -> None:
        return None  # files already loaded into memory: always ready

    def close(self) -> None:
        return None  # nothing held open
