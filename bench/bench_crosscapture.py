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
    1/10/50/100): `vlad` (RootSIFT) and `xfeat-vlad` (XFeat's learned descriptors);
  - how often a photo the index does not cover is placed anyway ("elsewhere"): every other
    sf_xs_west query searched only in the half of the database it was not taken in (at least
    150 m from it, the same city's look-alike streets), and the Lund and Berlin photos against
    the San Francisco index. Every such answer is wrong. The curves are fitted on these
    negatives too, so a floor cannot rely on every photo being covered.

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
from engine.geo import SearchArea, haversine_m, to_local_xy_m  # noqa: E402
from engine.index.builder import build_index  # noqa: E402
from engine.locator import Locator  # noqa: E402
from engine.sources import SourceScan, scan_source  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
XCAP = SHARED / "sf_xs_west"
RETRIEVAL_AT = (1, 10, 50, 100)
ELSEWHERE_MARGIN_M = 150.0


@dataclass(frozen=True)
class Funnel:
    name: str
    features: str  # the index (stored reference features) it needs
    config: EngineConfig


def funnels(engine: EngineConfig) -> dict[str, Funnel]:
    """Every funnel by name; each names its descriptor and verifier, whatever the defaults."""
    base = replace(engine, descriptor="vlad", verifier="sift")
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
        Funnel("xvlad+xfeat-lighterglue", "xvlad-xfeat", replace(lighter, descriptor="xfeat-vlad")),
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

    elsewhere = _elsewhere_queries(queries[::2])
    print(f"elsewhere: {len(elsewhere)} photos the index does not cover"
          f" ({len(elsewhere) - len(_lund_and_berlin())} sf_xs_west queries searched in the other"
          f" half, {len(_lund_and_berlin())} from Lund and Berlin)")
    results = {}
    for funnel in chosen:
        started = time.perf_counter()
        index_dir = _index(args.work, funnel)
        xcap_rows = _run(index_dir, funnel.config, queries)
        elsewhere_rows = _run_elsewhere(index_dir, funnel.config, elsewhere)
        lund_dir = args.work / f"lund-{funnel.features}"
        build_index(lund_dir, [SourceScan(lund_refs), scan_source(SHARED / "berlin")],
                    funnel.config)
        lund_rows = _run(lund_dir, funnel.config,
                         [EvalQuery(Path(r.image_path).name, Path(r.image_path), r.lat, r.lon)
                          for r in lund_queries])
        results[funnel.name] = (xcap_rows, lund_rows, elsewhere_rows)
        print(f"  {funnel.name}: ran in {time.perf_counter() - started:.0f} s", flush=True)

    print("\nAs run (each funnel with the curve its locator had: fitted in the index, shipped, or"
          " sift's for an uncalibrated verifier):")
    _print_header()
    for funnel in chosen:
        xcap_rows, lund_rows, elsewhere_rows = results[funnel.name]
        _print_line(funnel.name, xcap_rows, lund_rows, elsewhere_rows, xcap_rows)
    print("\nCross-validated curve (fitted on the other half of the queries and negatives):")
    _print_header()
    for funnel in chosen:
        xcap_rows, lund_rows, elsewhere_rows = results[funnel.name]
        cv_rows, cv_elsewhere = _cross_validated(xcap_rows, elsewhere_rows, funnel.config)
        _print_line(funnel.name, cv_rows, lund_rows, cv_elsewhere, xcap_rows)
    print("\nCurve fitted on every query and negative (what engine/calibration.py ships):")
    for funnel in chosen:
        xcap_rows, _, elsewhere_rows = results[funnel.name]
        fitted = fit_curve(_labelled(xcap_rows + elsewhere_rows), funnel.config.estimate)
        key = Locator.open(replace(funnel.config,
                                   index_path=_index(args.work, funnel))).verifier.calibration_key
        c = fitted.curve
        print(f"    {key!r}: InlierCurve(min_inliers={c.min_inliers}, midpoint={c.midpoint},"
              f" scale={c.scale}),  # located {fitted.located_share:.0%},"
              f" wrong {fitted.wrong_share:.1%}, {fitted.queries} queries and negatives")
    return 0


def _queries(folder: Path, every: int) -> list[EvalQuery]:
    records = sorted(scan_source(folder).records, key=lambda r: r.source_id)
    return [EvalQuery(Path(r.image_path).name, Path(r.image_path), r.lat, r.lon)
            for r in records[::every]]


def _lund_and_berlin() -> list[EvalQuery]:
    records = scan_source(SHARED / "lund").records + scan_source(SHARED / "berlin").records
    return [EvalQuery(Path(r.image_path).name, Path(r.image_path), r.lat, r.lon)
            for r in records]


def _elsewhere_queries(queries: list[EvalQuery]) -> list[tuple[EvalQuery, SearchArea | None]]:
    """Photos whose place the searched references do not cover, each with its search area.

    An sf_xs_west query is searched in the half of the database across the median of the
    longer axis from it, if it lies at least ELSEWHERE_MARGIN_M from that half.
    """
    database = scan_source(XCAP / "database").records
    lats = np.array([r.lat for r in database])
    lons = np.array([r.lon for r in database])
    centre = float(np.median(lats)), float(np.median(lons))
    xy = to_local_xy_m(lats, lons, *centre)
    by_lon = np.ptp(xy[:, 0]) >= np.ptp(xy[:, 1])
    axis = 0 if by_lon else 1
    south, north = float(lats.min()) - 1e-3, float(lats.max()) + 1e-3
    west, east = float(lons.min()) - 1e-3, float(lons.max()) + 1e-3
    out: list[tuple[EvalQuery, SearchArea | None]] = []
    for query in queries:
        here = to_local_xy_m(np.array([query.lat]), np.array([query.lon]), *centre)[0]
        low_side = here[axis] < 0
        other_half = xy[xy[:, axis] >= 0] if low_side else xy[xy[:, axis] < 0]
        if np.min(np.hypot(*(other_half - here).T)) < ELSEWHERE_MARGIN_M:
            continue
        if by_lon:
            area = (SearchArea.from_bbox(centre[1], south, east, north) if low_side
                    else SearchArea.from_bbox(west, south, centre[1], north))
        else:
            area = (SearchArea.from_bbox(west, centre[0], east, north) if low_side
                    else SearchArea.from_bbox(west, south, east, centre[0]))
        out.append((query, area))
    return out + [(query, None) for query in _lund_and_berlin()]


def _run_elsewhere(index_dir: Path, config: EngineConfig,
                   queries: list[tuple[EvalQuery, SearchArea | None]]) -> list[EvalRow]:
    locator = Locator.open(replace(config, index_path=index_dir))
    try:
        return [row for query, area in queries
                for row in run_queries(lambda data, a: locator.locate(data, area=a), [query],
                                       area=area)]
    finally:
        locator.close()


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


def _cross_validated(rows: list[EvalRow], negatives: list[EvalRow], config: EngineConfig
                     ) -> tuple[list[EvalRow], list[EvalRow]]:
    """Each half (of queries and of negatives) re-estimated with the other half's curve."""
    out: tuple[list[EvalRow], list[EvalRow]] = ([], [])
    for mine, other in ((0, 1), (1, 0)):
        curve = fit_curve(_labelled(rows[other::2] + negatives[other::2]),
                          config.estimate).curve
        out[0].extend(_with_curve(r, config, curve) for r in rows[mine::2])
        out[1].extend(_with_curve(r, config, curve) for r in negatives[mine::2])
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
          f" {'located':>8} {'wrong':>6} {'ECE':>6} | {'elsewhere':>9}"
          f" | {'Lund R@1 25m':>12} {'wrong':>6} | {'p50 ms':>7} {'p95 ms':>7}")


def _print_line(name: str, xcap_rows: list[EvalRow], lund_rows: list[EvalRow],
                elsewhere_rows: list[EvalRow], raw_rows: list[EvalRow]) -> None:
    """One funnel's figures; `elsewhere` is the share of uncovered photos placed anyway."""
    xcap, lund = summarise(xcap_rows), summarise(lund_rows)
    placed = sum(1 for r in elsewhere_rows if r.result is not None and r.result.located)
    totals = [r.result.timings_ms["total"] for r in raw_rows if r.result is not None]
    print(f"  {name:<20} {xcap['recall@1_25m']:>10.1%} {xcap['recall@5_25m']:>8.1%}"
          f" {xcap['recall@1_100m']:>9.1%} {xcap['recall@5_100m']:>9.1%}"
          f" {xcap['answered_share']:>8.1%} {xcap['wrong_share']:>6.1%} {xcap['ece']:>6.3f}"
          f" | {placed / max(1, len(elsewhere_rows)):>9.1%}"
          f" | {lund['recall@1_25m']:>12.1%} {lund['wrong_share']:>6.1%}"
          f" | {statistics.median(totals):>7.0f} {float(np.percentile(totals, 95)):>7.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
