"""`geosleuth ingest` against platforms that answer as the real servers do at their edges
(a busy geovisio cell, Amsterdam's documented parameters, KartaView's refusals inside a 200,
Mapillary's 403 tiles), and as a hostile or broken one would: records naming file:, an
internal address, a redirect inward or in a loop, a body that trickles, a host that is down,
a JSON answer of hundreds of MB, a next link elsewhere, a Retry-After of a day."""

from __future__ import annotations

import ipaddress
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import mercantile
import numpy as np
import pytest

from bot.cli.main import main
from bot.render.text import summarise_answer, web_link
from engine.errors import SourceUnavailable
from engine.ingest import http
from engine.ingest.area import BBox
from engine.ingest.config import IngestConfig
from engine.ingest.crawl import Crawler, CrawlRequest
from engine.ingest.http import PoliteClient
from engine.ingest.panoramax import Panoramax
from engine.ingest.registry import create_platform
from engine.results import LocateResult, Match, Status
from engine.synthetic import make_street
from tests.fakes.platforms import FakeImage, FakePlatform, FakeServer, HangUpHost, Hostile
from tests.test_ingest import BOX, FAST, ORIGIN, POLITE_BUT_QUICK, _configured

# The fake platform stands on 127.0.0.1 for a public host; 127.0.0.2 is the internal network.
PUBLIC_STAND_IN = ipaddress.ip_address("127.0.0.1")
INTERNAL = "127.0.0.2"
NOTHING_LISTENS = "http://127.0.0.1:9"
HOSTILE_KINDS = {"file-href", "internal-href", "inward", "loop", "slow", "down-0"}


@pytest.fixture(scope="module")
def street_images() -> list[FakeImage]:
    views = make_street(seed=21, n_views=10, origin=ORIGIN)
    return [FakeImage(str(5000 + i), v.lat, v.lon, v.rgb, heading=v.heading_deg)
            for i, v in enumerate(views)]


@pytest.fixture
def loopback_stands_for_the_internet(monkeypatch):
    """127.0.0.1 counts as public, every other non-public address stays refused: the public
    check runs for real, on each connected socket, with the fake as the outside world."""
    real = http._is_public
    monkeypatch.setattr(http, "_is_public",
                        lambda address: address == PUBLIC_STAND_IN or real(address))


def _files_outside(root: Path, index: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and index not in p.parents]


def _staged(index: Path) -> int:
    with sqlite3.connect(index / "ingest.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM listings WHERE status='staged'").fetchone()[0]


def test_a_busy_geovisio_cell_of_130_pictures_is_crawled_whole(tmp_path):
    """geovisio answers the 100 nearest the centre and no next link: the cell is split."""
    rng = np.random.default_rng(3)
    rgb = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    images = [FakeImage(str(7000 + i), 52.5195 + (i // 13) * 0.0001, 13.4045 + (i % 13) * 0.0001,
                        np.roll(rgb, i, axis=1)) for i in range(130)]
    fake = FakePlatform(images=images)
    config = replace(POLITE_BUT_QUICK, first_batch=200, batch_size=200)
    with FakeServer("panoramax", fake) as server:
        platform = Panoramax(PoliteClient("panoramax", config), f"{server.url}/api",
                             search_limit=100)
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run([platform], CrawlRequest(BOX))
    assert (summary.found, summary.new, summary.failed_count) == (130, 130, 0)
    assert summary.complete
    assert fake.requests["/api/search"] >= 5  # the full cell, then its quarters
    assert set(fake.image_downloads().values()) == {1}


def test_a_cell_still_full_at_the_smallest_size_is_never_done(tmp_path, street_images):
    """Kept, counted, and asked for again by the next run, which is not done either."""
    config = replace(POLITE_BUT_QUICK, max_splits=1)
    with FakeServer("panoramax", FakePlatform(images=list(street_images))) as server:
        def crawl():
            platform = Panoramax(PoliteClient("panoramax", config), f"{server.url}/api",
                                 search_limit=2)
            (summary,) = Crawler(tmp_path / "idx", FAST, config).run([platform],
                                                                      CrawlRequest(BOX))
            return summary
        first, again = crawl(), crawl()
    cut_off = "a cell still full after 1 splits: images past the platform's limit left out"
    assert first.failed[cut_off] >= 1 and not first.complete and first.new > 0
    assert again.failed[cut_off] == first.failed[cut_off] and not again.complete
    assert again.new == 0 and again.duplicates == first.new


def test_geovisio_refuses_a_limit_over_10000(tmp_path, street_images):
    """The fake answers 400 as geovisio does; the cell fails, counted, and the run says so."""
    with FakeServer("panoramax", FakePlatform(images=list(street_images))) as server:
        platform = Panoramax(PoliteClient("panoramax", POLITE_BUT_QUICK), f"{server.url}/api",
                             search_limit=10_001)
        (summary,) = Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK).run(
            [platform], CrawlRequest(BOX))
    assert summary.failed == {"a cell's listing could not be used: http://127.0.0.1:"
                              f"{server.url.rsplit(':', 1)[1]} answered HTTP 400": 1}
    assert not summary.complete and summary.error is None


