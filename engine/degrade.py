"""Query degradations for evaluation: what chat apps and careless cropping do to a photo.

Held-out photos from one capture are easy queries; these turn them into the harder ones
users actually send. Every degradation is a pure function of the image and its parameters
(no randomness), so an evaluation run is reproducible without a seed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from functools import partial

import cv2
import numpy as np
from PIL import Image

Degradation = Callable[[np.ndarray], np.ndarray]

# A warm white-balance error: the commonest colour shift between two cameras.
DEFAULT_COLOUR_GAINS = (1.08, 1.0, 0.88)


def recompress_chat(rgb: np.ndarray, max_side: int = 1280, quality: int = 70) -> np.ndarray:
    """What Telegram and WhatsApp do to a photo: longest side down to `max_side`, JPEG again."""
    image = Image.fromarray(rgb)
    scale = max_side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)  # Pillow's default 4:2:0 chroma, as chat apps
    buffer.seek(0)
    return np.array(Image.open(buffer).convert("RGB"))


def center_crop(rgb: np.ndarray, fraction: float = 0.8) -> np.ndarray:
    """Keep the central `fraction` of the width and of the height."""
    if not 0 < fraction <= 1:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    height, width = rgb.shape[:2]
    keep_h, keep_w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - keep_h) // 2, (width - keep_w) // 2
    return rgb[top : top + keep_h, left : left + keep_w].copy()


def shift_brightness(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Scale every pixel by `factor`, saturating at white as an over-exposed camera does."""
    if factor <= 0:
        raise ValueError(f"brightness factor must be positive, got {factor}")
    return _scaled(rgb, np.float32(factor))


def shift_colour(
    rgb: np.ndarray, gains: tuple[float, float, float] = DEFAULT_COLOUR_GAINS
) -> np.ndarray:
    """Per-channel (R, G, B) gains: a white-balance or filter difference."""
    if len(gains) != 3 or min(gains) <= 0:
        raise ValueError(f"colour gains must be three positive numbers, got {gains}")
    return _scaled(rgb, np.asarray(gains, dtype=np.float32))


def rotate_small(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre (counter-clockwise for positive degrees), then crop.

    The result is the largest centred rectangle of the original aspect ratio that holds no
    fill: black corners would be an artefact no real photo has, and give features to match.
    """
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    # Replicated edges, so interpolation at the crop's corners blends no black in.
    rotated = cv2.warpAffine(
        rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    # A centred w x h box fits in the rotated frame when its own bounds, rotated back, fit.
    scale = min(width / (width * cos + height * sin), height / (width * sin + height * cos))
    crop_w, crop_h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return rotated[top : top + crop_h, left : left + crop_w].copy()


def parse_degradations(spec: str) -> list[Degradation]:
    """Parse e.g. "chat,crop0.8,bright1.3,colour,rot3" into degradations, in order.

    Tokens: chat[QUALITY], crop[FRACTION], bright FACTOR, colour[R:G:B] (or color), rot DEGREES.
    """
    degradations: list[Degradation] = []
    for raw in spec.split(","):
        token = raw.strip().lower()
        if token:
            degradations.append(_parse_token(token, spec))
    return degradations


def apply_degradations(rgb: np.ndarray, degradations: Sequence[Degradation]) -> np.ndarray:
    """Apply degradations left to right."""
    for degrade in degradations:
        rgb = degrade(rgb)
    return rgb


def _scaled(rgb: np.ndarray, gain: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb.astype(np.float32) * gain), 0, 255).astype(np.uint8)


def _parse_token(token: str, spec: str) -> Degradation:
    """One token to one degradation; errors name the token and show a valid form."""
    for name in ("chat", "crop", "bright", "colour", "color", "rot"):
        if token.startswith(name):
            argument = token[len(name) :]
            break
    else:
        raise ValueError(
            f"unknown degradation '{token}' in '{spec}': "
            "use chat, crop, bright, colour or rot (e.g. 'chat,crop0.8,bright1.3,colour,rot3')"
        )
    if name == "chat":
        quality = 70.0 if not argument else _number(token, argument, "chat60")
        if not quality.is_integer() or not 1 <= quality <= 100:
            raise ValueError(f"degradation '{token}': JPEG quality must be a whole number 1-100")
        return partial(recompress_chat, quality=int(quality))
    if name == "crop":
        fraction = 0.8 if not argument else _number(token, argument, "crop0.8")
        if not 0 < fraction <= 1:
            raise ValueError(f"degradation '{token}': the crop fraction must be in (0, 1]")
        return partial(center_crop, fraction=fraction)
    if name == "bright":
        factor = _number(token, argument, "bright1.3")
        if factor <= 0:
            raise ValueError(f"degradation '{token}': the brightness factor must be positive")
        return partial(shift_brightness, factor=factor)
    if name == "rot":
        return partial(rotate_small, degrees=_number(token, argument, "rot3"))
    if not argument:
        return shift_colour
    gains = tuple(_number(token, part, "colour1.1:1:0.9") for part in argument.split(":"))
    if len(gains) != 3 or min(gains) <= 0:
        raise ValueError(f"degradation '{token}': give three positive gains R:G:B")
    return partial(shift_colour, gains=gains)


def _number(token: str, text: str, example: str) -> float:
    if not text:
        raise ValueError(f"degradation '{token}' needs a number, e.g. '{example}'")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"degradation '{token}': '{text}' is not a number (e.g. '{example}')"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"degradation '{token}': '{text}' is not a finite number")
    return value
