"""Stages 4 and 6: cluster candidates in space, pick what to verify, turn evidence into answers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.config import EstimateConfig
from engine.geo import haversine_m, to_local_xy_m
from engine.results import Alternative, CatalogEntry, Status


@dataclass(frozen=True, slots=True)
class Candidate:
    entry: CatalogEntry
    similarity: float
    cluster: int


@dataclass(frozen=True, slots=True)
class Verified:
    candidate: Candidate
    inliers: int
    inlier_ratio: float
    # Counted by the deciding matcher. A cascade's first pass only ranks candidates for it: its
    # counts are on another scale and shown as evidence, never weighed by the answer model.
    decisive: bool = True
    # How many times smaller the matched scene appears in the query than in the reference.
    view_scale: float = 1.0
    # Which photo of an album (or frame of a video) saw it; a single photo is photo 0.
    photo: int = 0


@dataclass(frozen=True, slots=True)
class InlierCurve:
    """A verifier's calibration: P(same place) = logistic((inliers - midpoint) / scale).

    Below `min_inliers` nothing is presented as a location (the `no_match` floor).
    """

    min_inliers: int
    midpoint: float
    scale: float


@dataclass(frozen=True, slots=True)
class Estimate:
    status: Status
    lat: float | None
    lon: float | None
    confidence: float
    radius_m: float | None
    alternatives: tuple[Alternative, ...]
    best: Verified | None


def cluster_candidates(
    ranked: Sequence[tuple[CatalogEntry, float]], radius_m: float
) -> list[Candidate]:
    """Leader clustering in retrieval order: a candidate joins the first cluster whose leader
    lies within `radius_m`, or leads a new one. Cluster ids follow the leaders' rank."""
    if not ranked:
        return []
    lats = np.array([e.lat for e, _ in ranked])
    lons = np.array([e.lon for e, _ in ranked])
    xy = to_local_xy_m(lats, lons, float(lats[0]), float(lons[0]))
    leaders: list[int] = []
    out: list[Candidate] = []
    for i, (entry, similarity) in enumerate(ranked):
        cluster = next(
            (c for c, lead in enumerate(leaders)
             if math.dist(xy[i], xy[lead]) <= radius_m),
            None,
        )
        if cluster is None:
            cluster = len(leaders)
            leaders.append(i)
        out.append(Candidate(entry, similarity, cluster))
    return out


def pick_for_verification(
    candidates: Sequence[Candidate], k: int, max_per_cluster: int = 3
) -> list[Candidate]:
    """The k best by similarity, at most `max_per_cluster` from one place while others wait,
    so one look-alike street cannot crowd the right place out of verification."""
    picked: list[Candidate] = []
    waiting: list[Candidate] = []
    per_cluster: dict[int, int] = {}
    for candidate in candidates:
        if len(picked) == k:
            break
        if per_cluster.get(candidate.cluster, 0) < max_per_cluster:
            picked.append(candidate)
            per_cluster[candidate.cluster] = per_cluster.get(candidate.cluster, 0) + 1
        else:
            waiting.append(candidate)
    return picked + waiting[: k - len(picked)]


def settled_inliers(curve: InlierCurve, probability: float = 0.99) -> int:
    """The inlier count at which the curve alone is this sure: a cascade stops deciding there."""
    return max(curve.min_inliers,
               math.ceil(curve.midpoint + curve.scale * math.log(probability / (1 - probability))))


def _probability_same_place(evidence: float, curve: InlierCurve) -> float:
    z = (evidence - curve.midpoint) / curve.scale
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


@dataclass(frozen=True, slots=True)
class _Place:
    members: tuple[Verified, ...]
    probability: float

    @property
    def best(self) -> Verified:
        return max(self.members, key=lambda v: v.inliers)


def estimate(
    verified: Sequence[Verified], config: EstimateConfig, curve: InlierCurve
) -> Estimate:
    """The answer from verified candidates.

    Each place (cluster) gets a probability of showing the query's scene from its evidence
    (`_evidence`: the strongest inlier count, plus agreeing views and, in an album, other
    photos); with `spatial_consensus`, verified references of neighbouring places count as
    members.
    Places compete: a place's posterior is its odds over one plus everyone's odds (at most one
    place is right, and "none of them" is the prior alternative). Places closer together than
    `agreement_radius_m` are one answer, not rivals: the confidence that the answer is right
    (within that radius) is the sum of their posteriors.
    """
    verified = [v for v in verified if v.decisive]
    if not verified:
        return Estimate(Status.NO_MATCH, None, None, 0.0, None, (), None)
    places = []
    for cluster in sorted({v.candidate.cluster for v in verified}):
        members = tuple(v for v in verified if v.candidate.cluster == cluster)
        neighbours = (_neighbours_inliers(verified, members, config.agreement_radius_m)
                      if config.spatial_consensus else [])
        evidence = _evidence(members, neighbours, config, curve)
        places.append(_Place(members, _probability_same_place(evidence, curve)))
    odds = [min(p.probability, 1 - 1e-6) / max(1 - p.probability, 1e-6) for p in places]
    total = 1.0 + sum(odds)
    ranked = sorted(zip(places, (o / total for o in odds), strict=True),
                    key=lambda pc: pc[1], reverse=True)
    groups = _merge_agreeing(ranked, config.agreement_radius_m)

    top, confidence = groups[0]
    best = top.best
    located = best.inliers >= curve.min_inliers and confidence >= config.located_confidence
    places = [
        _alternative(place, mass, config, curve.min_inliers)
        for i, (place, mass) in enumerate(groups)
        if (located and i == 0) or mass >= config.alternative_min_confidence
    ]
    if not located:
        # Leads only: candidate places with some evidence, never presented as the answer.
        return Estimate(Status.NO_MATCH, None, None, confidence, None,
                        tuple(places[: config.max_alternatives]), best)
    answer = places[0]
    return Estimate(Status.LOCATED, answer.lat, answer.lon, confidence, answer.radius_m,
                    tuple(places[1: 1 + config.max_alternatives]), best)


