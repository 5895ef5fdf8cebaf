"""The map and evidence pictures: always a PNG of the promised size, even with no tile server."""

from __future__ import annotations

import io
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.render.map import (
    DISAGREE,
    ESTIMATE,
    PHOTO,
    MapStyle,
    latlon_to_px,
    metres_per_px,
    px_to_latlon,
    render_album_map,
    render_map,
)
from engine.album import AlbumPhoto, AlbumResult
from engine.config import DecodeConfig
from engine.evidence_picture import render_evidence, render_result_evidence
from engine.geo import offset_latlon
from engine.results import Alternative, LatLon, LocateResult, Status

LAT, LON = 52.5200, 13.4050
OFFLINE = MapStyle(tiles_enabled=False)


def _result(
    located: bool = True,
    alternatives: tuple[Alternative, ...] = (),
    exif: LatLon | None = None,
    radius_m: float = 35.0,
) -> LocateResult:
    return LocateResult(
        status=Status.LOCATED if located else Status.NO_MATCH,
        lat=LAT if located else None,
        lon=LON if located else None,
        confidence=0.8 if located else 0.2,
        radius_m=radius_m if located else None,
        alternatives=alternatives,
        matches=(),
        exif_gps=exif,
        timings_ms={},
        descriptor="vlad",
        verifier="sift",
        index_version="test",
    )


def _alternative(east_m: float, north_m: float) -> Alternative:
    lat, lon = offset_latlon(LAT, LON, east_m, north_m)
    return Alternative(lat=lat, lon=lon, confidence=0.15, radius_m=40.0, best_inliers=22)


