"""Turning verified candidates into an answer: agreement, rivalry, and saying no."""

from __future__ import annotations

from dataclasses import replace

from engine.config import EstimateConfig
from engine.estimate import (
    InlierCurve,
    Verified,
    cluster_candidates,
    estimate,
    pick_for_verification,
)
from engine.geo import haversine_m, offset_latlon
from engine.results import CatalogEntry, Status

ORIGIN = (55.6985, 13.1950)
# The curve these cases were written for: sift's (chance inliers 0-9, true pairs 25 and up).
CURVE = InlierCurve(min_inliers=20, midpoint=22.0, scale=3.0)


def _entry(ref_id: int, east_m: float, north_m: float = 0.0) -> CatalogEntry:
    lat, lon = offset_latlon(*ORIGIN, east_m, north_m)
    return CatalogEntry(ref_id, "test", str(ref_id), lat, lon, f"store/{ref_id}.jpg")


def _verified(entries_inliers: list[tuple[CatalogEntry, int]]) -> list[Verified]:
    ranked = [(entry, 0.5) for entry, _ in entries_inliers]
    candidates = cluster_candidates(ranked, radius_m=40)
    return [Verified(c, inliers, 0.5) for c, (_, inliers) in zip(candidates, entries_inliers,
                                                                   strict=True)]


def _estimate(entries_inliers: list[tuple[CatalogEntry, int]]):
    return estimate(_verified(entries_inliers), EstimateConfig(), CURVE)


def test_candidates_within_the_radius_share_a_cluster():
    candidates = cluster_candidates(
        [(_entry(1, 0), 0.9), (_entry(2, 30), 0.8), (_entry(3, 500), 0.7), (_entry(4, 10), 0.6)],
        radius_m=40,
    )
    assert [c.cluster for c in candidates] == [0, 0, 1, 0]


def test_verification_is_spread_over_places():
    candidates = cluster_candidates(
        [(_entry(i, i), 0.9 - i / 100) for i in range(6)] + [(_entry(9, 900), 0.5)], radius_m=40
    )
    picked = pick_for_verification(candidates, k=4, max_per_cluster=3)
    assert [c.entry.ref_id for c in picked] == [0, 1, 2, 9]


def test_one_strongly_verified_place_is_located_with_high_confidence():
    answer = _estimate([(_entry(1, 0), 150), (_entry(2, 8), 90), (_entry(3, 800), 6)])
    assert answer.status is Status.LOCATED
    assert answer.confidence > 0.95
    assert haversine_m(answer.lat, answer.lon, *ORIGIN) < 8  # inlier-weighted, pulled to ref 1
    assert answer.radius_m >= EstimateConfig().base_radius_m


def test_chance_inliers_everywhere_are_no_match_without_a_location():
    answer = _estimate([(_entry(i, i * 300), 9) for i in range(10)])
    assert answer.status is Status.NO_MATCH
    assert answer.lat is None and answer.radius_m is None
    assert answer.confidence < 0.3
    assert answer.alternatives == ()  # 9 inliers is no lead worth showing


def test_two_far_apart_places_both_verified_split_the_confidence():
    answer = _estimate([(_entry(1, 0), 200), (_entry(2, 5000), 200)])
    assert answer.status is Status.NO_MATCH  # ~50 %: a coin flip is not an answer
    assert 0.4 < answer.confidence < 0.6
    assert len(answer.alternatives) == 2  # both offered as leads


def test_neighbouring_clusters_agree_instead_of_competing():
    # Two clusters 45 m apart (a walk along one street): one answer, not two rivals.
    answer = _estimate([(_entry(1, 0), 220), (_entry(2, 45), 210)])
    assert answer.status is Status.LOCATED
    assert answer.confidence > 0.95
    middle = offset_latlon(*ORIGIN, 22.5, 0)
    assert haversine_m(answer.lat, answer.lon, *middle) < 3
    assert answer.alternatives == ()


def test_a_weak_but_real_match_is_a_lead_not_an_answer():
    answer = _estimate([(_entry(1, 0), 21), (_entry(2, 900), 4)])
    assert answer.status is Status.NO_MATCH
    assert answer.alternatives and answer.alternatives[0].best_inliers == 21


def test_spatial_consensus_lets_neighbouring_places_support_each_other():
    # Two places 45 m apart (two clusters) each see the scene weakly; a rival far away has one
    # stronger reference. Merged after the competition, the neighbours' posteriors only just
    # beat the rival's; counted as each other's evidence before it, they clearly do.
    verified = _verified([(_entry(1, 0), 22), (_entry(2, 45), 22), (_entry(3, 2000), 24)])
    assert len({v.candidate.cluster for v in verified}) == 3
    plain = estimate(verified, EstimateConfig(), CURVE)
    consensus = estimate(verified, EstimateConfig(spatial_consensus=True), CURVE)
    assert plain.status is Status.NO_MATCH and plain.confidence < 0.5
    assert consensus.status is Status.LOCATED and consensus.confidence > 0.75
    assert haversine_m(consensus.lat, consensus.lon, *ORIGIN) < 45


def test_a_scene_seen_much_smaller_than_the_reference_saw_it_widens_the_radius():
    close = _verified([(_entry(1, 0), 150)])
    afar = [replace(v, view_scale=9.0) for v in close]
    config = EstimateConfig()
    near_answer = estimate(close, config, CURVE)
    far_answer = estimate(afar, config, CURVE)
    assert near_answer.radius_m == config.base_radius_m
    # Nine times smaller: the camera stood about eight street widths farther from the scene.
    assert far_answer.radius_m == config.base_radius_m + 8 * config.scene_distance_m
    assert far_answer.confidence == near_answer.confidence


def test_only_the_deciding_matchers_counts_are_weighed():
    """A cascade's first-pass count (another scale) never makes a place the answer."""
    ranked = _verified([(_entry(1, 0), 30), (_entry(2, 900), 400)])
    verified = [ranked[0], replace(ranked[1], decisive=False)]
    answer = estimate(verified, EstimateConfig(), CURVE)
    assert answer.status is Status.LOCATED
    assert haversine_m(answer.lat, answer.lon, *ORIGIN) < 1