def _evidence(members: tuple[Verified, ...], neighbours: list[int], config: EstimateConfig,
              curve: InlierCurve) -> float:
    """A place's evidence on the curve's scale: its strongest inlier count, plus a quarter of
    the other references that agree within that photo (views of one scene from one photo are
    not independent), plus `album_photo_weight` of each other photo's strongest count there
    (another photo of the scene is more independent evidence). One photo: the first two."""
    by_photo: dict[int, list[int]] = {}
    for v in members:
        by_photo.setdefault(v.photo, []).append(v.inliers)
    per_photo = sorted((sorted(counts, reverse=True) for counts in by_photo.values()),
                       key=lambda counts: counts[0], reverse=True)
    agreeing = [c for counts in per_photo for c in counts[1:]] + neighbours
    other_photos = [counts[0] for counts in per_photo[1:]]
    return (per_photo[0][0]
            + sum(c for c in agreeing if c >= curve.min_inliers) / 4
            + config.album_photo_weight * sum(c for c in other_photos if c >= curve.min_inliers))


def _neighbours_inliers(
    verified: Sequence[Verified], members: tuple[Verified, ...], radius_m: float
) -> list[int]:
    """Inlier counts of other places' references near this place's best one."""
    anchor = max(members, key=lambda v: v.inliers).candidate.entry
    cluster = members[0].candidate.cluster
    return [
        v.inliers for v in verified
        if v.candidate.cluster != cluster
        and haversine_m(anchor.lat, anchor.lon, v.candidate.entry.lat, v.candidate.entry.lon)
        <= radius_m
    ]


def _merge_agreeing(
    ranked: list[tuple[_Place, float]], radius_m: float
) -> list[tuple[_Place, float]]:
    """Fold every place into the strongest one within `radius_m` of it (posteriors add up)."""
    groups: list[tuple[_Place, float]] = []
    for place, posterior in ranked:
        anchor = place.best.candidate.entry
        for i, (group, mass) in enumerate(groups):
            lead = group.best.candidate.entry
            if haversine_m(anchor.lat, anchor.lon, lead.lat, lead.lon) <= radius_m:
                merged = _Place(group.members + place.members, group.probability)
                groups[i] = (merged, mass + posterior)
                break
        else:
            groups.append((place, posterior))
    return sorted(groups, key=lambda g: g[1], reverse=True)


def _alternative(
    place: _Place, confidence: float, config: EstimateConfig, min_inliers: int
) -> Alternative:
    lat, lon, radius = _position(place, config, min_inliers)
    return Alternative(lat=lat, lon=lon, confidence=confidence, radius_m=radius,
                       best_inliers=place.best.inliers)


def _position(
    place: _Place, config: EstimateConfig, min_inliers: int
) -> tuple[float, float, float]:
    """Inlier-weighted mean of the members that verified; radius from their spread.

    The base radius covers the distance between where the query and a reference were taken
    (they can see one facade from tens of metres apart). A query that sees the matched scene
    s times smaller than the best reference does stood about s times farther from it: the
    radius grows by (s - 1) reference-to-scene distances (a landmark seen from afar).
    """
    strong = [v for v in place.members if v.inliers >= min_inliers] or [place.best]
    # Unverified members (0 inliers) still carry a little weight, so a weak lead has a position.
    weights = np.array([max(1.0, float(v.inliers)) for v in strong])
    lats = np.array([v.candidate.entry.lat for v in strong])
    lons = np.array([v.candidate.entry.lon for v in strong])
    lat = float(np.average(lats, weights=weights))
    lon = float(np.average(lons, weights=weights))
    spread_sq = np.average(
        [haversine_m(lat, lon, a, b) ** 2 for a, b in zip(lats, lons, strict=True)],
        weights=weights,
    )
    radius = math.hypot(config.base_radius_m, 2.0 * math.sqrt(float(spread_sq)))
    farther = max(0.0, place.best.view_scale - 1.0) * config.scene_distance_m
    return lat, lon, radius + farther
