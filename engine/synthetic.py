"""A procedural street of geotagged views, so the demo and tests need no data and no network.

World frame: x along the street (metres), y to the left of the walking direction, z up.
A row of facades stands in the plane y = FACADE_Y_M; the camera walks along y = 0 looking
obliquely left at it, and every view is the facade (and pavement) mapped by a homography.
The textures of the whole street are held in memory: about 0.2 MB per metre of street.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine.geo import offset_latlon

PX_PER_M = 40.0
FACADE_Y_M = 11.0
FACADE_TOP_M = 24.0
KERB_Y_M = 7.5
VIEW_W, VIEW_H = 800, 600
HFOV_DEG = 60.0
YAW_DEG = 42.0  # between the street axis and the optical axis, as street-level photos look
PITCH_DEG = 6.0
CAMERA_Z_M = 1.6
MARGIN_BEHIND_M = 6.0
MARGIN_AHEAD_M = 70.0  # beyond the farthest facade point a view can see (~52 m)

WALL_COLOURS = (
    (214, 190, 150),
    (226, 214, 188),
    (176, 92, 70),
    (160, 164, 170),
    (205, 170, 120),
    (190, 205, 215),
    (230, 225, 210),
    (150, 120, 95),
    (200, 140, 110),
    (215, 200, 120),
    (175, 190, 160),
    (235, 205, 190),
    (120, 110, 105),
)
FRAME_COLOURS = (
    (245, 245, 240),
    (235, 228, 205),
    (70, 50, 35),
    (40, 60, 45),
    (30, 30, 32),
    (120, 40, 35),
)


@dataclass(frozen=True, slots=True, eq=False)
class SyntheticView:
    """One street-level photo of the synthetic street and where it was taken."""

    name: str
    rgb: np.ndarray
    lat: float
    lon: float
    heading_deg: float


def make_street(
    seed: int,
    n_views: int = 24,
    spacing_m: float = 8.0,
    origin: tuple[float, float] = (52.5200, 13.4050),
) -> list[SyntheticView]:
    """Views every `spacing_m` along one street; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    bearing_deg = float(rng.uniform(0.0, 360.0))
    length_m = (n_views - 1) * spacing_m
    x0_m = -MARGIN_BEHIND_M
    facade = _facade_strip(rng, length_m + MARGIN_BEHIND_M + MARGIN_AHEAD_M)
    ground = _ground_strip(rng, facade.shape[1])
    sky_top = np.array([120, 160, 215], np.float32) + rng.uniform(-12, 12, 3).astype(np.float32)

    b = math.radians(bearing_deg)
    views = []
    for i in range(n_views):
        vrng = np.random.default_rng((seed, i))
        along_m = i * spacing_m
        # Hand-held: the aim wanders a few degrees from shot to shot.
        yaw = YAW_DEG + float(vrng.uniform(-4.0, 4.0))
        rot = _rotation(
            yaw, PITCH_DEG + float(vrng.uniform(-4.0, 4.0)), float(vrng.uniform(-2.5, 2.5))
        )
        centre = np.array([along_m, 0.0, CAMERA_Z_M + float(vrng.uniform(-0.1, 0.1))])
        rgb = _render_view(facade, ground, x0_m, rot, centre, sky_top, vrng)
        east, north = along_m * math.sin(b), along_m * math.cos(b)
        lat, lon = offset_latlon(origin[0], origin[1], east, north)
        views.append(
            SyntheticView(
                name=f"synthetic-{seed}-{i:03d}",
                rgb=rgb,
                lat=lat,
                lon=lon,
                heading_deg=(bearing_deg - yaw) % 360.0,  # the facade is on the left
            )
        )
    return views


# --- camera and rendering -------------------------------------------------------------------


def _intrinsics() -> np.ndarray:
    f = (VIEW_W / 2) / math.tan(math.radians(HFOV_DEG / 2))
    return np.array([[f, 0, VIEW_W / 2], [0, f, VIEW_H / 2], [0, 0, 1]])


