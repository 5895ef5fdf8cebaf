"""The static map of an answer (the evidence picture is drawn by engine/evidence_picture).

Rendering is blocking (tile downloads, Pillow); async callers run it in a worker thread.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw
from staticmap import StaticMap

from bot.render.tiles import TileSource
from engine.album import AlbumResult
from engine.drawing import INK, png_bytes, typeface
from engine.geo import haversine_m
from engine.results import LocateResult

TILE_PX = 256
MAX_ZOOM = 18
MERCATOR_LAT_LIMIT = 85.05112878
EARTH_CIRCUMFERENCE_M = 40_075_016.686  # the Web-Mercator sphere at the equator
SUPERSAMPLE = 3  # Pillow draws no anti-aliased shapes; draw big and shrink

HEADER_PX = 58
FOOTER_PX = 34
SIDE_PAD_PX = 36
MARKER_PAD_PX = 16

ESTIMATE = (220, 38, 38)
ALTERNATIVE = (234, 138, 0)
TRUTH = (22, 150, 70)
EXIF = (37, 99, 235)
CANDIDATE = (126, 34, 206)
PHOTO = (30, 64, 175)  # an album photo's own answer
DISAGREE = (120, 113, 108)  # ... placed elsewhere than the album
HEAT_RADIUS_PX = 26
MUTED = (95, 99, 104)
PAPER = (236, 234, 228)
GRID = (214, 211, 203)


@dataclass(frozen=True, slots=True)
class MapStyle:
    """Where tiles come from, how we identify ourselves to the tile server, and the picture size."""

    tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    user_agent: str = "GeoSleuth/0.1 (+https://github.com/geosleuth)"
    attribution: str = "© OpenStreetMap contributors"
    width: int = 800
    height: int = 600
    tile_timeout_s: float = 5.0
    tiles_enabled: bool = True
    mbtiles_path: str = ""  # an MBTiles file: tiles from it only (hosts without internet)
    tile_cache_dir: str = ""  # keep fetched tiles here; empty = no disk cache
    tile_cache_days: float = 30.0


# --- Web-Mercator geometry ------------------------------------------------------------------


def latlon_to_px(lat: float, lon: float, zoom: int) -> tuple[float, float]:
    """Global Web-Mercator pixel of a point at `zoom` (the tile grid's pixel space)."""
    world = TILE_PX * 2**zoom
    s = math.sin(math.radians(max(-MERCATOR_LAT_LIMIT, min(MERCATOR_LAT_LIMIT, lat))))
    x = (lon + 180.0) / 360.0 * world
    y = (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * world
    return x, y


def px_to_latlon(x: float, y: float, zoom: int) -> tuple[float, float]:
    world = TILE_PX * 2**zoom
    lon = x / world * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / world))))
    return lat, lon


def metres_per_px(lat: float, zoom: int) -> float:
    return EARTH_CIRCUMFERENCE_M * math.cos(math.radians(lat)) / (TILE_PX * 2**zoom)


@dataclass(frozen=True, slots=True)
class _Viewport:
    """A picture's window onto the global pixel space at one zoom."""

    zoom: int
    left: float
    top: float
    width: int
    height: int

    def to_image(self, lat: float, lon: float) -> tuple[float, float]:
        x, y = latlon_to_px(lat, lon, self.zoom)
        return x - self.left, y - self.top

    def centre_latlon(self) -> tuple[float, float]:
        return px_to_latlon(self.left + self.width / 2, self.top + self.height / 2, self.zoom)

    def metres_per_px(self) -> float:
        return metres_per_px(self.centre_latlon()[0], self.zoom)


@dataclass(frozen=True, slots=True)
class _Mark:
    lat: float
    lon: float
    kind: str  # "estimate" | "alternative" | "truth" | "exif" | "candidate" | "photo" | "apart"
    radius_m: float = 0.0
    label: str = ""
    weight: float = 1.0  # a candidate's share of the heat


