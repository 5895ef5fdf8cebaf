"""Frozen records passed between the pipeline's stages and returned to callers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class LatLon:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class ReferenceRecord:
    """One geotagged reference photo, as a source yields it (before it is indexed)."""

    source: str
    source_id: str
    lat: float
    lon: float
    image_path: str
    heading_deg: float | None = None
    captured_at: str | None = None
    attribution: str | None = None  # the credit line to show, e.g. "© Jane, CC-BY-SA-4.0"
    licence: str | None = None  # SPDX id where the platform gives one
    creator: str | None = None
    link: str | None = None  # the photo's page on its platform


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A reference photo in the index catalogue."""

    ref_id: int
    source: str
    source_id: str
    lat: float
    lon: float
    store_path: str
    heading_deg: float | None = None
    captured_at: str | None = None
    attribution: str | None = None
    licence: str | None = None
    creator: str | None = None
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """One reference examined for a query: its similarity and, once verified, its inliers."""

    ref_id: int
    source: str
    source_id: str
    lat: float
    lon: float
    similarity: float
    inliers: int | None = None
    inlier_ratio: float | None = None
    attribution: str | None = None
    licence: str | None = None
    creator: str | None = None
    link: str | None = None
    place: int | None = None  # the candidate cluster (place) the search stage put it in
    # False: counted by a cascade's first, ranking matcher (another scale), not the deciding one.
    decisive: bool = True
    view_scale: float | None = None  # how many times smaller the scene appears in the query


@dataclass(frozen=True, slots=True)
class Alternative:
    lat: float
    lon: float
    confidence: float
    radius_m: float
    best_inliers: int


class Status(StrEnum):
    LOCATED = "located"
    NO_MATCH = "no_match"


@dataclass(frozen=True, slots=True)
class LocateResult:
    """The engine's answer for one photo.

    On `no_match` the location fields are None: a weak guess is never presented as an answer;
    the candidates stay available in `alternatives` and `matches` as leads.
    """

    status: Status
    lat: float | None
    lon: float | None
    confidence: float
    radius_m: float | None
    alternatives: tuple[Alternative, ...]
    matches: tuple[Match, ...]
    exif_gps: LatLon | None
    timings_ms: dict[str, float]
    descriptor: str
    verifier: str
    index_version: str
    query_size: tuple[int, int] = (0, 0)
    # Inlier pairs (query x, y in the photo's pixels; reference x, y in the stored picture's)
    # of the best verified reference, for the evidence picture.
    correspondences: tuple[tuple[float, float, float, float], ...] = field(default=())
    best_reference: CatalogEntry | None = None

    @property
    def located(self) -> bool:
        return self.status is Status.LOCATED

    @property
    def best_match(self) -> Match | None:
        verified = [m for m in self.matches if m.inliers is not None]
        return max(verified, key=lambda m: (m.decisive, m.inliers or 0), default=None)

    def to_json(self, *, evidence: bool = False) -> dict[str, Any]:
        """The documented `--json` shape (stable for scripts). With `evidence`, also the best
        reference and its verified correspondences, from which the evidence picture is drawn
        (the CLI and the server include them; a stored answer leaves them out)."""
        shape = {
            "status": self.status.value,
            "lat": self.lat,
            "lon": self.lon,
            "confidence": round(self.confidence, 4),
            "radius_m": None if self.radius_m is None else round(self.radius_m, 1),
            "alternatives": alternatives_json(self.alternatives),
            "matches": [
                {
                    "ref_id": m.ref_id,
                    "source": m.source,
                    "source_id": m.source_id,
                    "lat": m.lat,
                    "lon": m.lon,
                    "similarity": round(m.similarity, 4),
                    "inliers": m.inliers,
                    "inlier_ratio": None if m.inlier_ratio is None else round(m.inlier_ratio, 4),
                    "attribution": m.attribution,
                    "licence": m.licence,
                    "creator": m.creator,
                    "link": m.link,
                    "place": m.place,
                    "decisive": m.decisive,
                    "view_scale": None if m.view_scale is None else round(m.view_scale, 3),
                }
                for m in self.matches
            ],
            "exif_gps": None if self.exif_gps is None else asdict(self.exif_gps),
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "descriptor": self.descriptor,
            "verifier": self.verifier,
            "index_version": self.index_version,
        }
        if evidence:
            shape["evidence"] = {
                "reference": None if self.best_reference is None else asdict(self.best_reference),
                "query_size": list(self.query_size),
                "correspondences": [[round(v, 2) for v in pair] for pair in self.correspondences],
            }
        return shape


def alternatives_json(alternatives: tuple[Alternative, ...]) -> list[dict[str, Any]]:
    """Other places as `to_json` gives them (a single answer's and an album's alike)."""
    return [{"lat": a.lat, "lon": a.lon, "confidence": round(a.confidence, 4),
             "radius_m": round(a.radius_m, 1), "best_inliers": a.best_inliers}
            for a in alternatives]


def result_from_json(data: dict[str, Any]) -> LocateResult:
    """Rebuild a result from `to_json`: a cached answer (without evidence), or a served one."""
    evidence = data.get("evidence") or {}
    reference = evidence.get("reference")
    return LocateResult(
        status=Status(data["status"]),
        lat=data["lat"],
        lon=data["lon"],
        confidence=data["confidence"],
        radius_m=data["radius_m"],
        alternatives=tuple(Alternative(**a) for a in data["alternatives"]),
        matches=tuple(
            Match(**{k: m.get(k) for k in Match.__dataclass_fields__ if k in m})
            for m in data["matches"]
        ),
        exif_gps=None if data["exif_gps"] is None else LatLon(**data["exif_gps"]),
        timings_ms=dict(data["timings_ms"]),
        descriptor=data["descriptor"],
        verifier=data["verifier"],
        index_version=data["index_version"],
        query_size=tuple(evidence.get("query_size") or (0, 0)),
        correspondences=tuple(tuple(pair) for pair in evidence.get("correspondences", ())),
        best_reference=None if reference is None else CatalogEntry(**reference),
    )


class Stage(StrEnum):
    QUEUED = "queued"
    DECODING = "decoding"
    DESCRIBING = "describing"
    SEARCHING = "searching"
    VERIFYING = "verifying"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress event: `position` is set while queued, `step`/`total` while verifying."""

    stage: Stage
    position: int | None = None
    step: int | None = None
    total: int | None = None
