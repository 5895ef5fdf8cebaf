"""The whole locate pipeline on hnswlib and on Milvus, answer for answer, on real photos.

Each index (sf_xs_west's database views; Lund minus every third frame, plus Berlin) is built
once with hnswlib, copied, and the copy migrated into a Milvus Lite collection with
`index migrate`'s own code. Every query (sf_xs_west's 2019-2021 photos, every --every-th;
Lund's held-out frames) is then located by both, and the answers compared: status, position,
confidence and the ranked matches. It prints how many agree, and each one that does not.

    python bench/bench_backends.py [--every 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_crosscapture import SHARED, XCAP, _queries  # noqa: E402
from engine.config import EngineConfig, IndexConfig, NeuralConfig  # noqa: E402
from engine.evaluation import EvalQuery, run_queries, split_every  # noqa: E402
from engine.index.builder import build_index  # noqa: E402
from engine.index.migrate import MilvusTarget, migrate_to_milvus  # noqa: E402
from engine.locator import Locator  # noqa: E402
from engine.sources import SourceScan, scan_source  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "crosscapture")
    args = parser.parse_args()
    if not XCAP.is_dir():
        print(f"needs {XCAP} (the cross-capture photos); not found", file=sys.stderr)
        return 2
    config = EngineConfig(neural=NeuralConfig(device="cpu"))
    lund_refs, lund_queries = split_every(scan_source(SHARED / "lund").records, 3)
    sets = {
        "sf_xs_west": (args.work / "sf-xvlad-xfeat", [scan_source(XCAP / "database")],
                       _queries(XCAP / "queries", args.every)),
        "lund": (args.work / "lund-xvlad-xfeat",
                 [SourceScan(lund_refs), scan_source(SHARED / "berlin")],
                 [EvalQuery(Path(r.image_path).name, Path(r.image_path), r.lat, r.lon)
                  for r in lund_queries]),
    }
    for name, (directory, scans, queries) in sets.items():
        build_index(directory, scans, config)
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / "index"
            shutil.copytree(directory, copy)
            target = MilvusTarget(str(Path(scratch) / "milvus.db"), name)
            report = migrate_to_milvus(copy, target, IndexConfig(), ef=config.search.ef)
            print(f"{name}: migrated {report.total} vectors in {report.seconds:.0f} s;"
                  f" {report.agreeing}/{report.sampled} sampled neighbours agree", flush=True)
            hnsw_rows = _locate(replace(config, index_path=directory), queries)
            milvus_rows = _locate(replace(config, index_path=copy,
                                          index=IndexConfig(backend="milvus", uri=target.uri)),
                                  queries)
        same = 0
        for a, b in zip(hnsw_rows, milvus_rows, strict=True):
            if _answer(a.result) == _answer(b.result) and a.error == b.error:
                same += 1
            else:
                print(f"  differs: {a.name}: hnswlib {_answer(a.result)} / milvus"
                      f" {_answer(b.result)}")
        print(f"{name}: {same} of {len(queries)} answers identical (status, position,"
              " confidence, ranked matches)", flush=True)
    return 0


def _locate(config: EngineConfig, queries: list[EvalQuery]):
    began = time.perf_counter()
    locator = Locator.open(config)
    try:
        rows = run_queries(lambda data, area: locator.locate(data, area=area), queries)
    finally:
        locator.close()
    print(f"  {config.index.backend}: {len(rows)} queries in {time.perf_counter() - began:.0f} s",
          flush=True)
    return rows


def _answer(result) -> tuple | None:
    if result is None:
        return None
    return (result.status.value, result.lat, result.lon, round(result.confidence, 6),
            tuple((m.ref_id, m.inliers) for m in result.matches))


if __name__ == "__main__":
    raise SystemExit(main())