def _fit_viewport(marks: Sequence[_Mark], width: int, height: int) -> _Viewport:
    """The highest zoom at which every mark (and the estimate's circle) fits the free area."""
    free_w = width - 2 * SIDE_PAD_PX
    free_h = height - HEADER_PX - FOOTER_PX - 2 * MARKER_PAD_PX
    for zoom in range(MAX_ZOOM, -1, -1):
        xs, ys = [], []
        for m in marks:
            x, y = latlon_to_px(m.lat, m.lon, zoom)
            r = MARKER_PAD_PX
            if m.kind == "estimate":
                r = max(r, m.radius_m / metres_per_px(m.lat, zoom))
            xs += [x - r, x + r]
            ys += [y - r, y + r]
        if zoom == 0 or (max(xs) - min(xs) <= free_w and max(ys) - min(ys) <= free_h):
            break
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    free_cy = HEADER_PX + MARKER_PAD_PX + free_h / 2  # centre the marks in the free area
    return _Viewport(zoom, cx - width / 2, cy - free_cy, width, height)


# --- basemap --------------------------------------------------------------------------------


class _TileMap(StaticMap):  # type: ignore[misc]
    """staticmap drawing tiles from our `TileSource`; its "URLs" are just "z/x/y"."""

    def __init__(self, source: TileSource, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, url_template="{z}/{x}/{y}", **kwargs)
        self._source = source
        self._failed = threading.Event()

    def get(self, url: str, **kwargs: Any) -> tuple[int, bytes]:
        if self._failed.is_set():
            raise ConnectionError("the tile source already failed for this map")
        z, x, y = (int(part) for part in url.split("/"))
        try:
            data = self._source.fetch(z, x, y)
        except Exception:
            self._failed.set()
            raise
        if data is None:
            self._failed.set()
            return 404, b""
        return 200, data


def _basemap(view: _Viewport, style: MapStyle) -> Image.Image | None:
    """Tiles under the viewport, or None when they cannot all be had (offline, blocked, slow)."""
    if not style.tiles_enabled:
        return None
    source = TileSource(style.tile_url, style.user_agent, style.tile_timeout_s,
                        mbtiles_path=style.mbtiles_path, cache_dir=style.tile_cache_dir,
                        cache_days=style.tile_cache_days)
    tiles = _TileMap(source, view.width, view.height)
    lat, lon = view.centre_latlon()
    cx, cy = latlon_to_px(lat, lon, view.zoom)
    n = 2**view.zoom
    try:
        # One probe first: an unreachable server fails here, quietly and after one timeout.
        status, _ = tiles.get(f"{view.zoom}/{int(cx // TILE_PX) % n}/{int(cy // TILE_PX) % n}")
        if status != 200:
            return None
        return tiles.render(zoom=view.zoom, center=[lon, lat]).convert("RGB")
    except Exception:
        return None


def _paper(view: _Viewport) -> Image.Image:
    """The fallback basemap: neutral paper with a labelled lat/lon grid in the same geometry."""
    img = Image.new("RGB", (view.width, view.height), PAPER)
    draw = ImageDraw.Draw(img)
    font = typeface(11)
    top_lat, left_lon = px_to_latlon(view.left, view.top, view.zoom)
    bottom_lat, right_lon = px_to_latlon(view.left + view.width, view.top + view.height, view.zoom)
    labels_y = (HEADER_PX, view.height - FOOTER_PX - 14)  # keep labels clear of the cards

    step = _nice_step((right_lon - left_lon) / 5)
    for lon in _ticks(left_lon, right_lon, step):
        x, _ = view.to_image(top_lat, lon)
        draw.line([(x, 0), (x, view.height)], fill=GRID, width=1)
        label = _degrees(lon, step, "E", "W")
        if x + 8 + draw.textlength(label, font=font) < view.width:
            draw.text((x + 4, HEADER_PX + 4), label, fill=MUTED, font=font)
    step = _nice_step((top_lat - bottom_lat) / 4)
    for lat in _ticks(bottom_lat, top_lat, step):
        _, y = view.to_image(lat, left_lon)
        draw.line([(0, y), (view.width, y)], fill=GRID, width=1)
        if labels_y[0] + 20 < y < labels_y[1]:
            draw.text((6, y - 15), _degrees(lat, step, "N", "S"), fill=MUTED, font=font)
    return img


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    first = math.ceil(lo / step)
    return [k * step for k in range(first, math.floor(hi / step) + 1)]


