"""`geosleuth eval`: run the engine over photos of known position and print the figures."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bot.config import AppConfig
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
    if args.holdout_every:
        if args.holdout_every < 2:
            raise GeoSleuthError("--holdout-every must be 2 or more")
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
    if not args.json:
        _print_summary(summary)
    return summary


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
    print("\nconfidence calibration (top place within 50 m):")
    print("  bin       count  mean conf  share within 50 m")
    for row in summary["calibration"]:
        if row["count"]:
            print(f"  {row['bin']:<9} {row['count']:5d}  {row['mean_confidence']:9.2f}"
                  f"  {row['share_within_50m']:17.2f}")
    print("\nlatency per stage (ms):")
    for stage, figures in summary["latency_ms"].items():
        print(f"  {stage:<10} p50 {figures['p50']:8.1f}   p95 {figures['p95']:8.1f}")