def test_every_hostile_record_is_one_counted_failure_and_nothing_internal_is_fetched(
        tmp_path, street_images, loopback_stands_for_the_internet):
    internal = FakePlatform()
    with FakeServer("panoramax", internal, host=INTERNAL) as inside:
        hostile = Hostile(internal_url=inside.url, file_href=True, internal_href=True,
                          redirect_to_internal=True, redirect_loop=True, relative_href=True,
                          licence_object=True, slow_image=True, down_host=NOTHING_LISTENS)
        fake = FakePlatform(images=list(street_images), hostile=hostile)
        config = replace(POLITE_BUT_QUICK, allow_private_hosts=False, deadline_s=1.5,
                         timeout_s=2.0, retries=1)
        with FakeServer("panoramax", fake) as server:
            began = time.monotonic()
            (first,) = Crawler(tmp_path / "idx", FAST, config).run(
                [create_platform("panoramax", config, instance=f"{server.url}/api")],
                CrawlRequest(BOX))
            took_s = time.monotonic() - began
            (again,) = Crawler(tmp_path / "idx", FAST, config).run(
                [create_platform("panoramax", config, instance=f"{server.url}/api")],
                CrawlRequest(BOX))

    assert first.error is None and first.complete  # bad records are no reason to stop
    assert (first.new, first.failed_count) == (10, len(HOSTILE_KINDS))
    reasons = " | ".join(first.failed)
    for expected in ("not an http(s) URL ('file:///etc/passwd')",
                     f"refused: {INTERNAL} is {INTERNAL}, not a public address",
                     "redirects in a loop", "deadline", f"cannot reach {NOTHING_LISTENS}"):
        assert expected in reasons
    assert sum(n for r, n in first.failed.items() if "not a public address" in r) == 2
    assert first.skipped == {"hostile-licence has a licence that is not text": 1}
    assert internal.requests_total() == 0  # neither named nor redirected to: never reached
    assert took_s < 60
    assert (again.new, again.duplicates, again.failed_count) == (0, 10, len(HOSTILE_KINDS))
    assert _staged(tmp_path / "idx") == 0  # every good picture indexed, none left staged
    assert not _files_outside(tmp_path, tmp_path / "idx")


def test_an_image_host_that_is_down_fails_its_images_not_the_source(tmp_path, street_images):
    """After three connections in a row fail, that host's other images fail without trying."""
    with HangUpHost() as down:
        fake = FakePlatform(images=list(street_images),
                            hostile=Hostile(down_host=down.url, down_records=12))
        config = replace(POLITE_BUT_QUICK, retries=1, concurrency=1)
        with FakeServer("panoramax", fake) as server:
            (summary,) = Crawler(tmp_path / "idx", FAST, config).run(
                [create_platform("panoramax", config, instance=f"{server.url}/api")],
                CrawlRequest(BOX))
    assert summary.error is None and summary.complete
    assert summary.new == 10
    assert summary.failed == {f"image not available: cannot reach {down.url}": 12}
    assert down.connections <= 3 * 2  # three images, each tried and retried once


def test_private_addresses_are_refused_by_default(tmp_path, street_images):
    fake = FakePlatform(images=list(street_images))
    config = replace(POLITE_BUT_QUICK, allow_private_hosts=False)
    with FakeServer("panoramax", fake) as server:
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run(
            [create_platform("panoramax", config, instance=f"{server.url}/api")],
            CrawlRequest(BOX))
    assert summary.error == (f"panoramax: refused to fetch {server.url}: 127.0.0.1 is 127.0.0.1,"
                             " not a public address (set [ingest] allow_private_hosts for a"
                             " private instance)")
    assert fake.requests_total() == 0
    assert IngestConfig().allow_private_hosts is False


def test_a_json_answer_of_hundreds_of_mb_fails_its_cell_within_the_cap(tmp_path, street_images):
    fake = FakePlatform(images=list(street_images), hostile=Hostile(huge_page=True))
    config = replace(POLITE_BUT_QUICK, max_json_bytes=2_000_000)
    with FakeServer("panoramax", fake) as server:
        began = time.monotonic()
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run(
            [create_platform("panoramax", config, instance=f"{server.url}/api")],
            CrawlRequest(BOX))
    assert summary.failed == {"a cell's listing could not be used: over the 2 MB cap": 1}
    assert (summary.new, summary.complete, summary.error) == (0, False, None)
    assert time.monotonic() - began < 30


