"""Seconds per reference of a cover, end to end: the figure behind a plan's time estimate
(engine/cover/plan.py, SECONDS_PER_REFERENCE).

A fake Panoramax on loopback serves the Lund photos (../shared/data/lund, 1024 x 768), each
`--copies` times under its own id a few metres apart; an AsyncEngine over an index of the
Berlin photos runs a cover of the area with the shipped politeness and the default funnel
(or the one named), from the job's start to its end (fetching, indexing, serving).

    python bench/bench_cover.py [--copies 4] [--descriptor xfeat-vlad] [--verifier xfeat]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.async_engine import AsyncEngine  # noqa: E402
from engine.config import EngineConfig, EngineLimits  # noqa: E402
from engine.cover import CoverRequest  # noqa: E402
from engine.index.builder import build_index  # noqa: E402
from engine.ingest.area import BBox  # noqa: E402
from engine.ingest.config import IngestConfig  # noqa: E402
from engine.locator import Locator  # noqa: E402
from engine.sources import scan_source  # noqa: E402
from tests.fakes.platforms import FakeImage, FakePlatform, FakeServer  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
JITTER_DEG = 0.00005  # about 5 m: each copy is its own picture to the crawl


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    defaults = EngineConfig()
    parser.add_argument("--descriptor", default=defaults.descriptor)
    parser.add_argument("--verifier", default=defaults.verifier)
    args = parser.parse_args()
    records = scan_source(DATA / "lund").records
    images = []
    for copy in range(args.copies):
        for i, record in enumerate(records):
            with Image.open(record.image_path) as image:
                rgb = np.asarray(image.convert("RGB"))
            images.append(FakeImage(str(10_000 * (copy + 1) + i), record.lat + copy * JITTER_DEG,
                                    record.lon, rgb, heading=None))
    lats, lons = [i.lat for i in images], [i.lon for i in images]
    box = BBox(min(lons) - 0.001, min(lats) - 0.001, max(lons) + 0.001, max(lats) + 0.001)
    with tempfile.TemporaryDirectory() as scratch, FakeServer(
            "panoramax", FakePlatform(images=images)) as server:
        config = replace(defaults, descriptor=args.descriptor, verifier=args.verifier,
                         index_path=Path(scratch) / "index",
                         ingest=IngestConfig(panoramax_url=f"{server.url}/api",
                                             allow_private_hosts=True))
        build_index(config.index_path, [scan_source(DATA / "berlin")], config)
        seconds, added = asyncio.run(_cover(config, box))
    print(f"{len(images)} pictures, {added} references added in {seconds:.1f} s:"
          f" {seconds / max(added, 1):.3f} s per reference ({args.descriptor} +"
          f" {args.verifier})")
    return 0


async def _cover(config: EngineConfig, box: BBox) -> tuple[float, int]:
    engine = AsyncEngine(lambda: Locator.open(config), EngineLimits())
    await engine.start()
    try:
        started = time.perf_counter()
        job = await engine.start_cover(CoverRequest(box, ("panoramax",), "bench"))
        while not (job := await engine.cover_job(job.id)).finished:
            await asyncio.sleep(0.2)
        return time.perf_counter() - started, sum(s["added"] for s in job.summary)
    finally:
        await engine.close()


if __name__ == "__main__":
    sys.exit(main())
