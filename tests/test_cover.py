"""Covers: an area crawled from the (fake) platforms into the index a running engine serves,
which answers from the new references without a restart."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from engine.async_engine import AsyncEngine
from engine.config import CoverConfig, EngineConfig, EngineLimits, RemoteConfig
from engine.cover import CoverRequest, coverage_cells
from engine.errors import CoverRefused, SourceAuthFailed, SourceUnavailable
from engine.evaluation import split_every
from engine.geo import haversine_m
from engine.index.builder import build_index
from engine.ingest.area import BBox
from engine.ingest.config import IngestConfig
from engine.locator import Locator
from engine.remote import RemoteEngine
from engine.results import ReferenceRecord
from engine.server.app import create_app
from engine.server.config import ServerConfig
from engine.sources import SourceScan, scan_source
from engine.synthetic import make_street
from tests.conftest import jpeg_bytes, shared_data, start_serve
from tests.fakes.platforms import MAPILLARY_TOKEN, FakeImage, FakePlatform, FakeServer, Faults

FAST = EngineConfig(descriptor="vlad", verifier="sift")
QUICK = IngestConfig(first_batch=4, batch_size=4, backoff_s=0.01, backoff_max_s=0.1,
                     requests_per_s=200.0, downloads_per_s=200.0, concurrency=2,
                     allow_private_hosts=True)
NO_WATCH = replace(EngineLimits(), index_check_s=0.0)
STREET_ORIGIN = (52.52, 13.405)  # the fakes' street, away from the index's own
STREET_BOX = BBox(13.4045, 52.5198, 13.4082, 52.5202)
TOKEN = "cover-test-token"


def _run(scenario, timeout: float = 240):
    return asyncio.run(asyncio.wait_for(scenario(), timeout=timeout))


def _ingest(panoramax: FakeServer | None = None, mapillary: FakeServer | None = None,
            **changes) -> IngestConfig:
    config = replace(QUICK, **changes)
    if panoramax is not None:
        config = replace(config, panoramax_url=f"{panoramax.url}/api")
    if mapillary is not None:
        config = replace(config, mapillary_url=mapillary.url, mapillary_token=MAPILLARY_TOKEN,
                         mapillary_tiles_url=f"{mapillary.url}/tiles")
    return config


def _copy(index: Path, tmp_path: Path) -> Path:
    """A test's own copy of a shared index: covers write into it."""
    return Path(shutil.copytree(index, tmp_path / "index"))


async def _until(check, what: str, timeout_s: float = 120.0, every_s: float = 0.05):
    """Poll `check` (async) until it returns something true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(every_s)
    pytest.fail(f"timed out waiting for {what}")


async def _finished(engine, job_id: int, timeout_s: float = 180.0):
    async def check():
        job = await engine.cover_job(job_id)
        return job if job.finished else None
    return await _until(check, f"cover {job_id} to finish", timeout_s, 0.1)


@pytest.fixture(scope="module")
def street_view_images() -> list[FakeImage]:
    """24 generated views, 8 m apart, that the fakes serve (the index does not hold them)."""
    views = make_street(seed=12, n_views=24, origin=STREET_ORIGIN)
    return [FakeImage(str(3000 + i), v.lat, v.lon, v.rgb) for i, v in enumerate(views)]


@pytest.fixture(scope="module")
def fast_index(tmp_path_factory) -> Path:
    """A weight-free (vlad + sift) index of a generated street elsewhere in Berlin."""
    folder = tmp_path_factory.mktemp("fast-street")
    records = []
    for i, view in enumerate(make_street(seed=3, n_views=12, origin=(52.50, 13.40))):
        path = folder / f"v{i}.jpg"
        path.write_bytes(jpeg_bytes(view.rgb))
        records.append(ReferenceRecord("synthetic", path.stem, view.lat, view.lon, str(path)))
    build_index(folder / "index", [SourceScan(tuple(records))], FAST)
    return folder / "index"


# --- the whole story, with real photos and the default funnel -----------------------------

@pytest.fixture(scope="module")
def lund() -> tuple[tuple[ReferenceRecord, ...], tuple[ReferenceRecord, ...]]:
    """(references the fakes serve, held-out frames), every third Lund frame held out."""
    return split_every(scan_source(shared_data("lund")).records, 3)


@pytest.fixture(scope="module")
def berlin_index(tmp_path_factory) -> Path:
    """The default funnel's index of Berlin (the cathedral, and a generated street): no Lund."""
    folder = tmp_path_factory.mktemp("berlin")
    records = list(scan_source(shared_data("berlin")).records)
    for i, view in enumerate(make_street(seed=5, n_views=12, origin=(52.50, 13.40))):
        path = folder / f"v{i}.jpg"
        path.write_bytes(jpeg_bytes(view.rgb))
        records.append(ReferenceRecord("synthetic", path.stem, view.lat, view.lon, str(path)))
    build_index(folder / "index", [SourceScan(tuple(records))], EngineConfig())
    return folder / "index"


