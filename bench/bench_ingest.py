"""Ingest throughput from fakes of Panoramax and Mapillary on loopback.

Each fake serves generated street views (JPEG, 640x480) in its API's format, paged; the
crawl runs as `geosleuth ingest` does (2 km cells, coverage, deduplication, staging, the
builder) with no artificial delay. The whole crawl is staged before one builder run, so the
two sides are timed apart: listing + downloading + staging (what waiting on the platform
would slow), and indexing (our descriptor and features, which bound the end-to-end rate).

    python bench/bench_ingest.py [--images 400] [--descriptor xfeat-vlad] [--verifier xfeat]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import EngineConfig  # noqa: E402
from engine.ingest.area import BBox  # noqa: E402
from engine.ingest.config import IngestConfig  # noqa: E402
from engine.ingest.crawl import Crawler, CrawlRequest  # noqa: E402
from engine.ingest.registry import create_platform  # noqa: E402
from engine.synthetic import make_street  # noqa: E402
from tests.fakes.platforms import (  # noqa: E402
    MAPILLARY_TOKEN,
    FakeImage,
    FakePlatform,
    FakeServer,
)

VIEWS_PER_STREET = 20
AREA = BBox(13.38, 52.50, 13.44, 52.54)  # about 4 km by 4.5 km of Berlin: nine cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="images per source")
    defaults = EngineConfig()
    parser.add_argument("--descriptor", default=defaults.descriptor)
    parser.add_argument("--verifier", default=defaults.verifier)
    args = parser.parse_args()
    engine = replace(defaults, descriptor=args.descriptor, verifier=args.verifier)
    # The shipped politeness (rate limits, concurrency); one batch, so the sides time apart.
    # The fakes listen on loopback, which only a private instance's setting lets be fetched.
    config = IngestConfig(first_batch=args.images + 1, allow_private_hosts=True)

    started = time.perf_counter()
    images = _images(args.images)
    print(f"generated {len(images)} street views in {time.perf_counter() - started:.0f} s;"
          f" funnel {args.descriptor} + {args.verifier}")
    for kind in ("panoramax", "mapillary"):
        # geovisio answers the search limit asked (no pages); Mapillary up to the 2,000 it may.
        fake = FakePlatform(images=images, page_size=2000)
        with FakeServer(kind, fake) as server, tempfile.TemporaryDirectory() as scratch:
            platform = _platform(kind, server, config)
            (summary,) = Crawler(Path(scratch) / "idx", engine, config).run(
                [platform], CrawlRequest(AREA))
        fetching = summary.seconds - summary.index_seconds
        assert summary.new == len(images), f"{kind}: {summary.new} of {len(images)} ingested"
        print(f"{kind:<10} {summary.new} images, {summary.cells} cells,"
              f" {fake.requests_total()} requests: fetched and staged at"
              f" {summary.new / fetching:.1f} images/s ({fetching:.1f} s), indexed at"
              f" {summary.added / summary.index_seconds:.1f} images/s"
              f" ({summary.index_seconds:.1f} s), end to end"
              f" {summary.new / summary.seconds:.1f} images/s")
    return 0


def _images(count: int) -> list[FakeImage]:
    images: list[FakeImage] = []
    seed = 0
    while len(images) < count:
        # Street origins kept 0.01 degrees inside the area, so every view of a street is in it.
        lat = AREA.south + 0.01 + (AREA.north - AREA.south - 0.02) * ((seed * 0.37) % 1)
        lon = AREA.west + 0.01 + (AREA.east - AREA.west - 0.02) * ((seed * 0.61) % 1)
        for view in make_street(100 + seed, n_views=VIEWS_PER_STREET, origin=(lat, lon)):
            images.append(FakeImage(str(10_000 + len(images)), view.lat, view.lon, view.rgb,
                                    heading=view.heading_deg))
        seed += 1
    return images[:count]


def _platform(kind: str, server: FakeServer, config: IngestConfig):
    if kind == "panoramax":
        return create_platform(kind, config, instance=f"{server.url}/api")
    return create_platform(kind, replace(config, mapillary_url=server.url,
                                         mapillary_tiles_url=f"{server.url}/tiles",
                                         mapillary_token=MAPILLARY_TOKEN))


if __name__ == "__main__":
    raise SystemExit(main())
