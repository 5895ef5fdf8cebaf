"""Plain-text wording of results, shared by the CLI and the chat adapters."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from engine.album import AlbumPhoto, AlbumResult, track_length_m
from engine.geo import haversine_m
from engine.results import LocateResult


def dms(lat: float, lon: float) -> str:
    """55°42'34.6"N 13°11'10.3"E"""
    return f"{_dms_part(lat, 'N', 'S')} {_dms_part(lon, 'E', 'W')}"


def _dms_part(value: float, positive: str, negative: str) -> str:
    hemisphere = positive if value >= 0 else negative
    value = abs(value)
    degrees = int(value)
    minutes_full = (value - degrees) * 60
    minutes = int(minutes_full)
    seconds = (minutes_full - minutes) * 60
    if round(seconds, 1) >= 60.0:
        seconds, minutes = 0.0, minutes + 1
    if minutes == 60:
        minutes, degrees = 0, degrees + 1
    return f"{degrees}°{minutes:02d}'{seconds:04.1f}\"{hemisphere}"


def confidence_word(confidence: float) -> str:
    if confidence >= 0.8:
        return "high"
    if confidence >= 0.5:
        return "medium"
    return "low"


def result_text(result: LocateResult) -> str:
    """A few lines a person reads at a glance: the answer, how sure, why."""
    lines = []
    if result.located:
        assert result.lat is not None and result.lon is not None and result.radius_m is not None
        lat, lon = result.lat, result.lon
        lines.append(f"Located: {lat:.6f}, {lon:.6f}  ({dms(lat, lon)})")
        lines.append(
            f"Confidence: {result.confidence:.0%} ({confidence_word(result.confidence)}),"
            f" within about {result.radius_m:.0f} m"
        )
    else:
        lines.append(
            f"No confident match (best {result.confidence:.0%}). A wider shot showing more of the"
            " street, or the original file instead of a compressed photo, may help."
        )
    best = result.best_match
    if best is not None:
        lines.append(
            f"Best reference: {reference_name(best.source, best.source_id)} at {best.lat:.6f},"
            f" {best.lon:.6f}"
            f" - {best.inliers} verified correspondences (similarity {best.similarity:.2f})"
        )
    label = "Other candidate places" if result.located else "Leads (unconfirmed)"
    for i, alt in enumerate(result.alternatives, 1):
        if i == 1:
            lines.append(f"{label}:")
        lines.append(
            f"  {i}. {alt.lat:.6f}, {alt.lon:.6f}  {alt.confidence:.0%}"
            f" ({alt.best_inliers} correspondences)"
        )
    if result.exif_gps is not None:
        gps = result.exif_gps
        where = f"Photo's own EXIF GPS: {gps.lat:.6f}, {gps.lon:.6f}"
        if result.located:
            distance = haversine_m(gps.lat, gps.lon, result.lat, result.lon)  # type: ignore[arg-type]
            where += f" ({distance:.0f} m from the visual answer)"
        lines.append(where)
    return "\n".join(lines)


def timings_text(result: LocateResult) -> str:
    return " · ".join(f"{stage} {ms:.0f} ms" for stage, ms in result.timings_ms.items())


REFERENCE_PAGES = {
    "mapillary": "https://www.mapillary.com/app/?pKey={id}",
    "kartaview": "https://kartaview.org/details/{id}",
    "panoramax": "https://api.panoramax.xyz/#focus=pic&pic={id}",
    "mapilio": "https://mapilio.com/app?photo={id}",
}


def reference_url(source: str, source_id: str) -> str | None:
    """The reference photo's page on its platform; local and synthetic photos have none."""
    template = REFERENCE_PAGES.get(source)
    return None if template is None else template.format(id=source_id)


def web_link(url: str | None) -> str | None:
    """`url` fit to be a hyperlink in Telegram HTML or Discord markdown: http(s) with a host,
    the characters that would end the link (parentheses, spaces, quotes) percent-encoded;
    None for anything else (javascript:, file:, a relative path). A platform's link is its
    word, not ours."""
    if not url:
        return None
    encoded = quote(url, safe=":/?#[]@!$&'*+,;=%~")
    try:
        parts = urlsplit(encoded)
        return encoded if parts.scheme in ("http", "https") and parts.hostname else None
    except ValueError:  # an unbalanced [ in the host
        return None


