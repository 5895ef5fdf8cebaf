"""Cross-capture accuracy and CPU latency of each funnel, side by side in one run.

For each funnel (a descriptor + a verifier at its settings), on `../shared/data/sf_xs_west`
(index the `database/` views up to 2018, query the `queries/` of 2019-2021) and on the Lund
hold-out (every third frame, Berlin as distractors), it prints:
  - recall@1 and @5 within 25 m and 100 m, the share of located answers wrong by over 100 m,
    the expected calibration error (10 bins, "within 50 m"), and locate p50/p95;
  - with the curve cross-validated (fitted on one half of the queries, applied to the other,
    and the other way round), so no query scores a curve fitted on itself;
  - the curve fitted on all of them: the line `engine/calibration.py` ships;
  - each descriptor's retrieval recall@N (a database view within 25 m among the top
    1/10/50/100): `vlad` (RootSIFT) and `xfeat-vlad` (XFeat's learned descriptors).

Indexes are built once per feature backend under --work and reused.

    python bench/bench_crosscapture.py [--funnels sift,xfeat-mnn,...] [--every 1] [--top-k 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.calibration import (  # noqa: E402
    LabelledAnswer,
    fit_curve,
    reestimate,
    verified_from_matches,
)
from engine.config import (  # noqa: E402
    EngineConfig,
    LightglueConfig,
    NeuralConfig,
    SearchConfig,
    XfeatConfig,
)
from engine.estimate import InlierCurve  # noqa: E402
from engine.evaluation import (  # noqa: E402
    EvalQuery,
    EvalRow,
    run_queries,
    split_every,
    summarise,
)
from engine.geo import haversine_m  # noqa: E402
from engine.index.builder import build_index  # noqa: E402
from engine.locator import Locator  # noqa: E402
from engine.sources import SourceScan, scan_source  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
XCAP = SHARED / "sf_xs_west"
RETRIEVAL_AT = (1, 10, 50, 100)


@dataclass(frozen=True)
class Funnel:
    name: str
    features: str  # the index (stored reference features) it needs
    config: EngineConfig


def funnels(base: EngineConfig) -> dict[str, Funnel]:
    xfeat = replace(base, verifier="xfeat")
    lighter = replace(xfeat, xfeat=XfeatConfig(matcher="lighterglue"))
    aliked = replace(base, verifier="lightglue",
                     lightglue=LightglueConfig(features="aliked", max_keypoints=1024,
                                               max_side=512))
    disk = replace(base, verifier="lightglue",
                   lightglue=LightglueConfig(features="disk", max_keypoints=1024, max_side=512))
    table = [
        Funnel("sift", "sift", base),
        Funnel("xfeat-mnn", "xfeat", xfeat),
        Funnel("xfeat-mnn-k20", "xfeat", replace(xfeat, search=replace(base.search, top_k=20))),
        Funnel("xfeat-mnn-1024kp", "xfeat-1024",
               replace(xfeat, xfeat=XfeatConfig(max_keypoints=1024))),
        Funnel("xfeat-lighterglue", "xfeat", lighter),
        Funnel("lightglue-aliked", "aliked", aliked),
        Funnel("lightglue-disk", "disk", disk),
        Funnel("xvlad+xfeat-mnn", "xvlad-xfeat", replace(xfeat, descriptor="xfeat-vlad")),
        Funnel("xvlad+xfeat-mnn-k20", "xvlad-xfeat",
               replace(xfeat, descriptor="xfeat-vlad", search=replace(base.search, top_k=20))),
    ]
    return {f.name: f for f in table}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--funnels", default="sift,xfeat-mnn,xfeat-lighterglue,lightglue-aliked")
    parser.add_argument("--every", type=int, default=1, help="query every N-th query photo")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "crosscapture")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    if not XCAP.is_dir():
        print(f"needs {XCAP} (the cross-capture photos); not found", file=sys.stderr)
        return 2
    base = EngineConfig(neural=NeuralConfig(device="cpu"),
                        search=SearchConfig(top_k=args.top_k))
    table = funnels(base)
    chosen = [table[name] for name in args.funnels.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    for funnel in chosen:
        _index(args.work, funnel)
    if args.build_only:
        return 0

    queries = _queries(XCAP / "queries", args.every)
    lund_refs, lund_queries = split_every(scan_source(SHARED / "lund").records, 3)
    print(f"sf_xs_west: {len(queries)} queries against "
          f"{len(scan_source(XCAP / 'database').records)} database views; "
          f"Lund: {len(lund_queries)} held-out frames; top-K {args.top_k}; CPU threads: 2")
    for descriptor in dict.fromkeys(f.config.descriptor for f in chosen):
        _print_retrieval(args.work, next(f for f in chosen if f.config.descriptor == descriptor),
                         queries)

    results = {}
    for funnel in chosen:
        started = time.perf_counter()
        xcap_rows = _run(_index(args.work, funnel), funnel.config, queries)
        lund_dir = args.work / f"lund-{funnel.features}"
        build_index(lund_dir, [SourceScan(lund_refs), scan_source(SHARED / "berlin")],
                    funnel.config)
        lund_rows = _run(lund_dir, funnel.config,
                         [EvalQuery(Path(r.image_path).name, Path(r.image_path), r.lat, r.lon)
                          for r in lund_queries])
        results[funnel.name] = (xcap_rows, lund_rows)
        print(f"  {funnel.name}: ran in {time.perf_counter() - started:.0f} s", flush=True)

    print("\nAs run (each funnel with the curve its locator had: fitted in the index, shipped, or"
          " sift's for an uncalibrated verifier):")
    _print_header()
    for funnel in chosen:
        xcap_rows, lund_rows = results[funnel.name]
        _print_line(funnel.name, summarise(xcap_rows), summarise(lund_rows), xcap_rows)
    print("\nCross-validated curve (fitted on the other half of the queries):")
    _print_header()
    for funnel in chosen:
        xcap_rows, lund_rows = results[funnel.name]
        cv_rows = _cross_validated(xcap_rows, funnel.config)
        _print_line(funnel.name, summarise(cv_rows), summarise(lund_rows), xcap_rows)
    print("\nCurve fitted on every query (what engine/calibration.py ships):")
    for funnel in chosen:
        xcap_rows, _ = results[funnel.name]
        fitted = fit_curve(_labelled(xcap_rows), funnel.config.estimate)
        key = Locator.open(replace(funnel.config,
                                   index_path=_index(args.work, funnel))).verifier.calibration_key
        c = fitted.curve
        print(f"    {key!r}: InlierCurve(min_inliers={c.min_inliers}, midpoint={c.midpoint},"
              f" scale={c.scale}),  # located {fitted.located_share:.0%},"
              f" wrong {fitted.wrong_share:.1%}, {fitted.queries} queries")
    return 0


def _queries(folder: Path, every: int) -> list[EvalQuery]:
    records = sorted(scan_source(folder).records, key=lambda r: r.source_id)
    return [EvalQuery(Path(r.image_path).name, Path(r.image_path), r.lat, r.lon)
            for r in records[::every]]


def _index(work: Path, funnel: Funnel) -> Path:
    directory = work / f"sf-{funnel.features}"
    report = build_index(directory, [scan_source(XCAP / "database")], funnel.config)
    if report.indexed_now:
        print(f"  built {directory.name}: {report.indexed_now} views in {report.seconds:.0f} s",
              flush=True)
    return directory


def _run(index_dir: Path, config: EngineConfig, queries: list[EvalQuery]) -> list[EvalRow]:
    locator = Locator.open(replace(config, index_path=index_dir))
    try:
        return run_queries(lambda data, area: locator.locate(data, area=area), queries)
    finally:
        locator.close()


def _labelled(rows: list[EvalRow]) -> list[LabelledAnswer]:
    return [LabelledAnswer(verified_from_matches(r.result.matches), r.lat, r.lon)
            for r in rows if r.result is not None]


def _cross_validated(rows: list[EvalRow], config: EngineConfig) -> list[EvalRow]:
    """Each half re-estimated with the curve fitted on the other half."""
    halves = (rows[0::2], rows[1::2])
    out = []
    for mine, other in ((halves[0], halves[1]), (halves[1], halves[0])):
        curve = fit_curve(_labelled(other), config.estimate).curve
        out += [_with_curve(r, config, curve) for r in mine]
    return out


def _with_curve(row: EvalRow, config: EngineConfig, curve: InlierCurve) -> EvalRow:
    if row.result is None:
        return row
    return replace(row, result=reestimate(row.result, config.estimate, curve))


def _print_retrieval(work: Path, funnel: Funnel, queries: list[EvalQuery]) -> None:
    """Is a database view within 25 m among the descriptor's top N? (before any verification)"""
    locator = Locator.open(replace(funnel.config, index_path=_index(work, funnel)))
    try:
        hits = {n: 0 for n in RETRIEVAL_AT}
        for query in queries:
            prepared = locator.prepare(query.path.read_bytes())
            vector = locator.describe([prepared])[0]
            found = locator.index.search(vector[0], max(RETRIEVAL_AT), ef=200)
            entries = locator.index.entries([i for i, _ in found])
            near = [haversine_m(query.lat, query.lon, entries[i].lat, entries[i].lon) <= 25.0
                    for i, _ in found]
            first = near.index(True) if any(near) else None
            for n in RETRIEVAL_AT:
                hits[n] += first is not None and first < n
    finally:
        locator.close()
    shown = ", ".join(f"@{n} {hits[n] / len(queries):.1%}" for n in RETRIEVAL_AT)
    print(f"{funnel.config.descriptor} retrieval recall (a view within 25 m among the top N):"
          f" {shown}")


def _print_header() -> None:
    print(f"  {'funnel':<20} {'sf R@1 25m':>10} {'R@5 25m':>8} {'R@1 100m':>9} {'R@5 100m':>9}"
          f" {'located':>8} {'wrong':>6} {'ECE':>6} | {'Lund R@1 25m':>12} {'wrong':>6}"
          f" | {'p50 ms':>7} {'p95 ms':>7}")


def _print_line(name: str, xcap: dict, lund: dict, raw_rows: list[EvalRow]) -> None:
    totals = [r.result.timings_ms["total"] for r in raw_rows if r.result is not None]
    print(f"  {name:<20} {xcap['recall@1_25m']:>10.1%} {xcap['recall@5_25m']:>8.1%}"
          f" {xcap['recall@1_100m']:>9.1%} {xcap['recall@5_100m']:>9.1%}"
          f" {xcap['answered_share']:>8.1%} {xcap['wrong_share']:>6.1%} {xcap['ece']:>6.3f}"
          f" | {lund['recall@1_25m']:>12.1%} {lund['wrong_share']:>6.1%}"
          f" | {statistics.median(totals):>7.0f} {float(np.percentile(totals, 95)):>7.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
