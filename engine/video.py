"""Stage 0 for videos: a few keyframes, chosen by scene change, each then located like a photo.

PyAV (FFmpeg) reads the video from memory. The container is recognised by its first bytes and
opened with that demuxer alone (MP4/MOV, Matroska/WebM, GIF): FFmpeg's own probing would take a
JPEG for a one-frame video, and every demuxer and decoder it may pick is attack surface.
Frames are decoded in order, never seeking, and looked at `sample_fps` times a second; each
usable one is kept as a JPEG until the choice is made (at most 240 of about 200 KB at 1280 px).

Scene change is the mean absolute difference of 32 x 32 grey thumbnails. A colour histogram
ignores layout, so a walk past facades of one colour would score almost nothing; the thumbnail
sees the street move across the picture, and shrinking to 32 x 32 averages compression noise
away (0.001 against 0.09-0.21 between consecutive Lund photos).

Length is checked twice: from the container before decoding, and while decoding, where a file
declares no duration or a false one. Such a video is refused like any over-long video, at the
first frame past the limit: an answer for its first two minutes would look like an answer for
all of it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import av
import cv2
import numpy as np

from engine.config import VideoConfig
from engine.errors import (
    NotAVideo,
    NoUsableFrame,
    VideoFramesTooLarge,
    VideoTooLarge,
    VideoTooLong,
    VideoTooSlow,
)

JPEG_QUALITY = 92
_THUMB_SIDE = 32
_ANALYSIS_SIDE = 320  # the usable-frame tests run at this long side, whatever the video's size
# A fill frame closer than this to a keyframe shows the same view (a camera held still): it
# would cost a locate and add nothing. A 10 px pan of a Lund photo differs by 0.027.
_SAME_VIEW = 0.01
# Decoders we let run: what phones, browsers and chat apps record. FFmpeg has hundreds more.
_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg", "gif"})
# ISO base media brands of still images (HEIC, AVIF): an ftyp box, but a photo.
_STILL_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif"})
_MOV_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"styp"})
_PHOTO_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG; WebP is RIFF....WEBP


@dataclass(frozen=True, slots=True)
class Keyframe:
    """A frame to locate: seconds from the video's start, a JPEG, and how much it differs from
    the keyframe before it (mean absolute thumbnail difference, 0-1; 1 for the first)."""

    time_s: float
    image: bytes
    change: float


@dataclass(frozen=True, slots=True)
class _Sample:
    time_s: float
    thumb: np.ndarray
    jpeg: bytes


def keyframes(data: bytes, config: VideoConfig) -> tuple[Keyframe, ...]:
    """At most `max_frames` usable frames of the video in `data`, in time order: scene changes
    first, then, where they are few, frames spread over time; refused with a `VideoError`."""
    samples = _usable_samples(data, config)
    if not samples:
        raise NoUsableFrame()
    chosen = [samples[i] for i in _fill(samples, _scene_changes(samples, config), config)]
    changes = [1.0] + [_difference(a, b) for a, b in pairwise(chosen)]
    return tuple(Keyframe(s.time_s, s.jpeg, c) for s, c in zip(chosen, changes, strict=True))


def _usable_samples(data: bytes, config: VideoConfig) -> list[_Sample]:
    """The frames looked at (at most `sample_fps` a second) that are neither uniform nor blurred."""
    if not data:
        raise NotAVideo("the file is empty")
    if len(data) > config.max_bytes:
        raise VideoTooLarge(len(data), config.max_bytes)
    demuxer = _demuxer(data[:16])
    try:
        container = av.open(io.BytesIO(data), format=demuxer)
    except av.error.FFmpegError as exc:
        raise NotAVideo("it is damaged or cut short") from exc
    with container:
        samples: list[_Sample] = []
        next_s = 0.0
        for time_s, frame in _frames(container, config):
            if time_s < next_s - 1e-3:  # timestamps are rounded to the container's time base
                continue
            while next_s <= time_s + 1e-3:  # on a fixed grid, so that frames never drift off it
                next_s += 1 / config.sample_fps
            grey = _grey(frame)
            if _usable(grey, config):
                thumb = cv2.resize(grey, (_THUMB_SIDE, _THUMB_SIDE), interpolation=cv2.INTER_AREA)
                samples.append(_Sample(time_s, thumb.astype(np.float32) / 255,
                                       _jpeg(frame, config.keyframe_max_side)))
        return samples


def _demuxer(head: bytes) -> str:
    """The FFmpeg demuxer for the container these first bytes start, or NotAVideo saying why."""
    if head[4:8] in _MOV_BOXES:
        if head[4:8] == b"ftyp" and head[8:12] in _STILL_BRANDS:
            raise NotAVideo("it is a still photo")
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(_PHOTO_MAGIC) or (head.startswith(b"RIFF") and head[8:12] == b"WEBP"):
        raise NotAVideo("it is a still photo")
    raise NotAVideo("it is not an MP4, MOV, WebM or GIF file")


def _frames(container: av.container.InputContainer, config: VideoConfig
            ) -> Iterator[tuple[float, av.VideoFrame]]:
    """Every decoded frame and its time from the first, within the length and decoding budget."""
    stream = _video_stream(container, config)
    started = time.monotonic()
    packets = decoded = 0
    first_s: float | None = None
    try:
        for packet in container.demux(stream):
            packets += 1
            if max(packets, decoded) > config.max_decoded_frames or (
                    time.monotonic() - started > config.max_decode_s):
                raise VideoTooSlow(config.max_decoded_frames, config.max_decode_s)
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # one damaged packet: the decoder picks up again at the next keyframe
            for frame in frames:
                decoded += 1
                if frame.width * frame.height > config.max_pixels:
                    raise VideoFramesTooLarge((frame.width, frame.height), config.max_pixels)
                if frame.time is None:
                    continue  # no timestamp to sample it by
                first_s = frame.time if first_s is None else first_s
                if frame.time - first_s > config.max_seconds:
                    raise VideoTooLong(None, config.max_seconds)
                yield frame.time - first_s, frame
    except av.error.FFmpegError as exc:  # the container breaks off: keep what came before
        if not decoded:
            raise NotAVideo("it is damaged or cut short") from exc
    if not decoded:
        raise NotAVideo("none of its frames can be decoded")


def _video_stream(container: av.container.InputContainer, config: VideoConfig
                  ) -> av.video.stream.VideoStream:
    """The first video stream, checked from the container's header before any decoding."""
    if not container.streams.video:
        raise NotAVideo("it has no video track")
    stream = container.streams.video[0]
    context = stream.codec_context
    if context.codec.canonical_name not in _CODECS:
        raise NotAVideo(f"its pictures are coded as {context.codec.canonical_name}, which"
                        " GeoSleuth does not decode")
    if context.width * context.height > config.max_pixels:
        raise VideoFramesTooLarge((context.width, context.height), config.max_pixels)
    declared = [float(stream.duration * stream.time_base)] if stream.duration else []
    if container.duration:
        declared.append(container.duration / av.time_base)
    if declared and max(declared) > config.max_seconds:
        raise VideoTooLong(max(declared), config.max_seconds)
    # Frame threads as well as slice threads: decoding is most of a video's time, and in order;
    # a 20 s 720p clip decodes 1.7 times as fast on two busy cores.
    stream.thread_type = "AUTO"
    return stream


