"""Fitting a verifier's confidence curve on labelled answers, storing it in the index, using it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from bot.cli.main import main
from engine.calibration import (
    CALIBRATION_FILE,
    SHIPPED,
    LabelledAnswer,
    curve_for,
    fit_curve,
    load_fitted,
)
from engine.config import EstimateConfig
from engine.errors import IndexCorrupt
from engine.estimate import Candidate, Verified, estimate
from engine.evaluation import CALIBRATION_BINS
from engine.geo import haversine_m, offset_latlon
from engine.locator import Locator
from engine.results import CatalogEntry

ORIGIN = (37.70, -122.49)


def _answer(first_inliers: int, second_inliers: int, retrieved: bool) -> LabelledAnswer:
    """A query at ORIGIN and two candidate places: the first is the query's own place when
    retrieval found it, else another place 1.5 km away; the second lies 800 m away."""
    first_at = ORIGIN if retrieved else offset_latlon(*ORIGIN, 0.0, 1500.0)
    first = CatalogEntry(1, "test", "1", *first_at, "")
    second = CatalogEntry(2, "test", "2", *offset_latlon(*ORIGIN, 800.0, 0.0), "")
    verified = (Verified(Candidate(first, 0.5, 0), first_inliers, 0.5),
                Verified(Candidate(second, 0.4, 1), second_inliers, 0.2))
    return LabelledAnswer(verified, *ORIGIN)


def _labelled_set(seed: int = 0, count: int = 300) -> list[LabelledAnswer]:
    """Like a learned matcher across captures: unrelated places keep 10-40 chance inliers, the
    true place 0-300, and for a third of the queries retrieval missed the true place."""
    rng = np.random.default_rng(seed)
    answers = []
    for _ in range(count):
        retrieved = rng.random() > 1 / 3
        first = int(rng.integers(0, 300)) if retrieved else int(rng.integers(10, 40))
        answers.append(_answer(first, int(rng.integers(10, 40)), retrieved))
    return answers


def _ece(answers: list[LabelledAnswer], curve) -> float:
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(CALIBRATION_BINS)]
    for answer in answers:
        result = estimate(answer.verified, EstimateConfig(), curve)
        place = ((result.lat, result.lon) if result.lat is not None else
                 (result.alternatives[0].lat, result.alternatives[0].lon)
                 if result.alternatives else None)
        near = place is not None and haversine_m(*ORIGIN, *place) <= 50.0
        bins[min(int(result.confidence * CALIBRATION_BINS), CALIBRATION_BINS - 1)].append(
            (result.confidence, near))
    total = sum(len(b) for b in bins)
    return sum(abs(np.mean([c for c, _ in b]) - np.mean([h for _, h in b])) * len(b)
               for b in bins if b) / total


def test_the_fitted_curve_is_calibrated_on_new_answers_where_sifts_is_not():
    fitted = fit_curve(_labelled_set(seed=0), EstimateConfig())
    fresh = _labelled_set(seed=1, count=1000)  # ECE from few answers is noise-biased upwards
    assert _ece(fresh, fitted.curve) < 0.05
    assert _ece(fresh, SHIPPED["sift"]) > 0.1  # sift's curve trusts 30 chance inliers
    # The midpoint sits above what unrelated places keep by chance.
    assert 40 <= fitted.curve.midpoint <= 120


def test_the_floor_keeps_wrong_located_answers_under_five_percent():
    """Look-alike streets: a tenth of the missed queries meet a wrong place with 50-90 inliers."""
    rng = np.random.default_rng(2)
    answers = _labelled_set(seed=2)
    answers += [_answer(int(rng.integers(50, 90)), 15, retrieved=False) for _ in range(12)]
    fitted = fit_curve(answers, EstimateConfig())
    assert fitted.wrong_share <= 0.05
    without_floor = fit_curve(answers, EstimateConfig(), max_wrong_share=1.0)
    assert without_floor.curve.min_inliers == 0 and without_floor.wrong_share > 0.05
    assert fitted.curve.min_inliers > 50
    assert 0.2 < fitted.located_share < without_floor.located_share


def test_a_fitted_curve_in_the_index_is_what_the_locator_uses(street_index, tmp_path, capsys):
    index = tmp_path / "index"
    shutil.copytree(street_index.index_path, index)
    queries = street_index.index_path.parent / "refs.csv"
    assert main(["eval", str(queries), "--index", str(index), "--fit-calibration"]) == 0
    out = capsys.readouterr().out
    key = "xfeat-cascade"  # the default verifier's curve
    assert f"fitted for '{key}'" in out and str(index / CALIBRATION_FILE) in out
    stored = json.loads((index / CALIBRATION_FILE).read_text())
    assert set(stored) == {key} and stored[key]["queries"] == 10
    locator = Locator.open(replace(street_index, index_path=index))
    try:
        assert locator.curve == load_fitted(index)[key]
        assert locator.curve_source == f"fitted in {index / CALIBRATION_FILE}"
    finally:
        locator.close()


def test_without_a_fit_the_shipped_curve_is_used_and_config_overrides_win(tmp_path):
    curve, source = curve_for("sift", tmp_path, EstimateConfig())
    assert (curve, source) == (SHIPPED["sift"], "shipped")
    curve, source = curve_for("sift", tmp_path, EstimateConfig(min_inliers=33))
    assert curve.min_inliers == 33 and curve.midpoint == SHIPPED["sift"].midpoint
    assert "overrides" in source


def test_an_uncalibrated_verifier_is_not_placed_on_chance_inliers(tmp_path):
    curve, source = curve_for("lightglue-disk", tmp_path, EstimateConfig())
    assert source.startswith("uncalibrated")
    chance = estimate(_answer(30, 15, retrieved=False).verified, EstimateConfig(), curve)
    assert chance.status.value == "no_match"  # 30 inliers: what learned matchers keep by chance
    true = estimate(_answer(150, 15, retrieved=True).verified, EstimateConfig(), curve)
    assert true.status.value == "located"


def test_a_broken_calibration_file_is_refused_naming_it(tmp_path):
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(IndexCorrupt, match=CALIBRATION_FILE):
        curve_for("sift", tmp_path, EstimateConfig())


def test_fitting_on_a_temporary_hold_out_index_is_refused(capsys, tmp_path):
    code = main(["eval", str(tmp_path), "--holdout-every", "3", "--fit-calibration"])
    assert code == 2
    assert "--fit-calibration writes into the index" in capsys.readouterr().err
