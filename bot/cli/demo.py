"""`geosleuth demo`: the whole funnel on a generated street, with no data and no network."""

from __future__ import annotations

import csv
import io
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from PIL import Image

from bot.config import AppConfig
from bot.render.map import render_map
from engine.errors import GeoSleuthError
from engine.evaluation import split_every
from engine.geo import haversine_m
from engine.index.builder import build_index
from engine.locator import Locator
from engine.sources import scan_source
from engine.synthetic import SyntheticView, make_street

HOLD_OUT_EVERY = 3


def run_demo(
    out: Path, views: int, seed: int, config: AppConfig, progress: Callable[[str, int, int], None]
) -> int:
    """Index two thirds of the street's views, locate the others, write a map per answer."""
    if views < 2 * HOLD_OUT_EVERY:
        raise GeoSleuthError(f"--views must be at least {2 * HOLD_OUT_EVERY}")
    print(f"Generating a street of {views} views (seed {seed})...")
    street = make_street(seed, n_views=views)
    references, held_out = split_every(street, HOLD_OUT_EVERY)

    # Only the folders this command owns are replaced, so a rerun starts clean.
    for owned in ("references", "index", "maps"):
        shutil.rmtree(out / owned, ignore_errors=True)
    manifest = _write_references(references, out / "references")
    index_dir = out / "index"
    report = build_index(index_dir, [scan_source(manifest)], config.engine, progress=progress)
    print(f"Indexed {report.total_indexed} reference views in {report.seconds:.1f} s.\n")

    maps = out / "maps"
    maps.mkdir(parents=True)
    errors: list[float] = []
    located = 0
    locator = Locator.open(replace(config.engine, index_path=index_dir))
    try:
        print(f"{'view':<16} {'status':<9} {'error':>9} {'confidence':>11} {'inliers':>8}")
        for view in held_out:
            result = locator.locate(_jpeg(view))
            error = None
            if result.located:
                located += 1
                error = haversine_m(view.lat, view.lon, result.lat, result.lon)  # type: ignore[arg-type]
                errors.append(error)
            best = result.best_match
            print(f"{view.name:<16} {result.status.value:<9} "
                  f"{'-' if error is None else f'{error:.1f} m':>9} {result.confidence:>11.2f} "
                  f"{best.inliers if best else 0:>8}")
            png = render_map(result, config.map, truth=(view.lat, view.lon))
            (maps / f"{view.name}.png").write_bytes(png)
    finally:
        locator.close()
    median = f"{statistics.median(errors):.1f} m" if errors else "n/a"
    print(f"\nLocated {located} of {len(held_out)} held-out views; median error {median}.")
    print(f"Maps: {maps}/  Index: {index_dir}/")
    return 0


def _write_references(views: Sequence[SyntheticView], folder: Path) -> Path:
    folder.mkdir(parents=True)
    manifest = folder / "references.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "lat", "lon", "heading", "source", "source_id", "attribution"])
        for view in views:
            name = f"{view.name}.jpg"
            (folder / name).write_bytes(_jpeg(view))
            writer.writerow([name, view.lat, view.lon, view.heading_deg, "synthetic", view.name,
                             "GeoSleuth synthetic street"])
    return manifest


def _jpeg(view: SyntheticView) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(view.rgb).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
