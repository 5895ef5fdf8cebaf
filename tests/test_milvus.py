"""The Milvus vector backend against Milvus Lite (a real Milvus engine, embedded or served on
127.0.0.1): the behaviour the hnswlib store has, builds and migrations interrupted and resumed,
and a Milvus that goes away and comes back while the engine keeps running."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.async_engine import AsyncEngine
from engine.config import EngineConfig, IndexConfig
from engine.errors import ConfigError, IndexCorrupt, SearchAreaError, VectorStoreUnavailable
from engine.geo import SearchArea
from engine.index import builder
from engine.index.builder import build_index
from engine.index.catalog import CATALOG_NAME, Catalog
from engine.index.hnsw_store import HnswStore
from engine.index.manifest import Manifest
from engine.index.migrate import STATE_NAME, MilvusTarget, migrate_to_milvus
from engine.index.milvus_store import MilvusStore
from engine.index.reference_index import ReferenceIndex
from engine.index.vector_rows import ROWS_NAME, VectorRows
from engine.index.vector_store import store_key
from engine.index.vectors import VectorIndex
from engine.locator import Locator
from engine.results import ReferenceRecord
from engine.sources import SourceScan
from tests.conftest import jpeg_bytes

DIM = 64
N = 400


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """N unit vectors at labels 1..N on a 20 x 20 grid of positions ~100 m apart."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.arange(1, N + 1, dtype=np.int64)
    grid = np.arange(N)
    return vectors, labels, 55.70 + (grid // 20) * 0.0009, 13.19 + (grid % 20) * 0.0016


def _hnsw(tmp: Path, vectors, labels, lats, lons) -> HnswStore:
    store = HnswStore(tmp, VectorIndex.create(DIM, m=16, ef_construction=200),
                      VectorRows(tmp / ROWS_NAME, DIM), positions=(labels, lats, lons))
    store.add(vectors, labels, lats, lons)
    return store


def _milvus(tmp: Path, vectors, labels, lats, lons, version: str = "test-v1") -> MilvusStore:
    store = MilvusStore.connect(_lite(tmp), "refs", DIM, version)
    store.ensure_collection()
    store.add(vectors, labels, lats, lons)
    store.load()
    return store


def _lite(tmp: Path) -> IndexConfig:
    return IndexConfig(backend="milvus", uri=str(tmp / "milvus.db"), collection="refs")


@pytest.fixture(params=["hnswlib", "milvus"])
def store(request, tmp_path):
    make = _hnsw if request.param == "hnswlib" else _milvus
    data = _synthetic()
    opened = make(tmp_path, *data)
    yield opened, data
    opened.close()


def _exact(vectors, labels, query, k, mask=None):
    scores = vectors @ query
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores)[:k]
    return labels[order].tolist()


def test_top_n_comes_in_order_of_similarity(store):
    opened, (vectors, labels, _, _) = store
    query = vectors[7] + 0.8 * vectors[99]
    query /= np.linalg.norm(query)
    found, sims = opened.search(query, 10, ef=200)
    assert found.tolist() == _exact(vectors, labels, query, 10)
    assert list(sims) == sorted(sims, reverse=True)


@pytest.mark.parametrize("shape", ["box", "circle"])
def test_an_area_keeps_a_full_top_n_inside_it(store, shape):
    opened, (vectors, labels, lats, lons) = store
    if shape == "box":
        area = SearchArea.from_bbox(13.19 + 0.0016 * 4.5, 55.70 + 0.0009 * 3.5,
                                    13.19 + 0.0016 * 9.5, 55.70 + 0.0009 * 9.5)
    else:
        area = SearchArea.around(55.70 + 0.0009 * 10, 13.19 + 0.0016 * 10, 420)
    inside = area.contains(lats, lons)
    assert 25 <= inside.sum() < 120
    query = np.full(DIM, 1 / np.sqrt(DIM), np.float32)
    found, _ = opened.search(query, 20, ef=200, area=area)
    assert found.tolist() == _exact(vectors, labels, query, 20, inside)


def test_an_area_without_references_is_refused(store):
    opened, (vectors, *_) = store
    with pytest.raises(SearchAreaError, match="no reference photos"):
        opened.search(vectors[0], 5, ef=50, area=SearchArea.around(-33.9, 18.4, 1000))


