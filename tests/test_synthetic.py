"""The synthetic street: a deterministic, geotagged walk whose neighbouring views really match."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest

from engine.geo import haversine_m
from engine.synthetic import SyntheticView, make_street

SEED = 3


@pytest.fixture(scope="module")
def street16() -> list[SyntheticView]:
    return make_street(SEED, n_views=16)


@pytest.fixture(scope="module")
def features(street16: list[SyntheticView]) -> list[tuple[np.ndarray, np.ndarray]]:
    sift = cv2.SIFT_create(2048)
    out = []
    for view in street16:
        keypoints, descriptors = sift.detectAndCompute(
            cv2.cvtColor(view.rgb, cv2.COLOR_RGB2GRAY), None
        )
        out.append((np.float32([k.pt for k in keypoints]), descriptors))
    return out


def _ratio_nearest(da: np.ndarray, db: np.ndarray) -> dict[int, int]:
    """For each row of `da`, its nearest row of `db` where Lowe's ratio test (0.8) passes."""
    return {
        m.queryIdx: m.trainIdx
        for m, n in cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
        if m.distance < 0.8 * n.distance
    }


def _inliers(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> int:
    """SIFT matches that pass the ratio test both ways, then a MAGSAC fundamental matrix (1 px)."""
    (pa, da), (pb, db) = a, b
    forward, backward = _ratio_nearest(da, db), _ratio_nearest(db, da)
    pairs = [(i, j) for i, j in forward.items() if backward.get(j) == i]
    if len(pairs) < 8:
        return 0
    qi, ti = np.array(pairs).T
    _, mask = cv2.findFundamentalMat(pa[qi], pb[ti], cv2.USAC_MAGSAC, 1.0, 0.999, 10000)
    return 0 if mask is None else int(mask.sum())


def test_same_seed_gives_the_same_street_and_another_seed_does_not() -> None:
    a, b, c = make_street(11, n_views=3), make_street(11, n_views=3), make_street(12, n_views=3)
    for va, vb in zip(a, b, strict=True):
        assert np.array_equal(va.rgb, vb.rgb)
        assert (va.lat, va.lon, va.heading_deg, va.name) == (
            vb.lat,
            vb.lon,
            vb.heading_deg,
            vb.name,
        )
    assert not np.array_equal(a[0].rgb, c[0].rgb)


def test_views_are_rgb_photos_with_unique_names(street16: list[SyntheticView]) -> None:
    assert len(street16) == 16
    assert len({v.name for v in street16}) == 16
    for view in street16:
        assert view.rgb.shape == (600, 800, 3) and view.rgb.dtype == np.uint8
        assert 40 < view.rgb.mean() < 220 and view.rgb.std() > 25  # a picture, not a flat fill


def test_positions_walk_a_straight_street_at_the_requested_spacing() -> None:
    views = make_street(5, n_views=6, spacing_m=5.0, origin=(48.8566, 2.3522))
    assert (views[0].lat, views[0].lon) == pytest.approx((48.8566, 2.3522))
    steps = [haversine_m(a.lat, a.lon, b.lat, b.lon) for a, b in itertools.pairwise(views)]
    assert steps == pytest.approx([5.0] * 5, abs=0.01)
    total = haversine_m(views[0].lat, views[0].lon, views[-1].lat, views[-1].lon)
    assert total == pytest.approx(25.0, abs=0.02)  # straight: the steps add up
    headings = [v.heading_deg for v in views]
    spread = max(abs((h - headings[0] + 180) % 360 - 180) for h in headings)
    assert spread < 10  # all look the same way down the street, give or take a hand's wobble
    assert all(0 <= h < 360 and math.isfinite(h) for h in headings)


def test_neighbouring_views_share_many_verified_matches(
    features: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    counts = [_inliers(features[i], features[i + 1]) for i in range(len(features) - 1)]
    assert min(counts) > 60, counts


def test_views_far_apart_share_few_verified_matches(
    street16: list[SyntheticView], features: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    pairs = [(i, j) for i in range(len(street16)) for j in range(i + 8, len(street16), 3)]
    for i, j in pairs:
        assert haversine_m(street16[i].lat, street16[i].lon, street16[j].lat, street16[j].lon) > 60
    counts = [_inliers(features[i], features[j]) for i, j in pairs]
    assert max(counts) < 20, counts