def _degrees(value: float, step: float, positive: str, negative: str) -> str:
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{abs(value):.{decimals}f}°{positive if value >= 0 else negative}"


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(k * power for k in (1, 2, 5, 10) if k * power >= raw)


# --- drawing --------------------------------------------------------------------------------


def _marks(
    result: LocateResult, truth: tuple[float, float] | None, heat: bool = False
) -> list[_Mark]:
    """What to show, bottom layer first: candidates (heat), alternatives, the photo's own GPS,
    truth, estimate."""
    marks = _candidates(result) if heat else []
    marks += [
        _Mark(a.lat, a.lon, "alternative", a.radius_m, str(i))
        for i, a in enumerate(result.alternatives, start=1)
    ]
    if result.exif_gps is not None:
        marks.append(_Mark(result.exif_gps.lat, result.exif_gps.lon, "exif"))
    if truth is not None:
        marks.append(_Mark(truth[0], truth[1], "truth"))
    if result.lat is not None and result.lon is not None:
        marks.append(_Mark(result.lat, result.lon, "estimate", result.radius_m or 0.0))
    return marks


def _candidates(result: LocateResult) -> list[_Mark]:
    """The verified candidates as heat, weighted by their inliers (similarity if none)."""
    weights = [float(m.inliers or 0) or max(m.similarity, 0.0) for m in result.matches]
    top = max(weights, default=0.0) or 1.0
    return [_Mark(m.lat, m.lon, "candidate", weight=w / top)
            for m, w in zip(result.matches, weights, strict=True)]


def _draw_heat(img: Image.Image, view: _Viewport, marks: Sequence[_Mark]) -> None:
    """Blurred blobs where the top candidates fall: overlapping ones add up."""
    points = [m for m in marks if m.kind == "candidate"]
    if not points:
        return
    field = np.zeros((view.height, view.width), np.float32)
    for m in points:
        x, y = view.to_image(m.lat, m.lon)
        if 0 <= x < view.width and 0 <= y < view.height:
            field[int(y), int(x)] += 0.2 + 0.8 * m.weight
    heat = cv2.GaussianBlur(field, (0, 0), HEAT_RADIUS_PX / 2)
    if heat.max() <= 0:
        return
    alpha = np.clip(heat / heat.max(), 0, 1) * 170
    layer = np.zeros((view.height, view.width, 4), np.uint8)
    layer[..., :3] = CANDIDATE
    layer[..., 3] = alpha.astype(np.uint8)
    overlay = Image.fromarray(layer, "RGBA")
    img.paste(overlay, (0, 0), overlay)


