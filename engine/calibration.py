"""Calibrated confidence: an inlier curve per verifier, fitted on photos of known position.

Each verifier leaves its own number of chance inliers between unrelated photos, so each has
its own curve. `fit_curve` chooses the logistic midpoint and scale that make the final
confidence (after places compete, exactly as `estimate` computes it) a probability that the
answer lies within the radius it states, by maximum likelihood on labelled queries; then the
`no_match` floor as the fewest inliers at which the located answers are wrong (over 100 m) no
more often than `max_wrong_share`. `geosleuth eval --fit-calibration` writes the result into
the index (`calibration.json`); the curves shipped below come from such fits.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from engine.config import EstimateConfig
from engine.errors import IndexCorrupt
from engine.estimate import Candidate, InlierCurve, Verified, estimate
from engine.evaluation import UNSTATED_RADIUS_M
from engine.geo import haversine_m
from engine.results import CatalogEntry, LocateResult, Match, Status

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
WRONG_M = 100.0  # an answer this far off is wrong, not imprecise
MAX_WRONG_SHARE = 0.05

# `python bench/bench_crosscapture.py --funnels cascade,cascade-d2,cascade-d10,cascade-512kp,mnn`
# fits and prints these lines on 278 photos of known position: the 35 real night photos by
# strangers of sf_night_west against its 148 earlier ones, 108 later sf_xs_west Street View
# queries against its 1,441 database views, and 135 photos the searched index does not cover,
# so a floor cannot lean on every photo being covered. The event is "within the stated radius".
# Cross-validated: `xfeat-cascade` (the default, top-K 10, depth 3) placed 24/35 night photos
# within 100 m and 104/108 Street View ones within 25 m, none of the answers wrong, 1 of 135
# uncovered photos placed, ECE 0.015; `xfeat-mnn` 17/35, 107/108, 1/135, ECE 0.019. `sift`'s
# line is from an earlier fit on sf_xs_west alone, with a 25 m radius.
SHIPPED: dict[str, InlierCurve] = {
    "sift": InlierCurve(min_inliers=9, midpoint=6.0, scale=2.0),
    "xfeat-mnn": InlierCurve(min_inliers=0, midpoint=61.0, scale=9.6),
    "xfeat-cascade": InlierCurve(min_inliers=0, midpoint=56.0, scale=8.0),
}
# A verifier without a fitted curve (lightglue until fitted): the most cautious shipped one,
# under which the 14-15 chance inliers DISK + LightGlue keeps between unrelated photos place
# nothing; said in the log at start.
UNCALIBRATED = SHIPPED["xfeat-mnn"]
_MIDPOINTS = [float(m) for m in range(0, 201, 4)]
_SCALES = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0]


@dataclass(frozen=True, slots=True)
class LabelledAnswer:
    """What the locator verified for one query of known position."""

    verified: tuple[Verified, ...]
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class FittedCurve:
    curve: InlierCurve
    queries: int
    log_loss: float
    located_share: float  # of the queries, answered with a location under this curve
    wrong_share: float  # of the located answers, more than WRONG_M off


def verified_from_matches(matches: Sequence[Match]) -> tuple[Verified, ...]:
    """The verified candidates behind a result (its `matches` carry their place ids)."""
    return tuple(
        Verified(
            Candidate(CatalogEntry(m.ref_id, m.source, m.source_id, m.lat, m.lon, ""),
                      m.similarity, m.place if m.place is not None else i),
            m.inliers, m.inlier_ratio or 0.0, m.decisive,
            m.view_scale if m.view_scale is not None else 1.0,
        )
        for i, m in enumerate(matches)
        if m.inliers is not None
    )


def reestimate(result: LocateResult, config: EstimateConfig, curve: InlierCurve) -> LocateResult:
    """`result` as another curve would have answered it (the same verified evidence)."""
    answer = estimate(verified_from_matches(result.matches), config, curve)
    return replace(result, status=answer.status, lat=answer.lat, lon=answer.lon,
                   confidence=answer.confidence, radius_m=answer.radius_m,
                   alternatives=answer.alternatives)


def curve_for(key: str, index_dir: Path, overrides: EstimateConfig) -> tuple[InlierCurve, str]:
    """The curve for verifier `key` and where it came from: config, index, shipped, or none."""
    fitted = load_fitted(index_dir).get(key)
    if fitted is not None:
        curve, source = fitted, f"fitted in {index_dir / CALIBRATION_FILE}"
    elif key in SHIPPED:
        curve, source = SHIPPED[key], "shipped"
    else:
        log.warning("no calibration for verifier '%s': using the cautious xfeat-mnn curve"
                    " until 'geosleuth eval --fit-calibration' fits one", key)
        curve, source = UNCALIBRATED, "uncalibrated (xfeat-mnn's cautious curve)"
    changes = {name: value for name, value in (
        ("min_inliers", overrides.min_inliers),
        ("midpoint", overrides.inliers_midpoint),
        ("scale", overrides.inliers_scale),
    ) if value is not None}
    if changes:
        curve = InlierCurve(**{**asdict(curve), **changes})
        source = f"{source}, with [engine.estimate] overrides"
    return curve, source


def load_fitted(index_dir: Path) -> dict[str, InlierCurve]:
    path = index_dir / CALIBRATION_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {key: InlierCurve(**entry["curve"]) for key, entry in data.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorrupt(str(index_dir), f"{CALIBRATION_FILE}: {exc}") from exc


def save_fitted(index_dir: Path, key: str, fitted: FittedCurve) -> Path:
    """Add or replace `key`'s curve in the index, atomically; other verifiers' stay."""
    path = index_dir / CALIBRATION_FILE
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = {**asdict(fitted), "curve": asdict(fitted.curve)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def fit_curve(
    answers: Sequence[LabelledAnswer],
    config: EstimateConfig,
    max_wrong_share: float = MAX_WRONG_SHARE,
) -> FittedCurve:
    """Maximum-likelihood midpoint and scale (a coarse grid, then a finer one), then the floor."""
    if not answers:
        raise ValueError("no labelled answers to fit a calibration on")
    best = min((_log_loss(answers, config, m, s), m, s)
                for m in _MIDPOINTS for s in _SCALES)
    _, midpoint, scale = best
    fine = [(midpoint + d, scale * f) for d in (-3, -2, -1, 0, 1, 2, 3)
            for f in (0.7, 0.85, 1.0, 1.2, 1.4) if midpoint + d >= 0]
    loss, midpoint, scale = min((_log_loss(answers, config, m, s), m, s) for m, s in fine)
    floor = _floor(answers, config, midpoint, scale, max_wrong_share)
    curve = InlierCurve(min_inliers=floor, midpoint=midpoint, scale=round(scale, 3))
    located, wrong = _located_and_wrong(answers, config, curve)
    return FittedCurve(curve, len(answers), loss, located / len(answers),
                       wrong / located if located else 0.0)


def _outcome(answer: LabelledAnswer, config: EstimateConfig, curve: InlierCurve
             ) -> tuple[float, bool, float | None, bool]:
    """(confidence, within the stated radius, error of the top place in m or None, located)
    as the locator would say.

    The top place is the answer, else the strongest lead, else the best verified reference
    even when too weak to be shown: the event must not depend on the confidence itself.
    """
    result = estimate(answer.verified, config, curve)
    located = result.status is Status.LOCATED
    if located:
        place = (result.lat, result.lon, result.radius_m)
    elif result.alternatives:
        lead = result.alternatives[0]
        place = (lead.lat, lead.lon, lead.radius_m)
    elif result.best is not None:
        entry = result.best.candidate.entry
        place = (entry.lat, entry.lon, UNSTATED_RADIUS_M)
    else:
        return result.confidence, False, None, False
    error = haversine_m(answer.lat, answer.lon, place[0], place[1])
    return result.confidence, error <= place[2], error, located


def _log_loss(answers: Sequence[LabelledAnswer], config: EstimateConfig,
              midpoint: float, scale: float) -> float:
    """Mean negative log-likelihood of "the top place is within the radius it states"."""
    curve = InlierCurve(min_inliers=0, midpoint=midpoint, scale=scale)
    total = 0.0
    for answer in answers:
        confidence, near, _, _ = _outcome(answer, config, curve)
        p = min(max(confidence, 1e-4), 1 - 1e-4)
        total -= math.log(p if near else 1 - p)
    return total / len(answers)


def _floor(answers: Sequence[LabelledAnswer], config: EstimateConfig, midpoint: float,
           scale: float, max_wrong_share: float) -> int:
    """The fewest best-place inliers at which located answers are wrong rarely enough."""
    ceiling = max((v.inliers for a in answers for v in a.verified), default=0) + 1
    for floor in range(ceiling + 1):
        located, wrong = _located_and_wrong(answers, config,
                                            InlierCurve(floor, midpoint, scale))
        if located == 0 or wrong <= max_wrong_share * located:
            return floor
    return ceiling


def _located_and_wrong(answers: Sequence[LabelledAnswer], config: EstimateConfig,
                       curve: InlierCurve) -> tuple[int, int]:
    located = wrong = 0
    for answer in answers:
        _, _, error, is_located = _outcome(answer, config, curve)
        if is_located:
            located += 1
            wrong += error is not None and error > WRONG_M
    return located, wrong