def _fake_images(records, first_id: int) -> list[FakeImage]:
    images = []
    for i, record in enumerate(records):
        with Image.open(record.image_path) as image:
            rgb = np.asarray(image.convert("RGB"))
        images.append(FakeImage(str(first_id + i), record.lat, record.lon, rgb, heading=None))
    return images


def _around(records, margin_deg: float = 0.001) -> BBox:
    lats, lons = [r.lat for r in records], [r.lon for r in records]
    return BBox(min(lons) - margin_deg, min(lats) - margin_deg, max(lons) + margin_deg,
                max(lats) + margin_deg)


@pytest.mark.real_data
def test_a_cover_of_lund_places_a_held_out_frame_without_a_restart_while_others_are_answered(
        tmp_path, berlin_index, lund):
    references, held_out = lund
    frame = held_out[2]
    photo = Path(frame.image_path).read_bytes()
    berlin_photo = (shared_data("berlin") / "01.jpg").read_bytes()
    # Half the walk on each platform; images arrive slowly enough that the cover takes a while.
    panoramax = FakePlatform(images=_fake_images(references[::2], 5000),
                             faults=Faults(image_delay_s=0.1))
    mapillary = FakePlatform(images=_fake_images(references[1::2], 6000), page_size=100,
                             faults=Faults(image_delay_s=0.1))
    index = _copy(berlin_index, tmp_path)

    async def scenario(ingest: IngestConfig):
        config = replace(EngineConfig(), index_path=index, ingest=ingest)
        engine = AsyncEngine(lambda: Locator.open(config), NO_WATCH)
        await engine.start()
        try:
            before = await engine.locate(photo)
            key_before, references_before = engine.answer_key, len(engine._locator.index)
            request = CoverRequest(_around(references), (), "Lund", "test:chat-1")
            plan = await engine.plan_cover(request)
            job = await engine.start_cover(request)
            await _until(lambda: _state_is(engine, job.id, "running"), "the cover to start")
            during = await engine.locate(berlin_photo)
            state_after_locate = (await engine.cover_job(job.id)).state
            grew_while_running = False
            while not (current := await engine.cover_job(job.id)).finished:
                grew_while_running |= (current.state == "running"
                                       and len(engine._locator.index) > references_before)
                await asyncio.sleep(0.05)
            after = await engine.locate(photo)
            return (before, plan, during, state_after_locate, grew_while_running, current,
                    after, key_before != engine.answer_key, engine.describe_engine(),
                    await engine.coverage(0.5), await engine.cover_jobs("test:chat-1"))
        finally:
            await engine.close()

    with FakeServer("panoramax", panoramax) as p, FakeServer("mapillary", mapillary) as m:
        (before, plan, during, state_after_locate, grew, job, after, key_changed, described,
         cells, mine) = _run(lambda: scenario(_ingest(p, m)))

    assert not before.located  # Lund is not in the index yet
    assert plan.sources == ("panoramax", "mapillary") and plan.cells == 2
    assert plan.pictures_estimate == len(references)  # one cell each: the estimate is exact
    assert during.located and state_after_locate == "running"  # answered during the cover
    assert grew  # a batch was served while the cover still ran
    assert job.state == "done", job
    by_source = {s["source"]: s for s in job.summary}
    assert by_source["panoramax"]["new"] + by_source["mapillary"]["new"] == len(references)
    assert sum(s["added"] for s in job.summary) == len(references)
    assert after.located and haversine_m(after.lat, after.lon, frame.lat, frame.lon) <= 25
    assert key_changed  # caches keyed by the answer key do not serve the old answer
    assert described["covered"][0]["label"] == "Lund"
    assert described["covered"][0]["added"] == len(references)
    assert any(c["west"] <= frame.lon <= c["east"] and c["south"] <= frame.lat <= c["north"]
               for c in cells)
    assert [j.id for j in mine] == [job.id]
    for fake in (panoramax, mapillary):
        assert set(fake.image_downloads().values()) == {1}


