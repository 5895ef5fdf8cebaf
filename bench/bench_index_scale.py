"""The reference index at scale: build time, bytes per vector, recall and query time.

N synthetic 512-d descriptors, L2-normalised, drawn around a few thousand cluster centres
(places seen many times, as street-level imagery is) go into the engine's own hnswlib index
(`VectorIndex`, M and ef_construction as the manifest sets them unless given, added in the
builder's chunks on one thread). Held-out queries from the same clusters are searched on one
thread for a sweep of `ef`, against exact search (a matrix product over all N):
  - recall@1, the share of queries whose nearest neighbour is found;
  - the engine's own call (top `[engine.search] top_n`), for ef from top_n up (hnswlib never
    searches with ef below k): 10@top_n, the share of the exact top 10 among its candidates
    (what the funnel verifies must be there), and recall@top_n, the share of the exact top_n
    (its tail here is other clusters' members at chance similarity, which no graph search
    finds reliably).

    python bench/bench_index_scale.py [--size 1000000] [--m 16 32] [--ef 16 32 64 ...]
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

from engine.config import EngineConfig  # noqa: E402
from engine.index.manifest import Manifest  # noqa: E402
from engine.index.vectors import VectorIndex  # noqa: E402

DIM = 512
CHUNK = 64  # the builder's chunk
NOISE = 0.35  # per-component spread around a centre, relative to the centre's norm
EXACT_BLOCK = 100_000
BEST = 10  # the funnel verifies about this many: are the true best among the candidates?


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=20_000)
    defaults = Manifest(descriptor="bench", dim=DIM, descriptor_fingerprint="",
                        descriptor_state={})  # the graph settings a new index gets
    parser.add_argument("--m", type=int, nargs="+", default=[defaults.hnsw_m],
                        help="graphs to build side by side (hnswlib's M)")
    parser.add_argument("--ef-construction", type=int, default=defaults.hnsw_ef_construction)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 48, 64, 100, 150, 200])
    parser.add_argument("--engine-ef", type=int, nargs="+", default=[100, 150, 200, 300],
                        help="ef for the engine's own top_n call")
    args = parser.parse_args()
    top_n = EngineConfig().search.top_n
    print(f"{args.size:,} vectors around {args.clusters:,} centres, {args.queries:,} queries;"
          f" the engine's default: M {defaults.hnsw_m}, ef {EngineConfig().search.ef},"
          f" top_n {top_n}", flush=True)
    for m in args.m:
        rng = np.random.default_rng(0)  # every graph gets the same vectors and queries
        centres = _normalised(rng.standard_normal((args.clusters, DIM), dtype=np.float32))
        index = _build(centres, rng, args.size, m, args.ef_construction)
        queries = _around(centres, rng, args.queries)
        exact = _exact_top(index, queries, args.size, top_n)
        for ef in args.ef:
            hits, seconds = 0, []
            for query, truth in zip(queries, exact[:, 0], strict=True):
                began = time.perf_counter()
                labels, _ = index.search(query, 1, ef=ef)
                seconds.append(time.perf_counter() - began)
                hits += int(labels[0] == truth)
            print(f"  M {m} ef {ef:>4}: recall@1 {hits / len(queries):.4f},"
                  f" {np.median(seconds) * 1000:.3f} ms p50,"
                  f" {np.percentile(seconds, 95) * 1000:.3f} ms p95 per query (one thread)",
                  flush=True)
        for ef in args.engine_ef:
            found, found_best, seconds = 0, 0, []
            for query, truth in zip(queries, exact, strict=True):
                began = time.perf_counter()
                labels, _ = index.search(query, top_n, ef=ef)
                seconds.append(time.perf_counter() - began)
                found += len(np.intersect1d(labels, truth))
                found_best += len(np.intersect1d(labels, truth[:BEST]))
            print(f"  M {m} the engine's call (top {top_n}) at ef {ef:>4}:"
                  f" {BEST}@{top_n} {found_best / (BEST * len(queries)):.4f},"
                  f" recall@{top_n} {found / exact.size:.4f},"
                  f" {np.median(seconds) * 1000:.3f} ms p50", flush=True)
    return 0


def _build(centres: np.ndarray, rng: np.random.Generator, size: int, m: int,
           ef_construction: int) -> VectorIndex:
    index = VectorIndex.create(DIM, m=m, ef_construction=ef_construction, capacity=size)
    started = time.perf_counter()
    for start in range(0, size, CHUNK):
        labels = np.arange(start, min(start + CHUNK, size))
        index.add(_around(centres, rng, len(labels)), labels)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "vectors.hnsw"
        index.save(path)
        size_bytes = path.stat().st_size
    print(f"M {m}: built {size:,} vectors (ef_construction {ef_construction}) in"
          f" {build_s:.0f} s = {size / build_s:,.0f}/s, one thread;"
          f" {size_bytes / size:,.0f} bytes per vector on disk", flush=True)
    return index


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _around(centres: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    chosen = centres[rng.integers(0, len(centres), count)]
    noise = rng.standard_normal((count, DIM), dtype=np.float32) * (NOISE / np.sqrt(DIM))
    return _normalised(chosen + noise).astype(np.float32)


def _exact_top(index: VectorIndex, queries: np.ndarray, size: int, k: int) -> np.ndarray:
    """The true top-k of each query by inner product over every vector, best first."""
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_labels = np.zeros((len(queries), 0), np.int64)
    for start in range(0, size, EXACT_BLOCK):
        labels = np.arange(start, min(start + EXACT_BLOCK, size))
        scores = np.hstack([best_scores, queries @ index.vectors_of(labels).T])
        candidates = np.hstack([best_labels, np.broadcast_to(labels, (len(queries), len(labels)))])
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_labels = np.take_along_axis(candidates, keep, axis=1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_labels, order, axis=1)


if __name__ == "__main__":
    raise SystemExit(main())