def test_a_next_link_to_another_host_is_not_followed(tmp_path, street_images):
    internal = FakePlatform()
    with FakeServer("panoramax", internal, host=INTERNAL) as inside:
        fake = FakePlatform(images=list(street_images), paged=True,
                            hostile=Hostile(internal_url=inside.url, next_elsewhere=True))
        with FakeServer("panoramax", fake) as server:
            (summary,) = Crawler(tmp_path / "idx", FAST, POLITE_BUT_QUICK).run(
                [create_platform("panoramax", POLITE_BUT_QUICK, instance=f"{server.url}/api")],
                CrawlRequest(BOX))
    assert summary.failed == {"a cell's listing could not be used: a next link to another"
                              " host": 1}
    assert internal.requests_total() == 0
    assert not summary.complete


def test_a_retry_after_of_a_day_is_waited_on_only_as_long_as_configured(tmp_path):
    fake = FakePlatform(hostile=Hostile(throttle_forever=True))
    config = replace(POLITE_BUT_QUICK, retries=2, retry_after_max_s=0.3)
    with FakeServer("panoramax", fake) as server:
        client = PoliteClient("panoramax", config)
        began = time.monotonic()
        with pytest.raises(SourceUnavailable, match="kept refusing after 2 retries"):
            client.get_json(f"{server.url}/api/search", {"bbox": "1,2,3,4"})
    assert 0.5 < time.monotonic() - began < 5
    assert fake.requests["/api/search"] == 3


@pytest.mark.parametrize(("status", "error", "failed"), [
    (401, "panoramax: the platform refused the request (HTTP 401): check the access token", 0),
    (403, "panoramax: the platform refused the request (HTTP 403): check the access token", 0),
    (404, None, 1),
    (503, "panoramax: http://127.0.0.1:{port} kept refusing after 1 retries", 0),
])
def test_api_statuses_stop_the_source_or_fail_the_cell(tmp_path, street_images, status, error,
                                                       failed):
    fake = FakePlatform(images=list(street_images), search_status=status)
    config = replace(POLITE_BUT_QUICK, retries=1)
    with FakeServer("panoramax", fake) as server:
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run(
            [create_platform("panoramax", config, instance=f"{server.url}/api")],
            CrawlRequest(BOX))
    port = server.url.rsplit(":", 1)[1]
    assert summary.error == (error.format(port=port) if error else None)
    assert (summary.failed_count, summary.new, summary.complete) == (failed, 0, False)
    assert not (tmp_path / "idx").exists()  # nothing half-written


def test_amsterdam_is_asked_northwest_southeast_and_a_date_and_since_is_kept_exactly(
        tmp_path, street_images):
    """The fake answers 400 to another corner order or a datetime, as the docs define them."""
    morning = [replace(i, captured_at="2024-03-01T08:00:00Z") for i in street_images[:3]]
    later = [replace(i, captured_at="2024-03-02T08:00:00Z") for i in street_images[3:6]]
    fake = FakePlatform(images=morning + later, page_size=2)
    with FakeServer("amsterdam", fake) as server:
        config = _configured("amsterdam", server.url, replace(
            POLITE_BUT_QUICK, panorama=replace(POLITE_BUT_QUICK.panorama, views=2, width=96,
                                               height=72)))
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run(
            [create_platform("amsterdam", config)],
            CrawlRequest(BOX, since="2024-03-01T12:00:00Z"))
    assert summary.failed_count == 0 and summary.complete
    assert (summary.found, summary.new) == (3, 3)  # the morning's three left out here
    assert fake.requests["/panorama/panoramas/"] == 3  # pages of two, by the next links


def test_kartaview_refusing_inside_a_200_stops_the_source_in_one_line(tmp_path, street_images):
    fake = FakePlatform(images=list(street_images), kartaview_login_required=True)
    with FakeServer("kartaview", fake) as server:
        config = _configured("kartaview", server.url, POLITE_BUT_QUICK)
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run(
            [create_platform("kartaview", config)], CrawlRequest(BOX))
    assert summary.error == ("kartaview: the platform refused the request (HTTP 401): check the"
                             " access token")