def reference_name(source: str, source_id: str) -> str:
    """How a reference is named to chat users, e.g. "mapillary/123" or "local/04.jpg"."""
    return f"{source}/{public_source_id(source, source_id)}"


def public_source_id(source: str, source_id: str) -> str:
    """A reference's id fit for chat users and case files: a local photo by its file name
    only (its full path is the server's business)."""
    if source == "local":
        return source_id.replace(chr(92), "/").rsplit("/", 1)[-1]
    return source_id


def osm_url(lat: float, lon: float) -> str:
    return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=18/{lat:.6f}/{lon:.6f}"


def google_maps_url(lat: float, lon: float) -> str:
    return f"https://www.google.com/maps/search/?api=1&query={lat:.6f},{lon:.6f}"


@dataclass(frozen=True, slots=True)
class AnswerSummary:
    """An answer's pieces in words, for an adapter to lay out (a caption, an embed)."""

    located: bool
    headline: str
    coordinates: str | None  # "55.698170, 13.195390"
    dms: str | None
    confidence: str  # "97 % (high)"
    radius: str | None  # "within about 30 m"
    place: str | None  # "Lund, Sweden (1.2 km)"
    osm_url: str | None
    google_url: str | None
    reference: str | None  # "local/05.jpg, 412 verified correspondences"
    reference_url: str | None
    exif: str | None  # "Photo's GPS: 55.70, 13.19 (12 m from the visual answer)"
    area: str | None  # "Searched within 5 km of Lund, Sweden"
    attribution: str | None
    advice: str | None  # what would help, on no match
    # An album's or video's line per photo (or frame), a track, photos that could not be read.
    details: tuple[str, ...] = ()
    kind: str = "photo"  # "photo", "album" or "video": what was located


def summarise_answer(
    result: LocateResult, place: str | None = None, area: str | None = None
) -> AnswerSummary:
    best = result.best_match
    reference = reference_link = None
    if best is not None and best.inliers:
        reference = (f"{reference_name(best.source, best.source_id)}, {best.inliers} verified"
                     f" correspondences (similarity {best.similarity:.2f})")
        reference_link = web_link(best.link) or web_link(reference_url(best.source,
                                                                       best.source_id))
    exif = None
    if result.exif_gps is not None:
        gps = result.exif_gps
        exif = f"Photo's own GPS: {gps.lat:.6f}, {gps.lon:.6f}"
        if result.located:
            far = haversine_m(gps.lat, gps.lon, result.lat, result.lon)  # type: ignore[arg-type]
            exif += f" ({far:,.0f} m from the visual answer)"
    # The credit the licence asks for: that of the reference shown as the evidence.
    credit = best.attribution if best is not None and best.inliers else None
    confidence = f"{result.confidence:.0%} ({confidence_word(result.confidence)})"
    if not result.located:
        return AnswerSummary(
            located=False, headline="No confident match", coordinates=None, dms=None,
            confidence=confidence, radius=None, place=None, osm_url=None, google_url=None,
            reference=reference, reference_url=reference_link, exif=exif,
            area=area, attribution=credit,
            advice="A wider shot that shows more of the street, or the original file (send it"
                   " as a file, which keeps its metadata), may help.",
        )
    lat, lon = result.lat, result.lon
    assert lat is not None and lon is not None and result.radius_m is not None
    return AnswerSummary(
        located=True, headline="Located", coordinates=f"{lat:.6f}, {lon:.6f}", dms=dms(lat, lon),
        confidence=confidence, radius=f"within about {result.radius_m:,.0f} m", place=place,
        osm_url=osm_url(lat, lon), google_url=google_maps_url(lat, lon), reference=reference,
        reference_url=reference_link, exif=exif, area=area,
        attribution=credit, advice=None,
    )


