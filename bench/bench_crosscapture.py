"""Which funnel places real photos by strangers: every candidate side by side in one run.

For each funnel (a descriptor + a verifier at its settings) it locates, on a 2-core CPU:
  - `night`: the 35 real night photos of `../shared/data/sf_night_west/queries` (Flickr, other
    photographers, other cameras and viewpoints) against its 148 earlier `database/` photos,
    indexed whole. Positions are pins placed by people: scored within 100 m. The set that
    decides (it looks most like what users send).
  - `xs`: cross-year Street View, `sf_xs_west` (every --every-th of the 323 queries of
    2019-2021 against the 1,441 database views up to 2018), the regression check.
  - `uncovered`: photos the searched references do not cover, every answer to which is wrong:
    sf_xs_west queries searched only in the half of its database they were not taken in (at
    least 150 m away), sf_xs_west queries more than 150 m from every sf_night_west photo
    against the night index (the same city's look-alike streets), and Lund and Berlin against
    the night index.
and prints, per funnel: placed within 25 m and 100 m (the answer, not the alternatives),
answered, wrong (over 100 m) of answered, uncovered placed, the expected calibration error
over all three sets together (10 bins, the event "within the stated radius"), and locate
p50/p95 on the night photos. Counts stand beside percentages: the sets are small.

Each funnel's answer curve is cross-validated: fitted on one half of every set (queries and
uncovered photos alike) and applied to the other half, and the other way round, so no query
scores a curve fitted on itself. Then the curve fitted on everything, the line
`engine/calibration.py` ships. Indexes are built once per feature backend under --work.

    python bench/bench_crosscapture.py [--funnels cascade,mnn,...] [--every 3] [--top-k 10]
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
from engine.evaluation import EvalQuery, EvalRow, run_queries, summarise  # noqa: E402
from engine.geo import SearchArea, haversine_m, to_local_xy_m  # noqa: E402
from engine.index.builder import build_index  # noqa: E402
from engine.locator import Locator  # noqa: E402
from engine.sources import scan_source  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
XCAP = SHARED / "sf_xs_west"
NIGHT = SHARED / "sf_night_west"
ELSEWHERE_MARGIN_M = 150.0


@dataclass(frozen=True)
class Funnel:
    name: str
    features: str  # the stored reference features (and so the index) it needs
    config: EngineConfig


def funnels(engine: EngineConfig) -> dict[str, Funnel]:
    """Every funnel by name; each names its descriptor and verifier, whatever the defaults."""
    base = replace(engine, descriptor="xfeat-vlad", verifier="xfeat")

    def xfeat(**settings: object) -> EngineConfig:
        return replace(base, xfeat=XfeatConfig(**settings))  # type: ignore[arg-type]

    sift = replace(engine, descriptor="vlad", verifier="sift")
    aliked = replace(base, verifier="lightglue",
                     lightglue=LightglueConfig(features="aliked", max_keypoints=1024,
                                               max_side=512))
    table = [
        Funnel("cascade", "xvlad-xfeat", xfeat(matcher="cascade")),
        Funnel("cascade-d2", "xvlad-xfeat", xfeat(matcher="cascade", cascade_depth=2)),
        Funnel("cascade-d5", "xvlad-xfeat", xfeat(matcher="cascade", cascade_depth=5)),
        Funnel("cascade-d10", "xvlad-xfeat", xfeat(matcher="cascade", cascade_depth=10)),
        Funnel("cascade-512kp", "xvlad-xfeat",
               xfeat(matcher="cascade", cascade_keypoints=512)),
        Funnel("cascade-2048kp", "xvlad-xfeat",
               xfeat(matcher="cascade", cascade_keypoints=2048)),
        Funnel("mnn", "xvlad-xfeat", xfeat(matcher="mnn")),
        Funnel("lighterglue", "xvlad-xfeat", xfeat(matcher="lighterglue")),
        Funnel("vlad+sift", "vlad-sift", sift),
        Funnel("lightglue-aliked", "xvlad-aliked", aliked),
    ]
    return {f.name: f for f in table}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--funnels", default="cascade,mnn")
    parser.add_argument("--every", type=int, default=3, help="sf_xs_west: every N-th query")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "crosscapture")
    args = parser.parse_args()
    missing = [str(d) for d in (XCAP, NIGHT) if not d.is_dir()]
    if missing:
        print(f"needs the real photos in {', '.join(missing)}; not found", file=sys.stderr)
        return 2
    base = EngineConfig(neural=NeuralConfig(device="cpu"), search=SearchConfig(top_k=args.top_k))
    table = funnels(base)
    unknown = [name for name in args.funnels.split(",") if name not in table]
    if unknown:
        print(f"unknown funnel {unknown[0]!r}; choose from {', '.join(table)}", file=sys.stderr)
        return 2
    chosen = [table[name] for name in args.funnels.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)

    night = _queries(NIGHT / "queries", 1)
    xs = _queries(XCAP / "queries", args.every)
    xs_elsewhere = _elsewhere_in_xs(xs[1::2])
    night_uncovered = _uncovered_by_night(_queries(XCAP / "queries", args.every)[::2])
    print(f"night: {len(night)} photos by strangers against {_count(NIGHT / 'database')};"
          f" xs: {len(xs)} later Street View against {_count(XCAP / 'database')};"
          f" uncovered: {len(xs_elsewhere)} xs in the other half, {len(night_uncovered)}"
          f" against the night index ({len(_lund_and_berlin())} of them Lund and Berlin);"
          f" top-K {args.top_k}, 2 CPU threads", flush=True)

    results: dict[str, dict[str, list[EvalRow]]] = {}
    for funnel in chosen:
        started = time.perf_counter()
        night_index = _index(args.work, "night", NIGHT, funnel)
        xs_index = _index(args.work, "xs", XCAP, funnel)
        results[funnel.name] = {
            "night": _run(night_index, funnel.config, [(q, None) for q in night]),
            "xs": _run(xs_index, funnel.config, [(q, None) for q in xs]),
            "uncovered": (_run(xs_index, funnel.config, xs_elsewhere)
                          + _run(night_index, funnel.config, night_uncovered)),
        }
        print(f"  {funnel.name}: ran in {time.perf_counter() - started:.0f} s", flush=True)

    print("\nCross-validated answer curve (each half scored by the curve fitted on the other):")
    _print_header()
    for funnel in chosen:
        sets = _cross_validated(results[funnel.name], funnel.config)
        _print_line(funnel.name, sets, results[funnel.name]["night"])
    print("\nAs run (the curve each locator had: fitted in the index, shipped, or the cautious"
          " one for an uncalibrated verifier):")
    _print_header()
    for funnel in chosen:
        _print_line(funnel.name, results[funnel.name], results[funnel.name]["night"])
    print("\nCurve fitted on every query and uncovered photo (what engine/calibration.py ships):")
    for funnel in chosen:
        rows = [row for rows in results[funnel.name].values() for row in rows]
        fitted = fit_curve(_labelled(rows), funnel.config.estimate)
        key = _calibration_key(args.work, funnel)
        c = fitted.curve
        print(f"    {key!r}: InlierCurve(min_inliers={c.min_inliers}, midpoint={c.midpoint},"
              f" scale={c.scale}),  # located {fitted.located_share:.0%},"
              f" wrong {fitted.wrong_share:.1%}, {fitted.queries} photos")
    return 0


def _queries(folder: Path, every: int) -> list[EvalQuery]:
    records = sorted(scan_source(folder).records, key=lambda r: r.source_id)
    return [EvalQuery(Path(r.image_path).name, Path(r.image_path), r.lat, r.lon)
            for r in records[::every]]


def _count(folder: Path) -> int:
    return len(scan_source(folder).records)


def _lund_and_berlin() -> list[EvalQuery]:
    return _queries(SHARED / "lund", 1) + _queries(SHARED / "berlin", 1)


def _elsewhere_in_xs(queries: list[EvalQuery]) -> list[tuple[EvalQuery, SearchArea | None]]:
    """sf_xs_west queries, each searched in the half of the database across the median of the
    longer axis from it, if it lies at least ELSEWHERE_MARGIN_M from that half."""
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
    return out


def _uncovered_by_night(xs_queries: list[EvalQuery]) -> list[tuple[EvalQuery, None]]:
    """Street View photos far from every night database photo, then Lund and Berlin."""
    database = scan_source(NIGHT / "database").records
    far = [q for q in xs_queries
           if min(haversine_m(q.lat, q.lon, r.lat, r.lon) for r in database)
           > ELSEWHERE_MARGIN_M]
    return [(q, None) for q in far + _lund_and_berlin()]


def _index(work: Path, name: str, photos: Path, funnel: Funnel) -> Path:
    directory = work / f"{name}-{funnel.features}"
    report = build_index(directory, [scan_source(photos / "database")], funnel.config)
    if report.indexed_now:
        print(f"  built {directory.name}: {report.indexed_now} photos in {report.seconds:.0f} s",
              flush=True)
    return directory


def _run(index_dir: Path, config: EngineConfig,
         queries: list[tuple[EvalQuery, SearchArea | None]]) -> list[EvalRow]:
    locator = Locator.open(replace(config, index_path=index_dir))
    try:
        return [row for query, area in queries
                for row in run_queries(lambda data, a: locator.locate(data, area=a), [query],
                                       area=area)]
    finally:
        locator.close()


def _calibration_key(work: Path, funnel: Funnel) -> str:
    locator = Locator.open(replace(funnel.config, index_path=work / f"night-{funnel.features}"))
    try:
        return locator.verifier.calibration_key
    finally:
        locator.close()


def _labelled(rows: list[EvalRow]) -> list[LabelledAnswer]:
    return [LabelledAnswer(verified_from_matches(r.result.matches), r.lat, r.lon)
            for r in rows if r.result is not None]


def _cross_validated(sets: dict[str, list[EvalRow]], config: EngineConfig
                     ) -> dict[str, list[EvalRow]]:
    """Each half of every set re-estimated with the curve fitted on the other halves."""
    out: dict[str, list[EvalRow]] = {name: [] for name in sets}
    for mine, other in ((0, 1), (1, 0)):
        training = [row for rows in sets.values() for row in rows[other::2]]
        curve = fit_curve(_labelled(training), config.estimate).curve
        for name, rows in sets.items():
            out[name].extend(_with_curve(r, config, curve) for r in rows[mine::2])
    return out


def _with_curve(row: EvalRow, config: EngineConfig, curve: InlierCurve) -> EvalRow:
    if row.result is None:
        return row
    return replace(row, result=reestimate(row.result, config.estimate, curve))


def _print_header() -> None:
    print(f"  {'funnel':<16} | {'night 100 m':>12} {'25 m':>9} {'answered':>9} {'wrong':>8}"
          f" | {'xs 25 m':>10} {'answered':>9} {'wrong':>8} | {'uncovered placed':>16}"
          f" | {'ECE':>5} | {'p50 ms':>6} {'p95 ms':>6}")


def _print_line(name: str, sets: dict[str, list[EvalRow]], timed: list[EvalRow]) -> None:
    """One funnel's figures, counts beside shares."""
    night, xs = summarise(sets["night"]), summarise(sets["xs"])
    uncovered = sets["uncovered"]
    placed = sum(1 for r in uncovered if r.result is not None and r.result.located)
    every = summarise([row for rows in sets.values() for row in rows])
    totals = [r.result.timings_ms["total"] for r in timed if r.result is not None]
    print(f"  {name:<16} | {_share(night, 'recall@1_100m'):>12} {_share(night, 'recall@1_25m'):>9}"
          f" {_count_of(night['answered'], night['queries']):>9}"
          f" {_count_of(night['wrong'], night['answered']):>8}"
          f" | {_share(xs, 'recall@1_25m'):>10}"
          f" {_count_of(xs['answered'], xs['queries']):>9}"
          f" {_count_of(xs['wrong'], xs['answered']):>8}"
          f" | {_count_of(placed, len(uncovered)):>16}"
          f" | {every['ece']:>5.3f}"
          f" | {statistics.median(totals):>6.0f} {float(np.percentile(totals, 95)):>6.0f}")


def _share(summary: dict, key: str) -> str:
    return _count_of(round(summary[key] * summary["queries"]), summary["queries"])


def _count_of(part: int, whole: int) -> str:
    return f"{part}/{whole} {part / whole:.0%}" if whole else "0/0"


if __name__ == "__main__":
    raise SystemExit(main())