async def _state_is(engine, job_id: int, state: str) -> bool:
    return (await engine.cover_job(job_id)).state == state


# --- killed mid-cover, started again ------------------------------------------------------

def test_a_serve_killed_mid_cover_resumes_it_and_fetches_no_picture_twice(
        tmp_path, fast_index, street_view_images):
    index = _copy(fast_index, tmp_path)
    # Each listing is slow: the kill lands while one is awaited, after a cell's downloads.
    fake = FakePlatform(images=list(street_view_images), faults=Faults(search_delay_s=0.4))
    config = tmp_path / "geosleuth.toml"
    with FakeServer("panoramax", fake) as server:
        config.write_text(
            '[engine]\ndescriptor = "vlad"\nverifier = "sift"\n'
            '[engine.limits]\nindex_check_s = 0.0\n'
            f'[ingest]\npanoramax_url = "{server.url}/api"\ncell_km = 0.05\nbatch_size = 64\n'
            'concurrency = 2\nrequests_per_s = 100.0\nbackoff_s = 0.01\n'
            'allow_private_hosts = true\n')
        child, url = start_serve(index, TOKEN, config=config)
        try:
            job = _post_cover(url, STREET_BOX)
            deadline = time.monotonic() + 60
            while sum(fake.image_downloads().values()) < 6 and time.monotonic() < deadline:
                time.sleep(0.02)
            searches = fake.requests["/api/search"]
            while fake.requests["/api/search"] == searches and time.monotonic() < deadline:
                time.sleep(0.01)
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        finally:
            child.kill()
        fetched_before = sum(fake.image_downloads().values())
        with sqlite3.connect(index / "covers.sqlite") as db:
            assert db.execute("SELECT state FROM covers").fetchone() == ("running",)

        child, url = start_serve(index, TOKEN, config=config)
        try:
            finished = _poll_cover(url, job["id"])
        finally:
            child.terminate()
            child.wait(30)

    assert 6 <= fetched_before < len(street_view_images)
    assert finished["state"] == "done", finished
    assert set(fake.image_downloads().values()) == {1}, fake.image_downloads()  # none twice
    # The summary counts both starts: every picture found once, fetched and added by this job.
    (summary,) = finished["summary"]
    images = len(street_view_images)
    assert (summary["found"], summary["new"], summary["added"], summary["duplicates"]) == (
        images, images, images, 0), summary
    with sqlite3.connect(index / "catalog.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM refs WHERE source='panoramax'"
                          " AND status='indexed'").fetchone() == (len(street_view_images),)


def _post_cover(url: str, box: BBox) -> dict:
    async def post():
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
            body = {"bbox": box.as_list(), "sources": ["panoramax"], "label": "the street"}
            async with s.post(f"{url}/v1/cover", json=body) as response:
                assert response.status == 202, await response.text()
                return await response.json()
    return _run(post, 30)


