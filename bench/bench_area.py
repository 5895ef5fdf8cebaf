"""Search inside a small area: hnswlib's filtered graph search against exact scoring of the
area's rows from `vectors.f16`, side by side on the same random unit vectors.

    python bench/bench_area.py [--size 20000] [--share 0.02 0.1]
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

from engine.index.vector_rows import VectorRows  # noqa: E402
from engine.index.vectors import VectorIndex  # noqa: E402

DIM = 512
QUERIES = 50
TOP_N = 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--share", type=float, nargs="+", default=[0.005, 0.02, 0.1],
                        help="share of the references inside the area")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = rng.normal(size=(args.size, DIM)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    labels = np.arange(1, args.size + 1)
    graph = VectorIndex.create(DIM, m=16, ef_construction=100, capacity=args.size)
    graph.add(data, labels)
    with tempfile.TemporaryDirectory() as scratch:
        rows = VectorRows(Path(scratch) / "vectors.f16", DIM)
        rows.write(data, labels)
        print(f"{args.size} references, {DIM}-d, top {TOP_N}, {QUERIES} queries each")
        for share in args.share:
            inside = np.sort(rng.choice(labels, max(TOP_N, int(share * args.size)), replace=False))
            allowed = np.zeros(args.size + 1, dtype=bool)
            allowed[inside] = True
            queries = data[inside[:QUERIES] - 1] + 0.3 * rng.normal(size=(QUERIES, DIM))
            filtered_ms, exact_ms, agree = [], [], []
            for query in queries.astype(np.float32):
                started = time.perf_counter()
                found, _ = graph.search(query, TOP_N, ef=200, allowed=allowed)
                filtered_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                scores = rows.scores(query, inside)
                exact = inside[np.argsort(-scores)[:TOP_N]]
                exact_ms.append((time.perf_counter() - started) * 1000)
                agree.append(len(set(found.tolist()) & set(exact.tolist())) / TOP_N)
            print(f"  area holding {len(inside):>6} ({share:.1%}): filtered graph p50"
                  f" {np.median(filtered_ms):6.1f} ms, exact rows p50 {np.median(exact_ms):6.1f}"
                  f" ms; the filtered search finds {np.mean(agree):.1%} of the exact top {TOP_N}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
