"""Turn a local folder of photos or a CSV manifest into geotagged reference records.

A folder's photos are positioned by their VPR-convention file name
(`@utm_e@utm_n@zone@band@lat@lon@...`) or, failing that, by EXIF GPS; a manifest gives
positions in columns. Items without a usable position are counted, never fatal.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.decode import read_exif
from engine.errors import ImageError, SourceError
from engine.results import ReferenceRecord

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif"})
LOCAL_SOURCE = "local"
REQUIRED_COLUMNS = ("path", "lat", "lon")
MAX_EXAMPLES = 10

_VPR_TIMESTAMP = re.compile(r"(\d{4})(\d{2})?(\d{2})?")

# Fields of the VPR file-name convention (deep-visual-geo-localization-benchmark), counted
# after the leading '@': the name starts with '@', so field 0 is always empty.
_VPR_EASTING, _VPR_NORTHING, _VPR_ZONE, _VPR_BAND, _VPR_LAT, _VPR_LON = 1, 2, 3, 4, 5, 6
_VPR_HEADING, _VPR_TIMESTAMP_FIELD = 9, 13

# WGS84 and the UTM projection constants.
_WGS84_A = 6_378_137.0
_WGS84_F = 1 / 298.257_223_563
_UTM_K0 = 0.9996
_UTM_FALSE_EASTING = 500_000.0
_UTM_FALSE_NORTHING_SOUTH = 10_000_000.0
_UTM_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # latitude bands; "N" and later are north of the equator


@dataclass(frozen=True, slots=True)
class Skipped:
    """One item left out of a scan, kept so a command can show the user why."""

    where: str  # a path relative to the scanned folder, or "manifest.csv:LINE"
    reason: str


@dataclass(frozen=True, slots=True)
class SourceScan:
    """What a scan found: the usable records, and counts of what it had to leave out."""

    records: tuple[ReferenceRecord, ...]
    skipped_no_position: int = 0
    skipped_unreadable: int = 0
    skipped_duplicate: int = 0
    examples: tuple[Skipped, ...] = ()  # the first MAX_EXAMPLES skipped items, in scan order


@dataclass(frozen=True, slots=True)
class _Position:
    lat: float
    lon: float
    heading_deg: float | None = None
    captured_at: str | None = None


_SkipKind = Literal["no_position", "unreadable", "duplicate"]


class _Tally:
    """Collects records and skips while a scan runs; duplicates keep the first seen."""

    def __init__(self) -> None:
        self.records: list[ReferenceRecord] = []
        self.seen: set[tuple[str, str]] = set()
        self.counts: dict[_SkipKind, int] = {"no_position": 0, "unreadable": 0, "duplicate": 0}
        self.examples: list[Skipped] = []

    def add(self, record: ReferenceRecord, where: str) -> None:
        key = (record.source, record.source_id)
        if key in self.seen:
            self.skip("duplicate", where, f"duplicate of {record.source}:{record.source_id}")
            return
        self.seen.add(key)
        self.records.append(record)

    def skip(self, kind: _SkipKind, where: str, reason: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(Skipped(where, reason))

    def result(self) -> SourceScan:
        return SourceScan(
            records=tuple(self.records),
            skipped_no_position=self.counts["no_position"],
            skipped_unreadable=self.counts["unreadable"],
            skipped_duplicate=self.counts["duplicate"],
            examples=tuple(self.examples),
        )


def scan_source(path: Path | str) -> SourceScan:
    """Read reference records from a folder (recursively) or a `.csv` manifest."""
    path = Path(path)
    if path.is_dir():
        return _scan_folder(path.resolve())
    if not path.exists():
        raise SourceError(f"No such folder or CSV manifest: {path}.")
    if path.suffix.lower() == ".csv":
        return _scan_manifest(path.resolve())
    raise SourceError(
        f"{path} is neither a folder of photos nor a CSV manifest (.csv with columns path,lat,lon)."
    )


# --- folders -------------------------------------------------------------------------------


def _scan_folder(root: Path) -> SourceScan:
    tally = _Tally()
    for relative in _image_files(root):
        image = root / relative
        try:
            position = _vpr_position(image.name) or _exif_position(image)
        except ImageError as exc:
            tally.skip("unreadable", relative, f"cannot read the image header: {exc}")
            continue
        if position is None:
            tally.skip("no_position", relative, "no position in the file name or EXIF GPS")
            continue
        tally.add(
            ReferenceRecord(
                source=LOCAL_SOURCE,
                # The absolute path: a rescan of the folder finds the same ids, and two folders
                # holding the same file names (01.jpg) never collide.
                source_id=str(image.resolve()),
                lat=position.lat,
                lon=position.lon,
                image_path=str(image),
                heading_deg=position.heading_deg,
                captured_at=position.captured_at,
            ),
            relative,
        )
    return tally.result()


def _image_files(root: Path) -> list[str]:
    """Image paths under root, relative and POSIX-form, sorted so re-scans list them alike.

    Hidden files and folders are left out: they hold thumbnails and macOS "._" resource forks,
    not photos.
    """
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder).relative_to(root)
        found.extend(
            (base / name).as_posix()
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(found)


# --- VPR file names ----------------------------------------------------------------------


def _vpr_position(name: str) -> _Position | None:
    """The position a VPR-convention file name carries, or None if the name has none.

    Lat/lon fields win; a name with only UTM fields is converted. Heading is read only from
    the benchmark's heading field: datasets that put pitch/yaw in the note field (Pitts30k)
    give angles relative to the panorama, not to north. Some published sets put a tag before
    the first '@' (`night@0544...`): the fields are counted from that '@'.
    """
    if "@" not in name:
        return None
    fields = name[name.index("@"):].split("@")
    lat = _float_field(fields, _VPR_LAT)
    lon = _float_field(fields, _VPR_LON)
    if lat is None or lon is None or not _valid_latlon(lat, lon):
        converted = _vpr_utm(fields)
        if converted is None:
            return None
        lat, lon = converted
    heading = _float_field(fields, _VPR_HEADING)
    return _Position(
        lat,
        lon,
        heading_deg=None if heading is None else heading % 360.0,
        captured_at=_vpr_timestamp(fields),
    )


def _vpr_utm(fields: list[str]) -> tuple[float, float] | None:
    easting = _float_field(fields, _VPR_EASTING)
    northing = _float_field(fields, _VPR_NORTHING)
    zone = _float_field(fields, _VPR_ZONE)
    band = fields[_VPR_BAND].strip().upper() if len(fields) > _VPR_BAND else ""
    if easting is None or northing is None or zone is None:
        return None
    if len(band) != 1 or band not in _UTM_BANDS:
        return None
    if not (zone.is_integer() and 1 <= zone <= 60):
        return None
    if not (100_000 <= easting <= 900_000 and 0 <= northing <= 10_000_000):
        return None
    lat, lon = utm_to_latlon(easting, northing, int(zone), northern=band >= "N")
    return (lat, lon) if _valid_latlon(lat, lon) else None


def _vpr_timestamp(fields: list[str]) -> str | None:
    """The benchmark's timestamp field (YYYY[MM[DD]]) as ISO 8601, e.g. "2013-11"."""
    if len(fields) <= _VPR_TIMESTAMP_FIELD:
        return None
    match = _VPR_TIMESTAMP.fullmatch(fields[_VPR_TIMESTAMP_FIELD].strip())
    if match is None:
        return None
    return "-".join(part for part in match.groups() if part)


