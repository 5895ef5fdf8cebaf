"""An index directory opened for queries: vectors, catalogue, store and manifest together."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import EmptyIndex, IndexCorrupt, IndexMissing, SearchAreaError
from engine.geo import SearchArea
from engine.index.catalog import CATALOG_NAME, Catalog
from engine.index.manifest import MANIFEST_NAME, Manifest
from engine.index.store import ReferenceStore
from engine.index.vector_rows import ROWS_NAME, VectorRows
from engine.index.vectors import VECTORS_NAME, VectorIndex
from engine.results import CatalogEntry

# Up to this many references in a search area are scored exactly from `vectors.f16`; hnswlib's
# filtered search calls a Python predicate at each node it visits instead, which costs most
# when the area is small (bench/bench_area.py: 68-90 ms filtered against 0.4-1.2 ms exact for
# areas of 100-400 of 20,000 references; 48 against 19 ms at 2,000).
EXACT_AREA_MAX = 4_000


class ReferenceIndex:
    def __init__(
        self, directory: Path, manifest: Manifest, catalog: Catalog, vectors: VectorIndex
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.catalog = catalog
        self.vectors = vectors
        self.store = ReferenceStore(directory)
        self._ids, self._lats, self._lons = catalog.indexed_positions()
        rows = VectorRows(directory / ROWS_NAME, manifest.dim)
        # An index built before rows were kept searches areas through the graph's filter.
        self._rows = rows if rows.covers(self._ids) else None

    @classmethod
    def open(cls, directory: Path) -> ReferenceIndex:
        if not (directory / MANIFEST_NAME).is_file():
            raise IndexMissing(str(directory))
        manifest = Manifest.load(directory)
        if manifest.count == 0 or not (directory / VECTORS_NAME).is_file():
            raise EmptyIndex(str(directory))
        if not (directory / CATALOG_NAME).is_file():
            raise IndexCorrupt(str(directory), f"{CATALOG_NAME} is missing")
        catalog = Catalog(directory / CATALOG_NAME, read_only=True)
        vectors = VectorIndex.load(directory / VECTORS_NAME, manifest.dim)
        return cls(directory, manifest, catalog, vectors)

    def close(self) -> None:
        self.catalog.close()

    @property
    def version(self) -> str:
        return self.manifest.version

    def __len__(self) -> int:
        return len(self._ids)

    def area_labels(self, area: SearchArea) -> np.ndarray:
        """The labels of the searchable references inside `area`, in ascending order."""
        inside = self._ids[area.contains(self._lats, self._lons)]
        if not len(inside):
            raise SearchAreaError("no reference photos lie in that search area")
        return inside

    def search(
        self, vector: np.ndarray, top_n: int, *, ef: int, area: SearchArea | None = None
    ) -> list[tuple[int, float]]:
        """Top-n (label, similarity). An area of few references is scored exactly from their
        rows; in a larger one the graph search keeps to the area through a filter."""
        if area is None:
            labels, sims = self.vectors.search(vector, top_n, ef=ef)
        else:
            inside = self.area_labels(area)
            if self._rows is not None and len(inside) <= EXACT_AREA_MAX:
                scores = self._rows.scores(vector, inside)
                best = np.argsort(-scores, kind="stable")[:top_n]
                labels, sims = inside[best], scores[best]
            else:
                allowed = np.zeros(int(self._ids.max()) + 1, dtype=bool)
                allowed[inside] = True
                labels, sims = self.vectors.search(vector, min(top_n, len(inside)), ef=ef,
                                                   allowed=allowed)
        return list(zip(labels.tolist(), sims.tolist(), strict=True))

    def entries(self, ref_ids: Sequence[int]) -> dict[int, CatalogEntry]:
        return self.catalog.entries(ref_ids)

    def load_picture(self, entry: CatalogEntry) -> np.ndarray:
        return self.store.load(entry.store_path)
