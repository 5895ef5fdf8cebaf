"""Per-stage latency of the neural backends: CosPlace describe, learned matching, locate.

Prints, for the chosen device (`auto`: CUDA when present, else the CPU):
  - CosPlace describe at batch 1 and batch 32 (ms per batch, images/s);
  - extraction and pairs/s of each learned verifier (DISK and ALIKED + LightGlue at 1024 and
    2048 keypoints, XFeat with mutual nearest neighbour and LighterGlue) on real photos;
  - engine locate end to end at top-K 20 over a small index built with both backends.

Weights: the published DISK, ALIKED, LightGlue, XFeat and LighterGlue files (from --models or
the packages of requirements-learned.txt, SHA-256 verified). CosPlace's where --models has it
(`geosleuth models fetch cosplace-resnet50-2048`), else seeded random weights in its layout:
its timing does not depend on the weights' values.

    python bench/bench_neural.py [--device auto] [--models models] [--work bench/.cache]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.config import (  # noqa: E402
    CosplaceConfig,
    EngineConfig,
    LightglueConfig,
    NeuralConfig,
    SearchConfig,
    XfeatConfig,
)
from engine.descriptors.cosplace import CosplaceDescriptor  # noqa: E402
from engine.errors import ModelError  # noqa: E402
from engine.evaluation import split_every  # noqa: E402
from engine.index.builder import build_index  # noqa: E402
from engine.locator import Locator  # noqa: E402
from engine.neural.weights import published_weights  # noqa: E402
from engine.sources import SourceScan, scan_source  # noqa: E402
from engine.synthetic import make_street  # noqa: E402
from engine.verifiers import Verifier, create_verifier  # noqa: E402
from tests.fakes.cosplace_weights import write_cosplace_weights  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
COSPLACE = "cosplace-resnet50-2048"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--runs", type=int, default=5, help="timed repetitions per figure")
    parser.add_argument("--pairs", type=int, default=10, help="LightGlue pairs per figure")
    parser.add_argument("--streets", type=int, default=2, help="generated streets in the index")
    parser.add_argument("--queries", type=int, default=6)
    parser.add_argument("--top-k", type=int, default=20)
    args = parser.parse_args()

    neural = NeuralConfig(device=args.device, models_dir=args.models)
    weights, origin = _cosplace_weights(args.models, args.work / "random-models")
    cosplace = CosplaceConfig(weights=weights)
    descriptor = CosplaceDescriptor(cosplace, neural)
    print(f"torch {torch.__version__}, device {descriptor.runtime.label}"
          f"{' (' + torch.cuda.get_device_name() + ')' if torch.cuda.is_available() else ''},"
          f" {torch.get_num_threads()} CPU threads, weights: {origin}")

    photos = _photos()
    _bench_describe(descriptor, photos, args.runs)
    del descriptor
    base = replace(EngineConfig(), neural=neural)
    for features in ("disk", "aliked"):
        for keypoints in (1024, 2048):
            lightglue = LightglueConfig(features=features, max_keypoints=keypoints, max_side=1024)
            _bench_matching(create_verifier("lightglue", replace(base, lightglue=lightglue)),
                            photos, args.pairs)
    for matcher in ("mnn", "lighterglue"):
        xfeat = XfeatConfig(matcher=matcher)
        _bench_matching(create_verifier("xfeat", replace(base, xfeat=xfeat)), photos, args.pairs)
    config = replace(base, descriptor="cosplace", verifier="lightglue", cosplace=cosplace,
                     lightglue=LightglueConfig(features="disk", max_side=1024),
                     search=SearchConfig(top_k=args.top_k))
    _bench_locate(config, args)
    return 0


def _cosplace_weights(published: Path, random_dir: Path) -> tuple[Path, str]:
    """CosPlace's published file if fetched (and verified), else random weights in its layout."""
    try:
        path = published_weights(COSPLACE, published)
        return path, f"published CosPlace in {published}; the learned matchers' published files"
    except ModelError:
        random_dir.mkdir(parents=True, exist_ok=True)
        path = random_dir / f"{COSPLACE}.pth"
        if not path.is_file():
            write_cosplace_weights(path, "resnet50", 2048)
        return path, "random CosPlace (not fetched); the learned matchers' published files"


def _photos() -> list[np.ndarray]:
    """Real street photos where ../shared/data is present, else generated street views."""
    if (SHARED / "lund").is_dir():
        paths = sorted((SHARED / "lund").glob("*.jpg"))[:8]
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return [view.rgb for view in make_street(seed=5, n_views=8)]


