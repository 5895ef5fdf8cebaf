"""`geosleuth eval`: run the engine over photos of known position and print the figures."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from bot.config import AppConfig
from engine.calibration import (
    LabelledAnswer,
    fit_curve,
    reestimate,
    save_fitted,
    verified_from_matches,
)
from engine.config import EngineConfig
from engine.degrade import parse_degradations
from engine.errors import GeoSleuthError
from engine.evaluation import EvalQuery, EvalRow, run_queries, split_every, summarise
from engine.geo import SearchArea
from engine.index.builder import build_index
from engine.locator import Locator
from engine.sources import SourceScan, scan_source


def run_eval(
    args: argparse.Namespace,
    config: AppConfig,
    scratch: Path,
    area: SearchArea | None,
    progress: Callable[[str, int, int], None],
) -> dict:
    try:
        degradations = parse_degradations(args.degrade) if args.degrade else []
    except ValueError as exc:
        raise GeoSleuthError(f"--degrade: {exc}") from None
    scan = scan_source(args.queries)
    engine_config = config.engine
    if args.fit_calibration and args.holdout_every is not None:
        raise GeoSleuthError("--fit-calibration writes into the index it measured: give --index"
                             " DIR, not --holdout-every (whose index is temporary)")
    if args.holdout_every is not None:  # argparse has checked it is 2 or more
        references, held_out = split_every(scan.records, args.holdout_every)
        index_dir = scratch / "index"
        reference_scans = [SourceScan(references)]
        reference_scans += [scan_source(p) for p in args.refs]
        build_index(index_dir, reference_scans, engine_config, progress=progress)
        engine_config = replace(engine_config, index_path=index_dir)
    else:
        held_out = list(scan.records)
    queries = [EvalQuery(Path(r.source_id).name, Path(r.image_path), r.lat, r.lon)
               for r in held_out]
    if not queries:
        raise GeoSleuthError(f"{args.queries} holds no photos with a known position")

    locator = Locator.open(engine_config)
    try:
        rows = run_queries(
            lambda data, a: locator.locate(data, area=a, top_k=args.top_k),
            queries, degradations, area,
            on_row=None if args.json else _print_row,
        )
    finally:
        locator.close()
    summary = summarise(rows)
    summary["degradations"] = args.degrade or "none"
    summary["calibration_curve"] = locator.curve_source
    if args.fit_calibration:
        summary["fitted"] = _fit(rows, engine_config, locator.verifier.calibration_key)
    if not args.json:
        _print_summary(summary)
    return summary


def _fit(rows: list[EvalRow], config: EngineConfig, key: str) -> dict:
    """Fit the verifier's curve on these rows, write it into the index, and re-measure."""
    answers = [LabelledAnswer(verified_from_matches(r.result.matches), r.lat, r.lon)
               for r in rows if r.result is not None]
    if not answers:
        raise GeoSleuthError("no query was answered: nothing to fit a calibration on")
    fitted = fit_curve(answers, config.estimate)
    path = save_fitted(config.index_path, key, fitted)
    refitted = [replace(r, result=reestimate(r.result, config.estimate, fitted.curve))
                if r.result is not None else r for r in rows]
    after = summarise(refitted)
    return {"verifier": key, "written_to": str(path), "curve": asdict(fitted.curve),
            "log_loss": fitted.log_loss, "ece": after["ece"], "wrong_share": after["wrong_share"],
            "answered_share": after["answered_share"], "calibration": after["calibration"]}


def _print_calibration(table: list[dict]) -> None:
    print("  bin       count  mean conf  share within the stated radius")
    for row in table:
        if row["count"]:
            print(f"  {row['bin']:<9} {row['count']:5d}  {row['mean_confidence']:9.2f}"
                  f"  {row['share_within_radius']:30.2f}")


def _print_row(row: EvalRow) -> None:
    if row.result is None:
        print(f"{row.name:<24} refused: {row.error}")
        return
    r = row.result
    error = row.error_m()
    where = f"error {error:7.1f} m" if error is not None else "no answer       "
    best = r.best_match
    inliers = best.inliers if best is not None else 0
    print(f"{row.name:<24} {r.status.value:<9} {where}  confidence {r.confidence:5.2f}"
          f"  inliers {inliers:4d}  {r.timings_ms.get('total', 0):6.0f} ms")


def _print_summary(summary: dict) -> None:
    print()
    print(f"queries {summary['queries']}, answered {summary['answered']}"
          f" ({summary['answered_share']:.0%}), refused {summary['refused']},"
          f" degradations: {summary['degradations']}")
    for key, value in summary.items():
        if key.startswith("recall@"):
            print(f"  {key:<18} {value:6.1%}")
    median = summary["median_error_m"]
    print(f"  median error       {'n/a' if median is None else f'{median:.1f} m'}")
    print(f"  located but wrong  {summary['wrong']} ({summary['wrong_share']:.1%} of located,"
          f" off by over 100 m)")
    print(f"\nconfidence calibration (top place within its stated radius; curve: "
          f"{summary['calibration_curve']}), ECE {summary['ece']:.3f}:")
    _print_calibration(summary["calibration"])
    fitted = summary.get("fitted")
    if fitted is not None:
        c = fitted["curve"]
        print(f"\nfitted for '{fitted['verifier']}': min_inliers {c['min_inliers']}, midpoint"
              f" {c['midpoint']}, scale {c['scale']}; written to {fitted['written_to']}")
        print(f"with it: located {fitted['answered_share']:.1%}, wrong {fitted['wrong_share']:.1%}"
              f" of located, ECE {fitted['ece']:.3f} (on the photos it was fitted on):")
        _print_calibration(fitted["calibration"])
    print("\nlatency per stage (ms):")
    for stage, figures in summary["latency_ms"].items():
        print(f"  {stage:<10} p50 {figures['p50']:8.1f}   p95 {figures['p95']:8.1f}")