def _poll_cover(url: str, job_id: int) -> dict:
    async def poll():
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
            async def check():
                async with s.get(f"{url}/v1/cover/{job_id}") as response:
                    job = await response.json()
                    return job if job["state"] in ("done", "failed", "cancelled") else None
            return await _until(check, "the resumed cover to finish", 120, 0.1)
    return _run(poll, 150)


# --- cancel, refusals, a platform that cannot be asked -------------------------------------

def test_a_cancel_stops_the_running_cover_keeping_what_it_fetched_and_ends_a_queued_one(
        tmp_path, fast_index, street_view_images):
    index = _copy(fast_index, tmp_path)
    fake = FakePlatform(images=list(street_view_images), faults=Faults(image_delay_s=0.15))

    async def scenario(ingest: IngestConfig):
        config = replace(FAST, index_path=index, ingest=ingest)
        engine = AsyncEngine(lambda: Locator.open(config), NO_WATCH)
        await engine.start()
        try:
            request = CoverRequest(STREET_BOX, ("panoramax",), "street")
            running = await engine.start_cover(request)
            queued = await engine.start_cover(replace(request, label="again"))
            assert queued.state == "queued" and queued.position in (1, 2)
            cancelled_at_once = await engine.cancel_cover(queued.id)

            async def some_fetched():
                job = await engine.cover_job(running.id)
                return job.progress.get("panoramax", {}).get("new", 0) >= 4
            await _until(some_fetched, "a few pictures")
            asked = await engine.cancel_cover(running.id)
            ended = await _finished(engine, running.id)
            return cancelled_at_once, asked, ended, await engine.cancel_cover(999)
        finally:
            await engine.close()

    with FakeServer("panoramax", fake) as server:
        at_once, asked, ended, unknown = _run(lambda: scenario(_ingest(server)))

    assert at_once.state == "cancelled" and at_once.finished_at
    assert asked.state == "running" and asked.progress["cancelling"] is True
    assert ended.state == "cancelled"
    (summary,) = ended.summary
    fetched = sum(fake.image_downloads().values())
    assert fetched < len(street_view_images)  # it stopped early
    assert summary["new"] == summary["added"] == fetched  # what it fetched is indexed
    assert unknown is None


def test_an_area_over_the_cap_an_unknown_source_and_no_token_are_one_sentence_each(
        tmp_path, fast_index):
    config = replace(FAST, index_path=_copy(fast_index, tmp_path),
                     cover=CoverConfig(max_area_km2=4.0), ingest=QUICK)

    async def scenario():
        engine = AsyncEngine(lambda: Locator.open(config), NO_WATCH)
        await engine.start()
        refusals = []
        try:
            for request in (CoverRequest(BBox(13.0, 55.6, 13.1, 55.7), (), "Lund"),
                            CoverRequest(STREET_BOX, ("flickr",), "x"),
                            CoverRequest(STREET_BOX, ("mapillary",), "x")):
                for call in (engine.plan_cover, engine.start_cover):
                    with pytest.raises(CoverRefused) as refused:
                        await call(request)
                    refusals.append(str(refused.value))
            return refusals, await engine.cover_jobs()
        finally:
            await engine.close()

    refusals, jobs = _run(scenario)
    assert refusals[0] == ("That area is 69.9 km², over this engine's limit of 4 km²; cover a"
                           " smaller one.")
    assert refusals[2].startswith("There is no source called 'flickr'")
    assert refusals[4] == "Mapillary can't be used: this engine has no Mapillary token."
    assert refusals[0::2] == refusals[1::2] and jobs == []