def test_adding_a_label_again_replaces_it_and_deleting_hides_it(store):
    opened, (vectors, labels, lats, lons) = store
    assert len(opened) == N
    opened.add(vectors[:5][::-1].copy(), labels[:5], lats[:5], lons[:5])  # labels 1-5 swapped
    opened.commit()
    assert len(opened) == N
    found, _ = opened.search(vectors[0], 1, ef=200)
    assert found.tolist() == [5]
    opened.delete(np.array([5, 6]))
    found, _ = opened.search(vectors[0], 3, ef=200)
    assert 5 not in found.tolist() and 6 not in found.tolist()


def test_a_collection_of_another_index_version_is_refused(tmp_path):
    _milvus(tmp_path, *_synthetic()).close()
    other = MilvusStore.connect(_lite(tmp_path), "refs", DIM, "test-v2")
    with pytest.raises(IndexCorrupt, match=r"index version test-v1.*this index is test-v2"):
        other.load()
    with pytest.raises(IndexCorrupt, match="index version"):
        other.ensure_collection()  # nor is it written into
    other.close()
    wider = MilvusStore.connect(_lite(tmp_path), "refs", DIM * 2, "test-v1")
    with pytest.raises(IndexCorrupt, match="64-d"):
        wider.load()
    wider.close()


def _street_scan(tmp: Path, street) -> SourceScan:
    records = []
    for view in street[:10]:
        path = tmp / f"{view.name}.jpg"
        path.write_bytes(jpeg_bytes(view.rgb))
        records.append(ReferenceRecord("synthetic", view.name, view.lat, view.lon, str(path)))
    return SourceScan(tuple(records))


def _indexed(directory: Path) -> int:
    catalog = Catalog(directory / CATALOG_NAME, read_only=True)
    try:
        return catalog.stats().indexed
    finally:
        catalog.close()


def _count(settings: IndexConfig, directory: Path) -> int:
    manifest = Manifest.load(directory)
    store = MilvusStore.connect(settings, manifest.milvus_collection or "", manifest.dim,
                                store_key(manifest))
    try:
        return len(store)
    finally:
        store.close()


def test_a_build_into_milvus_interrupted_and_resumed_loses_and_doubles_nothing(
        tmp_path, street, monkeypatch):
    config = replace(EngineConfig(), index=_lite(tmp_path))
    directory = tmp_path / "index"
    scan = _street_scan(tmp_path, street)
    monkeypatch.setattr(builder, "CHUNK", 3)
    monkeypatch.setattr(builder, "CHECKPOINT_EVERY_S", 0.0)

    def stop_midway(phase: str, done: int, total: int) -> None:
        if phase == "indexing" and done >= 6:
            raise KeyboardInterrupt  # after vectors went to Milvus, before they were marked

    with pytest.raises(KeyboardInterrupt):
        build_index(directory, [scan], config, progress=stop_midway)
    assert _indexed(directory) == 3 and _count(config.index, directory) == 6
    report = build_index(directory, [scan], config)
    assert report.indexed_now == 7
    assert _indexed(directory) == 10 == _count(config.index, directory)
    # Vectors committed, catalogue not marked (a crash between the two): redone, not doubled.
    with sqlite3.connect(directory / CATALOG_NAME) as db:
        db.execute("UPDATE refs SET status='pending', store_path=NULL WHERE id > 4")
    assert build_index(directory, [scan], config).indexed_now == 6
    assert _count(config.index, directory) == 10
    index = ReferenceIndex.open(directory, config.index)
    try:
        assert len(index) == 10 and index.vectors.backend == "milvus"
    finally:
        index.close()
    with pytest.raises(ConfigError, match="keeps its vectors in milvus"):
        ReferenceIndex.open(directory, IndexConfig())


def test_the_target_of_a_migration_is_read_from_one_address():
    assert MilvusTarget.parse("milvus://gpu-host:19530/refs") == MilvusTarget(
        "http://gpu-host:19530", "refs")
    assert MilvusTarget.parse("milvus:///srv/m/lite.db/refs") == MilvusTarget(
        "/srv/m/lite.db", "refs")
    for wrong in ("http://host:19530/refs", "milvus://host:19530", "milvus://h:1/a/b"):
        with pytest.raises(ConfigError, match=r"milvus://HOST:PORT/COLLECTION|no '/'"):
            MilvusTarget.parse(wrong)


