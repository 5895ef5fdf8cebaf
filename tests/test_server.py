"""`geosleuth serve` over 127.0.0.1: auth, refusals, streaming, the CLI's JSON, metrics."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import replace

import cv2
import numpy as np
import pytest
from aiohttp import ClientSession, web
from PIL import Image

from engine.async_engine import AsyncEngine
from engine.config import EngineLimits
from engine.locator import Locator
from engine.server.app import create_app
from engine.server.config import ServerConfig
from engine.server.evidence import EvidenceStore
from tests.conftest import jpeg_bytes, start_serve

TOKENS = ("bot-one-secret-token", "bot-two-secret-token")
AUTH = {"Authorization": f"Bearer {TOKENS[1]}"}
SERVER = ServerConfig(tokens=TOKENS)


@asynccontextmanager
async def serving(engine_config, *, max_image_bytes: int = 20_000_000,
                  server: ServerConfig = SERVER, **limits):
    async with serving_at(engine_config, max_image_bytes=max_image_bytes, server=server,
                          **limits) as (client, engine, _):
        yield client, engine


@asynccontextmanager
async def serving_at(engine_config, *, max_image_bytes: int = 20_000_000,
                     server: ServerConfig = SERVER, **limits):
    """The client, the engine, and the port, for a test that speaks raw HTTP to it. The
    server runs as `geosleuth serve` runs it (aiohttp's TestServer cancels a handler whose
    client leaves; the real server lets it notice)."""
    engine = AsyncEngine(lambda: Locator.open(engine_config),
                         replace(EngineLimits(), **limits))
    await engine.start()
    decode = replace(engine_config.decode, max_bytes=max_image_bytes)
    runner = web.AppRunner(create_app(engine, server, decode))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        async with ClientSession(f"http://127.0.0.1:{port}") as client:
            yield client, engine, port
    finally:
        await runner.cleanup()
        await engine.close()


def _run(scenario):
    return asyncio.run(scenario())


def test_without_or_with_a_wrong_token_nothing_is_located(street_index, street_queries, caplog):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with serving(street_index) as (client, _):
            statuses = []
            for headers in ({}, {"Authorization": "Bearer nope"},
                            {"Authorization": f"Basic {TOKENS[0]}"}):
                async with client.post("/v1/locate", data=photo, headers=headers) as response:
                    statuses.append((response.status, (await response.json())["error"],
                                     response.headers.get("WWW-Authenticate")))
            async with client.get("/metrics") as response:
                statuses.append((response.status, None, None))
            return statuses

    with caplog.at_level(logging.DEBUG):
        statuses = _run(scenario)
    assert statuses[:3] == [(401, "unauthorized", 'Bearer realm="geosleuth"')] * 3
    assert statuses[3][0] == 401
    assert not any(token in caplog.text for token in TOKENS)


def test_locate_answers_the_json_of_the_cli(street_index, street_queries):
    view = street_queries[0]
    photo = jpeg_bytes(view.rgb)

    async def scenario():
        async with serving(street_index) as (client, _):
            async with client.post("/v1/locate", data=photo, headers=AUTH) as response:
                raw = (response.status, await response.json())
            form = {"photo": io.BytesIO(photo)}
            async with client.post("/v1/locate?top_k=5", data=form,
                                   headers={"Authorization": f"Bearer {TOKENS[0]}"}) as response:
                multipart = (response.status, await response.json())
            return raw, multipart

    (status, served), (form_status, by_form) = _run(scenario)
    locator = Locator.open(street_index)
    try:
        local = json.loads(json.dumps(locator.locate(photo).to_json(evidence=True)))
    finally:
        locator.close()
    assert status == 200 and form_status == 200
    for answer in (served, by_form):
        assert answer.keys() == local.keys()
        assert (answer["status"], answer["lat"], answer["lon"]) == (
            local["status"], local["lat"], local["lon"])
    assert served["matches"] == local["matches"]
    assert served["evidence"]["reference"] == local["evidence"]["reference"]
    pairs = served["evidence"]["correspondences"]
    assert pairs and all(len(pair) == 4 for pair in pairs)  # what the evidence is drawn from


def test_bad_input_is_refused_with_its_status_and_one_line(street_index, street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        answers = []
        assert len(photo) > 20_000  # over the 1,000 bytes + the multipart allowance
        async with serving(street_index, max_image_bytes=1000) as (client, _):
            for body, query in ((photo, ""), (b"hello, not a photo", ""),
                                (photo[:5000], ""), (b"", ""),
                                (photo[:100], "?top_k=0"), (photo[:100], "?bbox=1,2,3"),
                                (photo[:100], "?radius_km=2")):
                async with client.post(f"/v1/locate{query}", data=body,
                                       headers=AUTH) as response:
                    answers.append((response.status, (await response.json())["error"]))
        return answers

    assert _run(scenario) == [(413, "too_large"), (415, "not_an_image"),
                              (422, "broken_image"), (422, "empty"), (400, "bad_request"),
                              (400, "bad_area"), (400, "bad_area")]


def test_a_full_queue_is_503_with_retry_after(street_index, street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with serving(street_index, queue_size=1, batch_size=1) as (client, _):
            async def one():
                async with client.post("/v1/locate", data=photo, headers=AUTH) as response:
                    return response.status, response.headers.get("Retry-After")
            return await asyncio.gather(*(one() for _ in range(6)))

    answers = _run(scenario)
    assert (503, "2") in answers
    assert all(a in ((200, None), (503, "2")) for a in answers), answers
    assert (200, None) in answers


def test_the_stream_gives_progress_in_order_then_the_result(street_index, street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with serving(street_index) as (client, _):
            headers = AUTH | {"Accept": "application/x-ndjson"}
            async with client.post("/v1/locate", data=photo, headers=headers) as response:
                assert response.headers["Content-Type"].startswith("application/x-ndjson")
                return [json.loads(line) async for line in response.content if line.strip()]

    events = _run(scenario)
    stages = [e["stage"] for e in events if e["event"] == "progress"]
    assert stages[0] == "queued" and events[0]["position"] == 1
    order = ["queued", "decoding", "describing", "searching", "verifying"]
    seen = [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]]
    assert [s for s in seen if s in order] == [s for s in order if s in seen]
    verifying = [e for e in events if e.get("stage") == "verifying"]
    steps = [e["step"] for e in verifying]
    assert steps == sorted(steps) and steps[-1] == verifying[-1]["total"] > 0
    assert events[-1]["event"] == "result" and events[-1]["result"]["status"] == "located"


def test_health_index_and_metrics(street_index, street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with serving(street_index) as (client, engine):
            async with client.post("/v1/locate", data=photo, headers=AUTH) as response:
                await response.read()
            async with client.get("/v1/health") as response:
                health = response.status, await response.json()
            async with client.get("/v1/index", headers=AUTH) as response:
                index = await response.json()
            async with client.get("/metrics", headers=AUTH) as response:
                metrics = await response.text()
            await engine.close()
            async with client.get("/v1/health") as response:
                closed = response.status
            return health, index, metrics, closed

    health, index, metrics, closed = _run(scenario)
    assert health == (200, {"status": "ready", "queue": 0})
    assert index["references"] == 10 and index["descriptor"] == "xfeat-vlad"
    assert index["device"].startswith("cpu")
    assert 'geosleuth_locate_requests_total{outcome="located"} 1.0' in metrics
    assert 'geosleuth_stage_seconds_count{stage="verify"} 1.0' in metrics
    assert "geosleuth_queue_length 0.0" in metrics
    assert "geosleuth_index_references 10.0" in metrics
    assert closed == 503


def test_the_app_refuses_to_exist_without_a_token(street_index):
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="GEOSLEUTH_SERVER_TOKENS"):
        create_app(AsyncEngine(lambda: Locator.open(street_index), EngineLimits()),
                   ServerConfig(), street_index.decode)


def test_geosleuth_serve_answers_then_stops_cleanly_on_sigterm(street_index, street_queries):
    """The real command in a child process, as a service manager runs it."""
    import signal
    import urllib.request

    child, url = start_serve(street_index.index_path, ",".join(TOKENS))
    try:
        request = urllib.request.Request(f"{url}/v1/locate", method="POST",
                                         data=jpeg_bytes(street_queries[0].rgb), headers=AUTH)
        with urllib.request.urlopen(request, timeout=120) as response:
            assert json.loads(response.read())["status"] == "located"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
        child.stderr.close()


def test_geosleuth_serve_refuses_to_start_without_a_token_or_an_index(tmp_path, street_index,
                                                                      capsys, monkeypatch):
    from bot.cli.main import main

    monkeypatch.delenv("GEOSLEUTH_SERVER_TOKENS", raising=False)
    assert main(["serve", "--index", str(street_index.index_path)]) == 2
    assert "needs at least one bearer token" in capsys.readouterr().err
    monkeypatch.setenv("GEOSLEUTH_SERVER_TOKENS", TOKENS[0])
    assert main(["serve", "--index", str(tmp_path / "none")]) == 2
    assert "No reference index at" in capsys.readouterr().err


def _panel_of_query(png: bytes) -> tuple[np.ndarray, int, int]:
    """The evidence picture and the size of its left panel: the query photo, up to the white
    gap before the reference (which correspondence lines cross) and the caption's band."""
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    white = (picture == 255).all(axis=2)
    height = int(np.argmax(white.all(axis=1)))
    width = int(np.argmax(white[:height].mean(axis=0) > 0.5))
    return picture, width, height


