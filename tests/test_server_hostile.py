"""`geosleuth serve` under hostile or broken clients, over raw sockets on 127.0.0.1: every
refusal is its one line of JSON, nothing is a traceback, and no client holds the server."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import threading
import time
from dataclasses import replace

from tests.conftest import jpeg_bytes
from tests.test_server import AUTH, SERVER, TOKENS, serving, serving_at

WAIT_S = 20.0  # every wait on the server is bounded by this


def _run(scenario):
    return asyncio.run(asyncio.wait_for(scenario(), timeout=120))


async def _send_raw(port: int, head: str, body: bytes = b"") -> tuple[asyncio.StreamReader,
                                                                      asyncio.StreamWriter]:
    """A request written byte for byte, as no well-behaved client library would write it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode("latin-1").replace(b"\n", b"\r\n") + b"\r\n" + body)
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of the server's answer (which must not keep the connection)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    lines = head.decode("latin-1").lower().splitlines()
    length = next(int(line.split(":")[1]) for line in lines if line.startswith("content-length"))
    assert "connection: close" in lines, lines
    body = await asyncio.wait_for(reader.readexactly(length), WAIT_S)
    return int(lines[0].split()[1]), body


def _one_line_refusal(body: bytes) -> str:
    assert body.count(b"\n") == 0, body
    refusal = json.loads(body)
    assert refusal.keys() == {"error", "message"}
    return refusal["error"]


def _assert_no_tracebacks(caplog) -> None:
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [r.getMessage() for r in noisy]


def _upload_head(length: int, token: str = TOKENS[0]) -> str:
    return (f"POST /v1/locate HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {token}\n"
            f"Content-Type: image/jpeg\nContent-Length: {length}\nConnection: close\n")


def test_non_utf8_authorization_is_a_401_not_a_traceback(street_index, caplog):
    async def scenario():
        async with serving_at(street_index) as (_, _, port):
            answers = []
            for token in (b"\xff\xfe\xfa-not-utf-8", TOKENS[0].encode() + b"\xe9"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /v1/index HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
                             b"\r\nAuthorization: Bearer " + token + b"\r\n\r\n")
                answers.append(await _answer(reader))
                writer.close()
            return answers

    with caplog.at_level(logging.INFO):
        answers = _run(scenario)
    assert [(status, _one_line_refusal(body)) for status, body in answers] == [
        (401, "unauthorized")] * 2
    _assert_no_tracebacks(caplog)


def test_multipart_without_a_boundary_or_with_garbage_is_a_400(street_index, caplog):
    forms = [("multipart/form-data", b"--x\r\n\r\nnothing"),
             ("multipart/form-data; boundary=xyz", b"no boundary in here at all"),
             ("multipart/form-data; boundary=xyz", b"--xyz\r\ngarbage\r\n\r\nxx"),
             ("multipart/form-data; boundary=xyz",
              b'--xyz\r\nContent-Disposition: form-data; name="photo"; filename="a"\r\n\r\nab')]

    async def scenario():
        async with serving(street_index) as (client, _):
            answers = []
            for content_type, body in forms:
                async with client.post("/v1/locate", data=body, headers=AUTH | {
                        "Content-Type": content_type}) as response:
                    answers.append((response.status, _one_line_refusal(await response.read())))
            return answers

    with caplog.at_level(logging.INFO):
        assert _run(scenario) == [(400, "bad_request")] * len(forms)
    _assert_no_tracebacks(caplog)


def test_a_reference_id_past_sqlites_integers_or_negative_is_a_404(street_index, caplog):
    ids = ["99999999999999999999", str(2**63), "-99999999999999999999", "-1", "5" * 5000,
           "not-a-number"]

    async def scenario():
        async with serving(street_index) as (client, _):
            answers = []
            for ref_id in ids:
                async with client.get(f"/v1/references/{ref_id}/picture",
                                      headers=AUTH) as response:
                    answers.append((response.status, _one_line_refusal(await response.read())))
            async with client.get("/v1/references/1/picture", headers=AUTH) as response:
                answers.append((response.status, response.content_type))
            return answers

    with caplog.at_level(logging.INFO):
        answers = _run(scenario)
    assert answers[:-1] == [(404, "no_such_reference")] * len(ids)
    assert answers[-1] == (200, "image/jpeg")  # a real id still is a picture
    _assert_no_tracebacks(caplog)


