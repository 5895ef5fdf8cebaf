"""How long choosing a video's keyframes takes: a 20 s 720p 30 fps walk past ten Lund photos
(each panned across for 2 s), H.264 in MP4, as a phone would send it.

    python bench/bench_video.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import VideoConfig  # noqa: E402
from engine.video import keyframes  # noqa: E402
from tests.videos import lund_photos, make_video  # noqa: E402

FPS = 30


def walk_720p() -> bytes:
    """Ten Lund photos in turn, a 960 x 540 window panning across each, scaled to 1280 x 720."""
    photos = [rgb for rgb, _ in lund_photos(1, 10)]
    frames = []
    for i in range(20 * FPS):
        x = round((i % (2 * FPS)) / (2 * FPS) * (1024 - 960))
        crop = photos[i // (2 * FPS)][100:640, x:x + 960]
        frames.append(cv2.resize(crop, (1280, 720), interpolation=cv2.INTER_AREA))
    return make_video(frames, FPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    video = walk_720p()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        frames = keyframes(video, VideoConfig())
        seconds.append(time.perf_counter() - started)
    print(f"{len(video) / 1e6:.1f} MB, {len(frames)} keyframes at "
          f"{', '.join(f'{f.time_s:.1f}' for f in frames)} s")
    print(f"keyframes(): median {statistics.median(seconds):.2f} s, best {min(seconds):.2f} s"
          f" over {runs} runs")


if __name__ == "__main__":
    main()
