"""CPU locate latency at a 10,000-photo index, and index build throughput.

The index holds the real Lund (minus every third frame) and Berlin photos plus generated
street views as distractors (other streets, spread over Europe). Queries: the held-out Lund
frames after chat-app recompression and an 80 % crop, and held-out views of distractor
streets. The distractors and the index are cached under --work, so a rerun measures latency
without rebuilding; pass --rebuild to measure build throughput again.

    python bench/bench_locate.py [--size 10000] [--top-k 10 20] [--descriptor xfeat-vlad]
                                 [--verifier xfeat] [--matcher cascade mnn] [--work ...]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import time
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import EngineConfig  # noqa: E402
from engine.degrade import apply_degradations, parse_degradations  # noqa: E402
from engine.evaluation import split_every  # noqa: E402
from engine.geo import haversine_m  # noqa: E402
from engine.index.builder import build_index  # noqa: E402
from engine.index.manifest import Manifest  # noqa: E402
from engine.locator import Locator  # noqa: E402
from engine.sources import SourceScan, scan_source  # noqa: E402
from engine.synthetic import make_street  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
VIEWS_PER_STREET = 24
QUERY_STREETS = 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="photos in the index")
    defaults = EngineConfig()
    parser.add_argument("--top-k", type=int, nargs="+", default=[defaults.search.top_k],
                        help="one or more top-K, each measured on the same index")
    parser.add_argument("--descriptor", default=defaults.descriptor,
                        help="descriptor backend (default: the engine's default, %(default)s)")
    parser.add_argument("--verifier", default=defaults.verifier,
                        help="verifier backend (default: the engine's default, %(default)s)")
    parser.add_argument("--matcher", nargs="+", default=[defaults.xfeat.matcher],
                        help="with --verifier xfeat: one or more matchers, each measured on the"
                             " same index (default: %(default)s)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the index from scratch")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"needs the real photos in {SHARED}", file=sys.stderr)
        return 2

    lund = scan_source(SHARED / "lund").records
    lund_refs, lund_queries = split_every(lund, 3)
    berlin = scan_source(SHARED / "berlin").records
    distractor_count = args.size - len(lund_refs) - len(berlin)
    streets = -(-distractor_count // (VIEWS_PER_STREET - 1))
    distractors_csv = _distractors(args.work / f"distractors-{streets}", streets)

    index_dir = args.work / f"index-{args.size}-{args.descriptor}-{args.verifier}"
    if args.rebuild:
        shutil.rmtree(index_dir, ignore_errors=True)
    config = replace(defaults, index_path=index_dir, descriptor=args.descriptor,
                     verifier=args.verifier)
    scans = [SourceScan(lund_refs), SourceScan(berlin)]
    distractors = scan_source(distractors_csv)
    scans.append(SourceScan(distractors.records[:distractor_count]))
    if not (index_dir / "manifest.json").is_file() or Manifest.load(index_dir).count < args.size:
        started = time.perf_counter()
        report = build_index(index_dir, scans, config)
        seconds = time.perf_counter() - started
        print(f"build: {report.indexed_now} photos in {seconds:.0f} s ="
              f" {report.indexed_now / seconds:.2f} images/s on {os.cpu_count()} cores"
              f" (vocabulary and projection learning included)")
    manifest = Manifest.load(index_dir)
    print(f"index: {manifest.count} photos, descriptor {manifest.descriptor}"
          f" ({manifest.descriptor_state.get('projection')}), verifier {args.verifier},"
          f" {_size_mb(index_dir):.0f} MB on disk")

    queries = [(f"lund/{Path(r.image_path).name}", _degraded(Path(r.image_path)), r.lat, r.lon)
               for r in lund_queries]
    queries += _street_queries(args.work / f"distractors-{streets}")
    matchers = args.matcher if args.verifier == "xfeat" else [None]
    for matcher, top_k in [(m, k) for m in matchers for k in args.top_k]:
        run_config = (config if matcher is None
                      else replace(config, xfeat=replace(config.xfeat, matcher=matcher)))
        locator = Locator.open(run_config)
        try:
            locator.locate(queries[0][1], top_k=top_k)  # warm-up: imports, first allocations
            cold = _run(locator, queries, top_k)
            warm = _run(locator, queries, top_k)
        finally:
            locator.close()
        name = f"{matcher}, " if matcher else ""
        _print(f"{name}top-K {top_k}, first pass (reference features read from the index)", cold)
        _print(f"{name}top-K {top_k}, second pass (reference features in the memory LRU)", warm)
    return 0


def _street(seed: int, folder: str) -> list[list[str]]:
    """One distractor street: all but its last view are references (the last is a query)."""
    rng = np.random.default_rng(seed)
    origin = (float(rng.uniform(40, 60)), float(rng.uniform(-5, 25)))
    rows = []
    for i, view in enumerate(make_street(seed, n_views=VIEWS_PER_STREET, origin=origin)):
        name = f"s{seed:05d}_{i:02d}.jpg"
        Image.fromarray(view.rgb).save(Path(folder) / name, "JPEG", quality=88)
        rows.append([name, view.lat, view.lon, "synthetic", name[:-4]])
    return rows


def _distractors(folder: Path, streets: int) -> Path:
    manifest = folder / "references.csv"
    queries = folder / "queries.csv"
    if manifest.is_file() and queries.is_file():
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        all_rows = pool.starmap(_street, [(1000 + s, str(folder)) for s in range(streets)])
    print(f"generated {streets * VIEWS_PER_STREET} distractor views in"
          f" {time.perf_counter() - started:.0f} s")
    header = ["path", "lat", "lon", "source", "source_id"]
    with manifest.open("w", newline="") as refs, queries.open("w", newline="") as held:
        ref_writer, query_writer = csv.writer(refs), csv.writer(held)
        ref_writer.writerow(header)
        query_writer.writerow(header)
        for rows in all_rows:
            ref_writer.writerows(rows[:-1])
            query_writer.writerow(rows[-1])
    return manifest


def _street_queries(folder: Path) -> list[tuple[str, bytes, float, float]]:
    records = scan_source(folder / "queries.csv").records[:QUERY_STREETS]
    return [(r.source_id, Path(r.image_path).read_bytes(), r.lat, r.lon) for r in records]


def _degraded(path: Path) -> bytes:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    out = io.BytesIO()
    Image.fromarray(apply_degradations(rgb, parse_degradations("chat,crop0.8"))).save(
        out, "JPEG", quality=95)
    return out.getvalue()


def _run(locator: Locator, queries, top_k: int) -> dict:
    stages: dict[str, list[float]] = {}
    wall: list[float] = []
    hits = 0
    for _, data, lat, lon in queries:
        started = time.perf_counter()
        result = locator.locate(data, top_k=top_k)
        wall.append((time.perf_counter() - started) * 1000)
        for stage, ms in result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
        hits += result.located and haversine_m(lat, lon, result.lat, result.lon) <= 25
    return {"wall": wall, "stages": stages, "hits": hits, "n": len(queries)}


def _print(title: str, run: dict) -> None:
    wall = np.array(run["wall"])
    print(f"\n{title}: {run['n']} queries, located within 25 m: {run['hits']}/{run['n']}")
    print(f"  locate wall time   p50 {np.percentile(wall, 50):7.0f} ms"
          f"   p95 {np.percentile(wall, 95):7.0f} ms")
    for stage, values in run["stages"].items():
        print(f"  {stage:<18} p50 {np.percentile(values, 50):7.1f} ms"
              f"   p95 {np.percentile(values, 95):7.1f} ms")


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


if __name__ == "__main__":
    raise SystemExit(main())