def _float_field(fields: list[str], index: int) -> float | None:
    if len(fields) <= index:
        return None
    return _parse_float(fields[index])


def utm_to_latlon(
    easting: float, northing: float, zone: int, *, northern: bool
) -> tuple[float, float]:
    """WGS84 latitude/longitude of a UTM coordinate (Krüger series: sub-millimetre in a zone)."""
    n = _WGS84_F / (2 - _WGS84_F)
    # Rectifying radius and the series coefficients, to third order in n.
    radius = _WGS84_A / (1 + n) * (1 + n**2 / 4 + n**4 / 64)
    beta = (
        n / 2 - 2 * n**2 / 3 + 37 * n**3 / 96,
        n**2 / 48 + n**3 / 15,
        17 * n**3 / 480,
    )
    delta = (
        2 * n - 2 * n**2 / 3 - 2 * n**3,
        7 * n**2 / 3 - 8 * n**3 / 5,
        56 * n**3 / 15,
    )
    false_northing = 0.0 if northern else _UTM_FALSE_NORTHING_SOUTH
    xi = (northing - false_northing) / (_UTM_K0 * radius)
    eta = (easting - _UTM_FALSE_EASTING) / (_UTM_K0 * radius)
    xi_p, eta_p = xi, eta
    for j, b in enumerate(beta, start=1):
        xi_p -= b * math.sin(2 * j * xi) * math.cosh(2 * j * eta)
        eta_p -= b * math.cos(2 * j * xi) * math.sinh(2 * j * eta)
    chi = math.asin(math.sin(xi_p) / math.cosh(eta_p))  # conformal latitude
    lat = chi + sum(d * math.sin(2 * j * chi) for j, d in enumerate(delta, start=1))
    central_meridian = 6.0 * zone - 183.0
    lon = central_meridian + math.degrees(math.atan2(math.sinh(eta_p), math.cos(xi_p)))
    return math.degrees(lat), (lon + 180.0) % 360.0 - 180.0


