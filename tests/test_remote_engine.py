"""`RemoteEngine` against `geosleuth serve` on 127.0.0.1, and a bot answering through it."""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.chat.service import Answer, BotService, Requester
from bot.chat.store import Store
from bot.config import AppConfig, StoreConfig
from bot.render.map import MapStyle
from engine.album import AlbumPhoto, fuse
from engine.async_engine import AsyncEngine
from engine.config import EngineLimits, RemoteConfig
from engine.errors import ConfigError, EngineBusy
from engine.geo import haversine_m
from engine.locator import Locator
from engine.remote import EngineUnreachable, RemoteEngine, RemoteImageRefused
from engine.server.app import create_app
from engine.server.config import ServerConfig
from tests.conftest import jpeg_bytes, start_serve

TOKEN = "remote-test-token"


@asynccontextmanager
async def served(engine_config, **limits):
    engine = AsyncEngine(lambda: Locator.open(engine_config), replace(EngineLimits(), **limits))
    await engine.start()
    server = TestServer(create_app(engine, ServerConfig(tokens=(TOKEN,), retry_after_s=1),
                                   engine_config.decode), host="127.0.0.1")
    await server.start_server()
    try:
        yield server, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await engine.close()


@asynccontextmanager
async def remote(url: str, **settings):
    engine = RemoteEngine(RemoteConfig(url=url, token=TOKEN, **settings))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


def _run(scenario):
    return asyncio.run(asyncio.wait_for(scenario(), timeout=120))


def test_a_remote_locate_streams_progress_and_answers_like_the_engine(street_index,
                                                                      street_queries):
    view = street_queries[0]
    photo = jpeg_bytes(view.rgb)

    async def scenario():
        async with served(street_index) as (_, url), remote(url) as engine:
            stages = []
            result = await engine.locate(photo, on_progress=lambda e: stages.append(e.stage))
            picture = await engine.reference_picture(result.best_reference)
            return stages, result, picture, engine.answer_key, engine.index_version

    stages, result, picture, answer_key, version = _run(scenario)
    assert [s.value for s in stages][:2] == ["queued", "decoding"]
    assert "verifying" in [s.value for s in stages]
    assert result.located and haversine_m(view.lat, view.lon, result.lat, result.lon) <= 25
    assert result.correspondences and result.best_reference is not None
    assert picture.ndim == 3 and picture.shape[2] == 3
    locator = Locator.open(street_index)
    try:
        assert (answer_key, version) == (locator.answer_key, locator.index.version)
    finally:
        locator.close()


def test_refusals_keep_their_kind_and_the_servers_sentence(street_index):
    async def scenario():
        async with served(street_index) as (_, url), remote(url) as engine:
            with pytest.raises(RemoteImageRefused, match="not an image GeoSleuth can read"):
                await engine.locate(b"plain text, no photo")
        async with served(street_index) as (_, url):
            wrong = RemoteEngine(RemoteConfig(url=url, token="not-the-token"))
            with pytest.raises(ConfigError, match="refused this bot's token"):
                await wrong.start()
            await wrong.close()

    _run(scenario)