def test_an_answer_names_its_evidence_picture_which_only_its_client_can_fetch(
        street_index, street_queries):
    view = street_queries[0]
    photo = jpeg_bytes(view.rgb)

    async def scenario():
        async with serving(street_index) as (client, _):
            async with client.post("/v1/locate", data=photo, headers=AUTH) as response:
                answer = await response.json()
            path = answer["evidence"]["picture"]
            fetched = []
            for headers in (AUTH, {"Authorization": f"Bearer {TOKENS[0]}"}, {}):
                async with client.get(path, headers=headers) as response:
                    fetched.append((response.status, response.content_type,
                                    await response.read()))
            async with client.get("/v1/evidence/made-up", headers=AUTH) as response:
                fetched.append((response.status, response.content_type, await response.read()))
            return answer, fetched

    answer, fetched = _run(scenario)
    assert answer["evidence"]["expires_in_s"] == 900
    (status, kind, png), other, anonymous, unknown = fetched
    assert (status, kind) == (200, "image/png")
    picture, width, height = _panel_of_query(png)
    assert picture.shape[1] > 2 * width > 0 and height > 0  # the reference sits on the right
    shown = cv2.resize(picture[:height, :width].astype(np.uint8), (64, 48),
                       interpolation=cv2.INTER_AREA).astype(int)
    sent = cv2.resize(view.rgb, (64, 48), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shown - sent).mean() < 12  # the photo itself, correspondences drawn over it
    hues = cv2.cvtColor(picture.astype(np.uint8), cv2.COLOR_RGB2HSV)[..., 1]
    assert (hues > 150).sum() > 200  # the coloured correspondence lines
    assert (other[0], json.loads(other[2])["error"]) == (404, "no_such_evidence")
    assert anonymous[0] == 401
    assert (unknown[0], json.loads(unknown[2])["error"]) == (404, "no_such_evidence")


