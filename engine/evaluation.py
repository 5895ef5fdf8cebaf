"""`geosleuth eval`: accuracy, calibration and latency of a locator on photos of known position."""

from __future__ import annotations

import io
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps

from engine.degrade import apply_degradations
from engine.errors import GeoSleuthError
from engine.geo import SearchArea, haversine_m
from engine.results import LocateResult

T = TypeVar("T")

RECALL_RADII_M = (25.0, 100.0)
WRONG_M = 100.0  # a located answer this far off is wrong, not imprecise
# The calibration event is "the top place is within its stated radius"; a best reference too
# weak to be even a lead states none and is scored within this.
UNSTATED_RADIUS_M = 50.0
CALIBRATION_BINS = 10


def split_every(items: Sequence[T], n: int) -> tuple[tuple[T, ...], tuple[T, ...]]:
    """(kept, held out): every n-th item (the n-th, 2n-th, ...) is held out as a query."""
    kept = tuple(item for i, item in enumerate(items, 1) if i % n)
    held = tuple(item for i, item in enumerate(items, 1) if i % n == 0)
    return kept, held


@dataclass(frozen=True, slots=True)
class EvalQuery:
    name: str
    path: Path
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class EvalRow:
    name: str
    lat: float
    lon: float
    result: LocateResult | None
    error: str | None  # the engine's refusal, when it refused the photo

    def places(self) -> list[tuple[float, float]]:
        """The answer then its alternatives; a `no_match` offers no place (leads don't count)."""
        if self.result is None or not self.result.located:
            return []
        r = self.result
        return [(r.lat, r.lon)] + [(a.lat, a.lon) for a in r.alternatives]  # type: ignore[list-item]

    def top_place(self) -> tuple[float, float, float] | None:
        """(lat, lon, stated radius) of the place the reported confidence is about: the answer,
        the strongest lead, or the best verified reference when even that is too weak to show
        (the calibration event must not depend on the confidence itself)."""
        if self.result is None:
            return None
        r = self.result
        if r.located:
            return r.lat, r.lon, r.radius_m  # type: ignore[return-value]
        if r.alternatives:
            return r.alternatives[0].lat, r.alternatives[0].lon, r.alternatives[0].radius_m
        best = r.best_match
        return (best.lat, best.lon, UNSTATED_RADIUS_M) if best is not None else None

    def error_m(self) -> float | None:
        places = self.places()
        return haversine_m(self.lat, self.lon, *places[0]) if places else None


def query_bytes(path: Path, degradations: Sequence[Callable[[np.ndarray], np.ndarray]]) -> bytes:
    """The photo as a user would send it: untouched, or degraded and re-encoded."""
    data = path.read_bytes()
    if not degradations:
        return data
    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    out = io.BytesIO()
    Image.fromarray(apply_degradations(rgb, degradations)).save(out, "JPEG", quality=95)
    return out.getvalue()


def run_queries(
    locate: Callable[[bytes, SearchArea | None], LocateResult],
    queries: Iterable[EvalQuery],
    degradations: Sequence[Callable[[np.ndarray], np.ndarray]] = (),
    area: SearchArea | None = None,
    on_row: Callable[[EvalRow], None] | None = None,
) -> list[EvalRow]:
    rows = []
    for query in queries:
        try:
            result = locate(query_bytes(query.path, degradations), area)
            row = EvalRow(query.name, query.lat, query.lon, result, None)
        except GeoSleuthError as exc:
            row = EvalRow(query.name, query.lat, query.lon, None, str(exc))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def summarise(rows: Sequence[EvalRow]) -> dict:
    """Every figure `geosleuth eval` prints, as one JSON-ready dict."""
    n = len(rows)
    recall = {}
    for radius in RECALL_RADII_M:
        for k in (1, 5):
            hits = sum(
                any(haversine_m(r.lat, r.lon, *p) <= radius for p in r.places()[:k]) for r in rows
            )
            recall[f"recall@{k}_{radius:g}m"] = hits / n if n else 0.0
    errors = [e for r in rows if (e := r.error_m()) is not None]
    answered = sum(1 for r in rows if r.result is not None and r.result.located)
    wrong = sum(1 for e in errors if e > WRONG_M)
    table = calibration_table(rows)
    return {
        "queries": n,
        "answered": answered,
        "answered_share": answered / n if n else 0.0,
        "wrong": wrong,
        "wrong_share": wrong / answered if answered else 0.0,
        "refused": sum(1 for r in rows if r.error is not None),
        **recall,
        "median_error_m": statistics.median(errors) if errors else None,
        "calibration": table,
        "ece": expected_calibration_error(table),
        "latency_ms": latency_table(rows),
    }


def expected_calibration_error(table: Sequence[dict]) -> float:
    """Count-weighted mean gap between confidence and the share within 50 m, over the bins."""
    total = sum(row["count"] for row in table)
    if not total:
        return 0.0
    return sum(row["count"] * abs(row["mean_confidence"] - row["share_within_radius"])
               for row in table if row["count"]) / total


def calibration_table(rows: Sequence[EvalRow]) -> list[dict]:
    """10 confidence bins: mean confidence vs the share whose top place is within the radius
    it states."""
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(CALIBRATION_BINS)]
    for row in rows:
        if row.result is None:
            continue
        place = row.top_place()
        near = place is not None and haversine_m(row.lat, row.lon, *place[:2]) <= place[2]
        index = min(int(row.result.confidence * CALIBRATION_BINS), CALIBRATION_BINS - 1)
        bins[index].append((row.result.confidence, near))
    table = []
    for i, members in enumerate(bins):
        table.append({
            "bin": f"{i / CALIBRATION_BINS:.1f}-{(i + 1) / CALIBRATION_BINS:.1f}",
            "count": len(members),
            "mean_confidence": float(np.mean([c for c, _ in members])) if members else None,
            "share_within_radius": float(np.mean([h for _, h in members])) if members else None,
        })
    return table


def latency_table(rows: Sequence[EvalRow]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {}
    for row in rows:
        if row.result is None:
            continue
        for stage, ms in row.result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    return {
        stage: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
        for stage, v in stages.items()
    }