def _decode(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB")).astype(int)


def _centroid(rgb: np.ndarray, colour: tuple[int, int, int], tol: int = 30) -> tuple[float, float]:
    """Mean position of the pixels of a marker's colour on the map (not in the legend above)."""
    mask = (np.abs(rgb - np.array(colour)) <= tol).all(axis=2)
    mask[:70] = False
    assert mask.any(), f"no pixel of colour {colour} in the picture"
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tile_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP tile server on loopback that serves one flat tile and records user agents."""
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (170, 211, 223)).save(buf, format="PNG")
    tile, agents = buf.getvalue(), []

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            agents.append(self.headers.get("User-Agent", ""))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png", agents
    finally:
        server.shutdown()
        server.server_close()


def test_located_map_is_a_png_of_the_configured_size() -> None:
    style = MapStyle(tiles_enabled=False, width=640, height=480)
    rgb = _decode(render_map(_result(alternatives=(_alternative(150, 80),)), style))
    assert rgb.shape == (480, 640, 3)


def test_fallback_map_draws_the_estimate_marker_at_the_centre() -> None:
    rgb = _decode(render_map(_result(), OFFLINE))
    x, y = _centroid(rgb, (220, 38, 38))
    assert abs(x - 400) < 2
    assert abs(y - 300) < 25  # centred in the area between the title card and the footer
    assert tuple(rgb[round(y), round(x)]) == pytest.approx((220, 38, 38), abs=30)


def test_alternatives_truth_and_exif_are_drawn_where_they_are() -> None:
    exif_lat, exif_lon = offset_latlon(LAT, LON, 0, -90)
    result = _result(alternatives=(_alternative(120, 0),), exif=LatLon(exif_lat, exif_lon))
    rgb = _decode(render_map(result, OFFLINE, truth=offset_latlon(LAT, LON, -100, 0)))
    est_x, est_y = _centroid(rgb, (220, 38, 38))
    alt_x, alt_y = _centroid(rgb, (234, 138, 0), tol=20)
    _exif_x, exif_y = _centroid(rgb, (37, 99, 235), tol=20)
    truth_x, _ = _centroid(rgb, (22, 150, 70), tol=20)
    assert alt_x > est_x + 20 and abs(alt_y - est_y) < 30  # east
    assert exif_y > est_y + 20  # south
    assert truth_x < est_x - 20  # west


@pytest.mark.parametrize("radius_m", [30.0, 400.0, 5000.0])
def test_uncertainty_circle_is_drawn_in_metres(radius_m: float) -> None:
    rgb = _decode(render_map(_result(radius_m=radius_m), OFFLINE))
    _x, y = _centroid(rgb, (220, 38, 38))
    ring = np.nonzero((np.abs(rgb[round(y)] - (220, 38, 38)) <= 40).all(axis=1))[0]
    radius_px = (ring.max() - ring.min()) / 2
    # Whatever zoom was chosen, the ring measures radius_m on the ground at that zoom.
    assert any(
        abs(radius_px * metres_per_px(LAT, z) - radius_m) < 0.04 * radius_m for z in range(19)
    )
    assert 20 < radius_px < 300


def test_map_math_round_trips_and_knows_the_equator() -> None:
    x, y = latlon_to_px(LAT, LON, 15)
    lat, lon = px_to_latlon(x, y, 15)
    assert lat == pytest.approx(LAT, abs=1e-9) and lon == pytest.approx(LON, abs=1e-9)
    assert metres_per_px(0.0, 0) == pytest.approx(156_543.03, rel=1e-6)
    assert metres_per_px(60.0, 1) == pytest.approx(156_543.03 / 4, rel=1e-6)


def test_no_match_with_leads_is_a_map_of_the_leads() -> None:
    result = _result(located=False, alternatives=(_alternative(0, 0), _alternative(300, 200)))
    rgb = _decode(render_map(result, OFFLINE))
    assert rgb.shape == (600, 800, 3)
    _centroid(rgb, (234, 138, 0), tol=20)
    assert not (np.abs(rgb - (220, 38, 38)) <= 20).all(axis=2).any()  # no estimate marker


def test_no_match_without_leads_is_a_card() -> None:
    style = MapStyle(tiles_enabled=False, width=500, height=300)
    rgb = _decode(render_map(_result(located=False), style))
    assert rgb.shape == (300, 500, 3)


def test_unreachable_tile_server_falls_back_quickly() -> None:
    style = MapStyle(tile_url=f"http://127.0.0.1:{_closed_port()}/{{z}}/{{x}}/{{y}}.png")
    started = time.monotonic()
    png = render_map(_result(), style)
    assert time.monotonic() - started < 4.0
    assert png == render_map(_result(), OFFLINE)


def test_tiles_are_fetched_with_our_user_agent(tile_server: tuple[str, list[str]]) -> None:
    url, agents = tile_server
    style = MapStyle(tile_url=url, tile_timeout_s=2.0)
    rgb = _decode(render_map(_result(), style))
    assert agents and set(agents) == {style.user_agent}
    assert tuple(rgb[450, 700]) == (170, 211, 223)  # the tile shows where no card covers it
    _centroid(rgb, (220, 38, 38))


def test_evidence_puts_query_beside_reference_within_width() -> None:
    rng = np.random.default_rng(0)
    query = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)
    reference = rng.integers(0, 255, (480, 640), dtype=np.uint8)  # grey is accepted
    q_pts, r_pts = rng.uniform(0, 480, (500, 2)), rng.uniform(0, 480, (500, 2))
    with_lines = _decode(render_evidence(query, reference, q_pts, r_pts, "12 inliers " * 40))
    without = _decode(render_evidence(query, reference, np.zeros((0, 2)), [], "no inliers"))
    assert with_lines.shape[1] <= 1600
    assert with_lines.shape[0] > without.shape[0]  # the long caption wrapped onto more lines
    assert without.shape[1] == with_lines.shape[1]


def test_evidence_of_a_large_photo_draws_its_correspondences_where_they_are() -> None:
    """The photo is decoded at a fraction of its size; its points, in full-size pixels, are
    scaled with it (a correspondence at the photo's centre is drawn at the panel's centre)."""
    grey = np.full((2400, 3200, 3), 128, np.uint8)
    photo = io.BytesIO()
    Image.fromarray(grey).save(photo, format="JPEG", quality=95)
    result = replace(_result(), query_size=(3200, 2400),
                     correspondences=((1600.0, 1200.0, 400.0, 300.0),))
    png = render_result_evidence(photo.getvalue(), DecodeConfig(), grey[:600, :800], result, "")
    rgb = _decode(png)
    panel_height = int(np.argmax((rgb == 255).all(axis=(1, 2))))
    panel_width = int(np.argmax((rgb[:100] == 255).all(axis=(0, 2))))
    on_photo = rgb[30:panel_height, :panel_width]  # below the "query" tag
    drawn = np.argwhere(np.abs(on_photo - 128).max(axis=2) > 60) + np.array([30, 0])
    assert len(drawn), "no correspondence drawn on the photo"
    # The line runs from the photo's centre towards the reference: its left end is the circle
    # (radius 3 px) around the photo's centre.
    assert abs(drawn[:, 1].min() + 3 - panel_width / 2) <= 2
    assert abs(drawn[:, 0].mean() - panel_height / 2) <= 2


def test_evidence_refuses_unpaired_points() -> None:
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="pair up"):
        render_evidence(img, img, [(1.0, 2.0)], [], "")


def _mbtiles(path: Path, lat: float, lon: float, colour: tuple[int, int, int]) -> None:
    """An MBTiles file holding flat tiles around (lat, lon) at every zoom (TMS rows)."""
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(buf, format="PNG")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER,"
                   " tile_row INTEGER, tile_data BLOB)")
        for zoom in range(20):
            x, y = (int(v // 256) for v in latlon_to_px(lat, lon, zoom))
            n = 2**zoom
            for dx in range(-3, 4):
                for dy in range(-3, 4):
                    tx, ty = (x + dx) % n, min(max(y + dy, 0), n - 1)
                    db.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                               (zoom, tx, n - 1 - ty, buf.getvalue()))


def test_tiles_come_from_an_mbtiles_file_without_any_server(tmp_path: Path) -> None:
    result = _result()
    tiles = tmp_path / "area.mbtiles"
    _mbtiles(tiles, result.lat, result.lon, (200, 190, 120))
    style = MapStyle(tile_url=f"http://127.0.0.1:{_closed_port()}/{{z}}/{{x}}/{{y}}.png",
                     mbtiles_path=str(tiles))
    rgb = _decode(render_map(result, style))
    assert tuple(rgb[450, 700]) == (200, 190, 120)


def test_fetched_tiles_are_cached_on_disk(tmp_path: Path,
                                          tile_server: tuple[str, list[str]]) -> None:
    url, agents = tile_server
    style = MapStyle(tile_url=url, tile_timeout_s=2.0, tile_cache_dir=str(tmp_path / "cache"))
    first = render_map(_result(), style)
    fetched = len(agents)
    second = render_map(_result(), style)
    assert fetched > 0
    assert len(agents) == fetched  # the second map came from the disk cache
    assert first == second
    assert list((tmp_path / "cache").rglob("*.tile"))


def test_an_albums_map_numbers_each_photo_and_greys_the_one_placed_apart() -> None:
    east = offset_latlon(LAT, LON, 120.0, 0.0)
    west = offset_latlon(LAT, LON, -120.0, 0.0)
    photos = (
        AlbumPhoto("photo 1", replace(_result(), lat=west[0], lon=west[1]), agrees=True),
        AlbumPhoto("photo 2", replace(_result(), lat=east[0], lon=east[1]), agrees=False),
        AlbumPhoto("photo 3", _result(located=False)),
    )
    album = AlbumResult(Status.LOCATED, LAT, LON, 0.9, 30.0, (), photos, best_photo=0)
    rgb = _decode(render_album_map(album, OFFLINE))
    assert rgb.shape == (OFFLINE.height, OFFLINE.width, 3)
    photo_x, _ = _centroid(rgb, PHOTO)
    apart_x, _ = _centroid(rgb, DISAGREE, tol=8)
    estimate_x, _ = _centroid(rgb, ESTIMATE)
    assert photo_x < estimate_x < apart_x  # west, the answer, east: each where it lies
    nothing = AlbumResult(Status.NO_MATCH, None, None, 0.1, None, (), photos[2:])
    assert _decode(render_album_map(nothing, OFFLINE)).shape[:2] == (OFFLINE.height,
                                                                     OFFLINE.width)
