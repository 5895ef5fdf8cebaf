"""Stage 1: turn the bytes a user sent into an upright RGB array, or refuse them with a reason.

Pillow does the decoding (pillow-heif adds HEIC). Everything that can go wrong with a file
someone sent from a phone maps to one of the typed `ImageError`s, so a bot can answer with
the error's message. EXIF GPS, heading and capture time are read beside the pixels: they are
reported next to the visual answer, never used instead of it.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError

from engine.config import DecodeConfig
from engine.errors import (
    AnimatedImage,
    EmptyImage,
    FileTooLarge,
    NotAnImage,
    TooManyPixels,
    TruncatedImage,
)
from engine.results import LatLon

pillow_heif.register_heif_opener()
Image.init()
# Pillow warns (on stderr) between its own limit and twice it; `decode_image` checks every
# image against `max_pixels` from the header and refuses it with a sentence instead.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Formats we let Pillow try. Its other plugins (EPS, PSD, TGA, FITS...) are more attack
# surface than use for street photos, and some would claim random bytes as an image.
# The JPEG opener also yields MPO (a JPEG with an embedded preview).
_FORMATS = tuple(
    f for f in ("JPEG", "PNG", "WEBP", "HEIF", "AVIF", "GIF", "BMP", "TIFF") if f in Image.OPEN
)
# Only these formats animate. MPO and multi-page TIFF report several frames too, but their
# first frame is the photo; HEIF's extra top-level images are bursts or edits, not animation.
_ANIMATED_FORMATS = frozenset({"GIF", "PNG", "WEBP", "AVIF"})

# What Pillow raises on a file whose header parses but whose data is cut short or broken.
_CORRUPT_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
# Malformed EXIF is common (phone apps, editors); it must never cost the user the photo.
_EXIF_ERRORS = (*_CORRUPT_ERRORS, TypeError, KeyError, IndexError, ZeroDivisionError)

_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientations 5-8 turn the photo by 90°: its upright width is the stored height.
_AXES_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})

_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", *_TIFF_MAGIC)
# Files people send by mistake, by their first bytes, for a NotAnImage message they can act on.
_OTHER_MAGIC = (
    (b"%PDF", "looks like a PDF document"),
    (b"PK\x03\x04", "looks like a ZIP archive or an Office document"),
    (b"\x1a\x45\xdf\xa3", "looks like a WebM/MKV video"),
    (b"OggS", "looks like Ogg audio or video"),
    (b"ID3", "looks like MP3 audio"),
    (b"\x1f\x8b", "looks like a gzip archive"),
    (b"Rar!", "looks like a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "looks like a 7-Zip archive"),
)
_SNIFF_BYTES = 512
_OFFSET_RE = re.compile(r"[+-]\d{2}:\d{2}")


@dataclass(frozen=True, slots=True)
class ExifInfo:
    """Where, which way and when, as a photo's EXIF claims; None where it says nothing usable."""

    gps: LatLon | None = None
    heading_deg: float | None = None
    captured_at: str | None = None


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An upright RGB photo (H, W, 3 uint8) and what its EXIF claims, kept apart from the pixels."""

    rgb: np.ndarray
    format: str
    # (width, height) of the upright photo at full resolution; `rgb` may be smaller (draft).
    size: tuple[int, int] = (0, 0)
    exif_gps: LatLon | None = None
    exif_heading_deg: float | None = None
    exif_captured_at: str | None = None


def decode_image(data: bytes, config: DecodeConfig, max_side: int | None = None) -> DecodedImage:
    """Decode `data`; refuse empty, oversized, non-image, corrupt, animated, bomb inputs.

    With `max_side`, a JPEG is decoded at the smallest of 1/1, 1/2, 1/4 or 1/8 scale that
    still covers `max_side` on its long side (Pillow's `draft`): a 50 MP photo then never
    occupies 150 MB when 1024 px is all that is used.
    """
    if not data:
        raise EmptyImage()
    if len(data) > config.max_bytes:
        raise FileTooLarge(len(data), config.max_bytes)
    with _open(io.BytesIO(data), config.max_pixels) as im:
        # Checked from the header, before any pixel is decompressed.
        pixels = im.width * im.height
        if pixels > config.max_pixels:
            raise TooManyPixels(pixels, config.max_pixels)
        try:
            if im.format in _ANIMATED_FORMATS and getattr(im, "is_animated", False):
                raise AnimatedImage(im.n_frames)
            full_size = im.size
            if max_side is not None and im.format in ("JPEG", "MPO"):
                scale = max_side / max(full_size)
                im.draft("RGB", (math.ceil(full_size[0] * scale), math.ceil(full_size[1] * scale)))
            im.load()
        except _CORRUPT_ERRORS as exc:
            raise TruncatedImage() from exc
        exif, orientation = _read_exif(im)
        upright = im.transpose(_TRANSPOSE_FOR_ORIENTATION[orientation]) if orientation else im
        rgb = _to_rgb(upright)
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
    swapped = orientation in _AXES_SWAPPING_ORIENTATIONS
    return DecodedImage(
        rgb=rgb,
        format=fmt,
        size=(full_size[1], full_size[0]) if swapped else full_size,
        exif_gps=exif.gps,
        exif_heading_deg=exif.heading_deg,
        exif_captured_at=exif.captured_at,
    )


def decode_file(path: str | os.PathLike[str], config: DecodeConfig,
                max_side: int | None = None) -> DecodedImage:
    """Read and decode a file, checking its size before reading it into memory."""
    with _open_path(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > config.max_bytes:
            raise FileTooLarge(size, config.max_bytes)
        data = f.read(config.max_bytes + 1)
    return decode_image(data, config, max_side)


def read_exif(source: bytes | str | os.PathLike[str]) -> ExifInfo:
    """EXIF GPS, heading and time from the header only, fast enough for thousands of files.

    The pixels are not decoded, so a photo with corrupt pixel data still yields its EXIF
    (except PNG, whose eXIf chunk may follow the pixels: Pillow reads the file through).
    """
    if isinstance(source, bytes):
        if not source:
            raise EmptyImage()
        with _open(io.BytesIO(source), _pillow_pixel_ceiling()) as im:
            return _read_exif(im)[0]
    with _open_path(source) as f, _open(f, _pillow_pixel_ceiling()) as im:
        return _read_exif(im)[0]


def read_exif_gps(source: bytes | str | os.PathLike[str]) -> LatLon | None:
    """The EXIF GPS position of a photo file or bytes, or None; reads the header only."""
    return read_exif(source).gps


@contextmanager
def _open_path(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a file for reading, turning the OS's complaints into a NotAnImage naming the path."""
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError as exc:
        raise NotAnImage(f"there is no file at {p}") from exc
    except IsADirectoryError as exc:
        raise NotAnImage(f"{p} is a folder") from exc
    except OSError as exc:
        raise NotAnImage(f"{p} cannot be read: {exc.strerror}") from exc
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise EmptyImage()
        yield f


@contextmanager
def _open(stream: IO[bytes], pixel_limit: int) -> Iterator[Image.Image]:
    """Open an image lazily (header only), mapping Pillow's refusals to our typed errors."""
    try:
        im = Image.open(stream, formats=_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(_bomb_pixels(exc, pixel_limit), pixel_limit) from exc
    except UnidentifiedImageError as exc:
        stream.seek(0)
        head = stream.read(_SNIFF_BYTES)
        if _looks_like_image(head):
            raise TruncatedImage() from exc
        raise NotAnImage(_describe_non_image(head)) from exc
    except _CORRUPT_ERRORS as exc:
        raise TruncatedImage() from exc
    with im:
        yield im


def _pillow_pixel_ceiling() -> int:
    """Pillow refuses images above twice MAX_IMAGE_PIXELS at open, whatever our config says."""
    return 2 * (Image.MAX_IMAGE_PIXELS or 0) or 2**62


def _bomb_pixels(exc: Exception, fallback: int) -> int:
    """Pillow states the pixel count only inside its message."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    return int(match.group(1)) if match else fallback + 1


def _looks_like_image(head: bytes) -> bool:
    """An image signature Pillow could not parse means a cut-off or damaged image."""
    if head.startswith(_IMAGE_MAGIC):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _describe_non_image(head: bytes) -> str:
    """Name the kind of file by its first bytes, so the sender sees what went wrong."""
    for magic, kind in _OTHER_MAGIC:
        if head.startswith(magic):
            return kind
    if head[4:8] == b"ftyp":
        return "looks like an MP4/MOV video"
    if head[:4] == b"RIFF":
        kind = {b"AVI ": "an AVI video", b"WAVE": "WAV audio"}.get(head[8:12], "a RIFF file")
        return f"looks like {kind}"
    try:
        text = head.decode("utf-8").lstrip("\ufeff \t\r\n").lower()
    except UnicodeDecodeError:
        return "unrecognised binary data"
    if "<svg" in text:
        return "looks like an SVG drawing, not a photo"
    if text.startswith(("<!doctype html", "<html")):
        return "looks like an HTML web page, not the image itself"
    return "looks like text"


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to an H x W x 3 uint8 array; transparency becomes white."""
    if im.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips 16-bit values at 255 instead of scaling them.
        grey = np.asarray(im).astype(np.float32) / 257.0
        grey8 = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey8[:, :, None], 3, axis=2)
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.array(im if im.mode == "RGB" else im.convert("RGB"))


def _read_exif(im: Image.Image) -> tuple[ExifInfo, int]:
    """The EXIF facts and the orientation (0 when none applies); empty on malformed EXIF."""
    try:
        exif = im.getexif()
        orientation = exif.get(ExifTags.Base.Orientation)
        gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
        info = ExifInfo(
            gps=_gps_position(gps_ifd),
            heading_deg=_heading(gps_ifd.get(ExifTags.GPS.GPSImgDirection)),
            captured_at=_captured_at(
                exif_ifd.get(ExifTags.Base.DateTimeOriginal),
                exif_ifd.get(ExifTags.Base.OffsetTimeOriginal),
            ),
        )
    except _EXIF_ERRORS:
        return ExifInfo(), 0
    return info, orientation if orientation in _TRANSPOSE_FOR_ORIENTATION else 0


def _gps_position(gps: dict[int, Any]) -> LatLon | None:
    """Signed decimal degrees from GPSInfo, or None for void, missing, zero or impossible fixes."""
    if _ascii(gps.get(ExifTags.GPS.GPSStatus)) == "V":  # the receiver said: no valid fix
        return None
    lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude))
    lon = _degrees(gps.get(ExifTags.GPS.GPSLongitude))
    lat_ref = _ascii(gps.get(ExifTags.GPS.GPSLatitudeRef))
    lon_ref = _ascii(gps.get(ExifTags.GPS.GPSLongitudeRef))
    # Without its hemisphere a coordinate may be mirrored across the globe: better none.
    if lat is None or lon is None or lat_ref not in ("N", "S") or lon_ref not in ("E", "W"):
        return None
    lat = -lat if lat_ref == "S" else lat
    lon = -lon if lon_ref == "W" else lon
    # (0, 0) is what receivers without a fix write.
    if abs(lat) > 90 or abs(lon) > 180 or (lat == 0 and lon == 0):
        return None
    return LatLon(lat, lon)