def _rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """World → camera (OpenCV axes: x right, y down, z forward); yaw turns left from the street."""
    a, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    forward = np.array([math.cos(a), math.sin(a), 0.0])
    right = np.array([math.sin(a), -math.cos(a), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    fwd = math.cos(p) * forward + math.sin(p) * up
    down = -(math.cos(p) * up - math.sin(p) * forward)
    right, down = (
        math.cos(r) * right + math.sin(r) * down,
        -math.sin(r) * right + math.cos(r) * down,
    )
    return np.stack([right, down, fwd])


def _render_view(
    facade: np.ndarray,
    ground: np.ndarray,
    x0_m: float,
    rot: np.ndarray,
    centre: np.ndarray,
    sky_top: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    k = _intrinsics()
    # Only the stretch of texture a view can see is warped (warpPerspective needs < 32k px).
    u0 = max(0, int((centre[0] - MARGIN_BEHIND_M - x0_m) * PX_PER_M))
    u1 = min(facade.shape[1], int((centre[0] + MARGIN_AHEAD_M - x0_m) * PX_PER_M))
    xs_m = x0_m + u0 / PX_PER_M
    tex_to_facade = np.array([[1 / PX_PER_M, 0, xs_m], [0, -1 / PX_PER_M, FACADE_TOP_M], [0, 0, 1]])
    facade_h = k @ np.column_stack(
        [rot[:, 0], rot[:, 2], rot @ (np.array([0, FACADE_Y_M, 0]) - centre)]
    )
    tex_to_ground = np.array([[1 / PX_PER_M, 0, xs_m], [0, 1 / PX_PER_M, 0], [0, 0, 1]])
    ground_h = k @ np.column_stack([rot[:, 0], rot[:, 1], -rot @ centre])

    size = (VIEW_W, VIEW_H)
    wall = cv2.warpPerspective(
        np.ascontiguousarray(facade[:, u0:u1]),
        facade_h @ tex_to_facade,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    road = cv2.warpPerspective(
        np.ascontiguousarray(ground[:, u0:u1]),
        ground_h @ tex_to_ground,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )

    below, sky_t, haze = _ray_maps(k, rot, centre)
    horizon = np.array([215, 222, 228], np.float32)
    img = horizon + sky_t[..., None] * (sky_top - horizon)
    img = np.where(below[..., None], road.astype(np.float32), img)
    alpha = wall[..., 3:4].astype(np.float32) * np.float32(1 / 255)
    img += alpha * (wall[..., :3].astype(np.float32) - img)
    # Aerial haze: the far facade fades toward the horizon colour.
    img += (haze[..., None] * alpha) * (horizon - img)
    return _photometric(img, rng)


def _ray_maps(
    k: np.ndarray, rot: np.ndarray, centre: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each pixel looks: below the horizon, how high in the sky, how far to the facade.

    The fields are smooth, so they are computed on a coarse grid and interpolated.
    """
    step = 8  # divides VIEW_W and VIEW_H; coarse samples sit where cv2.resize expects them
    ys, xs = (
        np.mgrid[0 : VIEW_H // step, 0 : VIEW_W // step].astype(np.float64) * step + (step - 1) / 2
    )
    rays = np.einsum("ij,jhw->ihw", rot.T @ np.linalg.inv(k), np.stack([xs, ys, np.ones_like(xs)]))
    rays /= np.linalg.norm(rays, axis=0)
    sky_t = np.clip(rays[2] / 0.6, 0, 1)
    dist_m = (FACADE_Y_M - centre[1]) / np.maximum(rays[1], 1e-3)
    haze = 1 - np.exp(-dist_m / 260.0)
    maps = [
        cv2.resize(m.astype(np.float32), (VIEW_W, VIEW_H), interpolation=cv2.INTER_LINEAR)
        for m in (rays[2], sky_t, haze)
    ]
    return maps[0] < 0, maps[1], maps[2]


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild exposure, white-balance, vignetting and sensor noise, different for every view."""
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.96, 1.04, 3)
    img = img * gain.astype(np.float32) + np.float32(rng.uniform(-8, 8))
    img *= _vignette()
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(2.5)
    sigma = float(rng.uniform(0.0, 0.7))
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return np.clip(img, 0, 255).astype(np.uint8)


@functools.cache
def _vignette() -> np.ndarray:
    ys, xs = np.ogrid[0:VIEW_H, 0:VIEW_W]
    r2 = ((xs - VIEW_W / 2) / VIEW_W) ** 2 + ((ys - VIEW_H / 2) / VIEW_H) ** 2
    return (1 - 0.35 * r2).astype(np.float32)[..., None]


# --- textures -------------------------------------------------------------------------------


def _m(metres: float) -> int:
    return round(metres * PX_PER_M)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell_px: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: weathering that makes every wall unique."""
    small = rng.normal(0, 1, (h // cell_px + 2, w // cell_px + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _facade_strip(rng: np.random.Generator, length_m: float) -> np.ndarray:
    """RGBA texture of the whole row of buildings; alpha is 0 above the rooflines."""
    h, w = _m(FACADE_TOP_M), _m(length_m)
    strip = np.zeros((h, w, 4), np.uint8)
    u = 0
    while u < w:
        house = _building(rng, _m(float(rng.uniform(9.0, 17.0))), h)
        bw = min(house.shape[1], w - u)  # the street ends part-way through the last house
        strip[:, u : u + bw] = house[:, :bw]
        u += bw
    return strip


def _building(rng: np.random.Generator, w: int, tex_h: int) -> np.ndarray:
    """One house front, RGBA, `tex_h` tall with the house standing on the bottom row."""
    ground_floor = _m(float(rng.uniform(3.5, 5.2)))
    floor_h = _m(float(rng.uniform(2.7, 3.9)))
    n_upper = int(rng.integers(2, 6))
    attic = _m(float(rng.uniform(0.5, 1.4)))
    bh = min(tex_h, ground_floor + n_upper * floor_h + attic)

    base = np.array(WALL_COLOURS[rng.integers(len(WALL_COLOURS))], np.float32)
    base += rng.uniform(-15, 15, 3).astype(np.float32)
    wall = np.empty((bh, w, 3), np.float32)
    wall[:] = base
    wall += _smooth_noise(rng, bh, w, 48)[..., None] * 9
    wall += _smooth_noise(rng, bh, w, 6)[..., None] * 4
    if rng.random() < 0.35:
        _bricks(rng, wall)
    wall += rng.normal(0, 3.0, (bh, w, 1)).astype(np.float32)

    shade = np.linspace(0.88, 1.0, bh, dtype=np.float32)[::-1]  # darker toward the street
    wall *= shade[:, None, None]

    style = _WindowStyle.draw(rng)
    cols = _window_columns(rng, w)
    bottom = bh
    _ground_floor(rng, wall, bottom - ground_floor, bottom, style, cols)
    for f in range(n_upper):
        top = bottom - ground_floor - (f + 1) * floor_h
        _cornice(wall, top + floor_h, base, rng, thick=_m(0.12))
        for cx in cols:
            if rng.random() < 0.06:  # a bricked-up or missing window breaks the grid
                continue
            _window(rng, wall, cx, top + _m(0.6), style, floor_h)
    _cornice(wall, attic, base, rng, thick=_m(0.3))
    _dirt(rng, wall, ground_floor)
    if rng.random() < 0.7:
        px = int(rng.choice([_m(0.25), w - _m(0.25)]))
        cv2.line(wall, (px, 0), (px, bh - 1), (95, 95, 100), _m(0.09))
        for y in range(_m(1.0), bh, _m(2.0)):
            cv2.line(wall, (px - 5, y), (px + 5, y), (70, 70, 75), 3)
    wall[:, :3] *= 0.7  # shadowed joint between neighbouring buildings

    out = np.zeros((tex_h, w, 4), np.uint8)
    out[tex_h - bh :, :, :3] = np.clip(wall, 0, 255).astype(np.uint8)
    out[tex_h - bh :, :, 3] = 255
    # Above the roof the texture is transparent; its colour matters only where the roofline is
    # interpolated, so repeat the top row there instead of leaving a black fringe.
    out[: tex_h - bh, :, :3] = out[tex_h - bh, :, :3]
    return out


def _bricks(rng: np.random.Generator, wall: np.ndarray) -> None:
    bh, w = wall.shape[:2]
    bx, by = _m(0.3), _m(0.1)
    rows, ncols = bh // by + 1, w // bx + 2
    tone = rng.normal(0, 14, (rows, ncols, 1)).astype(np.float32)
    for r in range(rows):
        offs = (bx // 2) * (r % 2)
        band = np.repeat(tone[r], bx, axis=0)[offs : offs + w]
        wall[r * by : (r + 1) * by] += band[None, :w]
    wall[::by] = wall[::by] * 0.55 + 200 * 0.45  # mortar
    for r in range(rows):
        offs = (bx // 2) * (r % 2)
        wall[r * by : (r + 1) * by, offs::bx] = wall[r * by : (r + 1) * by, offs::bx] * 0.55 + 90


@dataclass(frozen=True, slots=True)
class _WindowStyle:
    """What the windows of one building share, so a building looks designed, not random."""

    width: int
    height: int
    frame: tuple[int, int, int]
    frame_px: int
    arched: bool
    panes: int
    shutters: tuple[int, ...] | None
    pediment: bool

    @staticmethod
    def draw(rng: np.random.Generator) -> _WindowStyle:
        frame = FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))]
        shutter = tuple(int(c) for c in rng.integers(30, 160, 3)) if rng.random() < 0.3 else None
        return _WindowStyle(
            width=_m(float(rng.uniform(0.9, 1.35))),
            height=_m(float(rng.uniform(1.4, 1.9))),
            frame=frame,
            frame_px=int(rng.integers(3, 7)),
            arched=bool(rng.random() < 0.3),
            panes=int(rng.choice([1, 2, 4, 6])),
            shutters=shutter,
            pediment=bool(rng.random() < 0.3),
        )


def _window_columns(rng: np.random.Generator, w: int) -> list[int]:
    spacing = _m(float(rng.uniform(2.3, 3.2)))
    n = max(1, (w - _m(1.2)) // spacing)
    start = (w - (n - 1) * spacing) // 2
    return [start + i * spacing for i in range(n)]


def _glass(rng: np.random.Generator, wall: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """A pane with a reflection and something behind it: curtains, blinds, a lamp, a plant."""
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(wall.shape[1], x1), min(wall.shape[0], y1)
    h, w = y1 - y0, x1 - x0
    if h <= 2 or w <= 2:
        return
    # Glass mirrors the sky and the street opposite, so it is rarely black: lighter panes keep
    # frame corners from being the strongest (and most generic) features of a facade.
    tint = np.array([60, 75, 92], np.float32) * np.float32(rng.uniform(0.7, 1.9))
    grad = np.linspace(1.25, 0.75, h, dtype=np.float32)[:, None, None]
    pane = np.broadcast_to(tint, (h, w, 3)) * grad
    pane = np.ascontiguousarray(pane)
    k = rng.uniform(0.3, 1.2)
    t = rng.uniform(-0.5, 1.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    band = np.abs((xx / w) * k + (yy / h) - t * 1.5) < rng.uniform(0.05, 0.2)
    pane[band] += 45
    inside = rng.random()
    colour = tuple(float(c) for c in rng.integers(60, 240, 3))
    if inside < 0.35:  # curtains from one or both sides, with folds
        cw = int(w * rng.uniform(0.2, 0.45))
        for side in (0, 1) if rng.random() < 0.6 else (int(rng.integers(2)),):
            xa = 0 if side == 0 else w - cw
            cv2.rectangle(pane, (xa, 0), (xa + cw, h), colour, -1)
            for fx in range(xa + 3, xa + cw, 6):
                cv2.line(pane, (fx, 0), (fx, h), tuple(c * 0.9 for c in colour), 1)
    elif inside < 0.6:  # blinds partly down
        bh = int(h * rng.uniform(0.2, 0.8))
        cv2.rectangle(pane, (0, 0), (w, bh), colour, -1)
        for by in range(3, bh, 4):
            cv2.line(pane, (0, by), (w, by), tuple(c * 0.87 for c in colour), 1)
    elif inside < 0.7:  # a lit lamp
        cv2.circle(pane, (int(rng.integers(w)), int(h * 0.3)), max(2, w // 8), (250, 230, 170), -1)
    elif inside < 0.8:  # a plant on the sill
        for _ in range(6):
            c = (int(rng.integers(w)), h - int(rng.integers(2, max(3, h // 3))))
            cv2.circle(pane, c, int(rng.integers(3, 7)), (40, 110 + int(rng.integers(60)), 40), -1)
    wall[y0:y1, x0:x1] = pane


def _window(
    rng: np.random.Generator, wall: np.ndarray, cx: int, top: int, s: _WindowStyle, floor_h: int
) -> None:
    h = min(s.height, floor_h - _m(0.9))
    x0, x1, y0, y1 = cx - s.width // 2, cx + s.width // 2, top, top + h
    fp = s.frame_px
    if s.pediment:
        pts = np.array([[x0 - 10, y0 - 6], [cx, y0 - 30], [x1 + 10, y0 - 6]], np.int32)
        cv2.fillPoly(wall, [pts], tuple(float(c) * 0.9 for c in s.frame))
        cv2.polylines(wall, [pts], True, (60, 60, 60), 1)
    else:
        cv2.rectangle(wall, (x0 - 8, y0 - 12), (x1 + 8, y0 - 3), s.frame, -1)
    if s.shutters is not None:
        open_ = rng.random() < 0.75
        for sx0, sx1 in ((x0 - s.width // 2, x0), (x1, x1 + s.width // 2)) if open_ else ():
            cv2.rectangle(wall, (sx0, y0), (sx1, y1), s.shutters, -1)
            for sy in range(y0 + 3, y1, 6):
                cv2.line(wall, (sx0, sy), (sx1, sy), tuple(c * 0.85 for c in s.shutters), 1)
    cv2.rectangle(wall, (x0, y0), (x1, y1), s.frame, -1)
    _glass(rng, wall, x0 + fp, y0 + fp, x1 - fp, y1 - fp)
    if s.arched:
        cv2.ellipse(wall, (cx, y0), (s.width // 2, s.width // 3), 0, 180, 360, s.frame, -1)
        cv2.ellipse(
            wall, (cx, y0), (s.width // 2 - fp, s.width // 3 - fp), 0, 180, 360, (55, 65, 80), -1
        )
    if s.panes >= 2:
        cv2.line(wall, (cx, y0), (cx, y1), s.frame, max(2, fp // 2))
    if s.panes >= 4:
        cv2.line(wall, (x0, (y0 + y1) // 2), (x1, (y0 + y1) // 2), s.frame, max(2, fp // 2))
    if s.panes >= 6:
        cv2.line(wall, (x0, y0 + h // 3), (x1, y0 + h // 3), s.frame, max(2, fp // 2))
    cv2.rectangle(wall, (x0 - 6, y1), (x1 + 6, y1 + 6), (215, 210, 200), -1)  # sill
    cv2.line(wall, (x0 - 6, y1 + 7), (x1 + 6, y1 + 7), (60, 55, 50), 2)
    if rng.random() < 0.15:  # a flower box or an air-conditioner under some windows
        colour = (200, 200, 205) if rng.random() < 0.5 else (120, 70, 40)
        cv2.rectangle(wall, (x0, y1 + 8), (x0 + s.width // 2, y1 + 28), colour, -1)


def _cornice(
    wall: np.ndarray, y: int, base: np.ndarray, rng: np.random.Generator, thick: int
) -> None:
    light = tuple(float(min(255, c * 1.12 + 10)) for c in base)
    cv2.rectangle(wall, (0, y - thick), (wall.shape[1], y), light, -1)
    cv2.line(wall, (0, y + 1), (wall.shape[1], y + 1), (70, 65, 60), 2)
    if thick > _m(0.2) and rng.random() < 0.6:  # dentils under the main cornice
        step = int(rng.integers(14, 26))
        for x in range(4, wall.shape[1], step):
            cv2.rectangle(wall, (x, y - thick // 2), (x + step // 2, y), (120, 115, 105), -1)


def _ink(wall: np.ndarray, mask: np.ndarray, x: int, y: int, colour: tuple[float, ...]) -> None:
    """Blend an 8-bit coverage mask onto the float image at (x, y), clipped to the image."""
    h, w = mask.shape
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(wall.shape[1], x + w), min(wall.shape[0], y + h)
    if x1 <= x0 or y1 <= y0:
        return
    a = mask[y0 - y : y1 - y, x0 - x : x1 - x, None].astype(np.float32) * np.float32(1 / 255)
    region = wall[y0:y1, x0:x1]
    region += a * (np.array(colour, np.float32) - region)


def _house_number(rng: np.random.Generator, wall: np.ndarray, x: int, y: int) -> None:
    mask = np.zeros((22, 30), np.uint8)
    cv2.putText(
        mask,
        str(int(rng.integers(1, 140))),
        (2, 17),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        255,
        1,
        cv2.LINE_AA,
    )
    cv2.rectangle(wall, (x, y), (x + 30, y + 22), (30, 60, 140), -1)
    _ink(wall, mask, x, y, (250, 250, 250))


def _lettering(rng: np.random.Generator, glyph_h: int, n_glyphs: int, thickness: int) -> np.ndarray:
    """A word in a script invented for this sign: shared fonts would match signs far apart."""
    anchors = [(gx / 2, gy / 2) for gx in range(3) for gy in range(3)]
    alphabet = []
    for _ in range(8):
        strokes = []
        for _ in range(int(rng.integers(2, 5))):
            i, j = rng.choice(len(anchors), 2, replace=False)
            strokes.append((anchors[i], anchors[j], bool(rng.random() < 0.3)))
        alphabet.append(strokes)
    cell_w, gap = int(glyph_h * rng.uniform(0.45, 0.7)), max(3, glyph_h // 6)
    pad = thickness + 2
    mask = np.zeros((glyph_h + 2 * pad, n_glyphs * (cell_w + gap) + 2 * pad), np.uint8)
    for k in range(n_glyphs):
        if rng.random() < 0.12:  # a space between words
            continue
        ox = pad + k * (cell_w + gap)
        for (ax, ay), (bx, by), curved in alphabet[int(rng.integers(len(alphabet)))]:
            p = (ox + int(ax * cell_w), pad + int(ay * glyph_h))
            q = (ox + int(bx * cell_w), pad + int(by * glyph_h))
            if curved:
                centre = ((p[0] + q[0]) // 2, (p[1] + q[1]) // 2)
                axes = (max(2, abs(q[0] - p[0]) // 2), max(2, abs(q[1] - p[1]) // 2))
                cv2.ellipse(
                    mask,
                    centre,
                    axes,
                    0,
                    0,
                    int(rng.choice([180, 270, 360])),
                    255,
                    thickness,
                    cv2.LINE_AA,
                )
            else:
                cv2.line(mask, p, q, 255, thickness, cv2.LINE_AA)
    return mask


def _ground_floor(
    rng: np.random.Generator,
    wall: np.ndarray,
    top: int,
    bottom: int,
    style: _WindowStyle,
    cols: list[int],
) -> None:
    w = wall.shape[1]
    plinth = tuple(float(c) for c in rng.uniform(60, 150) * rng.uniform(0.9, 1.1, 3))
    cv2.rectangle(wall, (0, bottom - _m(float(rng.uniform(0.3, 0.9)))), (w, bottom), plinth, -1)
    door_col = cols[int(rng.integers(len(cols)))]
    if rng.random() < 0.65:
        # A shop: sign band with its name, wide display windows, a glass door.
        sign = tuple(float(c) for c in rng.integers(20, 235, 3))
        ink = (250, 250, 245) if sum(sign) < 380 else (25, 25, 30)
        sy0, sy1 = top + _m(0.25), top + _m(0.95)
        cv2.rectangle(wall, (_m(0.4), sy0), (w - _m(0.4), sy1), sign, -1)
        glyph_h = int((sy1 - sy0) * rng.uniform(0.45, 0.7))
        room = w - _m(2.2)
        n = int(min(rng.integers(5, 16), max(1, room // glyph_h)))
        text = _lettering(rng, glyph_h, n, int(rng.integers(2, 5)))[:, :room]
        tx = int(rng.uniform(_m(0.6), max(_m(0.7), w - text.shape[1] - _m(1.6))))
        _ink(wall, text, tx, (sy0 + sy1 - text.shape[0]) // 2, ink)
        logo = _lettering(rng, sy1 - sy0 - 10, 1, int(rng.integers(3, 7)))
        _ink(
            wall,
            logo,
            w - _m(0.5) - logo.shape[1],
            sy0 + 5 - (logo.shape[0] - (sy1 - sy0 - 10)) // 2,
            ink,
        )
        frame = tuple(float(c) for c in rng.integers(20, 120, 3))
        gy0, gy1 = sy1 + _m(0.3), bottom - _m(0.55)
        edges = [_m(0.5), *[c - _m(0.55) for c in cols[1:]], w - _m(0.5)]
        for xa, xb in itertools.pairwise(edges):
            if xb - xa < _m(0.8):
                continue
            cv2.rectangle(wall, (xa, gy0), (xb - _m(0.15), gy1), frame, -1)
            _glass(rng, wall, xa + 6, gy0 + 6, xb - _m(0.15) - 6, gy1 - 6)
            for _ in range(int(rng.integers(3, 9))):  # goods on display
                gx, gw = int(rng.integers(xa + 8, max(xa + 9, xb - 40))), int(rng.integers(8, 30))
                gh = int(rng.integers(8, 40))
                cv2.rectangle(
                    wall,
                    (gx, gy1 - 8 - gh),
                    (gx + gw, gy1 - 8),
                    tuple(float(c) for c in rng.integers(30, 250, 3)),
                    -1,
                )
        dx = door_col
        cv2.rectangle(wall, (dx - _m(0.5), gy0), (dx + _m(0.5), bottom), frame, -1)
        _glass(rng, wall, dx - _m(0.4), gy0 + 8, dx + _m(0.4), bottom - 8)
        if rng.random() < 0.4:  # a striped awning
            stripe = tuple(float(c) for c in rng.integers(40, 230, 3))
            ay0, ay1 = sy1 + 2, sy1 + _m(0.55)
            for i, x in enumerate(range(_m(0.5), w - _m(0.5), _m(0.3))):
                c = stripe if i % 2 else (240, 240, 235)
                cv2.rectangle(wall, (x, ay0), (x + _m(0.3), ay1), c, -1)
    else:
        # A house entrance: panelled wooden door under an arch, small windows, a number plate.
        dx, dw = door_col, _m(float(rng.uniform(0.7, 0.9)))
        dy0 = top + _m(0.9)
        wood = tuple(float(c) for c in rng.integers(40, 140, 3))
        cv2.ellipse(wall, (dx, dy0), (dw + 10, dw // 2 + 10), 0, 180, 360, (200, 195, 185), -1)
        cv2.rectangle(wall, (dx - dw - 10, dy0), (dx + dw + 10, bottom), (200, 195, 185), -1)
        cv2.rectangle(wall, (dx - dw, dy0), (dx + dw, bottom), wood, -1)
        _glass(rng, wall, dx - dw + 4, dy0 - dw // 2 + 14, dx + dw - 4, dy0)
        for px in (dx - dw + 8, dx + 6):
            for py in (dy0 + 12, (dy0 + bottom) // 2 + 4):
                cv2.rectangle(
                    wall,
                    (px, py),
                    (px + dw - 14, py + (bottom - dy0) // 2 - 24),
                    tuple(c * 0.75 for c in wood),
                    2,
                )
        _house_number(rng, wall, dx + dw + 16, dy0)
        for cx in cols:
            if abs(cx - dx) > dw + 60:
                _window(rng, wall, cx, top + _m(1.1), style, _m(3.2))


def _dirt(rng: np.random.Generator, wall: np.ndarray, ground_floor: int) -> None:
    """Stains, streaks and graffiti: the accidents that make a real facade recognisable."""
    bh, w = wall.shape[:2]
    stains = np.zeros((bh, w), np.float32)
    for _ in range(int(rng.integers(4, 12))):
        c = (int(rng.integers(w)), int(rng.integers(bh)))
        axes = (int(rng.integers(10, 80)), int(rng.integers(10, 120)))
        cv2.ellipse(
            stains, c, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.1, 0.3)), -1
        )
    for _ in range(int(rng.integers(3, 10))):  # streaks running down from ledges
        x, y = int(rng.integers(w)), int(rng.integers(bh // 2))
        cv2.line(
            stains,
            (x, y),
            (x + int(rng.integers(-4, 5)), y + int(rng.integers(40, 200))),
            float(rng.uniform(0.1, 0.25)),
            int(rng.integers(2, 8)),
        )
    stains = cv2.GaussianBlur(stains, (0, 0), 4)
    wall *= (1 - stains)[..., None]
    if rng.random() < 0.6:  # graffiti on the ground floor
        colour = tuple(float(c) for c in rng.integers(0, 255, 3))
        for _ in range(int(rng.integers(1, 4))):
            x = int(rng.integers(w))
            pts = np.cumsum(rng.integers(-14, 15, (int(rng.integers(6, 16)), 2)), axis=0)
            pts += np.array([x, bh - int(rng.integers(15, max(16, ground_floor // 2)))])
            cv2.polylines(
                wall, [pts.astype(np.int32)], False, colour, int(rng.integers(2, 6)), cv2.LINE_AA
            )
    for _ in range(int(rng.integers(0, 4))):  # posters and stickers
        x, y = int(rng.integers(w - 40)), bh - int(rng.integers(40, ground_floor))
        pw, ph = int(rng.integers(16, 40)), int(rng.integers(20, 56))
        cv2.rectangle(
            wall, (x, y), (x + pw, y + ph), tuple(float(c) for c in rng.integers(0, 255, 3)), -1
        )
        for ly in range(y + 5, y + ph - 3, 6):
            cv2.line(
                wall, (x + 3, ly), (x + pw - int(rng.integers(3, pw // 2 + 4)), ly), (20, 20, 20), 1
            )


def _ground_strip(rng: np.random.Generator, w: int) -> np.ndarray:
    """RGB pavement texture: rows are metres from the camera's line (y), columns along x.

    Slabs and kerb stones have random lengths: a regular grid would repeat every few metres
    and match views far apart along the street.
    """
    h, kerb = _m(FACADE_Y_M), _m(KERB_Y_M)
    g = np.empty((h, w, 3), np.float32)
    g[:] = (92, 94, 98)
    g += _smooth_noise(rng, h, w, 40)[..., None] * 7
    g += rng.normal(0, 3, (h, w, 1)).astype(np.float32)
    for _ in range(w // _m(10)):  # asphalt repairs and manholes
        x, y = int(rng.integers(w)), int(rng.integers(kerb - 20))
        if rng.random() < 0.6:
            size = (int(rng.integers(30, 160)), int(rng.integers(20, 90)))
            cv2.rectangle(
                g, (x, y), (x + size[0], y + size[1]), (float(rng.uniform(65, 85)),) * 3, -1
            )
        else:
            cv2.circle(g, (x, y), _m(0.35), (58, 58, 60), -1)
            cv2.circle(g, (x, y), _m(0.35), (115, 115, 115), 2)

    side = g[kerb:]
    side[:] = side * 0.4 + np.float32(140) * 0.6
    y = _m(0.25)
    while y < h - kerb:
        row_h = _m(float(rng.uniform(0.35, 0.7)))
        x = -int(rng.integers(_m(0.8)))
        while x < w:
            length = _m(float(rng.uniform(0.35, 0.9)))
            tone = float(rng.normal(0, 3))
            side[y : y + row_h, max(0, x) : x + length] += tone
            side[y : y + row_h, max(0, x) : x + 1] *= 0.96
            x += length
        side[y : y + 1] *= 0.96
        y += row_h
    x = 0
    while x < w:  # kerb stones
        length = _m(float(rng.uniform(0.8, 1.6)))
        tone = float(rng.uniform(140, 160))
        cv2.rectangle(side, (x, 0), (x + length - 2, _m(0.25)), (tone, tone, tone - 4), -1)
        x += length
    spots = np.zeros((h, w), np.float32)
    for _ in range(w // _m(0.6)):  # gum, leaves, wet patches: what makes pavement unique
        c = (int(rng.integers(w)), int(rng.integers(kerb - _m(1.0), h)))
        r = int(rng.integers(2, 14))
        cv2.circle(spots, c, r, float(rng.uniform(-0.25, 0.2)), -1)
    g *= 1 + cv2.GaussianBlur(spots, (0, 0), 1.5)[..., None]
    return np.clip(g, 0, 255).astype(np.uint8)
