"""hnswlib and Milvus side by side on the same synthetic vectors, with and without an area.

N 512-d clustered, L2-normalised vectors (as bench_index_scale.py draws them), each at a
position in a 10 x 10 km square, go into the engine's two vector stores: `HnswStore` (files)
and `MilvusStore` (here Milvus Lite, the embedded Milvus; HNSW at [engine.index] defaults).
Held-out queries are searched one at a time, top 1, for a sweep of `ef`: without an area, and
inside a 2 km box (about 4 % of the references). recall@1 is against exact search over the
same references (inside the area for the area rows).

    python bench/bench_milvus.py [--size 100000] [--queries 200] [--ef 16 32 64 100 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_index_scale import DIM, _around, _normalised  # noqa: E402
from engine.config import IndexConfig  # noqa: E402
from engine.geo import SearchArea  # noqa: E402
from engine.index.hnsw_store import HnswStore  # noqa: E402
from engine.index.milvus_store import MilvusStore  # noqa: E402
from engine.index.vector_rows import ROWS_NAME, VectorRows  # noqa: E402
from engine.index.vectors import VectorIndex  # noqa: E402

BATCH = 1_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=5_000)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 100, 200])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = _normalised(rng.standard_normal((args.clusters, DIM), dtype=np.float32))
    vectors = _around(centres, rng, args.size)
    labels = np.arange(1, args.size + 1, dtype=np.int64)
    lats = 55.70 + rng.uniform(0, 0.09, args.size)  # ~10 km north-south
    lons = 13.15 + rng.uniform(0, 0.16, args.size)  # ~10 km east-west at 55.7° N
    queries = _around(centres, rng, args.queries)
    area = SearchArea.from_bbox(13.19, 55.73, 13.222, 55.748)
    inside = area.contains(lats, lons)
    print(f"{args.size:,} vectors, {args.queries} queries; the area holds {inside.sum():,}")

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        stores = {
            "hnswlib": _hnswlib(work, vectors, labels, lats, lons),
            "milvus-lite": _milvus(work, vectors, labels, lats, lons),
        }
        truth = {None: _exact(vectors, labels, queries, None),
                 "area": _exact(vectors, labels, queries, inside)}
        print(f"{'store':<12} {'area':<5} {'ef':>4} {'recall@1':>9} {'p50 ms':>8} {'p95 ms':>8}")
        for ef in args.ef:
            for name, store in stores.items():
                for key, searched in ((None, None), ("area", area)):
                    hits, seconds = 0, []
                    for query, want in zip(queries, truth[key], strict=True):
                        began = time.perf_counter()
                        found, _ = store.search(query, 1, ef=ef, area=searched)
                        seconds.append(time.perf_counter() - began)
                        hits += int(found[0] == want)
                    print(f"{name:<12} {key or '-':<5} {ef:>4} {hits / len(queries):>9.3f}"
                          f" {np.median(seconds) * 1000:>8.2f}"
                          f" {np.percentile(seconds, 95) * 1000:>8.2f}", flush=True)
        for store in stores.values():
            store.close()
    return 0


def _hnswlib(work: Path, vectors, labels, lats, lons) -> HnswStore:
    began = time.perf_counter()
    store = HnswStore(work, VectorIndex.create(DIM, m=16, ef_construction=200,
                                               capacity=len(labels)),
                      VectorRows(work / ROWS_NAME, DIM), positions=(labels, lats, lons))
    for start in range(0, len(labels), BATCH):
        part = slice(start, start + BATCH)
        store.add(vectors[part], labels[part], lats[part], lons[part])
    print(f"hnswlib: built in {time.perf_counter() - began:.0f} s (one thread, M 16,"
          " ef_construction 200)", flush=True)
    # Opened afresh as the engine opens it, with every row written: a small area is then
    # scored exactly from the rows, as it is in production.
    return HnswStore(work, store.graph, VectorRows(work / ROWS_NAME, DIM),
                     positions=(labels, lats, lons))


def _milvus(work: Path, vectors, labels, lats, lons) -> MilvusStore:
    settings = IndexConfig(backend="milvus", uri=str(work / "milvus.db"), timeout_s=600)
    store = MilvusStore.connect(settings, "bench", DIM, "bench-v1")
    store.ensure_collection()
    began = time.perf_counter()
    for start in range(0, len(labels), BATCH):
        part = slice(start, start + BATCH)
        store.add(vectors[part], labels[part], lats[part], lons[part])
    store.commit()
    inserted = time.perf_counter() - began
    store.load()
    store.search(vectors[0], 1, ef=16)  # Milvus Lite builds its index on first use
    print(f"milvus-lite: upserted in {inserted:.0f} s, indexed and loaded in"
          f" {time.perf_counter() - began - inserted:.0f} s ({settings.index_type},"
          f" {settings.index_params})", flush=True)
    return store


def _exact(vectors, labels, queries, mask) -> np.ndarray:
    scores = queries @ vectors.T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    return labels[scores.argmax(axis=1)]


if __name__ == "__main__":
    raise SystemExit(main())