def _draw_marks(img: Image.Image, view: _Viewport, marks: Sequence[_Mark]) -> None:
    _draw_heat(img, view, marks)
    s = SUPERSAMPLE
    layer = Image.new("RGBA", (view.width * s, view.height * s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)

    for m in marks:  # uncertainty circles under every marker
        if m.radius_m <= 0 or m.kind not in ("estimate", "alternative"):
            continue
        x, y = view.to_image(m.lat, m.lon)
        r = m.radius_m / metres_per_px(m.lat, view.zoom)
        colour = ESTIMATE if m.kind == "estimate" else ALTERNATIVE
        fill, outline = (45, 230) if m.kind == "estimate" else (22, 150)
        draw.ellipse(
            _box(x * s, y * s, r * s), fill=(*colour, fill), outline=(*colour, outline), width=2 * s
        )
        if m.kind == "estimate":
            # The estimate's circle is what a reader looks for: give it a white halo on busy tiles.
            draw.ellipse(_box(x * s, y * s, r * s + 2 * s), outline=(255, 255, 255, 150), width=s)

    for m in marks:
        if m.kind == "candidate":
            continue  # drawn as heat
        x, y = (v * s for v in view.to_image(m.lat, m.lon))
        if m.kind == "alternative":
            draw.ellipse(_box(x, y, 11 * s), fill=(255, 255, 255, 255))
            draw.ellipse(_box(x, y, 9 * s), fill=(*ALTERNATIVE, 255))
        elif m.kind == "exif":
            r = 10 * s
            draw.polygon(
                [(x, y - r - 3 * s), (x + r + 3 * s, y), (x, y + r + 3 * s), (x - r - 3 * s, y)],
                fill=(255, 255, 255, 255),
            )
            draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=(*EXIF, 255))
        elif m.kind in ("photo", "apart"):
            draw.ellipse(_box(x, y, 10 * s), fill=(255, 255, 255, 255))
            draw.ellipse(_box(x, y, 8 * s), fill=(*(PHOTO if m.kind == "photo" else DISAGREE),
                                                  255))
        elif m.kind == "truth":
            draw.ellipse(_box(x, y, 11 * s), fill=(255, 255, 255, 255))
            draw.ellipse(_box(x, y, 9 * s), outline=(*TRUTH, 255), width=3 * s)
            draw.ellipse(_box(x, y, 3 * s), fill=(*TRUTH, 255))
        else:
            draw.ellipse(_box(x + s, y + 2 * s, 12 * s), fill=(0, 0, 0, 70))  # drop shadow
            draw.ellipse(_box(x, y, 12 * s), fill=(255, 255, 255, 255))
            draw.ellipse(_box(x, y, 9 * s), fill=(*ESTIMATE, 255))

    layer = layer.resize((view.width, view.height), Image.Resampling.LANCZOS)
    img.paste(layer, (0, 0), layer)
    text = ImageDraw.Draw(img)
    for m in marks:
        if m.kind in ("alternative", "photo", "apart"):
            x, y = view.to_image(m.lat, m.lon)
            text.text((x, y), m.label, fill="white", font=typeface(11, bold=True), anchor="mm")


def _box(x: float, y: float, r: float) -> tuple[float, float, float, float]:
    return (x - r, y - r, x + r, y + r)


def _panel(img: Image.Image, box: tuple[float, float, float, float], alpha: int = 225) -> None:
    """A translucent white card that keeps text legible on any basemap."""
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rounded_rectangle(
        box, radius=6, fill=(255, 255, 255, alpha), outline=(0, 0, 0, 40)
    )
    img.paste(layer, (0, 0), layer)


def _header(img: Image.Image, title: str, subtitle: str, legend: Sequence[tuple[str, str]]) -> None:
    w = img.width
    _panel(img, (8, 8, w - 8, HEADER_PX - 4), alpha=235)
    draw = ImageDraw.Draw(img)
    draw.text((20, 14), title, fill=INK, font=typeface(16, bold=True))
    draw.text((20, 35), subtitle, fill=MUTED, font=typeface(12))
    x = w - 20
    font = typeface(11)
    for kind, label in reversed(legend):  # right-aligned legend, one swatch per kind shown
        x -= draw.textlength(label, font=font)
        draw.text((x, 27), label, fill=INK, font=font, anchor="lm")
        x -= 16
        colour = {"estimate": ESTIMATE, "alternative": ALTERNATIVE, "truth": TRUTH, "exif": EXIF,
                  "candidate": CANDIDATE, "photo": PHOTO, "apart": DISAGREE}[kind]
        if kind == "exif":
            draw.polygon([(x + 6, 21), (x + 12, 27), (x + 6, 33), (x, 27)], fill=colour)
        elif kind == "truth":
            draw.ellipse((x, 21, x + 12, 33), outline=colour, width=3)
        else:
            draw.ellipse((x, 21, x + 12, 33), fill=colour)
        x -= 14


def _scale_bar(img: Image.Image, view: _Viewport) -> None:
    mpp = view.metres_per_px()
    length_m = _nice_step(110 * mpp)
    if length_m / mpp > 130:
        length_m = _nice_step(length_m / 2.5)
    bar_px = length_m / mpp
    label = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    x0, y = 18, img.height - 16
    draw = ImageDraw.Draw(img)
    label_w = draw.textlength(label, font=typeface(11))
    _panel(img, (8, y - 20, x0 + bar_px + label_w + 20, img.height - 6))
    draw = ImageDraw.Draw(img)
    draw.line([(x0, y), (x0 + bar_px, y)], fill=INK, width=3)
    for xt in (x0, x0 + bar_px):
        draw.line([(xt, y - 6), (xt, y + 1)], fill=INK, width=2)
    draw.text((x0 + bar_px + 8, y - 2), label, fill=INK, font=typeface(11), anchor="lm")