# --- EXIF --------------------------------------------------------------------------------


def _exif_position(image: Path) -> _Position | None:
    """GPS, heading and capture time from the photo's EXIF (header only: fast on big folders)."""
    exif = read_exif(image)
    if exif.gps is None:
        return None
    return _Position(
        exif.gps.lat, exif.gps.lon, heading_deg=exif.heading_deg, captured_at=exif.captured_at
    )


# --- CSV manifests -----------------------------------------------------------------------


def _scan_manifest(manifest: Path) -> SourceScan:
    """Rows become records; a row with a bad lat/lon counts as having no position.

    A heading that is not a number is left out rather than costing the row. Skipped rows are
    reported as "NAME:LINE" (the file's line number, header = line 1).
    """
    tally = _Tally()
    base = manifest.parent
    for line, row in _manifest_rows(manifest):
        where = f"{manifest.name}:{line}"
        raw_path = row.get("path", "")
        lat = _parse_float(row.get("lat", ""))
        lon = _parse_float(row.get("lon", ""))
        if lat is None or lon is None or not _valid_latlon(lat, lon):
            reason = f"lat/lon {row.get('lat', '')!r}, {row.get('lon', '')!r} is not a position"
            tally.skip("no_position", where, reason)
            continue
        if not raw_path:
            tally.skip("unreadable", where, "the path column is empty")
            continue
        image = (base / raw_path).resolve()
        if not image.is_file():
            tally.skip("unreadable", where, f"no image at {raw_path}")
            continue
        heading = _parse_float(row.get("heading", ""))
        tally.add(
            ReferenceRecord(
                source=row.get("source") or LOCAL_SOURCE,
                source_id=row.get("source_id") or str(image),
                lat=lat,
                lon=lon,
                image_path=str(image),
                heading_deg=None if heading is None else heading % 360.0,
                captured_at=row.get("captured_at") or None,
                attribution=row.get("attribution") or None,
                licence=row.get("licence") or None,
                creator=row.get("creator") or None,
                link=row.get("link") or None,
            ),
            where,
        )
    return tally.result()


def _manifest_rows(manifest: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs with header names lower-cased and every cell stripped."""
    try:
        # utf-8-sig: spreadsheets often start their CSV exports with a byte-order mark.
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip().lower() for name in next(reader, [])]
            missing = [name for name in REQUIRED_COLUMNS if name not in header]
            if missing:
                raise SourceError(
                    f"The manifest {manifest} lacks the column(s) {', '.join(missing)}; "
                    "its first line must name at least path,lat,lon."
                )
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    row = {name: cell.strip() for name, cell in zip(header, cells, strict=False)}
                    yield reader.line_num, row
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"Cannot read the manifest {manifest}: {exc}") from exc


# --- shared --------------------------------------------------------------------------------


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _valid_latlon(lat: float, lon: float) -> bool:
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0