def test_mapillary_tiles_answering_403_are_empty_tiles(tmp_path, street_images):
    """The fake's tile server answers 403 where it has no tile, as Mapillary's CDN does."""
    fake = FakePlatform(images=list(street_images), page_size=100)
    wide = BBox(13.39, 52.50, 13.45, 52.56)
    with FakeServer("mapillary", fake) as server:
        config = _configured("mapillary", server.url, POLITE_BUT_QUICK)
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run(
            [create_platform("mapillary", config)], CrawlRequest(wide))
    asked = {path for path in fake.requests if path.startswith("/tiles/")}
    with_images = {mercantile.tile(i.lon, i.lat, 14) for i in street_images}
    assert len(asked) > len(with_images)  # the others answered 403
    assert summary.error is None and summary.complete
    assert (summary.new, summary.failed_count) == (10, 0)


def test_a_mapilio_sequence_whose_detail_is_null_skips_its_images(tmp_path, street_images):
    """mapilio/backend answers `{"data": null}` for a sequence without images left."""
    fake = FakePlatform(images=list(street_images), mapilio_gone=street_images[0].image_id)
    with FakeServer("mapilio", fake) as server:
        config = _configured("mapilio", server.url, POLITE_BUT_QUICK)
        (summary,) = Crawler(tmp_path / "idx", FAST, config).run(
            [create_platform("mapilio", config)], CrawlRequest(BOX))
    assert summary.skipped == {f"{street_images[0].image_id} is not in its sequence's"
                               " detail": 1}
    assert (summary.new, summary.failed_count, summary.error) == (9, 0, None)


def _answer_linking(link: str | None) -> LocateResult:
    match = Match(ref_id=1, source="amsterdam", source_id="TMX-1", lat=52.5, lon=4.9,
                  similarity=0.9, inliers=120, attribution="Gemeente Amsterdam", link=link)
    return LocateResult(status=Status.LOCATED, lat=52.5, lon=4.9, confidence=0.9,
                        radius_m=20.0, alternatives=(), matches=(match,), exif_gps=None,
                        timings_ms={}, descriptor="vlad", verifier="sift", index_version="t")


@pytest.mark.parametrize("link", ["javascript:alert(1)", "file:///etc/passwd", "/relative",
                                  "data:text/html,x", "http://[::1"])
def test_a_platform_link_that_is_not_http_never_reaches_a_chat_message(link):
    assert summarise_answer(_answer_linking(link)).reference_url is None


def test_a_platform_link_cannot_end_its_markdown_or_html_early():
    link = 'https://example.org/p/1) [click](javascript:x) "<b>'
    shown = summarise_answer(_answer_linking(link)).reference_url
    assert shown == "https://example.org/p/1%29%20[click]%28javascript:x%29%20%22%3Cb%3E"
    assert web_link("https://data.amsterdam.nl/panorama/TMX-1/") == (
        "https://data.amsterdam.nl/panorama/TMX-1/")


def test_the_command_reports_every_bad_record_and_ends_by_itself(
        tmp_path, street_images, capsys, monkeypatch, loopback_stands_for_the_internet):
    internal = FakePlatform()
    with FakeServer("panoramax", internal, host=INTERNAL) as inside:
        hostile = Hostile(internal_url=inside.url, file_href=True, internal_href=True,
                          redirect_to_internal=True, redirect_loop=True, licence_object=True,
                          slow_image=True, down_host=NOTHING_LISTENS)
        fake = FakePlatform(images=list(street_images), hostile=hostile)
        with FakeServer("panoramax", fake) as server:
            config = tmp_path / "geosleuth.toml"
            config.write_text(
                '[engine]\ndescriptor = "vlad"\nverifier = "sift"\n[ingest]\n'
                f'panoramax_url = "{server.url}/api"\nfirst_batch = 4\nbatch_size = 4\n'
                'requests_per_s = 200.0\ndownloads_per_s = 200.0\nretries = 1\n'
                'backoff_s = 0.01\ndeadline_s = 1.5\ntimeout_s = 2.0\n')
            monkeypatch.setenv("GEOSLEUTH_CONFIG", str(config))
            code = main(["ingest", "panoramax", "--bbox", "13.40,52.515,13.41,52.525",
                         "--index", str(tmp_path / "idx")])
    out = capsys.readouterr().out
    assert code == 0
    assert "panoramax (done): 16 found, 10 new, 0 duplicates, 1 skipped, 6 failed" in out
    for reason in ("1 skipped: hostile-licence has a licence that is not text",
                   "2 failed: image not available: refused: 127.0.0.2 is 127.0.0.2",
                   "1 failed: image not available: not an http(s) URL ('file:///etc/passwd')",
                   "redirects in a loop", "deadline", f"cannot reach {NOTHING_LISTENS}"):
        assert reason in out
    assert internal.requests_total() == 0