def _footer_note(img: Image.Image, text: str) -> None:
    font = typeface(10)
    draw = ImageDraw.Draw(img)
    tw = draw.textlength(text, font=font)
    x1, y1 = img.width - 8, img.height - 6
    _panel(img, (x1 - tw - 14, y1 - 18, x1, y1))
    ImageDraw.Draw(img).text((x1 - 7, y1 - 9), text, fill=MUTED, font=font, anchor="rm")


def _no_match_card(style: MapStyle) -> Image.Image:
    img = Image.new("RGB", (style.width, style.height), PAPER)
    draw = ImageDraw.Draw(img)
    cx, cy = style.width / 2, style.height / 2
    draw.ellipse(_box(cx, cy - 60, 38), outline=MUTED, width=4)
    draw.text((cx, cy - 60), "?", fill=MUTED, font=typeface(44, bold=True), anchor="mm")
    draw.text((cx, cy + 10), "No confident match", fill=INK, font=typeface(24, bold=True),
              anchor="mm")
    draw.text(
        (cx, cy + 44),
        "The photo did not match the reference imagery closely enough.",
        fill=MUTED,
        font=typeface(13),
        anchor="mm",
    )
    draw.text(
        (cx, cy + 66),
        "A wider, sharper street-level photo gives the best chance.",
        fill=MUTED,
        font=typeface(13),
        anchor="mm",
    )
    return img


def _titles(result: LocateResult, truth: tuple[float, float] | None) -> tuple[str, str]:
    if result.lat is None or result.lon is None:
        n = len(result.alternatives)
        if n == 0:
            return "No confident match", "no leads from the reference index"
        best = max(a.confidence for a in result.alternatives)
        leads = f"{n} lead{'s' if n != 1 else ''} · best confidence {best:.0%}"
        return "No confident match — leads only", leads
    parts = [
        f"±{result.radius_m:,.0f} m" if result.radius_m else "",
        f"confidence {result.confidence:.0%}",
    ]
    if truth is not None:
        parts.append(f"{haversine_m(result.lat, result.lon, *truth):,.0f} m from truth")
    if result.exif_gps is not None:
        off = haversine_m(result.lat, result.lon, result.exif_gps.lat, result.exif_gps.lon)
        parts.append(f"{off:,.0f} m from EXIF GPS")
    return f"{result.lat:.5f}, {result.lon:.5f}", " · ".join(p for p in parts if p)


def _legend(marks: Sequence[_Mark]) -> list[tuple[str, str]]:
    names = {
        "estimate": "estimate",
        "alternative": "alternatives",
        "truth": "true position",
        "exif": "EXIF GPS",
        "candidate": "candidates",
        "photo": "each photo",
        "apart": "placed apart",
    }
    kinds = {m.kind for m in marks}
    order = ("estimate", "photo", "apart", "alternative", "candidate", "exif", "truth")
    return [(k, names[k]) for k in order if k in kinds]


def render_map(
    result: LocateResult,
    style: MapStyle,
    *,
    truth: tuple[float, float] | None = None,
    heat: bool = False,
) -> bytes:
    """PNG of the answer on a map: estimate, uncertainty circle, alternatives, EXIF GPS, truth;
    with `heat`, also where the verified candidates fall."""
    marks = _marks(result, truth, heat)
    if not marks:
        return png_bytes(_no_match_card(style))
    view = _fit_viewport(marks, style.width, style.height)
    base = _basemap(view, style)
    img = base if base is not None else _paper(view)
    _draw_marks(img, view, marks)
    _header(img, *_titles(result, truth), _legend(marks))
    _scale_bar(img, view)
    _footer_note(img, style.attribution if base is not None else "basemap unavailable")
    return png_bytes(img)