def test_top_k_past_the_configured_maximum_is_a_400(street_index, street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with serving(street_index, server=replace(SERVER, max_top_k=12)) as (client, _):
            answers = []
            for top_k in ("1000000000000", "13", "12"):
                async with client.post(f"/v1/locate?top_k={top_k}", data=photo,
                                       headers=AUTH) as response:
                    answers.append((response.status, await response.json()))
            return answers

    (huge, huge_body), (over, over_body), (most, answer) = _run(scenario)
    assert (huge, huge_body["error"], over, over_body["error"]) == (400, "bad_request") * 2
    assert "from 1 to 12" in over_body["message"]
    assert most == 200 and answer["status"] == "located"


def test_health_and_pictures_never_wait_on_the_loops_default_pool(street_index,
                                                                 street_queries):
    """With every thread of the event loop's default pool held, /v1/health still answers
    and an evidence picture is still drawn: neither waits on that pool."""
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with serving(street_index) as (client, _):
            async with client.post("/v1/locate", data=photo, headers=AUTH) as response:
                picture = (await response.json())["evidence"]["picture"]
            release = threading.Event()
            holders = [asyncio.create_task(asyncio.to_thread(release.wait, WAIT_S))
                       for _ in range(40)]
            try:
                async with client.get("/v1/health") as response:
                    health = response.status, await response.json()
                async with client.get(picture, headers=AUTH) as response:
                    drawn = response.status, (await response.read())[:8]
                held = sum(not h.done() for h in holders)
            finally:
                release.set()
                await asyncio.gather(*holders)
            return health, drawn, held

    health, drawn, held = _run(scenario)
    assert health == (200, {"status": "ready", "queue": 0})
    assert drawn == (200, b"\x89PNG\r\n\x1a\n")
    assert held == 40  # the pool was still held when both had answered


def test_evidence_pictures_past_their_pool_are_503_with_retry_after(street_index,
                                                                    street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)
    server = replace(SERVER, picture_workers=1, picture_queue=2)

    async def scenario():
        async with serving(street_index, server=server) as (client, _):
            async with client.post("/v1/locate", data=photo, headers=AUTH) as response:
                picture = (await response.json())["evidence"]["picture"]

            async def fetch():
                async with client.get(picture, headers=AUTH) as response:
                    return (response.status, response.headers.get("Retry-After"),
                            await response.read())

            return await asyncio.gather(*(fetch() for _ in range(8)))

    answers = _run(scenario)
    drawn = [body for status, _, body in answers if status == 200]
    refused = [(retry, _one_line_refusal(body)) for status, retry, body in answers
               if status == 503]
    assert drawn and len(drawn) + len(refused) == 8
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in drawn)
    assert refused and set(refused) == {("2", "busy")}


def test_stalled_uploads_are_cut_off_after_the_deadline_with_one_log_line_each(street_index,
                                                                               caplog):
    server = replace(SERVER, upload_timeout_s=1.0)

    async def scenario():
        async with serving_at(street_index, server=server) as (_, _, port):
            stalled = [await _send_raw(port, _upload_head(4_000_000), b"\xff\xd8" * 50_000)
                       for _ in range(3)]
            started = time.monotonic()
            answers = [await _answer(reader) for reader, _ in stalled]  # EOF: cut off
            for _, writer in stalled:
                writer.close()
            return answers, time.monotonic() - started

    with caplog.at_level(logging.INFO):
        answers, waited_s = _run(scenario)
    assert [(status, _one_line_refusal(body)) for status, body in answers] == [
        (408, "upload_timeout")] * 3
    assert waited_s < WAIT_S
    cut = [r for r in caplog.records if "cut off" in r.getMessage()]
    assert len(cut) == 3 and all("within 1 s" in r.getMessage() for r in cut)
    _assert_no_tracebacks(caplog)


def test_uploads_past_the_bound_are_503_before_their_bodies_are_read(street_index):
    server = replace(SERVER, max_uploads=2, upload_timeout_s=3.0)

    async def scenario():
        async with serving_at(street_index, server=server) as (client, _, port):
            stalled = [await _send_raw(port, _upload_head(4_000_000), b"\xff\xd8" * 1000)
                       for _ in range(2)]
            async with client.get("/v1/health"):  # the two uploads have been taken in
                pass
            reader, writer = await _send_raw(port, _upload_head(4_000_000))
            third = await _answer(reader)  # answered with no byte of its body sent
            writer.close()
            cut_off = [await _answer(reader) for reader, _ in stalled]
            for _, writer in stalled:
                writer.close()
            return third, cut_off

    (status, body), cut_off = _run(scenario)
    assert (status, _one_line_refusal(body)) == (503, "busy")
    assert [status for status, _ in cut_off] == [408, 408]


