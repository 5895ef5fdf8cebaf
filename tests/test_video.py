"""Keyframes from videos made here out of consecutive Lund photos; bad videos refused by name."""

from __future__ import annotations

import io
import struct
from dataclasses import replace
from itertools import pairwise

import av
import cv2
import numpy as np
import pytest

from engine.config import DecodeConfig, EngineConfig, VideoConfig, build_config
from engine.decode import decode_image
from engine.errors import (
    ConfigError,
    ImageError,
    NotAVideo,
    NoUsableFrame,
    VideoFramesTooLarge,
    VideoTooLarge,
    VideoTooLong,
    VideoTooSlow,
)
from engine.video import keyframes
from tests.videos import lund_photos, lund_walk_video, make_video

pytestmark = pytest.mark.real_data
SMALL = (256, 192)
CONFIG = VideoConfig()


def _thumb(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _refusal(error: type[ImageError], video: bytes, config: VideoConfig = CONFIG) -> str:
    """The message `keyframes` refuses `video` with: one sentence, no internals."""
    with pytest.raises(error) as refused:
        keyframes(video, config)
    message = str(refused.value)
    assert message.endswith(".") and ". " not in message and "av." not in message, message
    return message


def _still_video(rgb: np.ndarray, seconds: int, fps: float = 2.0) -> bytes:
    return make_video([rgb] * round(seconds * fps), fps)


def test_a_walk_gives_bounded_keyframes_in_time_order_each_from_the_photo_then_on_screen():
    walk = lund_walk_video(count=10, seconds_each=2.0)  # 20 s, full size, 10 hard cuts
    frames = keyframes(walk.video, CONFIG)
    photos = {span.photo: _thumb(rgb) for rgb, span in lund_photos(1, 10)}

    assert 5 <= len(frames) <= CONFIG.max_frames
    times = [f.time_s for f in frames]
    assert times == sorted(times) and times[0] == 0.0 and times[-1] <= walk.duration_s
    assert frames[0].change == 1.0 and all(0 < f.change < 1 for f in frames[1:])
    for frame in frames:
        decoded = decode_image(frame.image, DecodeConfig())
        assert decoded.format == "JPEG" and decoded.size == (1024, 768)
        nearest = min(photos, key=lambda p: np.abs(photos[p] - _thumb(decoded.rgb)).mean())
        assert nearest == walk.span_at(frame.time_s).photo
    assert len({walk.span_at(t).photo for t in times}) == len(frames)


@pytest.mark.parametrize(("container", "codec"), [
    ("mov", "mpeg4"), ("webm", "libvpx"), ("webm", "libvpx-vp9"), ("gif", "gif")])
def test_mov_webm_and_gif_give_the_same_cuts_as_mp4(container, codec):
    expected = keyframes(lund_walk_video(count=4, size=SMALL).video, CONFIG)
    frames = keyframes(lund_walk_video(count=4, size=SMALL, container=container,
                                       codec=codec).video, CONFIG)
    assert [f.time_s for f in frames] == [f.time_s for f in expected] == [0.0, 2.0, 4.0, 6.0]
    for frame in frames:
        assert decode_image(frame.image, DecodeConfig()).size == SMALL


def test_more_cuts_than_max_frames_keep_the_most_distinct_across_the_whole_video():
    walk = lund_walk_video(count=12, seconds_each=1.0, size=SMALL)  # 12 cuts in 12 s
    frames = keyframes(walk.video, replace(CONFIG, max_frames=4))
    times = [f.time_s for f in frames]
    assert len(frames) == 4 and times[0] == 0.0 and times[-1] >= 9.0
    assert all(b - a >= 2.0 for a, b in pairwise(times))


def test_without_scene_cuts_frames_are_spread_over_time():
    walk = lund_walk_video(count=10, seconds_each=2.0, size=SMALL)
    config = replace(CONFIG, scene_change=1.0)  # no cut ever counts: the fill alone chooses
    times = [f.time_s for f in keyframes(walk.video, config)]
    assert len(times) == config.max_frames and times[0] == 0.0 and times[-1] >= 19.0
    assert all(b - a >= 2.0 for a, b in pairwise(times))
    assert len(keyframes(lund_walk_video(count=2, size=SMALL).video, config)) == 2  # 4 s: 2


def test_a_slow_walk_forward_gives_several_frames_over_its_length():
    (rgb, _), = lund_photos(5, 1)
    frames = []
    for i in range(100):  # 20 s at 5 fps, walking into the picture: its middle grows to 1.6x
        margin_x, margin_y = round(i / 100 * 192), round(i / 100 * 144)
        crop = rgb[margin_y:768 - margin_y, margin_x:1024 - margin_x]
        frames.append(cv2.resize(crop, SMALL, interpolation=cv2.INTER_AREA))
    times = [f.time_s for f in keyframes(make_video(frames, 5.0), CONFIG)]
    assert len(times) >= 4 and times[-1] - times[0] >= 10.0


def test_a_still_camera_gives_one_frame_not_copies_of_it():
    (rgb, _), = lund_photos(3, 1, SMALL)
    assert len(keyframes(_still_video(rgb, 20), CONFIG)) == 1


def test_black_and_fading_frames_are_passed_over():
    (rgb, _), = lund_photos(7, 1, SMALL)
    fade_in = [(rgb * (i / 10) ** 2).astype(np.uint8) for i in range(11)]  # 2 s at 5 fps
    frames = keyframes(make_video([rgb * 0] * 10 + fade_in + [rgb] * 10, 5.0), CONFIG)
    assert frames[0].time_s > 2.6  # black, then the fade under a tenth of full brightness
    assert any(np.abs(_thumb(decode_image(f.image, DecodeConfig()).rgb) - _thumb(rgb)).mean()
               < 0.02 for f in frames)


def test_a_portrait_phone_video_gives_upright_keyframes():
    (rgb, _), = lund_photos(2, 1, SMALL)
    sideways = np.ascontiguousarray(np.rot90(rgb, 1))  # stored turned left, shown turned back
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=2)
        stream.height, stream.width = sideways.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.set_display_rotation(-90)
        for _ in range(4):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(sideways, format="rgb24")))
        output.mux(stream.encode())
    (frame,) = keyframes(buffer.getvalue(), CONFIG)
    upright = decode_image(frame.image, DecodeConfig()).rgb
    assert upright.shape[:2] == (192, 256) and np.abs(_thumb(upright) - _thumb(rgb)).mean() < 0.02