def test_the_plan_says_in_one_sentence_that_a_platform_cannot_be_reached_or_refuses_the_token(
        tmp_path, fast_index, street_view_images):
    index = _copy(fast_index, tmp_path)

    async def plan(ingest: IngestConfig, sources: tuple[str, ...]):
        config = replace(FAST, index_path=index, ingest=ingest)
        engine = AsyncEngine(lambda: Locator.open(config), NO_WATCH)
        await engine.start()
        try:
            return await engine.plan_cover(CoverRequest(STREET_BOX, sources, "street"))
        finally:
            await engine.close()

    offline = replace(QUICK, panoramax_url="http://127.0.0.1:9/api")
    with pytest.raises(SourceUnavailable) as unreachable:
        _run(lambda: plan(offline, ("panoramax",)))
    assert str(unreachable.value) == ("panoramax: cannot reach http://127.0.0.1:9 (offline, or"
                                      " the host is down)")
    with FakeServer("mapillary", FakePlatform(images=list(street_view_images))) as server:
        wrong = replace(_ingest(mapillary=server), mapillary_token="MLY|wrong")
        with pytest.raises(SourceAuthFailed, match="check the access token"):
            _run(lambda: plan(wrong, ("mapillary",)))
    # Without a token, the default sources leave Mapillary out and say so.
    with FakeServer("panoramax", FakePlatform(images=list(street_view_images))) as server:
        found = _run(lambda: plan(_ingest(server), ()))
    assert found.sources == ("panoramax",)
    assert found.notes == ("mapillary is skipped: this engine has no Mapillary token",)
    assert found.pictures_estimate and found.seconds_estimate


# --- served: the endpoints, and RemoteEngine over them ---------------------------------------

def test_the_cover_endpoints_and_a_remote_engine_over_them(tmp_path, fast_index,
                                                           street_view_images):
    index = _copy(fast_index, tmp_path)
    fake = FakePlatform(images=list(street_view_images[:6]))

    async def scenario(ingest: IngestConfig):
        config = replace(FAST, index_path=index, ingest=ingest,
                         cover=CoverConfig(max_area_km2=4.0))
        engine = AsyncEngine(lambda: Locator.open(config), NO_WATCH)
        await engine.start()
        runner = web.AppRunner(create_app(engine, ServerConfig(tokens=(TOKEN,)), FAST.decode))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        remote = RemoteEngine(RemoteConfig(url=url, token=TOKEN, index_check_s=0.0))
        await remote.start()
        seen = {}
        try:
            async with aiohttp.ClientSession(url) as anyone, anyone.get("/v1/cover") as response:
                seen["no token"] = response.status
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with aiohttp.ClientSession(url, headers=headers) as client:
                for name, body in (("not json", b"{"), ("no bbox", b'{"label": "x"}'),
                                   ("bad bbox", b'{"bbox": [1, 2, 0, 3]}'),
                                   ("too large", json.dumps(
                                       {"bbox": [13.0, 55.6, 13.1, 55.7]}).encode())):
                    async with client.post("/v1/cover", data=body) as response:
                        seen[name] = (response.status, (await response.json())["error"])
                for name, path in (("unknown job", "/v1/cover/41"),
                                   ("not a job", "/v1/cover/x")):
                    async with client.get(path) as response:
                        seen[name] = response.status
                async with client.delete("/v1/cover/41") as response:
                    seen["cancel unknown"] = response.status
                async with client.post("/v1/cover?plan=1", json={
                        "bbox": STREET_BOX.as_list(), "sources": ["panoramax"]}) as response:
                    seen["plan"] = (response.status, (await response.json())["cells"])
            request = CoverRequest(STREET_BOX, ("panoramax",), "street", "remote:1")
            seen["remote plan"] = await remote.plan_cover(request)
            job = await remote.start_cover(request)
            seen["remote done"] = await _finished(remote, job.id, 60)
            seen["remote mine"] = await remote.cover_jobs("remote:1")
            seen["remote others"] = await remote.cover_jobs("remote:2")
            seen["remote unknown"] = await remote.cover_job(41)
            seen["remote cancel unknown"] = await remote.cancel_cover(41)
            seen["remote coverage"] = await remote.coverage(0.5)
            with pytest.raises(CoverRefused, match="over this engine's limit of 4 km²"):
                await remote.start_cover(replace(request, bbox=BBox(13.0, 55.6, 13.1, 55.7)))
            seen["index"] = await remote._get_json("/v1/index")
            seen["remote key"] = await remote.current_answer_key()
            seen["engine key"] = engine.answer_key
        finally:
            await remote.close()
            await runner.cleanup()
            await engine.close()
        return seen

    with FakeServer("panoramax", fake) as server:
        seen = _run(lambda: scenario(_ingest(server)))

    assert seen["no token"] == 401
    assert seen["not json"] == seen["no bbox"] == (400, "bad_request")
    assert seen["bad bbox"] == (400, "bad_area")
    assert seen["too large"] == (422, "cover_refused")
    assert seen["unknown job"] == seen["not a job"] == seen["cancel unknown"] == 404
    assert seen["plan"][0] == 200 and seen["plan"][1] >= 1
    assert seen["remote plan"].pictures_estimate is not None
    done = seen["remote done"]
    assert done.state == "done" and done.summary[0]["added"] == 6
    assert [j.id for j in seen["remote mine"]] == [done.id] and seen["remote others"] == []
    assert seen["remote unknown"] is None and seen["remote cancel unknown"] is None
    assert sum(c["references"] for c in seen["remote coverage"]) == 12 + 6
    assert seen["index"]["covered"][0]["label"] == "street"
    assert seen["index"]["references"] == 12 + 6  # served without a restart
    assert seen["remote key"] == seen["engine key"]