def test_evidence_photos_are_forgotten_by_age_and_within_their_byte_budget(street_index,
                                                                             street_queries):
    locator = Locator.open(street_index)
    try:
        result = locator.locate(jpeg_bytes(street_queries[0].rgb))
        nothing = locator.locate(jpeg_bytes(np.full((480, 640, 3), 127, np.uint8)))
    finally:
        locator.close()
    assert result.correspondences and not nothing.correspondences
    now = [0.0]
    store = EvidenceStore(ttl_s=60, max_bytes=3000, clock=lambda: now[0])
    assert store.keep("token", b"x" * 100, nothing) is None  # no evidence, nothing kept
    assert store.keep("token", b"x" * 3001, result) is None  # over the whole budget
    first = store.keep("token", b"a" * 1000, result)
    now[0] = 30.0
    second = store.keep("token", b"b" * 1000, result)
    third = store.keep("token", b"c" * 1000, result)
    assert store.size_bytes == 3000 and store.find("token", first) == (b"a" * 1000, result)
    now[0] = 45.0
    fourth = store.keep("token", b"d" * 1000, result)  # the oldest makes room
    assert store.find("token", first) is None and store.size_bytes == 3000
    assert store.find("someone else", second) is None
    now[0] = 90.0  # the second and third were kept at 30 s, for 60 s
    assert store.find("token", second) is None and store.find("token", third) is None
    assert store.find("token", fourth) == (b"d" * 1000, result) and len(store) == 1
    now[0] = 105.0
    assert store.find("token", fourth) is None and store.size_bytes == 0
