"""Behaviour of reference sources: folders (VPR names, EXIF GPS) and CSV manifests."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from engine.errors import SourceError
from engine.geo import haversine_m
from engine.sources import MAX_EXAMPLES, SourceScan, scan_source, utm_to_latlon

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

VPR_NAME = "@0543256.96@4178906.48@10@S@37.75594@-122.50037@pano42@@90@@@@201311@@.jpg"


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return IFDRational(degrees), IFDRational(minutes), IFDRational(round(seconds * 1000), 1000)


def _photo(
    path: Path,
    gps: tuple[float, float] | None = None,
    *,
    heading_deg: float | None = None,
    taken: str | None = None,
    side_px: int = 32,
) -> Path:
    """A real small photo, with GPS/heading/capture time written the way cameras do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if gps is not None:
        lat, lon = gps
        ifd: dict[int, object] = {
            1: "N" if lat >= 0 else "S",
            2: _dms(abs(lat)),
            3: "E" if lon >= 0 else "W",
            4: _dms(abs(lon)),
        }
        if heading_deg is not None:
            ifd[16], ifd[17] = "T", IFDRational(round(heading_deg * 100), 100)
        exif[0x8825] = ifd
    if taken is not None:
        exif[0x8769] = {0x9003: taken}
    Image.effect_noise((side_px, side_px), 64).convert("RGB").save(path, exif=exif)
    return path


def _manifest(folder: Path, text: str, name: str = "refs.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _by_id(scan: SourceScan) -> dict[str, object]:
    return {r.source_id: r for r in scan.records}


def _ids(scan: SourceScan, root: Path) -> list[str]:
    """Source ids (absolute paths) as paths relative to `root`, for readable assertions."""
    return [Path(r.source_id).relative_to(root.resolve()).as_posix() for r in scan.records]


# --- folders -------------------------------------------------------------------------------


def test_folder_photo_with_exif_gps_becomes_a_local_record(tmp_path: Path) -> None:
    photo = _photo(
        tmp_path / "a.jpg",
        (55.698167, 13.195389),
        heading_deg=271.5,
        taken="2021:06:01 12:30:45",
    )

    scan = scan_source(tmp_path)

    (record,) = scan.records
    assert record.source == "local"
    assert record.source_id == str(photo.resolve())
    assert record.lat == pytest.approx(55.698167, abs=1e-6)
    assert record.lon == pytest.approx(13.195389, abs=1e-6)
    assert record.image_path == str(photo.resolve())
    assert record.heading_deg == pytest.approx(271.5)
    assert record.captured_at == "2021-06-01T12:30:45"


def test_southern_and_western_refs_give_negative_coordinates(tmp_path: Path) -> None:
    _photo(tmp_path / "santiago.jpg", (-33.4489, -70.6693))

    (record,) = scan_source(tmp_path).records

    assert (record.lat, record.lon) == (pytest.approx(-33.4489), pytest.approx(-70.6693))


@pytest.mark.parametrize("suffix", [".png", ".webp", ".HEIC", ".JPEG"])
def test_every_supported_format_is_read_case_insensitively(tmp_path: Path, suffix: str) -> None:
    _photo(tmp_path / f"photo{suffix}", (40.0, -3.7))

    (record,) = scan_source(tmp_path).records

    assert Path(record.source_id).name == f"photo{suffix}"
    assert record.lat == pytest.approx(40.0)


def test_nested_folders_are_scanned_in_sorted_order_with_posix_ids(tmp_path: Path) -> None:
    for name in ["b/z.jpg", "a.jpg", "b/a/y.jpg", "c.png"]:
        _photo(tmp_path / name, (10.0, 20.0))
    (tmp_path / "notes.txt").write_text("not a photo")

    first = scan_source(tmp_path)
    again = scan_source(tmp_path)

    assert _ids(first, tmp_path) == ["a.jpg", "b/a/y.jpg", "b/z.jpg", "c.png"]
    assert first == again


def test_hidden_files_and_folders_are_ignored(tmp_path: Path) -> None:
    _photo(tmp_path / ".thumbs" / "t.jpg", (1.0, 1.0))
    (tmp_path / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    _photo(tmp_path / "a.jpg", (1.0, 1.0))

    scan = scan_source(tmp_path)

    assert _ids(scan, tmp_path) == ["a.jpg"]
    assert scan.skipped_unreadable == 0


def test_photos_without_gps_are_counted_not_fatal(tmp_path: Path) -> None:
    _photo(tmp_path / "plain.jpg")
    _photo(tmp_path / "null_island.jpg", (0.0, 0.0))
    _photo(tmp_path / "good.jpg", (51.5, -0.12))

    scan = scan_source(tmp_path)

    assert _ids(scan, tmp_path) == ["good.jpg"]
    assert scan.skipped_no_position == 2
    assert {s.where for s in scan.examples} == {"plain.jpg", "null_island.jpg"}


def test_unreadable_photos_are_counted_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    _photo(tmp_path / "good.jpg", (51.5, -0.12))

    scan = scan_source(tmp_path)

    assert len(scan.records) == 1
    assert scan.skipped_unreadable == 1
    (example,) = scan.examples
    assert example.where == "broken.jpg"
    assert "cannot read" in example.reason


def test_only_the_header_is_read_so_a_truncated_photo_keeps_its_position(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "cut.jpg", (35.68, 139.76), side_px=512)
    photo.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])

    (record,) = scan_source(tmp_path).records

    assert record.lat == pytest.approx(35.68)