def _degrees(value: Any) -> float | None:
    """Unsigned degrees from (deg, min, sec) rationals, shorter tuples, or one decimal value."""
    parts = value if isinstance(value, tuple | list) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    total = 0.0
    for i, part in enumerate(parts):
        number = _number(part)
        # Minutes and seconds run to 60 at most (a rounded 59.9999 is written as 60).
        if number is None or number < 0 or (i > 0 and number > 60):
            return None
        total += number / 60**i
    return total


def _number(value: Any) -> float | None:
    """A finite float from an IFDRational, a number, or an old-style (numerator, denominator)."""
    if isinstance(value, tuple | list) and len(value) == 2:
        num, den = (_number(v) for v in value)
        return None if num is None or not den else num / den
    if isinstance(value, bool) or not isinstance(value, int | float):
        # IFDRational is a numbers.Rational, not an int or float.
        try:
            value = float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
    number = float(value)
    return number if math.isfinite(number) else None


def _ascii(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ").upper() if isinstance(value, str) else None


def _heading(value: Any) -> float | None:
    """GPSImgDirection in [0, 360); true or magnetic north, as the camera chose."""
    heading = _number(value)
    return None if heading is None or not 0 <= heading <= 360 else heading % 360


def _captured_at(value: Any, offset: Any) -> str | None:
    """DateTimeOriginal as ISO 8601, with its UTC offset when OffsetTimeOriginal gives one."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.strptime(text.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:  # blanks, "0000:00:00 00:00:00" and other placeholders
        return None
    offset_text = offset.strip("\x00 ") if isinstance(offset, str) else ""
    suffix = offset_text if _OFFSET_RE.fullmatch(offset_text) else ""
    return moment.isoformat() + suffix