def _grey(frame: av.VideoFrame) -> np.ndarray:
    """The frame in grey at `_ANALYSIS_SIDE` on its long side (never enlarged)."""
    grey = frame.to_ndarray(format="gray")
    scale = _ANALYSIS_SIDE / max(grey.shape)
    if scale >= 1:
        return grey
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _usable(grey: np.ndarray, config: VideoConfig) -> bool:
    """Neither nearly uniform (black, white, a fade) nor too blurred to match."""
    return bool(grey.std() >= config.min_contrast
                and cv2.Laplacian(grey, cv2.CV_64F).var() >= config.min_sharpness)


def _jpeg(frame: av.VideoFrame, max_side: int) -> bytes:
    """The frame upright (phones store a portrait video sideways, with a rotation to show it
    by), at most `max_side` on its long side."""
    scale = min(1.0, max_side / max(frame.width, frame.height))
    image = frame.to_image(width=round(frame.width * scale), height=round(frame.height * scale),
                           interpolation="AREA")
    image = image.rotate(round(frame.rotation / 90) * 90, expand=True)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _difference(a: _Sample, b: _Sample) -> float:
    return float(np.abs(a.thumb - b.thumb).mean())


def _scene_changes(samples: list[_Sample], config: VideoConfig) -> list[int]:
    """The first sample and each that differs from the last kept by `scene_change`, reduced to
    `max_frames`: the most distinct in each of `max_frames` equal stretches of time first."""
    kept, changes = [0], {0: 1.0}
    for i in range(1, len(samples)):
        change = _difference(samples[i], samples[kept[-1]])
        if change >= config.scene_change:
            kept.append(i)
            changes[i] = change
    if len(kept) <= config.max_frames:
        return kept
    start, span = samples[0].time_s, samples[-1].time_s - samples[0].time_s
    stretches: dict[int, int] = {}
    for i in kept:
        stretch = min(int((samples[i].time_s - start) / span * config.max_frames),
                      config.max_frames - 1)
        if stretch not in stretches or changes[i] > changes[stretches[stretch]]:
            stretches[stretch] = i
    rest = sorted(set(kept) - set(stretches.values()), key=changes.__getitem__, reverse=True)
    return sorted([*stretches.values(), *rest][:config.max_frames])


def _fill(samples: list[_Sample], kept: list[int], config: VideoConfig) -> list[int]:
    """`kept` plus usable samples, each the farthest in time from those chosen and showing
    something else, up to one per `fill_every_s` (and `max_frames`): a slow walk changes
    gradually, and scene changes alone may give it one frame."""
    span = samples[-1].time_s - samples[0].time_s
    wanted = min(config.max_frames, 1 + int(span / config.fill_every_s))
    chosen = list(kept)
    while len(chosen) < wanted:
        gaps = {i: min(abs(samples[i].time_s - samples[c].time_s) for c in chosen)
                for i in range(len(samples)) if i not in chosen}
        new = [i for i in gaps
               if min(_difference(samples[i], samples[c]) for c in chosen) >= _SAME_VIEW]
        if not new:
            break
        chosen.append(max(new, key=gaps.__getitem__))
    return sorted(chosen)