def test_examples_are_capped_but_counts_are_complete(tmp_path: Path) -> None:
    for i in range(MAX_EXAMPLES + 5):
        _photo(tmp_path / f"{i:02d}.jpg")

    scan = scan_source(tmp_path)

    assert scan.skipped_no_position == MAX_EXAMPLES + 5
    assert len(scan.examples) == MAX_EXAMPLES
    assert scan.examples[0].where == "00.jpg"


# --- VPR file names ------------------------------------------------------------------------


def test_vpr_file_name_gives_position_heading_and_month(tmp_path: Path) -> None:
    # The file has EXIF GPS elsewhere on purpose: the name wins and the file is not opened.
    _photo(tmp_path / "db" / VPR_NAME, (1.0, 1.0))

    (record,) = scan_source(tmp_path).records

    assert Path(record.source_id).relative_to(tmp_path.resolve()).as_posix() == f"db/{VPR_NAME}"
    assert (record.lat, record.lon) == (37.75594, -122.50037)
    assert record.heading_deg == 90.0
    assert record.captured_at == "2013-11"


def test_vpr_name_with_a_tag_before_the_first_at_sign_is_read_too(tmp_path: Path) -> None:
    _photo(tmp_path / f"night{VPR_NAME}", (1.0, 1.0))
    _photo(tmp_path / "logo@2x.jpg", (1.0, 2.0))  # an '@' that is no VPR name: EXIF decides

    night, logo = sorted(scan_source(tmp_path).records, key=lambda r: r.image_path,
                         reverse=True)

    assert (night.lat, night.lon, night.heading_deg) == (37.75594, -122.50037, 90.0)
    assert (logo.lat, logo.lon) == (1.0, 2.0)


def test_vpr_name_with_pitch_yaw_note_keeps_position_without_heading(tmp_path: Path) -> None:
    name = "@0584270.35@4477133.61@17@T@40.44287@-79.94950@XXXX@@@@@@pitch1_yaw1@.jpg"
    _photo(tmp_path / name)

    (record,) = scan_source(tmp_path).records

    assert (record.lat, record.lon) == (40.44287, -79.9495)
    assert record.heading_deg is None
    assert record.captured_at is None


def test_vpr_name_without_lat_lon_is_converted_from_utm(tmp_path: Path) -> None:
    # CN Tower, Toronto: 43 38 33.24 N, 79 23 13.7 W is UTM 17T 630084 4833439.
    _photo(tmp_path / "@630084@4833439@17@T@@@cn_tower@.jpg")

    (record,) = scan_source(tmp_path).records

    expected = (43 + 38 / 60 + 33.24 / 3600, -(79 + 23 / 60 + 13.7 / 3600))
    assert haversine_m(record.lat, record.lon, *expected) < 1.0


def test_vpr_name_with_out_of_range_lat_lon_falls_back_to_utm(tmp_path: Path) -> None:
    _photo(tmp_path / "@630084@4833439@17@T@143.6@-279.4@@.jpg")

    (record,) = scan_source(tmp_path).records

    assert record.lat == pytest.approx(43.6426, abs=1e-3)


def test_vpr_name_that_is_garbage_falls_back_to_exif(tmp_path: Path) -> None:
    _photo(tmp_path / "@holiday@snap@.jpg", (45.0, 7.0))
    _photo(tmp_path / "@nothing@here@.jpg")

    scan = scan_source(tmp_path)

    assert [(r.lat, r.lon) for r in scan.records] == [(pytest.approx(45.0), pytest.approx(7.0))]
    assert scan.skipped_no_position == 1