def _timed(work: Callable[[], object], runs: int) -> np.ndarray:
    work()  # warm-up: kernels chosen, memory pools filled
    times = []
    for _ in range(runs):
        _sync()
        started = time.perf_counter()
        work()
        _sync()
        times.append((time.perf_counter() - started) * 1000)
    return np.array(times)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _bench_describe(descriptor: CosplaceDescriptor, photos: list[np.ndarray], runs: int) -> None:
    height, width = photos[0].shape[:2]
    print(f"\nCosPlace {descriptor.config.backbone}-{descriptor.dim}, shorter side "
          f"{descriptor.config.short_side} (photos {width}x{height})")
    for batch in (1, 32):
        images = [photos[i % len(photos)] for i in range(batch)]
        ms = _timed(lambda images=images: descriptor.describe(images), runs)
        print(f"  describe batch {batch:>2}: p50 {np.percentile(ms, 50):8.1f} ms"
              f"   p95 {np.percentile(ms, 95):8.1f} ms"
              f"   {batch * 1000 / np.percentile(ms, 50):7.1f} images/s")


def _bench_matching(verifier: Verifier, photos: list[np.ndarray], pairs: int) -> None:
    features = [verifier.extract(photo) for photo in photos]
    counts = [f.count for f in features]
    pair_list = [(features[i % len(features)], features[(i + 1) % len(features)])
                 for i in range(pairs)]
    extract_ms = _timed(lambda: verifier.extract(photos[0]), 3)
    match_ms = _timed(lambda: [verifier.verify(q, r) for q, r in pair_list], 1) / pairs
    print(f"\n{verifier.calibration_key}, max {verifier.config.max_keypoints} keypoints"
          f" (found {min(counts)}-{max(counts)} per photo, extraction at"
          f" {verifier.config.max_side} px, {verifier.runtime.label})")
    print(f"  extract one photo: p50 {np.percentile(extract_ms, 50):8.1f} ms")
    print(f"  match + RANSAC:    {float(match_ms[0]):8.1f} ms per pair,"
          f"   {1000 / float(match_ms[0]):6.1f} pairs/s")


def _bench_locate(config: EngineConfig, args: argparse.Namespace) -> None:
    index = args.work / f"neural-index-{args.streets}"
    config = replace(config, index_path=index)
    scans, queries = _reference_set(args.work / "neural-street", args.streets, args.queries)
    started = time.perf_counter()
    report = build_index(index, scans, config)
    if report.indexed_now:
        print(f"\nbuilt the index: {report.indexed_now} photos in"
              f" {time.perf_counter() - started:.0f} s ({report.images_per_s:.2f} images/s,"
              f" describe and feature extraction on {config.neural.device})")
    locator = Locator.open(config)
    try:
        locator.locate(queries[0], top_k=args.top_k)
        stages: dict[str, list[float]] = {}
        wall = []
        for data in queries:
            started = time.perf_counter()
            result = locator.locate(data, top_k=args.top_k)
            wall.append((time.perf_counter() - started) * 1000)
            for stage, ms in result.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
        verified = len(result.matches)
    finally:
        locator.close()
    print(f"\nlocate end to end, top-K {args.top_k} ({verified} verified per query),"
          f" index of {len(locator.index)} photos, {len(queries)} queries")
    print(f"  wall time   p50 {np.percentile(wall, 50):8.0f} ms"
          f"   p95 {np.percentile(wall, 95):8.0f} ms")
    for stage, values in stages.items():
        print(f"  {stage:<10}  p50 {np.percentile(values, 50):8.1f} ms"
              f"   p95 {np.percentile(values, 95):8.1f} ms")


def _reference_set(folder: Path, streets: int, query_count: int
                   ) -> tuple[list[SourceScan], list[bytes]]:
    """Generated streets (every third view held out as a query), plus Lund and Berlin."""
    folder.mkdir(parents=True, exist_ok=True)
    views = [v for seed in range(streets) for v in make_street(seed=200 + seed, n_views=24)]
    references, held_out = split_every(views, 3)
    rows = ["path,lat,lon,source,source_id"]
    for view in references:
        path = folder / f"{view.name}-{view.lat:.6f}.jpg"
        if not path.is_file():
            Image.fromarray(view.rgb).save(path, "JPEG", quality=90)
        rows.append(f"{path.name},{view.lat},{view.lon},synthetic,{path.stem}")
    (folder / "refs.csv").write_text("\n".join(rows) + "\n")
    scans = [scan_source(folder / "refs.csv")]
    if SHARED.is_dir():
        scans += [scan_source(SHARED / "lund"), scan_source(SHARED / "berlin")]
    return scans, [_jpeg(view.rgb) for view in held_out[:query_count]]


def _jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=90)
    return out.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
