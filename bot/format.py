"""Plain-text wording of results, shared by the CLI and the chat adapters."""

from __future__ import annotations

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
            f"Best reference: {best.source}/{best.source_id} at {best.lat:.6f}, {best.lon:.6f}"
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
