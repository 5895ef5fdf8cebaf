"""A chat's answers as a case file for map tools: GeoJSON (RFC 7946), KML and CSV.

Read from the JSON the store keeps for each answer (a photo's `LocateResult.to_json()` or an
album's), not from engine classes, so an export reads every answer ever kept, whichever code
wrote it; an answer that cannot be read is skipped and counted, never fatal.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import simplekml

from bot.chat.store import RecordedAnswer
from bot.render.text import public_source_id
from engine.geo import EARTH_RADIUS_M

FORMATS = ("geojson", "kml", "csv")
DECIMALS = 7  # about 1 cm: RFC 7946 §11.2 advises no more digits than the data has
CIRCLE_VERTICES = 64
CSV_FIELDS = ("request_id", "time", "asked_by", "kind", "status", "lat", "lon", "confidence",
              "radius_m", "confirms", "disputes", "photos", "place", "references", "links",
              "attribution")
TEXT_FIELDS = ("asked_by", "place", "references", "links", "attribution")
# A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

PlaceOf = Callable[[float, float], str | None]


@dataclass(frozen=True, slots=True)
class Reference:
    """A verified reference photo behind an answer, with the credit its licence asks for."""

    source: str
    source_id: str
    inliers: int
    link: str | None
    attribution: str | None
    licence: str | None
    creator: str | None


@dataclass(frozen=True, slots=True)
class CaseAnswer:
    """One answer of the case: a photo's, or an album's (a video's) as a whole."""

    request_id: int
    time: str  # ISO 8601, UTC, to the second
    asked_by: str
    kind: str  # "photo", "album" or "video"
    status: str  # "located" or "no_match"
    lat: float | None
    lon: float | None
    confidence: float
    radius_m: float | None
    confirms: int
    disputes: int
    photos: int
    references: tuple[Reference, ...]
    track: tuple[tuple[float, float], ...]  # (lat, lon) in time order, a video of a walk
    place: str | None

    @property
    def located(self) -> bool:
        return self.status == "located"


@dataclass(frozen=True, slots=True)
class Case:
    """What a chat has had located, and how many kept answers could not be read."""

    title: str
    answers: tuple[CaseAnswer, ...]
    skipped: int = 0

    @property
    def located(self) -> tuple[CaseAnswer, ...]:
        return tuple(a for a in self.answers if a.located)


def read_case(title: str, records: Iterable[RecordedAnswer],
              place_of: PlaceOf | None = None) -> Case:
    """The answers of `records` as a case; `place_of` names a place near a position."""
    answers: list[CaseAnswer] = []
    skipped = 0
    for record in records:
        try:
            answers.append(_answer(record, place_of))
        except (ValueError, KeyError, TypeError, AttributeError):
            skipped += 1
    return Case(title, tuple(answers), skipped)


def render(case: Case, fmt: str) -> bytes:
    """The case in one of FORMATS, as UTF-8 bytes."""
    writers = {"geojson": to_geojson, "kml": to_kml, "csv": to_csv}
    if fmt not in writers:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return writers[fmt](case).encode()


def export_filename(platform: str, chat_id: str, fmt: str, when: datetime) -> str:
    """`geosleuth-telegram--100123-2025-01-31.geojson`: a name safe on every file system."""
    chat = "".join(c if c.isalnum() or c in "-_" else "_" for c in chat_id)
    return f"geosleuth-{platform}-{chat}-{when.astimezone(UTC):%Y-%m-%d}.{fmt}"


# --- GeoJSON ---------------------------------------------------------------------------------


def to_geojson(case: Case) -> str:
    """A FeatureCollection with one Feature per located answer (RFC 7946).

    Each Feature's geometry is a GeometryCollection of the answer's Point, its uncertainty
    circle as a Polygon and, for a video of a walk, its track as a LineString: one answer is one
    feature with one id and one set of properties, so nothing has to join features back
    together, and a count of features is a count of answers. RFC 7946 §3.1.8 allows this (it
    advises only against nesting collections). Answers without a place (no_match) are left
    out of the map formats; the CSV lists them.
    """
    features = [{"type": "Feature", "id": a.request_id, "geometry": _geometry(a),
                 "properties": _properties(a)} for a in case.located]
    return json.dumps({"type": "FeatureCollection", "features": features},
                      ensure_ascii=False) + "\n"


def _geometry(answer: CaseAnswer) -> dict[str, Any]:
    assert answer.lat is not None and answer.lon is not None
    geometries: list[dict[str, Any]] = [
        {"type": "Point", "coordinates": _position(answer.lat, answer.lon)}]
    if answer.radius_m:
        ring = [list(p) for p in circle(answer.lat, answer.lon, answer.radius_m)]
        geometries.append({"type": "Polygon", "coordinates": [ring]})
    if len(answer.track) >= 2:
        geometries.append({"type": "LineString",
                           "coordinates": [_position(lat, lon) for lat, lon in answer.track]})
    return {"type": "GeometryCollection", "geometries": geometries}


def _properties(answer: CaseAnswer) -> dict[str, Any]:
    return {
        "request_id": answer.request_id,
        "time": answer.time,
        "asked_by": answer.asked_by,
        "kind": answer.kind,
        "status": answer.status,
        "confidence": answer.confidence,
        "radius_m": answer.radius_m,
        "confirms": answer.confirms,
        "disputes": answer.disputes,
        "photos": answer.photos,
        "place": answer.place,
        # Flat too: map tools show a string column better than a list of objects.
        "attribution": _credits(answer),
        "references": [
            {"source": r.source, "source_id": r.source_id, "inliers": r.inliers,
             "link": r.link, "attribution": r.attribution, "licence": r.licence,
             "creator": r.creator}
            for r in answer.references
        ],
    }


def circle(lat: float, lon: float, radius_m: float,
           vertices: int = CIRCLE_VERTICES) -> list[tuple[float, float]]:
    """The points `radius_m` from (lat, lon) on a sphere, as a closed counter-clockwise
    (lon, lat) ring, as RFC 7946 §3.1.6 wants an exterior ring. Radii are metres to a few
    kilometres, so a circle over a pole or the antimeridian is not split."""
    phi, lam = math.radians(lat), math.radians(lon)
    delta = radius_m / EARTH_RADIUS_M
    ring = []
    for i in range(vertices):
        # Bearings are clockwise from north: counting them down turns counter-clockwise.
        theta = -2 * math.pi * i / vertices
        phi2 = math.asin(math.sin(phi) * math.cos(delta)
                         + math.cos(phi) * math.sin(delta) * math.cos(theta))
        lam2 = lam + math.atan2(math.sin(theta) * math.sin(delta) * math.cos(phi),
                                math.cos(delta) - math.sin(phi) * math.sin(phi2))
        ring.append(tuple(_position(math.degrees(phi2), math.degrees(lam2))))
    ring.append(ring[0])
    return ring


def _position(lat: float, lon: float) -> list[float]:
    return [round(lon, DECIMALS), round(lat, DECIMALS)]


# --- KML -------------------------------------------------------------------------------------


def to_kml(case: Case) -> str:
    """A KML document with a Folder for the chat and one Placemark per located answer.

    The Placemark's MultiGeometry holds the Point, the circle and a video's track, as the
    GeoJSON feature does; its description states the facts for Google Earth's balloon and
    its ExtendedData the same as fields for GIS tools.
    """
    kml = simplekml.Kml(name=case.title)
    folder = kml.newfolder(name=case.title)
    style = simplekml.Style()
    style.polystyle.color = simplekml.Color.changealphaint(48, simplekml.Color.red)
    style.linestyle.color = simplekml.Color.red
    style.linestyle.width = 2
    for answer in case.located:
        assert answer.lat is not None and answer.lon is not None
        placemark = folder.newmultigeometry(
            name=f"Request {answer.request_id}{f' near {answer.place}' if answer.place else ''}",
            description=_description(answer))
        placemark.newpoint(coords=[(answer.lon, answer.lat)])
        if answer.radius_m:
            placemark.newpolygon(outerboundaryis=circle(answer.lat, answer.lon,
                                                        answer.radius_m))
        if len(answer.track) >= 2:
            placemark.newlinestring(coords=[(lon, lat) for lat, lon in answer.track])
        placemark.timestamp.when = answer.time
        placemark.style = style
        for key, value in _fields(answer).items():
            if key not in ("lat", "lon"):
                # simplekml writes a Data value as given: escaped here, once, for XML.
                placemark.extendeddata.newdata(name=key, value=escape(value))
    return kml.kml()


def _description(answer: CaseAnswer) -> str:
    """The balloon's HTML; every value is escaped here (Google Earth renders it as HTML) and
    simplekml escapes the whole once more for XML."""
    e = html.escape
    lines = [
        f"{e(answer.kind.capitalize())} asked by {e(answer.asked_by)} at {e(answer.time)}",
        f"{answer.lat:.6f}, {answer.lon:.6f}"
        + (f" within about {answer.radius_m:.0f} m" if answer.radius_m else "")
        + f", confidence {answer.confidence:.0%}",
        f"Votes: {answer.confirms} confirm, {answer.disputes} dispute",
    ]
    if answer.place:
        lines.append(f"Near {e(answer.place)}")
    if answer.photos > 1:
        lines.append(f"{answer.photos} {'frames' if answer.kind == 'video' else 'photos'}")
    for r in answer.references:
        name = e(f"{r.source} {r.source_id}")
        if r.link and r.link.startswith(("https://", "http://")):
            name = f'<a href="{e(r.link)}">{name}</a>'
        credit = f" - {e(r.attribution)}" if r.attribution else ""
        lines.append(f"Reference {name}: {r.inliers} verified correspondences{credit}")
    return "<br/>".join(lines)


# --- CSV -------------------------------------------------------------------------------------


def to_csv(case: Case) -> str:
    """One row per answer, no_match ones included with empty lat/lon."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for answer in case.answers:
        fields = _fields(answer)
        writer.writerow({key: _text_cell(value) if key in TEXT_FIELDS else value
                         for key, value in fields.items()})
    return out.getvalue()


def _fields(answer: CaseAnswer) -> dict[str, str]:
    """The answer's facts as text, one per CSV column (and KML ExtendedData field)."""
    def number(value: float | None) -> str:
        return "" if value is None else repr(value)

    references = "; ".join(f"{r.source}:{r.source_id} ({r.inliers} inliers)"
                           for r in answer.references)
    return {
        "request_id": str(answer.request_id),
        "time": answer.time,
        "asked_by": answer.asked_by,
        "kind": answer.kind,
        "status": answer.status,
        "lat": number(None if answer.lat is None else round(answer.lat, DECIMALS)),
        "lon": number(None if answer.lon is None else round(answer.lon, DECIMALS)),
        "confidence": number(answer.confidence),
        "radius_m": number(answer.radius_m),
        "confirms": str(answer.confirms),
        "disputes": str(answer.disputes),
        "photos": str(answer.photos),
        "place": answer.place or "",
        "references": references,
        "links": "; ".join(r.link for r in answer.references if r.link),
        "attribution": _credits(answer),
    }


def _text_cell(text: str) -> str:
    """Text from users or platforms, never read as a formula by a spreadsheet."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _credits(answer: CaseAnswer) -> str:
    return "; ".join(dict.fromkeys(r.attribution for r in answer.references if r.attribution))


# --- reading the stored answers --------------------------------------------------------------


def _answer(record: RecordedAnswer, place_of: PlaceOf | None) -> CaseAnswer:
    """A kept answer as a case entry; ValueError, KeyError or TypeError when it is not one."""
    data = json.loads(record.result_json or "")
    status = data["status"]
    if status not in ("located", "no_match"):
        raise ValueError(f"unknown status {status!r}")
    kind = data.get("kind", "photo")
    if kind == "album":
        photos = data["photos"]
        matches = [m for photo in photos for m in photo["result"]["matches"]]
        track = tuple(_latlon(t["lat"], t["lon"]) for t in data.get("track") or ())
        if any(photo.get("time_s") is not None for photo in photos):
            kind = "video"
    elif kind == "photo":
        photos, matches, track = [data], data["matches"], ()
    else:
        raise ValueError(f"unknown kind {kind!r}")
    lat = lon = None
    if status == "located":
        lat, lon = _latlon(data["lat"], data["lon"])
    confidence = float(data["confidence"])
    if not 0 <= confidence <= 1:  # NaN fails too
        raise ValueError(f"bad confidence {confidence!r}")
    radius = data.get("radius_m")
    radius_m = None if radius is None else float(radius)
    if radius_m is not None and not (math.isfinite(radius_m) and radius_m >= 0):
        raise ValueError(f"bad radius {radius!r}")
    return CaseAnswer(
        request_id=record.request_id,
        time=_utc(record.created_at),
        asked_by=record.user_name,
        kind=kind,
        status=status,
        lat=lat,
        lon=lon,
        confidence=confidence,
        radius_m=radius_m,
        confirms=record.confirms,
        disputes=record.disputes,
        photos=len(photos),
        references=_references(matches),
        track=track,
        place=place_of(lat, lon) if place_of and lat is not None and lon is not None else None,
    )


def _latlon(lat: Any, lon: Any) -> tuple[float, float]:
    lat, lon = float(lat), float(lon)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # NaN fails too
        raise ValueError(f"no position: {lat}, {lon}")
    return lat, lon


def _references(matches: Sequence[dict[str, Any]]) -> tuple[Reference, ...]:
    """The verified references, each once (an album's photos may share one) with its best
    inlier count, strongest first."""
    best: dict[tuple[str, str], Reference] = {}
    for m in matches:
        if m.get("inliers") is None:
            continue  # ranked by the search, never verified: not evidence
        source = str(m["source"])
        reference = Reference(source, public_source_id(source, str(m["source_id"])),
                              int(m["inliers"]),
                              m.get("link"), m.get("attribution"), m.get("licence"),
                              m.get("creator"))
        key = (reference.source, reference.source_id)
        if key not in best or reference.inliers > best[key].inliers:
            best[key] = reference
    return tuple(sorted(best.values(), key=lambda r: -r.inliers))


def _utc(stored: str) -> str:
    """The store's ISO time as `2025-01-31T09:30:00Z`."""
    return datetime.fromisoformat(stored).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