# --- the engine takes up what `geosleuth ingest` appends beside it --------------------------

def test_references_appended_beside_the_engine_are_served_after_the_next_manifest_check(
        tmp_path, fast_index, street_view_images):
    index = _copy(fast_index, tmp_path)
    config = replace(FAST, index_path=index)
    photo = jpeg_bytes(street_view_images[5].rgb)
    folder = tmp_path / "more"
    folder.mkdir()
    records = []
    for image in street_view_images[:5] + street_view_images[6:]:
        path = folder / f"{image.image_id}.jpg"
        path.write_bytes(image.jpeg())
        records.append(ReferenceRecord("beside", image.image_id, image.lat, image.lon, str(path)))

    async def scenario():
        engine = AsyncEngine(lambda: Locator.open(config),
                             replace(EngineLimits(), index_check_s=0.2))
        await engine.start()
        try:
            nothing_new = await engine.refresh_index()
            before = await engine.locate(photo)
            version = engine.index_version
            # As `geosleuth ingest` in another process would: a build under the lock.
            build = threading.Thread(target=build_index,
                                     args=(index, [SourceScan(tuple(records))], FAST))
            build.start()
            await asyncio.to_thread(build.join)

            async def changed():
                return engine.index_version != version
            await _until(changed, "the manifest check to take up the build", 10)
            return nothing_new, before, await engine.locate(photo)
        finally:
            await engine.close()

    nothing_new, before, after = _run(scenario)
    where = street_view_images[5]
    assert nothing_new is False
    assert not before.located or haversine_m(before.lat, before.lon, where.lat, where.lon) > 100
    assert after.located and after.best_match.source == "beside"
    assert haversine_m(after.lat, after.lon, where.lat, where.lon) <= 25


def test_coverage_cells_hold_every_reference_once():
    lats = np.array([55.7000, 55.7001, 55.7200, -33.9])
    lons = np.array([13.1900, 13.1901, 13.1900, 151.2])
    cells = coverage_cells(lats, lons, 1.0)
    assert sorted(c["references"] for c in cells) == [1, 1, 2]
    for lat, lon in zip(lats, lons, strict=True):
        assert sum(c["south"] <= lat < c["north"] and c["west"] <= lon < c["east"]
                   for c in cells) == 1
