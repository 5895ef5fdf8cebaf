"""The evidence picture: the query beside the matched reference, inlier correspondences drawn.

Both the bots (in-process) and `geosleuth serve` (`GET /v1/evidence/{id}`) draw it from a
result's correspondences, so an answer looks the same whichever way it came.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from engine.config import DecodeConfig
from engine.decode import decode_image
from engine.drawing import INK, png_bytes, typeface
from engine.results import LocateResult

EVIDENCE_MAX_W = 1600
EVIDENCE_MAX_H = 720
EVIDENCE_GAP = 12
MAX_LINES = 150


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def render_evidence(
    query_rgb: np.ndarray,
    reference_rgb: np.ndarray,
    query_points: np.ndarray | Sequence[Sequence[float]],
    reference_points: np.ndarray | Sequence[Sequence[float]],
    caption: str,
) -> bytes:
    """PNG of the query beside the matched reference, inlier correspondences drawn across."""
    q, r = _as_rgb(query_rgb), _as_rgb(reference_rgb)
    qp = np.asarray(query_points, np.float64).reshape(-1, 2)
    rp = np.asarray(reference_points, np.float64).reshape(-1, 2)
    if len(qp) != len(rp):
        raise ValueError(
            f"{len(qp)} query points but {len(rp)} reference points: they must pair up"
        )

    h = min(max(q.shape[0], r.shape[0]), EVIDENCE_MAX_H)
    sq, sr = h / q.shape[0], h / r.shape[0]
    total_w = q.shape[1] * sq + r.shape[1] * sr + EVIDENCE_GAP
    if total_w > EVIDENCE_MAX_W:
        shrink = (EVIDENCE_MAX_W - EVIDENCE_GAP) / (total_w - EVIDENCE_GAP)
        h, sq, sr = max(1, int(h * shrink)), sq * shrink, sr * shrink
    qw, rw = max(1, int(q.shape[1] * sq)), max(1, int(r.shape[1] * sr))
    sq, sr = qw / q.shape[1], rw / r.shape[1]

    font = typeface(14)
    chars_per_line = max(20, int((qw + rw + EVIDENCE_GAP - 24) / 8))
    lines = textwrap.wrap(caption, chars_per_line) or [""]
    caption_h = 16 + 20 * len(lines)
    canvas = np.full((h + caption_h, qw + EVIDENCE_GAP + rw, 3), 255, np.uint8)
    canvas[:h, :qw] = cv2.resize(q, (qw, h), interpolation=cv2.INTER_AREA)
    canvas[:h, qw + EVIDENCE_GAP :] = cv2.resize(r, (rw, h), interpolation=cv2.INTER_AREA)

    keep = np.unique(np.linspace(0, len(qp) - 1, min(len(qp), MAX_LINES)).round().astype(int))
    for k, i in enumerate(keep):
        hue = int(180 * k / max(1, len(keep)))
        colour = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2RGB)[0, 0].tolist()
        a = (round(qp[i, 0] * sq), round(qp[i, 1] * sq))
        b = (round(rp[i, 0] * sr) + qw + EVIDENCE_GAP, round(rp[i, 1] * sr))
        cv2.line(canvas, a, b, colour, 1, cv2.LINE_AA)
        cv2.circle(canvas, a, 3, colour, 1, cv2.LINE_AA)
        cv2.circle(canvas, b, 3, colour, 1, cv2.LINE_AA)

    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for x, tag in ((6, "query"), (qw + EVIDENCE_GAP + 6, "reference")):
        tw = draw.textlength(tag, font=typeface(12, bold=True))
        draw.rectangle((x, 6, x + tw + 10, 24), fill=INK)
        draw.text((x + 5, 15), tag, fill="white", font=typeface(12, bold=True), anchor="lm")
    for n, line in enumerate(lines):
        draw.text((12, h + 8 + 20 * n), line, fill=INK, font=font)
    return png_bytes(img)


def render_result_evidence(photo: bytes, decode: DecodeConfig, reference_rgb: np.ndarray,
                           result: LocateResult, caption: str) -> bytes:
    """The evidence of `result` for the photo it answered. The photo is decoded only as large
    as the picture shows it; its correspondences are in the full photo's pixels."""
    query_rgb = decode_image(photo, decode, EVIDENCE_MAX_W).rgb
    pairs = np.array(result.correspondences, dtype=np.float64).reshape(-1, 4)
    scale = query_rgb.shape[1] / (result.query_size[0] or query_rgb.shape[1])
    return render_evidence(query_rgb, reference_rgb, pairs[:, :2] * scale, pairs[:, 2:], caption)
