"""What the engine's and the bots' pictures share: the typeface, the ink, PNG bytes."""

from __future__ import annotations

import functools
import io

from PIL import Image, ImageFont

INK = (32, 33, 36)


@functools.cache
def typeface(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu where the host has it; Pillow's own font elsewhere, so a slim image still draws."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(name, size)
    except OSError:
        return ImageFont.load_default(size)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
