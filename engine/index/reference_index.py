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
from engine.index.vectors import VECTORS_NAME, VectorIndex
from engine.results import CatalogEntry


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

    def area_mask(self, area: SearchArea) -> np.ndarray:
        """A table by label: True where the reference lies inside `area`."""
        inside = area.contains(self._lats, self._lons)
        if not inside.any():
            raise SearchAreaError("no reference photos lie in that search area")
        table = np.zeros(int(self._ids.max()) + 1, dtype=bool)
        table[self._ids[inside]] = True
        return table

    def search(
        self, vector: np.ndarray, top_n: int, *, ef: int, area: SearchArea | None = None
    ) -> list[tuple[int, float]]:
        allowed = None
        if area is not None:
            allowed = self.area_mask(area)
            top_n = min(top_n, int(allowed.sum()))
        labels, sims = self.vectors.search(vector, top_n, ef=ef, allowed=allowed)
        return list(zip(labels.tolist(), sims.tolist(), strict=True))

    def entries(self, ref_ids: Sequence[int]) -> dict[int, CatalogEntry]:
        return self.catalog.entries(ref_ids)

    def load_picture(self, entry: CatalogEntry) -> np.ndarray:
        return self.store.load(entry.store_path)