def test_corrupt_and_non_videos_are_refused_as_unreadable():
    video = lund_walk_video(count=2, size=SMALL).video
    garbage = np.random.default_rng(5).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    with open(lund_photos(1, 1)[0][1].photo, "rb") as handle:
        photo = handle.read()

    assert "damaged or cut short" in _refusal(NotAVideo, video[:len(video) // 2])
    assert "damaged or cut short" in _refusal(NotAVideo, video[:40] + garbage)
    assert "not an MP4, MOV, WebM or GIF" in _refusal(NotAVideo, garbage)
    assert "still photo" in _refusal(NotAVideo, photo)
    assert "empty" in _refusal(NotAVideo, b"")


def test_a_file_with_only_sound_has_no_video_track():
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("aac", rate=44_100, layout="mono")
        for _ in range(10):
            silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                                 layout="mono")
            silence.sample_rate = 44_100
            output.mux(stream.encode(silence))
        output.mux(stream.encode())
    assert "no video track" in _refusal(NotAVideo, buffer.getvalue())


def test_an_over_long_video_is_refused_from_its_header_with_both_lengths():
    (rgb, _), = lund_photos(1, 1, (64, 64))
    message = _refusal(VideoTooLong, _still_video(rgb, 200, fps=1.0))
    assert "3:20" in message and "2:00" in message


def _with_matroska_duration(video: bytes, declared: bytes) -> bytes:
    """The WebM with its Duration element (ID 0x4489, an 8-byte float) replaced."""
    at = video.index(b"\x44\x89\x88")
    return video[:at] + declared + video[at + 11:]


def test_a_video_whose_duration_lies_or_is_missing_is_refused_past_the_limit():
    (rgb, _), = lund_photos(1, 1, (64, 64))
    video = make_video([rgb] * 200, 1.0, "webm", "libvpx")
    lying = _with_matroska_duration(video, b"\x44\x89\x88" + struct.pack(">d", 5000.0))  # 5 s
    missing = _with_matroska_duration(video, b"\x44\x88\x88" + bytes(8))  # an unknown element
    for refused in (lying, missing):
        assert "runs past the 2:00 limit" in _refusal(VideoTooLong, refused)
    assert keyframes(missing, replace(CONFIG, max_seconds=300))[0].time_s == 0.0


def test_size_pixel_and_decoding_limits_refuse_with_the_limit():
    video = lund_walk_video(count=2, size=SMALL).video
    assert "MB limit" in _refusal(VideoTooLarge, video, replace(CONFIG, max_bytes=1000))
    assert "256 x 192" in _refusal(VideoFramesTooLarge, video,
                                   replace(CONFIG, max_pixels=256 * 192 - 1))
    assert "too heavy" in _refusal(VideoTooSlow, video, replace(CONFIG, max_decoded_frames=5))


def test_all_black_or_heavily_blurred_video_has_no_usable_frame():
    photos = [rgb for rgb, _ in lund_photos(1, 4, SMALL)]
    blurred = [cv2.GaussianBlur(rgb, (0, 0), 4) for rgb in photos for _ in range(4)]
    for video in (_still_video(np.zeros((192, 256, 3), np.uint8), 4), make_video(blurred, 2.0)):
        assert "dark, uniform or blurred" in _refusal(NoUsableFrame, video)


def test_a_video_setting_that_makes_no_sense_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"'engine\.video\.sample_fps' must be positive"):
        build_config(EngineConfig, {"video": {"sample_fps": 0}})
