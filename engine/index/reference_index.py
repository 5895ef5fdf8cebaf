"""An index directory opened for queries: vectors, catalogue, store and manifest together."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.config import IndexConfig
from engine.errors import EmptyIndex, IndexCorrupt, IndexMissing
from engine.geo import SearchArea
from engine.index.catalog import CATALOG_NAME, Catalog
from engine.index.manifest import MANIFEST_NAME, Manifest
from engine.index.store import ReferenceStore
from engine.index.stores import open_for_queries
from engine.index.vector_store import VectorStore
from engine.index.vectors import VECTORS_NAME
from engine.results import CatalogEntry


class ReferenceIndex:
    def __init__(
        self, directory: Path, manifest: Manifest, catalog: Catalog, vectors: VectorStore
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.catalog = catalog
        self.vectors = vectors
        self.store = ReferenceStore(directory)
        self._count = catalog.stats().indexed

    @classmethod
    def open(cls, directory: Path, settings: IndexConfig | None = None) -> ReferenceIndex:
        if not (directory / MANIFEST_NAME).is_file():
            raise IndexMissing(str(directory))
        manifest = Manifest.load(directory)
        local = manifest.vector_store == "hnswlib"
        if manifest.count == 0 or (local and not (directory / VECTORS_NAME).is_file()):
            raise EmptyIndex(str(directory))
        if not (directory / CATALOG_NAME).is_file():
            raise IndexCorrupt(str(directory), f"{CATALOG_NAME} is missing")
        catalog = Catalog(directory / CATALOG_NAME, read_only=True)
        try:
            # Only hnswlib needs every position in memory; Milvus filters on its own copy.
            positions = catalog.indexed_positions() if local else None
            vectors = open_for_queries(directory, manifest, settings or IndexConfig(),
                                       positions)
        except BaseException:
            catalog.close()
            raise
        return cls(directory, manifest, catalog, vectors)

    def close(self) -> None:
        self.vectors.close()
        self.catalog.close()

    @property
    def version(self) -> str:
        return self.manifest.version

    def __len__(self) -> int:
        """Searchable references (the catalogue's count)."""
        return self._count

    def search(
        self, vector: np.ndarray, top_n: int, *, ef: int, area: SearchArea | None = None
    ) -> list[tuple[int, float]]:
        """Top-n (label, similarity), inside `area` when one is given."""
        labels, sims = self.vectors.search(vector, top_n, ef=ef, area=area)
        return list(zip(labels.tolist(), sims.tolist(), strict=True))

    def entries(self, ref_ids: Sequence[int]) -> dict[int, CatalogEntry]:
        return self.catalog.entries(ref_ids)

    def load_picture(self, entry: CatalogEntry) -> np.ndarray:
        return self.store.load(entry.store_path)
