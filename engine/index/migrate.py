"""`index migrate`: copy an index's hnswlib vectors into a Milvus collection.

Batches go in label order and the last one copied is written to `migrate.json` after each, so
an interrupted migration resumes there (an upsert sent twice replaces, never doubles). At the
end the collection must hold exactly the catalogue's references, and a sample of references,
each searched with its own vector, must find the same nearest neighbour in both stores. Only
then does the manifest switch to Milvus; the hnswlib files are left as they were.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from engine.config import IndexConfig
from engine.errors import ConfigError, GeoSleuthError
from engine.index.catalog import CATALOG_NAME, Catalog
from engine.index.hnsw_store import HnswStore
from engine.index.locks import building
from engine.index.manifest import Manifest
from engine.index.milvus_store import MilvusStore
from engine.index.vector_store import store_key

STATE_NAME = "migrate.json"
# Self-queries in both stores; approximate search may miss a neighbour now and then.
MIN_AGREEMENT = 0.98
TIE = 1e-4  # two neighbours this close in similarity are the same answer

MigrationProgress = Callable[[str, int, int], None]


class MigrationCheckFailed(GeoSleuthError):
    """The collection does not answer as the hnswlib index does; the manifest was not changed."""


@dataclass(frozen=True)
class MilvusTarget:
    uri: str
    collection: str

    @classmethod
    def parse(cls, text: str) -> MilvusTarget:
        """milvus://HOST:PORT/COLLECTION, or milvus:///PATH/FILE.db/COLLECTION (Milvus Lite)."""
        parts = urlsplit(text)
        where, _, collection = parts.path.rpartition("/")
        if parts.scheme != "milvus" or not collection or not (parts.netloc or where):
            raise ConfigError(f"'{text}' is not milvus://HOST:PORT/COLLECTION (or"
                              " milvus:///PATH/FILE.db/COLLECTION for Milvus Lite)")
        if parts.netloc:
            if where:
                raise ConfigError(f"'{text}': a collection name has no '/'")
            return cls(f"http://{parts.netloc}", collection)
        return cls(where, collection)


@dataclass(frozen=True)
class MigrationReport:
    total: int
    copied_now: int
    resumed_at: int
    sampled: int
    agreeing: int
    seconds: float


def migrate_to_milvus(
    directory: Path,
    target: MilvusTarget,
    settings: IndexConfig,
    *,
    ef: int,
    batch_size: int = 1_000,
    sample: int = 200,
    progress: MigrationProgress | None = None,
) -> MigrationReport:
    """Copy, check, then switch the manifest; no build may run meanwhile (the build lock)."""
    with building(directory):
        return _migrate_locked(directory, target, replace(settings, uri=target.uri), ef,
                               batch_size, sample, progress or _noop)


def _migrate_locked(directory: Path, target: MilvusTarget, settings: IndexConfig, ef: int,
                    batch_size: int, sample: int, progress: MigrationProgress) -> MigrationReport:
    started = time.perf_counter()
    manifest = Manifest.load(directory)
    if manifest.vector_store != "hnswlib":
        raise ConfigError(f"the index at {directory} already keeps its vectors in Milvus"
                          f" collection '{manifest.milvus_collection}'")
    catalog = Catalog(directory / CATALOG_NAME, read_only=True)
    try:
        positions = catalog.indexed_positions()
    finally:
        catalog.close()
    ids, lats, lons = positions
    source = HnswStore.open(directory, manifest, positions)
    milvus = MilvusStore.connect(settings, target.collection, manifest.dim, store_key(manifest))
    try:
        milvus.ensure_collection()
        state = _State(directory, target, store_key(manifest), len(ids))
        resumed_at = start = state.done()
        progress("copying", start, len(ids))
        while start < len(ids):
            batch = slice(start, start + batch_size)
            milvus.add(source.vectors_of(ids[batch]), ids[batch], lats[batch], lons[batch])
            start = min(len(ids), start + batch_size)
            state.save(start)
            progress("copying", start, len(ids))
        milvus.commit()
        milvus.load()
        sampled, agreeing = _check(source, milvus, ids, sample, ef)
    finally:
        milvus.close()
    replace(manifest, vector_store="milvus", milvus_collection=target.collection).save(directory)
    state.remove()
    return MigrationReport(total=len(ids), copied_now=len(ids) - resumed_at,
                           resumed_at=resumed_at, sampled=sampled, agreeing=agreeing,
                           seconds=time.perf_counter() - started)


def _check(source: HnswStore, milvus: MilvusStore, ids: np.ndarray, sample: int,
           ef: int) -> tuple[int, int]:
    """Count, stored versions, and a sample of nearest neighbours, against the source."""
    held = len(milvus)
    if held != len(ids):
        raise MigrationCheckFailed(f"the collection holds {held} vectors, the index {len(ids)};"
                                   " run the migration again to finish it")
    picks = ids[np.linspace(0, len(ids) - 1, min(sample, len(ids))).round().astype(int)]
    vectors = source.vectors_of(picks)
    stored = milvus.vectors_of(picks)
    wrong = [int(i) for i in picks if stored.get(int(i), (None, ""))[1] != milvus.version]
    if wrong:
        raise MigrationCheckFailed(f"references {wrong[:5]} are missing from the collection or"
                                   " hold another index version")
    agreeing = 0
    for vector in vectors:
        mine, my_sims = source.search(vector, 1, ef=ef)
        theirs, their_sims = milvus.search(vector, 1, ef=ef)
        same = len(theirs) and (theirs[0] == mine[0] or abs(their_sims[0] - my_sims[0]) < TIE)
        agreeing += bool(same)
    if agreeing < MIN_AGREEMENT * len(picks):
        raise MigrationCheckFailed(f"only {agreeing} of {len(picks)} sampled references find the"
                                   " same nearest neighbour in the collection as in the index")
    return len(picks), agreeing


class _State:
    """`migrate.json`: how far a migration to this collection got."""

    def __init__(self, directory: Path, target: MilvusTarget, key: str, total: int) -> None:
        self._path = directory / STATE_NAME
        self._identity = {"uri": target.uri, "collection": target.collection, "key": key,
                          "total": total}

    def done(self) -> int:
        """Where to resume: 0 unless the same migration (target, index, size) was cut short."""
        try:
            saved = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return 0
        if {k: saved.get(k) for k in self._identity} != self._identity:
            return 0
        return int(saved.get("done", 0))

    def save(self, done: int) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self._identity, "done": done}))
        os.replace(tmp, self._path)

    def remove(self) -> None:
        self._path.unlink(missing_ok=True)


def _noop(phase: str, done: int, total: int) -> None:
    return None