def test_a_full_queue_is_refused_before_the_body_is_read(street_index, street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with serving_at(street_index, queue_size=1, batch_size=1) as (client, engine,
                                                                             port):
            async def locate():
                async with client.post("/v1/locate", data=photo, headers=AUTH) as response:
                    return response.status

            async with client.post("/v1/locate", data=photo, headers=AUTH | {
                    "Accept": "application/x-ndjson"}) as running:
                while b"decoding" not in await running.content.readline():
                    pass  # the first photo is being worked on: the queue is empty again
                waiting = asyncio.create_task(locate())
                deadline = time.monotonic() + WAIT_S
                while not engine.queue_full and time.monotonic() < deadline:
                    await asyncio.sleep(0.002)
                reader, writer = await _send_raw(port, _upload_head(4_000_000))  # no body
                refused = await _answer(reader)
                writer.close()
                await running.read()
            return refused, await waiting

    (status, body), waited = _run(scenario)
    assert (status, _one_line_refusal(body)) == (503, "busy")
    assert waited == 200


def test_an_aborted_upload_is_one_log_line_not_a_traceback(street_index, caplog):
    async def scenario():
        async with serving_at(street_index) as (client, _, port):
            _, writer = await _send_raw(port, _upload_head(4_000_000), b"\xff\xd8" * 5000)
            writer.close()
            deadline = time.monotonic() + WAIT_S
            while (not any("cut off" in r.getMessage() for r in caplog.records)
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.01)
            async with client.get("/v1/health") as response:  # and the server serves on
                return response.status

    with caplog.at_level(logging.INFO):
        assert _run(scenario) == 200
    cut = [r.getMessage() for r in caplog.records if "cut off" in r.getMessage()]
    assert len(cut) == 1 and "closed the connection" in cut[0]
    _assert_no_tracebacks(caplog)


def test_an_aborted_uploads_partial_body_is_freed_without_the_garbage_collector(street_index):
    """aiohttp keeps the lost connection's error on the request; its traceback held the frame
    that read the body, partial body and all, in a cycle that only the garbage collector freed
    (by object count, not bytes: 30 aborted uploads a round kept ~45 MB a round)."""
    sent = b"\xff\xd8" * 1_500_000

    def big_buffers() -> set[int]:  # reachable from a tracked object (a frame, a request)
        return {id(held) for holder in gc.get_objects() for held in gc.get_referents(holder)
                if type(held) in (bytes, bytearray) and len(held) > 1_000_000
                and held is not sent}

    async def scenario():
        async with serving_at(street_index) as (client, _, port):
            gc.collect()
            before = big_buffers()  # other tests' photos, held on purpose
            gc.disable()  # what is not freed by reference counting stays
            try:
                _, writer = await _send_raw(port, _upload_head(4_000_000), sent)
                await asyncio.sleep(0.5)  # the server takes most of the body in
                writer.close()
                deadline = time.monotonic() + WAIT_S
                while time.monotonic() < deadline:
                    async with client.get("/metrics", headers=AUTH) as response:
                        if 'kind="upload_aborted"} 1.0' in await response.text():
                            break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)  # the refusal is written, the handler done
                return len(big_buffers() - before)
            finally:
                gc.enable()

    assert _run(scenario) == 0


def test_a_client_that_leaves_its_stream_has_its_job_cancelled_and_one_log_line(
        street_index, street_queries, caplog):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with serving(street_index, batch_size=1) as (client, engine):
            async def locate():
                async with client.post("/v1/locate", data=photo, headers=AUTH) as response:
                    return response.status

            ahead = [asyncio.create_task(locate()) for _ in range(2)]
            deadline = time.monotonic() + WAIT_S
            while engine.queue_length < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            stream = await client.post("/v1/locate", data=io.BytesIO(photo), headers=AUTH | {
                "Accept": "application/x-ndjson"})
            first = json.loads(await stream.content.readline())
            stream.close()  # the client leaves while its photo waits in the queue
            statuses = await asyncio.gather(*ahead)
            while engine.queue_length and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            async with client.get("/metrics", headers=AUTH) as response:
                return first, statuses, await response.text()

    with caplog.at_level(logging.INFO):
        first, statuses, metrics = _run(scenario)
    assert first["stage"] == "queued" and statuses == [200, 200]
    assert 'geosleuth_locate_requests_total{outcome="located"} 2.0' in metrics  # not 3
    assert 'geosleuth_errors_total{kind="client_left"} 1.0' in metrics
    left = [r for r in caplog.records if "left its locate stream" in r.getMessage()]
    assert len(left) == 1
    assert not any("progress handler failed" in r.getMessage() for r in caplog.records)
    _assert_no_tracebacks(caplog)