def test_a_full_queue_is_retried_after_retry_after_then_told(street_index, street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with served(street_index, queue_size=1, batch_size=1) as (_, url):
            async with remote(url, busy_retries=0) as impatient:
                told = await asyncio.gather(*(impatient.locate(photo) for _ in range(5)),
                                            return_exceptions=True)
            async with remote(url, busy_retries=30) as patient:
                waited = await asyncio.gather(*(patient.locate(photo) for _ in range(3)),
                                              return_exceptions=True)
            return told, waited

    told, waited = _run(scenario)
    assert any(isinstance(t, EngineBusy) for t in told)
    assert all(not isinstance(w, BaseException) and w.located for w in waited), waited


def test_an_unreachable_engine_is_a_clear_sentence_and_the_bot_still_starts():
    async def scenario():
        async with remote("http://127.0.0.1:9", connect_retries=1) as engine:
            with pytest.raises(EngineUnreachable) as caught:
                await engine.locate(b"x")
            return str(caught.value)

    assert _run(scenario) == ("The engine at http://127.0.0.1:9 can't be reached right now;"
                              " try again in a minute.")


def test_an_engine_killed_mid_request_is_a_clear_failure(street_index, street_queries):
    """`geosleuth serve` in a child process, SIGKILLed while it works on the photo."""
    import signal

    photo = jpeg_bytes(street_queries[0].rgb)
    child, url = start_serve(street_index.index_path, TOKEN)
    try:
        async def scenario():
            async with remote(url, connect_retries=0) as engine:
                def kill_when_it_works(event) -> None:
                    if event.stage.value == "decoding":
                        child.send_signal(signal.SIGKILL)
                with pytest.raises(EngineUnreachable) as caught:
                    await engine.locate(photo, on_progress=kill_when_it_works)
                return str(caught.value)

        assert "can't be reached right now" in _run(scenario)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()
        child.stderr.close()


@asynccontextmanager
async def fake_engine(locate, *, describe=None, port: int = 0):
    """A stand-in `geosleuth serve` on 127.0.0.1 with the given /v1/locate handler."""
    async def index(request: web.Request) -> web.Response:
        return web.json_response(describe() if describe else
                                 {"answer_key": "key-1", "index_version": "v1"})

    app = web.Application()
    app.router.add_get("/v1/index", index)
    app.router.add_post("/v1/locate", locate)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _ndjson_result(result: dict) -> web.Response:
    return web.Response(body=json.dumps({"event": "result", "result": result}).encode() + b"\n",
                        content_type="application/x-ndjson")


@pytest.fixture(scope="module")
def located_json(street_index, street_queries) -> dict:
    """A real answer's JSON, as the server sends it, for a fake server to answer with."""
    locator = Locator.open(street_index)
    try:
        return json.loads(json.dumps(locator.locate(jpeg_bytes(street_queries[0].rgb))
                                     .to_json(evidence=True)))
    finally:
        locator.close()


def test_a_server_that_drops_the_connection_after_the_body_gets_the_photo_exactly_once():
    photo = b"\xff\xd8 a photo that brings the engine down " * 1000
    posts: list[bytes] = []

    async def read_then_drop(request: web.Request) -> web.Response:
        posts.append(await request.read())
        request.transport.close()  # as an engine process that dies on this photo
        return web.Response()

    async def scenario():
        async with fake_engine(read_then_drop) as url, remote(url, connect_retries=3) as engine:
            with pytest.raises(EngineUnreachable):
                await engine.locate(photo)

    _run(scenario)
    assert posts == [photo]


def test_a_server_not_yet_listening_is_retried_and_gets_the_photo_once(located_json):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    posts: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        posts.append(await request.read())
        return _ndjson_result(located_json)

    async def scenario():
        async with remote(f"http://127.0.0.1:{port}", connect_retries=4) as engine:
            locating = asyncio.create_task(engine.locate(b"photo"))
            await asyncio.sleep(0.3)  # the first connection attempts are refused
            async with fake_engine(answer, port=port):
                return await locating

    assert _run(scenario).located
    assert posts == [b"photo"]


def test_a_retry_after_that_is_not_a_finite_number_is_ignored(located_json):
    refusals = ["inf", "nan", "Wed, 21 Oct 2015 07:28:00 GMT", "-5"]
    posts: list[bytes] = []

    async def busy_then_located(request: web.Request) -> web.Response:
        posts.append(await request.read())
        if len(posts) <= len(refusals):
            return web.json_response({"error": "busy", "message": "The engine is busy."},
                                     status=503, headers={"Retry-After": refusals[len(posts) - 1]})
        return _ndjson_result(located_json)

    async def scenario():
        async with fake_engine(busy_then_located) as url, remote(
                url, busy_retries=len(refusals)) as engine:
            return await asyncio.wait_for(engine.locate(b"photo"), timeout=20)

    assert _run(scenario).located  # each ignored Retry-After waited the default 1 s, not 30
    assert len(posts) == len(refusals) + 1


def test_the_bots_answer_cache_notices_when_the_servers_index_changes(tmp_path, located_json):
    served = {"answer_key": "index-1", "index_version": "v1"}
    posts: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        posts.append(await request.read())
        return _ndjson_result(located_json)

    async def scenario() -> list[bool]:
        config = AppConfig(map=MapStyle(tiles_enabled=False),
                           store=StoreConfig(path=tmp_path / "bot.sqlite"))
        who = Requester("telegram", "1", "private", "1", "alice")
        async with fake_engine(answer, describe=lambda: served) as url, remote(
                url, index_check_s=0) as engine, await Store.open(config.store.path) as store:
            service = BotService(config, engine, store)
            cached = []
            for key in ("index-1", "index-1", "index-2", "index-2"):
                served["answer_key"] = key  # the server's index as it is now
                outcome = await service.locate(who, b"the same photo")
                assert isinstance(outcome, Answer), outcome
                cached.append(outcome.cached)
            return cached

    assert _run(scenario) == [False, True, False, True]
    assert len(posts) == 2  # located again once, after the index changed


def test_an_album_is_fused_by_the_servers_answer_model_and_keeps_each_photos_evidence(
        street_index, street_queries):
    photos = [jpeg_bytes(view.rgb) for view in street_queries[:3]]

    async def scenario():
        async with served(street_index) as (_, url), remote(url) as engine:
            results = [await engine.locate(photo) for photo in photos]
            album = await engine.fuse([AlbumPhoto(f"photo {i}", r)
                                       for i, r in enumerate(results, 1)])
            async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {TOKEN}"}) as session:
                refused = []
                for body in (b"not json", b'{"photos": 3}', b'{"photos": []}',
                             json.dumps({"photos": [{"label": "x", "result": {}}]}).encode(),
                             json.dumps({"photos": [{"label": str(i), "result":
                                                     results[0].to_json()}
                                                    for i in range(17)]}).encode()):
                    async with session.post(url + "/v1/fuse", data=body) as response:
                        refused.append((response.status, (await response.json())["error"]))
            return results, album, refused

    results, album, refused = _run(scenario)
    locator = Locator.open(street_index)
    try:
        expected = fuse([AlbumPhoto(f"photo {i}", r) for i, r in enumerate(results, 1)],
                        locator.config.estimate, locator.curve)
    finally:
        locator.close()
    assert album.to_json() == expected.to_json()
    assert [p.result.correspondences for p in album.photos] == [r.correspondences
                                                                for r in results]
    assert refused == [(400, "bad_request")] * 5