def test_a_migration_interrupted_midway_resumes_and_answers_as_hnswlib(
        tmp_path, street_index, street_queries):
    directory = tmp_path / "index"
    shutil.copytree(street_index.index_path, directory)
    target = MilvusTarget(str(tmp_path / "milvus.db"), "street")
    settings = IndexConfig(backend="milvus")

    def stop_midway(phase: str, done: int, total: int) -> None:
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate_to_milvus(directory, target, settings, ef=200, batch_size=3,
                          progress=stop_midway)
    assert (directory / STATE_NAME).is_file()
    assert Manifest.load(directory).vector_store == "hnswlib"  # not switched before checked
    report = migrate_to_milvus(directory, target, settings, ef=200, batch_size=3)
    assert (report.resumed_at, report.copied_now, report.total) == (6, 4, 10)
    assert report.agreeing == report.sampled == 10
    assert not (directory / STATE_NAME).exists()
    manifest = Manifest.load(directory)
    assert (manifest.vector_store, manifest.milvus_collection) == ("milvus", "street")

    migrated = replace(street_index, index_path=directory,
                       index=IndexConfig(backend="milvus", uri=target.uri))
    before, after = Locator.open(street_index), Locator.open(migrated)
    try:
        for view in street_queries:
            old = before.locate(jpeg_bytes(view.rgb))
            new = after.locate(jpeg_bytes(view.rgb))
            # Positions are weighted sums of floats that faiss and hnswlib round apart in the
            # last bits; equally verified matches may swap places for the same reason.
            assert new.status == old.status and new.confidence == old.confidence
            assert (new.lat, new.lon) == pytest.approx((old.lat, old.lon), abs=1e-9)
            assert (sorted((m.ref_id, m.inliers) for m in new.matches)
                    == sorted((m.ref_id, m.inliers) for m in old.matches))
    finally:
        before.close()
        after.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve_milvus(data: Path, port: int) -> subprocess.Popen:
    """`milvus-lite server` on 127.0.0.1, waited for (bounded) until it takes connections."""
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir", str(data),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("milvus-lite server did not start")


def test_a_milvus_that_goes_away_is_a_clear_refusal_and_coming_back_needs_no_restart(
        tmp_path, street_index, street_queries):
    port = _free_port()
    milvus = _serve_milvus(tmp_path / "milvus", port)
    try:
        directory = tmp_path / "index"
        shutil.copytree(street_index.index_path, directory)
        uri = f"http://127.0.0.1:{port}"
        migrate_to_milvus(directory, MilvusTarget(uri, "street"), IndexConfig(), ef=200)
        config = replace(street_index, index_path=directory,
                         index=IndexConfig(backend="milvus", uri=uri, timeout_s=3.0))
        photo = jpeg_bytes(street_queries[0].rgb)

        async def drive() -> None:
            nonlocal milvus
            engine = AsyncEngine(lambda: Locator.open(config), config.limits)
            await engine.start()
            try:
                first = await engine.locate(photo)
                assert await engine.vectors_ready()
                milvus.kill()
                milvus.wait()
                started = time.monotonic()
                with pytest.raises(VectorStoreUnavailable, match="try again in a minute"):
                    await engine.locate(photo)
                assert time.monotonic() - started < 30  # the deadline, not a hang
                assert not await engine.vectors_ready()
                assert engine.healthy  # the engine itself runs on
                milvus = _serve_milvus(tmp_path / "milvus", port)
                # gRPC reconnects within its backoff: ready again in seconds (bounded wait).
                deadline = time.monotonic() + 60
                while not await engine.vectors_ready() and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                again = await engine.locate(photo)
                assert (again.status, again.lat, again.lon) == (first.status, first.lat,
                                                                first.lon)
                assert await engine.vectors_ready()
            finally:
                await engine.close()

        asyncio.run(drive())
    finally:
        milvus.kill()
        milvus.wait()
