"""Albums and videos: several photos of one scene, located together.

Each photo is first located on its own (the same funnel, its own answer). `fuse` then pools
their verified references into one answer, in which a place seen by several photos outweighs a
place seen by one (`estimate._evidence`), and says of each photo whether it agrees. A video's
frames are an album with times: where its located frames stand at distinct spots in an order a
walker or a car could follow, the answer is that track, not one point.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.calibration import verified_from_matches
from engine.config import EstimateConfig, SearchConfig
from engine.estimate import Estimate, InlierCurve, Verified, cluster_candidates, estimate
from engine.geo import haversine_m
from engine.results import (
    Alternative,
    LocateResult,
    Status,
    alternatives_json,
    result_from_json,
)

# Faster than this between two frames is not one camera moving (a car in town, with margin):
# frames that jump so are rivals, not a track.
TRACK_MAX_SPEED_MPS = 40.0


@dataclass(frozen=True, slots=True)
class AlbumPhoto:
    """One photo of an album (or frame of a video) with its own answer and its part in the
    album's: `agrees` is True when its evidence points at the album's place, False when it is
    itself placed elsewhere, None when it has no clear evidence either way."""

    label: str
    result: LocateResult
    time_s: float | None = None
    agrees: bool | None = None
    inliers: int = 0  # its strongest verified count at the album's place


@dataclass(frozen=True, slots=True)
class TrackPoint:
    time_s: float
    lat: float
    lon: float
    radius_m: float
    photo: int  # which frame placed it


@dataclass(frozen=True, slots=True)
class AlbumResult:
    """The answer for an album. With a `track` (a video that moves), the point and confidence
    are those of its most confident frame, and the track is the rest of the answer."""

    status: Status
    lat: float | None
    lon: float | None
    confidence: float
    radius_m: float | None
    alternatives: tuple[Alternative, ...]
    photos: tuple[AlbumPhoto, ...]
    track: tuple[TrackPoint, ...] = ()
    best_photo: int | None = None  # the photo whose evidence at the answer is strongest

    @property
    def located(self) -> bool:
        return self.status is Status.LOCATED

    @property
    def best(self) -> AlbumPhoto | None:
        return None if self.best_photo is None else self.photos[self.best_photo]

    def to_json(self, *, evidence: bool = False) -> dict[str, Any]:
        """The stored and served shape: a single answer's fields, `"kind": "album"`, and each
        photo's own answer under `photos`."""
        first = self.photos[0].result if self.photos else None
        return {
            "kind": "album",
            "status": self.status.value,
            "lat": self.lat,
            "lon": self.lon,
            "confidence": round(self.confidence, 4),
            "radius_m": None if self.radius_m is None else round(self.radius_m, 1),
            "alternatives": alternatives_json(self.alternatives),
            "photos": [
                {"label": p.label, "time_s": p.time_s, "agrees": p.agrees, "inliers": p.inliers,
                 "result": p.result.to_json(evidence=evidence)}
                for p in self.photos
            ],
            "track": [
                {"time_s": t.time_s, "lat": t.lat, "lon": t.lon,
                 "radius_m": round(t.radius_m, 1), "photo": t.photo}
                for t in self.track
            ],
            "best_photo": self.best_photo,
            "index_version": first.index_version if first else "",
            "descriptor": first.descriptor if first else "",
            "verifier": first.verifier if first else "",
        }


def is_album_json(data: dict[str, Any]) -> bool:
    return data.get("kind") == "album"


def album_from_json(data: dict[str, Any]) -> AlbumResult:
    """Rebuild an album answer from `to_json` (a stored one, or one served over HTTP)."""
    return AlbumResult(
        status=Status(data["status"]),
        lat=data["lat"],
        lon=data["lon"],
        confidence=data["confidence"],
        radius_m=data["radius_m"],
        alternatives=tuple(Alternative(**a) for a in data["alternatives"]),
        photos=tuple(
            AlbumPhoto(p["label"], result_from_json(p["result"]), p.get("time_s"),
                       p.get("agrees"), p.get("inliers", 0))
            for p in data["photos"]
        ),
        track=tuple(TrackPoint(t["time_s"], t["lat"], t["lon"], t["radius_m"], t["photo"])
                    for t in data.get("track", ())),
        best_photo=data.get("best_photo"),
    )