def summarise_album(album: AlbumResult, place: str | None = None, area: str | None = None,
                    unread: tuple[str, ...] = ()) -> AnswerSummary:
    """An album's (or video's) answer: the joint answer in the single-photo words, with the
    evidence of its best photo, then a line per photo saying whether it agrees."""
    best = album.best
    if best is not None:
        words = summarise_answer(best.result)
        reference, link, credit = words.reference, words.reference_url, words.attribution
    else:
        reference = link = credit = None
    confidence = f"{album.confidence:.0%} ({confidence_word(album.confidence)})"
    video = any(p.time_s is not None for p in album.photos)
    noun = ("frame" if video else "photo") + ("" if len(album.photos) == 1 else "s")
    details = []
    if album.track:
        details.append(
            f"Track: {len(album.track)} frames placed it along {track_length_m(album.track):,.0f}"
            f" m, {clock(album.track[0].time_s)} to {clock(album.track[-1].time_s)}")
    details += [_photo_line(photo, album) for photo in album.photos]
    details += [_own_gps_line(photo, album) for photo in album.photos
                if photo.result.exif_gps is not None]
    details += [f"{line} (not read)" for line in unread]
    if not album.located:
        return AnswerSummary(
            located=False, headline=f"No confident match ({len(album.photos)} {noun})",
            coordinates=None, dms=None, confidence=confidence, radius=None, place=None,
            osm_url=None, google_url=None, reference=reference, reference_url=link, exif=None,
            area=area, attribution=credit,
            advice=f"The {noun} did not match the reference imagery closely enough; wider"
                   " shots of the street, or originals sent as files, may help.",
            details=tuple(details), kind="video" if video else "album",
        )
    lat, lon = album.lat, album.lon
    assert lat is not None and lon is not None and album.radius_m is not None
    headline = f"Located ({len(album.photos)} {noun}{', a track' if album.track else ''})"
    return AnswerSummary(
        located=True, headline=headline, coordinates=f"{lat:.6f}, {lon:.6f}",
        dms=dms(lat, lon), confidence=confidence,
        radius=f"within about {album.radius_m:,.0f} m", place=place, osm_url=osm_url(lat, lon),
        google_url=google_maps_url(lat, lon), reference=reference, reference_url=link,
        exif=None, area=area, attribution=credit, advice=None, details=tuple(details),
        kind="video" if video else "album",
    )


def _photo_line(photo: AlbumPhoto, album: AlbumResult) -> str:
    name = photo.label if photo.time_s is None else f"frame at {clock(photo.time_s)}"
    own = photo.result
    if album.track and photo.agrees and own.lat is not None and own.lon is not None:
        return (f"{name}: placed at {own.lat:.5f}, {own.lon:.5f} ({own.confidence:.0%},"
                f" {photo.inliers} correspondences)")
    if photo.agrees:
        return f"{name}: agrees ({photo.inliers} correspondences)"
    if photo.agrees is False and own.lat is not None and own.lon is not None:
        where = f"{own.lat:.5f}, {own.lon:.5f}"
        if album.lat is not None and album.lon is not None:
            where += f", {haversine_m(own.lat, own.lon, album.lat, album.lon):,.0f} m away"
        return f"{name}: disagrees, placed at {where} ({own.confidence:.0%})"
    return f"{name}: no clear evidence"


def _own_gps_line(photo: AlbumPhoto, album: AlbumResult) -> str:
    gps = photo.result.exif_gps
    assert gps is not None
    line = f"{photo.label}: its own GPS {gps.lat:.6f}, {gps.lon:.6f}"
    if album.lat is not None and album.lon is not None:
        line += f" ({haversine_m(gps.lat, gps.lon, album.lat, album.lon):,.0f} m from the answer)"
    return line


def clock(seconds: float, *, tenths: bool = True) -> str:
    """0:04.2 (a frame's time in a video), or 2:05 without tenths (a video's length)."""
    if not tenths:
        seconds = round(seconds)
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}" if tenths else f"{int(minutes)}:{int(rest):02d}"