def render_album_map(album: AlbumResult, style: MapStyle) -> bytes:
    """PNG of an album's answer: its place and circle, each photo's own answer numbered (grey
    where it is placed apart from the album), and a video's track as a line in time order."""
    marks = [_Mark(a.lat, a.lon, "alternative", a.radius_m, str(i))
             for i, a in enumerate(album.alternatives, start=1)]
    marks += [_Mark(p.result.lat, p.result.lon, "photo" if p.agrees is not False else "apart",
                    label=str(i))
              for i, p in enumerate(album.photos, start=1)
              if p.result.located and p.result.lat is not None and p.result.lon is not None]
    if album.lat is not None and album.lon is not None:
        marks.append(_Mark(album.lat, album.lon, "estimate", album.radius_m or 0.0))
    if not marks:
        return png_bytes(_no_match_card(style))
    view = _fit_viewport(marks, style.width, style.height)
    base = _basemap(view, style)
    img = base if base is not None else _paper(view)
    if len(album.track) > 1:
        ImageDraw.Draw(img).line([view.to_image(t.lat, t.lon) for t in album.track],
                                 fill=PHOTO, width=4, joint="curve")
    _draw_marks(img, view, marks)
    _header(img, *_album_titles(album), _legend(marks))
    _scale_bar(img, view)
    _footer_note(img, style.attribution if base is not None else "basemap unavailable")
    return png_bytes(img)


def _album_titles(album: AlbumResult) -> tuple[str, str]:
    count = f"{len(album.photos)} {'frames' if album.track or _timed(album) else 'photos'}"
    if album.lat is None or album.lon is None:
        return "No confident match", f"{count} · no place they agree on"
    agreeing = sum(1 for p in album.photos if p.agrees)
    parts = [f"±{album.radius_m:,.0f} m" if album.radius_m else "",
             f"confidence {album.confidence:.0%}",
             f"track of {len(album.track)} points" if album.track else
             f"{agreeing} of {count} agree"]
    return f"{album.lat:.5f}, {album.lon:.5f}", " · ".join(p for p in parts if p)


def _timed(album: AlbumResult) -> bool:
    return any(p.time_s is not None for p in album.photos)


def render_coverage_map(cells: Sequence[dict[str, Any]], style: MapStyle, title: str,
                        subtitle: str) -> bytes:
    """PNG of where the index has references: each grid cell a rectangle, the darker the more
    references it holds (the engine's `coverage` cells: west, south, east, north, references)."""
    if not cells:
        return png_bytes(_empty_card(style, "No references yet",
                                     "The index holds no reference photos: /cover an area."))
    corners = [_Mark(lat, lon, "candidate") for c in cells
               for lat, lon in ((c["south"], c["west"]), (c["north"], c["east"]))]
    view = _fit_viewport(corners, style.width, style.height)
    base = _basemap(view, style)
    img = (base if base is not None else _paper(view)).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    most = max(math.log1p(c["references"]) for c in cells)
    for cell in cells:
        x0, y0 = view.to_image(cell["north"], cell["west"])
        x1, y1 = view.to_image(cell["south"], cell["east"])
        # Never under 3 px: a 1 km cell seen from a continent still shows.
        x1, y1 = max(x1, x0 + 3), max(y1, y0 + 3)
        share = math.log1p(cell["references"]) / most if most else 1.0
        draw.rectangle((x0, y0, x1, y1), fill=(*ESTIMATE, int(70 + 130 * share)),
                       outline=(*ESTIMATE, 230))
    img = Image.alpha_composite(img, layer).convert("RGB")
    _header(img, title, subtitle, [])
    _scale_bar(img, view)
    _footer_note(img, style.attribution if base is not None else "basemap unavailable")
    return png_bytes(img)


def _empty_card(style: MapStyle, title: str, line: str) -> Image.Image:
    img = Image.new("RGB", (style.width, style.height), PAPER)
    draw = ImageDraw.Draw(img)
    cx, cy = style.width / 2, style.height / 2
    draw.text((cx, cy - 12), title, fill=INK, font=typeface(24, bold=True), anchor="mm")
    draw.text((cx, cy + 22), line, fill=MUTED, font=typeface(13), anchor="mm")
    return img
