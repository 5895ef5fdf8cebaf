"""`RemoteEngine` against `geosleuth serve` on 127.0.0.1, and a bot answering through it."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestServer

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
