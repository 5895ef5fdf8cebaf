"""Videos made in the test with PyAV: from any frames, or a walk along consecutive Lund photos.

`lund_walk_video` says which photo (and so which EXIF position) each time span shows, so a test
can check a located keyframe against the place it came from.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from engine.sources import scan_source
from tests.conftest import shared_data

# Fast settings, so that a test spends its time on the code under test, not on encoding.
_ENCODER_OPTIONS = {
    "libx264": {"preset": "ultrafast"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
}
_PIXEL_FORMATS = {"gif": "rgb8"}


def make_video(frames: Sequence[np.ndarray], fps: float, container: str = "mp4",
               codec: str = "libx264") -> bytes:
    """Encode RGB frames (H, W, 3 uint8, even sides) as a `container` file, in memory."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=Fraction(fps).limit_denominator(1001),
                                   options=_ENCODER_OPTIONS.get(codec, {}))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = _PIXEL_FORMATS.get(codec, "yuv420p")
        for rgb in frames:
            output.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


@dataclass(frozen=True)
class LundSpan:
    """One Lund photo on screen from `start_s` to `end_s`, and where it was taken (EXIF GPS)."""

    start_s: float
    end_s: float
    photo: str
    lat: float
    lon: float


@dataclass(frozen=True)
class LundWalk:
    video: bytes
    spans: tuple[LundSpan, ...]

    @property
    def duration_s(self) -> float:
        return self.spans[-1].end_s

    def span_at(self, time_s: float) -> LundSpan:
        """The photo on screen at `time_s`."""
        return next((s for s in self.spans if s.start_s <= time_s < s.end_s), self.spans[-1])


def lund_photos(first: int = 1, count: int = 29, size: tuple[int, int] | None = None
                ) -> list[tuple[np.ndarray, LundSpan]]:
    """Consecutive Lund photos from number `first` (1-29), as RGB resized to `size` (w, h),
    each with its position (its span's times are 0 here); skips where ../shared is absent."""
    records = sorted(scan_source(shared_data("lund")).records, key=lambda r: r.image_path)
    photos = []
    for record in records[first - 1:first - 1 + count]:
        with Image.open(record.image_path) as image:
            rgb = image.convert("RGB") if size is None else image.convert("RGB").resize(size)
        photos.append((np.asarray(rgb), LundSpan(0.0, 0.0, record.image_path, record.lat,
                                                 record.lon)))
    return photos


def lund_walk_video(first: int = 1, count: int = 8, seconds_each: float = 2.0, fps: float = 5.0,
                    container: str = "mp4", codec: str = "libx264",
                    size: tuple[int, int] | None = None) -> LundWalk:
    """A walk through `count` consecutive Lund photos from number `first`, each held for
    `seconds_each` (hard cuts between them, as a walk filmed in steps), at full size
    (1024 x 768) unless `size` (w, h, even) is given."""
    per_photo = round(seconds_each * fps)
    frames, spans = [], []
    for i, (rgb, where) in enumerate(lund_photos(first, count, size)):
        frames += [rgb] * per_photo
        spans.append(LundSpan(i * per_photo / fps, (i + 1) * per_photo / fps, where.photo,
                              where.lat, where.lon))
    return LundWalk(make_video(frames, fps, container, codec), tuple(spans))