# --- UTM -----------------------------------------------------------------------------------


def _utm_forward(lat: float, lon: float, zone: int) -> tuple[float, float]:
    """Independent reference: Snyder's transverse Mercator series (USGS PP 1395, 8-9, 8-10)."""
    a, f, k0 = 6_378_137.0, 1 / 298.257_223_563, 0.9996
    e2 = f * (2 - f)
    ep2 = e2 / (1 - e2)
    phi = math.radians(lat)
    n = a / math.sqrt(1 - e2 * math.sin(phi) ** 2)
    t = math.tan(phi) ** 2
    c = ep2 * math.cos(phi) ** 2
    big_a = math.radians(lon - (6 * zone - 183)) * math.cos(phi)
    m = a * (
        (1 - e2 / 4 - 3 * e2**2 / 64 - 5 * e2**3 / 256) * phi
        - (3 * e2 / 8 + 3 * e2**2 / 32 + 45 * e2**3 / 1024) * math.sin(2 * phi)
        + (15 * e2**2 / 256 + 45 * e2**3 / 1024) * math.sin(4 * phi)
        - (35 * e2**3 / 3072) * math.sin(6 * phi)
    )
    x = (
        k0
        * n
        * (
            big_a
            + (1 - t + c) * big_a**3 / 6
            + (5 - 18 * t + t**2 + 72 * c - 58 * ep2) * big_a**5 / 120
        )
    )
    y = k0 * (
        m
        + n
        * math.tan(phi)
        * (
            big_a**2 / 2
            + (5 - t + 9 * c + 4 * c**2) * big_a**4 / 24
            + (61 - 58 * t + t**2 + 600 * c - 330 * ep2) * big_a**6 / 720
        )
    )
    return x + 500_000, y if lat >= 0 else y + 10_000_000


@pytest.mark.parametrize(
    ("lat", "lon", "zone"),
    [
        (55.7, 13.2, 33),
        (37.76, -122.44, 10),
        (-33.87, 151.21, 56),
        (-54.8, -68.3, 19),
        (1.3, 103.8, 48),
        (69.65, 18.96, 34),
        (48.0, 11.9, 32),  # 2.9° east of the central meridian, near the zone edge
    ],
)
def test_utm_inverse_agrees_with_an_independent_forward_to_under_a_centimetre(
    lat: float, lon: float, zone: int
) -> None:
    easting, northing = _utm_forward(lat, lon, zone)

    back = utm_to_latlon(easting, northing, zone, northern=lat >= 0)

    assert haversine_m(*back, lat, lon) < 0.01


def test_utm_known_points() -> None:
    # On the central meridian northing is k0 * meridian arc: 0.9996 * 4 984 944.378 m at 45 deg.
    assert utm_to_latlon(500_000, 4_982_950.400, 32, northern=True) == (
        pytest.approx(45.0, abs=1e-7),
        pytest.approx(9.0),
    )
    assert utm_to_latlon(500_000, 10_000_000, 23, northern=False) == (
        pytest.approx(0.0, abs=1e-9),
        pytest.approx(-45.0),
    )


# --- CSV manifests -------------------------------------------------------------------------


def test_manifest_with_relative_paths_and_optional_columns(tmp_path: Path) -> None:
    a = _photo(tmp_path / "img" / "a.jpg")
    b = _photo(tmp_path / "img" / "b.jpg")
    manifest = _manifest(
        tmp_path,
        "path,lat,lon,heading,captured_at,source,source_id,attribution\n"
        "img/a.jpg,55.7,13.2,370,2020-05-01T10:00:00Z,mapillary,123,CC-BY-SA Jane\n"
        f"{b},-33.9,151.2,,,,,\n",
    )

    scan = scan_source(manifest)

    first, second = scan.records
    assert (first.source, first.source_id, first.image_path) == ("mapillary", "123", str(a))
    assert (first.lat, first.lon, first.heading_deg) == (55.7, 13.2, 10.0)
    assert first.captured_at == "2020-05-01T10:00:00Z"
    assert first.attribution == "CC-BY-SA Jane"
    assert (second.source, second.source_id) == ("local", str(b))
    assert (second.heading_deg, second.captured_at, second.attribution) == (None, None, None)


