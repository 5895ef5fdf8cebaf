"""`geosleuth ingest` against fakes of the platforms' APIs on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from bot.cli.main import main
from engine.config import EngineConfig
from engine.errors import ConfigError
from engine.index.locks import LOCK_NAME
from engine.ingest.area import BBox
from engine.ingest.config import IngestConfig, PanoramaConfig
from engine.ingest.crawl import Crawler, CrawlRequest
from engine.ingest.http import PoliteClient
from engine.ingest.mapillary import Mapillary
from engine.ingest.registry import create_platform
from engine.synthetic import make_street
from tests.conftest import GEOSLEUTH
from tests.fakes.platforms import MAPILLARY_TOKEN, FakeImage, FakePlatform, FakeServer, Faults

ORIGIN = (52.5200, 13.4050)
BOX = BBox(13.40, 52.515, 13.41, 52.525)
FAST = EngineConfig(descriptor="vlad", verifier="sift")
# The fakes listen on 127.0.0.1, which the crawler refuses unless told (as for a private
# instance) that it may fetch it.
POLITE_BUT_QUICK = IngestConfig(first_batch=4, batch_size=4, backoff_s=0.01, backoff_max_s=0.1,
                                requests_per_s=200.0, downloads_per_s=200.0,
                                allow_private_hosts=True)


@pytest.fixture(scope="module")
def street_images() -> list[FakeImage]:
    views = make_street(seed=11, n_views=10, origin=ORIGIN)
    return [FakeImage(str(1000 + i), v.lat, v.lon, v.rgb, heading=v.heading_deg)
            for i, v in enumerate(views)]


def _panoramax(server: FakeServer, config: IngestConfig = POLITE_BUT_QUICK):
    return create_platform("panoramax", config, instance=f"{server.url}/api")


def _rows(index: Path) -> list[tuple]:
    with sqlite3.connect(index / "catalog.sqlite") as db:
        return db.execute("SELECT source, source_id, heading, licence, creator, link, attribution"
                          " FROM refs ORDER BY source_id").fetchall()


SOURCES = ("panoramax", "mapillary", "kartaview", "mapilio", "amsterdam")


def _configured(kind: str, url: str, config: IngestConfig) -> IngestConfig:
    """The config a user would write to point `kind` at `url` (here, its fake)."""
    return replace(config, panoramax_url=f"{url}/api", mapillary_url=url,
                   mapillary_tiles_url=f"{url}/tiles", mapillary_token=MAPILLARY_TOKEN,
                   kartaview_url=url, mapilio_url=url,
                   mapilio_tiles_url=f"{url}/wmts?z={{z}}&x={{x}}&y={{y}}",
                   mapilio_cdn_url=f"{url}/im", amsterdam_url=f"{url}/panorama")


@pytest.mark.parametrize("kind", SOURCES)
def test_each_source_pages_retries_skips_and_cuts_panoramas(kind, tmp_path, street_images):
    rng = np.random.default_rng(8)
    pano = FakeImage("1010", 52.5203, 13.4052, (rng.random((256, 512, 3)) * 255).astype(np.uint8),
                     heading=30.0, panorama=True)
    faults = Faults(throttle_first_search=True, fail_image_once="1003", missing_image="1005",
                    malformed_record=True)
    # Mapillary's search does not page: its fake answers up to the limit asked for.
    fake = FakePlatform(images=[*street_images, pano], faults=faults,
                        page_size=100 if kind == "mapillary" else 4)
    views = PanoramaConfig(views=4, width=160, height=120)
    with FakeServer(kind, fake) as server:
        config = _configured(kind, server.url, replace(POLITE_BUT_QUICK, panorama=views))
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run(
            [create_platform(kind, config)], CrawlRequest(BOX))

    assert summary.error is None and summary.complete
    assert (summary.found, summary.new, summary.duplicates) == (11, 10, 0)
    assert summary.failed == {"image not available: HTTP 404": 1}
    assert summary.skipped_count >= 1  # the malformed record
    every_one_a_panorama = kind == "amsterdam"
    assert summary.added == (40 if every_one_a_panorama else 9 + 4)
    rows = {r[1]: r for r in _rows(tmp_path / "idx")}
    assert [rows[f"1010#v{k}"][2] for k in range(4)] == [30.0, 120.0, 210.0, 300.0]
    assert all(r[0] == kind and r[3] and r[6] for r in rows.values())  # licence, credit
    downloads = fake.image_downloads()
    assert max(downloads.values()) == 2 and list(downloads.values()).count(2) == 1  # the 500
    assert sum(downloads.values()) == 12  # 11 images, one asked twice; nothing else again
    assert fake.retry_wait_s() >= 0.95  # the 429's Retry-After: 1 was honoured
    assert not fake.image_auth_headers  # a token is for the API, never for the image host
    assert fake.user_agents == {POLITE_BUT_QUICK.user_agent}  # every request names us


def test_panoramax_follows_a_paging_servers_next_links_retries_and_skips_what_it_cannot_use(
        tmp_path, street_images):
    faults = Faults(throttle_first_search=True, fail_image_once="1003", missing_image="1005",
                    malformed_record=True)
    fake = FakePlatform(images=list(street_images), faults=faults, paged=True)
    with FakeServer("panoramax", fake) as server:
        crawler = Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK)
        (summary,) = crawler.run([_panoramax(server)], CrawlRequest(BOX))

    assert (summary.found, summary.new, summary.duplicates) == (10, 9, 0)
    assert summary.skipped == {"broken has no point geometry": 1}
    assert summary.failed == {"image not available: HTTP 404": 1}
    assert summary.error is None and summary.complete
    rows = _rows(tmp_path / "idx")
    assert [r[1] for r in rows] == [str(1000 + i) for i in range(10) if i != 5]
    source, _, _, licence, creator, link, credit = rows[0]
    assert (source, licence, creator) == ("panoramax", "CC-BY-SA-4.0", "jane")
    assert link == f"{server.url}/#focus=pic&pic=1000"
    assert credit == "© jane, CC-BY-SA-4.0 (panoramax)"
    downloads = fake.image_downloads()
    assert downloads.pop("/api/pictures/1003/sd.jpg") == 2  # a 500, then the retry
    assert set(downloads.values()) == {1}
    assert fake.requests["/api/search"] > 3  # several pages, the first one throttled once
    assert not (tmp_path / "idx" / "ingest-staging" / "panoramax").exists() or not any(
        (tmp_path / "idx" / "ingest-staging" / "panoramax").iterdir())


def test_a_second_run_and_a_second_instance_fetch_nothing_twice(tmp_path, street_images):
    first, second = FakePlatform(images=list(street_images)), FakePlatform(
        images=list(street_images))
    with FakeServer("panoramax", first) as a, FakeServer("panoramax", second) as b:
        Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK).run([_panoramax(a)],
                                                              CrawlRequest(BOX))
        again = Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK)
        (rerun,), (other,) = (again.run([_panoramax(a)], CrawlRequest(BOX)),
                              again.run([_panoramax(b)], CrawlRequest(BOX)))
    assert (rerun.new, rerun.duplicates) == (0, 10)
    assert (other.new, other.duplicates) == (0, 10)
    assert set(first.image_downloads().values()) == {1}
    assert not second.image_downloads()
    assert len(_rows(tmp_path / "idx")) == 10


def test_refresh_asks_only_for_what_was_captured_since_the_last_run(tmp_path, street_images):
    fake = FakePlatform(images=list(street_images[:6]))
    with FakeServer("panoramax", fake) as server:
        Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK).run([_panoramax(server)],
                                                              CrawlRequest(BOX))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fake.images += [replace(i, captured_at=now) for i in street_images[6:]]
        (summary,) = Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK).run(
            [_panoramax(server)], CrawlRequest(BOX, refresh=True))
    assert (summary.found, summary.new, summary.duplicates) == (4, 4, 0)
    assert len(_rows(tmp_path / "idx")) == 10
    assert set(fake.image_downloads().values()) == {1}


def test_max_images_stops_early_and_the_next_run_goes_on_from_there(tmp_path, street_images):
    older = [replace(i, captured_at="2019-06-01T00:00:00Z") for i in street_images[:2]]
    fake = FakePlatform(images=older + list(street_images[2:]))
    with FakeServer("panoramax", fake) as server:
        crawler = Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK)
        (first,) = crawler.run([_panoramax(server)],
                               CrawlRequest(BOX, since="2020-01-01T00:00:00Z", max_images=3))
        (rest,) = crawler.run([_panoramax(server)], CrawlRequest(BOX, since="2020-01-01T00:00:00Z"))
    assert (first.new, first.complete) == (3, False)
    assert (rest.new, rest.duplicates, rest.complete) == (5, 3, True)
    assert [r[1] for r in _rows(tmp_path / "idx")] == [i.image_id for i in street_images[2:]]
    assert set(fake.image_downloads().values()) == {1}


def test_a_panorama_becomes_the_configured_views_with_headings_360_over_n_apart(tmp_path):
    rng = np.random.default_rng(5)
    equirect = (rng.random((256, 512, 3)) * 255).astype(np.uint8)
    pano = FakeImage("pano-1", 52.52, 13.405, equirect, heading=30.0, panorama=True)
    config = replace(POLITE_BUT_QUICK, panorama=PanoramaConfig(views=6, width=160, height=120))
    fake = FakePlatform(images=[pano])
    with FakeServer("panoramax", fake) as server:
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run([_panoramax(server, config)],
                                                                 CrawlRequest(BOX))
    assert (summary.new, summary.added) == (1, 6)
    rows = _rows(tmp_path / "idx")
    assert [r[1] for r in rows] == [f"pano-1#v{k}" for k in range(6)]
    assert [r[2] for r in rows] == [30.0, 90.0, 150.0, 210.0, 270.0, 330.0]
    assert fake.image_downloads() == {"/api/pictures/pano-1/hd.jpg": 1}


def _mapillary(server: FakeServer, token: str = MAPILLARY_TOKEN, limit: int = 2000) -> Mapillary:
    client = PoliteClient("mapillary", POLITE_BUT_QUICK,
                          secret_headers={"Authorization": f"OAuth {token}"})
    return Mapillary(client, server.url, f"{server.url}/tiles", token, search_limit=limit)


def test_mapillary_skips_empty_cells_and_splits_a_full_one(tmp_path, street_images):
    far = FakeImage("2000", 52.60, 13.50, street_images[0].rgb)
    fake = FakePlatform(images=[*street_images, far], page_size=6,
                        faults=Faults(malformed_record=True))
    wide = BBox(13.39, 52.50, 13.52, 52.62)  # 9 km by 13 km: dozens of cells, two with images
    with FakeServer("mapillary", fake) as server:
        (summary,) = Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK).run(
            [_mapillary(server, limit=6)], CrawlRequest(wide))
    assert summary.cells == 2
    assert (summary.new, summary.failed_count) == (11, 0)
    assert summary.skipped["999 has no point geometry"] >= 1
    assert not any("still full" in reason for reason in summary.skipped)
    assert fake.requests["/images"] > 2  # the full cell was asked for again in quarters
    assert set(fake.image_downloads().values()) == {1}
    rows = _rows(tmp_path / "idx")
    assert rows[0][3:6] == ("CC-BY-SA-4.0", "jane", "https://www.mapillary.com/app/?pKey=1000")


def test_a_wrong_mapillary_token_stops_that_source_in_one_line(tmp_path, street_images, capsys):
    fake = FakePlatform(images=list(street_images))
    with FakeServer("mapillary", fake) as server:
        (summary,) = Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK).run(
            [_mapillary(server, token="MLY|wrong")], CrawlRequest(BOX))
    assert summary.error == ("mapillary: the platform refused the request (HTTP 401): check the"
                             " access token")
    assert "wrong" not in summary.error
    assert not (tmp_path / "idx").exists()  # nothing half-written


def test_the_token_never_reaches_a_log_line(tmp_path, caplog):
    """urllib3 logs every retry with its URL, and the tile server takes the token in it."""
    import logging

    config = replace(POLITE_BUT_QUICK, retries=1)
    client = PoliteClient("mapillary", config)
    mapillary = Mapillary(client, "http://127.0.0.1:9", "http://127.0.0.1:9/tiles",
                          MAPILLARY_TOKEN)  # nothing listens on port 9: every try is retried
    with caplog.at_level(logging.DEBUG):
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run([mapillary], CrawlRequest(BOX))
    assert summary.error.startswith("mapillary: cannot reach http://127.0.0.1:9")
    assert any("Retrying" in r.getMessage() for r in caplog.records)  # the retry was logged
    assert "MLY" not in caplog.text and "fake%7Ctoken" not in caplog.text


def test_mapillary_without_a_token_is_refused_by_name():
    with pytest.raises(ConfigError, match="GEOSLEUTH_MAPILLARY_TOKEN"):
        create_platform("mapillary", IngestConfig())


def test_offline_each_source_ends_in_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    config = tmp_path / "geosleuth.toml"
    config.write_text('[ingest]\npanoramax_url = "http://127.0.0.1:9/api"\nretries = 1\n'
                      'backoff_s = 0.01\n')
    monkeypatch.setenv("GEOSLEUTH_MAPILLARY_TOKEN", "MLY|secret")
    monkeypatch.setenv("GEOSLEUTH_CONFIG", str(config))
    code = main(["ingest", "panoramax", "--bbox", "13.40,52.515,13.41,52.525", "--index",
                 str(tmp_path / "idx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == ("geosleuth: error: panoramax: cannot reach http://127.0.0.1:9 (offline, or"
                       " the host is down)")
    assert not (tmp_path / "idx").exists()


def test_the_cli_refuses_a_bad_bbox_and_a_bad_date(tmp_path, capsys):
    assert main(["ingest", "panoramax", "--bbox", "1,2,3", "--index", str(tmp_path)]) == 2
    assert "is not W,S,E,N" in capsys.readouterr().err
    assert main(["ingest", "panoramax", "--bbox", "1,2,3,4", "--since", "last week",
                 "--index", str(tmp_path)]) == 2
    assert "is not a date" in capsys.readouterr().err


def test_attribution_reaches_the_answer(tmp_path, street_images, capsys):
    """The default funnel locates a held-out view; the answer credits the matched photo."""
    from bot.render.text import summarise_answer
    from engine.locator import Locator
    from tests.conftest import jpeg_bytes

    references, query = street_images[:4] + street_images[5:], street_images[4]
    with FakeServer("panoramax", FakePlatform(images=references)) as server:
        Crawler(tmp_path / "idx", EngineConfig(), POLITE_BUT_QUICK).run([_panoramax(server)],
                                                                        CrawlRequest(BOX))
    locator = Locator.open(replace(EngineConfig(), index_path=tmp_path / "idx"))
    try:
        result = locator.locate(jpeg_bytes(query.rgb))
    finally:
        locator.close()
    assert result.located
    summary = summarise_answer(result)
    best = result.best_match
    assert summary.attribution == "© jane, CC-BY-SA-4.0 (panoramax)"
    assert summary.reference_url == f"{server.url}/#focus=pic&pic={best.source_id}"
    as_json = json.loads(json.dumps(result.to_json()))["matches"][0]
    assert (as_json["licence"], as_json["creator"]) == ("CC-BY-SA-4.0", "jane")


def test_a_crawl_stopped_by_sigint_half_way_resumes_and_ingests_each_image_once(tmp_path):
    """The real command in a child process, interrupted while images are still arriving."""
    import signal
    import subprocess
    import time

    views = make_street(seed=12, n_views=24, origin=ORIGIN)
    images = [FakeImage(str(3000 + i), v.lat, v.lon, v.rgb) for i, v in enumerate(views)]
    fake = FakePlatform(images=images, faults=Faults(image_delay_s=0.1))
    config = tmp_path / "geosleuth.toml"
    index = tmp_path / "idx"
    command = [*GEOSLEUTH, "--config", str(config), "ingest", "panoramax", "--bbox",
               "13.40,52.515,13.41,52.525", "--index", str(index)]
    with FakeServer("panoramax", fake) as server:
        config.write_text(f'[engine]\ndescriptor = "vlad"\nverifier = "sift"\n[ingest]\n'
                          f'panoramax_url = "{server.url}/api"\nfirst_batch = 4\n'
                          'batch_size = 4\nconcurrency = 2\nrequests_per_s = 100.0\n'
                          'allow_private_hosts = true\n')
        child = subprocess.Popen(command, cwd=Path(__file__).parents[1],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while sum(fake.image_downloads().values()) < 10 and time.monotonic() < deadline:
            assert child.poll() is None, child.communicate()
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 130, err
        assert "interrupted" in err
        fetched_before = sum(fake.image_downloads().values())
        assert 10 <= fetched_before < len(images)

        resumed = subprocess.run(command, cwd=Path(__file__).parents[1], capture_output=True,
                                 text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "panoramax (done)" in resumed.stdout
    assert [r[1] for r in _rows(index)] == [str(3000 + i) for i in range(24)]
    assert set(fake.image_downloads().values()) == {1}, fake.image_downloads()  # none twice
    with sqlite3.connect(index / "catalog.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM refs WHERE status='indexed'").fetchone() == (24,)


def test_a_crawl_into_an_index_another_build_holds_waits_for_it_and_loses_nothing(
        tmp_path, street_images):
    """`geosleuth ingest` beside a cover: batches in mid-crawl stay staged while the other
    build holds the index; the last one waits for it, then indexes everything."""
    index = tmp_path / "idx"
    index.mkdir()
    other_build = FileLock(index / LOCK_NAME, thread_local=False)  # a timer releases it
    other_build.acquire()
    releaser = threading.Timer(1.5, other_build.release)
    releaser.start()
    try:
        with FakeServer("panoramax", FakePlatform(images=list(street_images))) as server:
            started = time.monotonic()
            (summary,) = Crawler(index, FAST, POLITE_BUT_QUICK).run([_panoramax(server)],
                                                                   CrawlRequest(BOX))
            waited = time.monotonic() - started
    finally:
        releaser.join()
    assert summary.error is None and (summary.new, summary.added) == (10, 10)
    assert waited >= 1.5  # it waited for the other build instead of failing
    assert len(_rows(index)) == 10
