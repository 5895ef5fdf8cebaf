"""The reference index at scale: build time, bytes per vector, recall@1 and query time.

N synthetic 512-d descriptors, L2-normalised, drawn around a few thousand cluster centres
(places seen many times, as street-level imagery is) go into the engine's own hnswlib index
(`VectorIndex`, M and ef_construction as the manifest sets them, added in the builder's
chunks). Held-out queries from the same clusters are searched on one thread for a sweep of
`ef`; recall@1 is against exact search (a matrix product over all N).

    python bench/bench_index_scale.py [--size 1000000] [--queries 1000] [--ef 16 32 64 ...]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=20_000)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 100, 150, 200, 400])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = _normalised(rng.standard_normal((args.clusters, DIM), dtype=np.float32))
    manifest = Manifest(descriptor="bench", dim=DIM, descriptor_fingerprint="",
                        descriptor_state={})  # for the graph settings a new index gets
    index = VectorIndex.create(DIM, m=manifest.hnsw_m,
                               ef_construction=manifest.hnsw_ef_construction, capacity=args.size)
    started = time.perf_counter()
    for start in range(0, args.size, CHUNK):
        labels = np.arange(start, min(start + CHUNK, args.size))
        index.add(_around(centres, rng, len(labels)), labels)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "vectors.hnsw"
        index.save(path)
        size_bytes = path.stat().st_size
    print(f"built {args.size:,} vectors (M={manifest.hnsw_m}, ef_construction="
          f"{manifest.hnsw_ef_construction}) in {build_s:.0f} s = {args.size / build_s:,.0f}/s;"
          f" {size_bytes / args.size:,.0f} bytes per vector on disk")

    data = index.vectors_of(np.arange(args.size)) if args.size <= 200_000 else None
    queries = _around(centres, rng, args.queries)
    exact = _exact_top1(index, queries, data, args.size)
    top_n = EngineConfig().search.top_n
    for ef in args.ef:
        hits, seconds = 0, []
        for query, truth in zip(queries, exact, strict=True):
            began = time.perf_counter()
            labels, _ = index.search(query, 1, ef=ef)
            seconds.append(time.perf_counter() - began)
            hits += int(labels[0] == truth)
        print(f"ef {ef:>4}: recall@1 {hits / len(queries):.4f},"
              f" {np.median(seconds) * 1000:.3f} ms p50, {np.percentile(seconds, 95) * 1000:.3f}"
              f" ms p95 per query (one thread)")
    default_ef = EngineConfig().search.ef
    seconds = []
    for query in queries[:200]:
        began = time.perf_counter()
        index.search(query, top_n, ef=default_ef)
        seconds.append(time.perf_counter() - began)
    print(f"the engine's own call (top {top_n}, ef {default_ef}):"
          f" {np.median(seconds) * 1000:.3f} ms p50")
    return 0


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _around(centres: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    chosen = centres[rng.integers(0, len(centres), count)]
    noise = rng.standard_normal((count, DIM), dtype=np.float32) * (NOISE / np.sqrt(DIM))
    return _normalised(chosen + noise).astype(np.float32)


def _exact_top1(index: VectorIndex, queries: np.ndarray, data: np.ndarray | None,
                size: int) -> np.ndarray:
    """The true nearest neighbour of each query, by inner product over every vector."""
    best = np.full(len(queries), -np.inf, np.float32)
    where = np.zeros(len(queries), np.int64)
    step = 100_000
    for start in range(0, size, step):
        labels = np.arange(start, min(start + step, size))
        block = data[labels] if data is not None else index.vectors_of(labels)
        scores = queries @ block.T
        top = scores.argmax(axis=1)
        better = scores[np.arange(len(queries)), top] > best
        best[better] = scores[np.arange(len(queries)), top][better]
        where[better] = labels[top[better]]
    return where


if __name__ == "__main__":
    raise SystemExit(main())