def test_manifest_header_is_forgiving_about_case_spaces_order_and_bom(tmp_path: Path) -> None:
    _photo(tmp_path / "a.jpg")
    manifest = tmp_path / "refs.csv"
    manifest.write_text("\ufeffLon , Path,LAT\n13.2,a.jpg,55.7\n", encoding="utf-8")

    (record,) = scan_source(manifest).records

    assert (Path(record.source_id).name, record.lat, record.lon) == ("a.jpg", 55.7, 13.2)


def test_manifest_missing_columns_are_named(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, "path,latitude,lon\na.jpg,1,2\n")

    with pytest.raises(SourceError, match=r"lacks the column\(s\) lat;"):
        scan_source(manifest)


def test_empty_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="path, lat"):
        scan_source(_manifest(tmp_path, ""))


def test_manifest_rows_with_bad_positions_are_skipped_with_their_line(tmp_path: Path) -> None:
    for name in "abcde":
        _photo(tmp_path / f"{name}.jpg")
    manifest = _manifest(
        tmp_path,
        "path,lat,lon\n"
        "a.jpg,55.7,13.2\n"
        "b.jpg,north,13.2\n"
        "\n"
        "c.jpg,91,13.2\n"
        "d.jpg,55.7,\n"
        "e.jpg,nan,13.2\n",
    )

    scan = scan_source(manifest)

    assert [Path(r.source_id).name for r in scan.records] == ["a.jpg"]
    assert scan.skipped_no_position == 4
    assert [s.where for s in scan.examples] == [
        "refs.csv:3",
        "refs.csv:5",
        "refs.csv:6",
        "refs.csv:7",
    ]
    assert "'north'" in scan.examples[0].reason


def test_manifest_rows_whose_image_is_missing_count_as_unreadable(tmp_path: Path) -> None:
    _photo(tmp_path / "here.jpg")
    manifest = _manifest(tmp_path, "path,lat,lon\nhere.jpg,1,2\ngone.jpg,1,2\n,1,2\n")

    scan = scan_source(manifest)

    assert len(scan.records) == 1
    assert scan.skipped_unreadable == 2
    assert [s.reason for s in scan.examples] == ["no image at gone.jpg", "the path column is empty"]


def test_manifest_duplicates_keep_the_first_row(tmp_path: Path) -> None:
    _photo(tmp_path / "a.jpg")
    _photo(tmp_path / "b.jpg")
    manifest = _manifest(
        tmp_path,
        "path,lat,lon,source,source_id\n"
        "a.jpg,1,2,mapillary,7\n"
        "b.jpg,3,4,mapillary,7\n"
        "b.jpg,3,4,kartaview,7\n",
    )

    scan = scan_source(manifest)

    assert [(r.source, r.lat) for r in scan.records] == [("mapillary", 1.0), ("kartaview", 3.0)]
    assert scan.skipped_duplicate == 1
    assert scan.examples[0].where == "refs.csv:3"


def test_manifest_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "refs.csv"
    manifest.write_bytes(b"path,lat,lon\n\xff\xfe.jpg,1,2\n")

    with pytest.raises(SourceError, match="Cannot read the manifest"):
        scan_source(manifest)


# --- the path itself -----------------------------------------------------------------------


def test_missing_path_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="No such folder or CSV manifest"):
        scan_source(tmp_path / "nowhere")


def test_a_single_photo_is_not_a_source(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "a.jpg", (1.0, 2.0))

    with pytest.raises(SourceError, match="neither a folder of photos nor a CSV manifest"):
        scan_source(photo)


def test_empty_folder_gives_an_empty_scan(tmp_path: Path) -> None:
    assert scan_source(tmp_path) == SourceScan(records=())


# --- real data -----------------------------------------------------------------------------


@pytest.mark.real_data
def test_real_lund_photos_all_carry_gps() -> None:
    lund = DATA / "lund"
    if not lund.is_dir():
        pytest.skip(f"real photos not present at {lund}")

    scan = scan_source(lund)

    assert len(scan.records) == 29
    assert scan.skipped_no_position == scan.skipped_unreadable == 0
    for record in scan.records:
        assert record.lat == pytest.approx(55.7, abs=0.05)
        assert record.lon == pytest.approx(13.2, abs=0.05)


def test_two_folders_with_the_same_file_names_do_not_collide(tmp_path: Path) -> None:
    _photo(tmp_path / "lund" / "01.jpg", (55.7, 13.2))
    _photo(tmp_path / "berlin" / "01.jpg", (52.5, 13.4))

    ids = {r.source_id for folder in ("lund", "berlin")
           for r in scan_source(tmp_path / folder).records}

    assert len(ids) == 2