def fuse(photos: Sequence[AlbumPhoto], config: EstimateConfig, curve: InlierCurve,
         place_radius_m: float = SearchConfig.cluster_radius_m) -> AlbumResult:
    """One answer from several photos' own answers (their `label`, `result` and `time_s`);
    references within `place_radius_m` form one place, as in the search stage
    ([engine.search] cluster_radius_m)."""
    answer = estimate(_pooled(photos, place_radius_m), config, curve)
    anchor = _anchor(answer)
    judged = tuple(_judged(photo, anchor, config) for photo in photos)
    track = _track(judged, config)
    if track:
        on_track = {t.photo for t in track}
        judged = tuple(
            replace(p, agrees=True, inliers=_strongest(p.result)) if i in on_track else p
            for i, p in enumerate(judged))
        best = max(on_track, key=lambda i: judged[i].result.confidence)
        own = judged[best].result
        return AlbumResult(Status.LOCATED, own.lat, own.lon, own.confidence, own.radius_m,
                           (), judged, track, best)
    best_photo = max(range(len(judged)), key=lambda i: judged[i].inliers, default=None)
    if best_photo is not None and judged[best_photo].inliers == 0:
        best_photo = None
    return AlbumResult(answer.status, answer.lat, answer.lon, answer.confidence,
                       answer.radius_m, answer.alternatives, judged, (), best_photo)


def _pooled(photos: Sequence[AlbumPhoto], place_radius_m: float) -> list[Verified]:
    """Every photo's deciding evidence, regrouped into places across photos (each photo's own
    place ids mean nothing to another's): strongest first, so the best views lead places."""
    pooled = sorted(
        (replace(v, photo=i)
         for i, photo in enumerate(photos)
         for v in verified_from_matches(photo.result.matches) if v.decisive),
        key=lambda v: v.inliers, reverse=True,
    )
    # `agreement_radius_m` then merges neighbouring places, as for one photo.
    places = cluster_candidates([(v.candidate.entry, v.candidate.similarity) for v in pooled],
                                radius_m=place_radius_m)
    return [replace(v, candidate=place) for v, place in zip(pooled, places, strict=True)]


def _anchor(answer: Estimate) -> tuple[float, float] | None:
    """Where the album points: its answer, or where a no-match answer's best lead lies."""
    if answer.lat is not None and answer.lon is not None:
        return answer.lat, answer.lon
    if answer.alternatives:
        return answer.alternatives[0].lat, answer.alternatives[0].lon
    return None


def _judged(photo: AlbumPhoto, anchor: tuple[float, float] | None,
            config: EstimateConfig) -> AlbumPhoto:
    evidence = [v for v in verified_from_matches(photo.result.matches)
                if v.decisive and v.inliers > 0]
    if anchor is None or not evidence:
        return replace(photo, agrees=None, inliers=0)

    def near(lat: float, lon: float) -> bool:
        return haversine_m(lat, lon, *anchor) <= config.agreement_radius_m

    here = max((v.inliers for v in evidence
                if near(v.candidate.entry.lat, v.candidate.entry.lon)), default=0)
    own = photo.result
    if own.located and own.lat is not None and own.lon is not None:
        agrees: bool | None = near(own.lat, own.lon)
    elif here and here == max(v.inliers for v in evidence):
        agrees = True
    else:
        agrees = None
    return replace(photo, agrees=agrees, inliers=here)


def _strongest(result: LocateResult) -> int:
    best = result.best_match
    return best.inliers or 0 if best is not None and best.decisive else 0


def _track(photos: Sequence[AlbumPhoto], config: EstimateConfig) -> tuple[TrackPoint, ...]:
    """The located frames in time order, when they stand at distinct spots and a camera could
    have moved between them; otherwise none (they are one place, or rivals)."""
    if any(p.time_s is None for p in photos):
        return ()
    located = sorted(
        (p.time_s, i, p.result) for i, p in enumerate(photos)
        if p.result.located and p.result.lat is not None and p.result.lon is not None
    )
    if len(located) < 2:
        return ()
    points = [TrackPoint(t, r.lat, r.lon, r.radius_m or 0.0, i)  # type: ignore[arg-type]
              for t, i, r in located]
    spread = max(haversine_m(a.lat, a.lon, b.lat, b.lon) for a in points for b in points)
    if spread <= config.agreement_radius_m:
        return ()
    for a, b in itertools.pairwise(points):
        # Each answer may be off by its radius: only a jump beyond both is movement.
        moved = max(0.0, haversine_m(a.lat, a.lon, b.lat, b.lon) - a.radius_m - b.radius_m)
        if moved > TRACK_MAX_SPEED_MPS * max(b.time_s - a.time_s, 1e-3):
            return ()
    return tuple(points)


def track_length_m(track: Sequence[TrackPoint]) -> float:
    return math.fsum(haversine_m(a.lat, a.lon, b.lat, b.lon)
                     for a, b in itertools.pairwise(track))
