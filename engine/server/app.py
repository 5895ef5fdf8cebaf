"""The aiohttp application: /v1/locate, /v1/evidence, /v1/health, /v1/index, /metrics, and
the cover endpoints (engine/server/covers.py: /v1/cover, /v1/coverage).

`POST /v1/locate` takes the photo as the raw body (any image type) or as the `photo` field
of a multipart form, and the area as query parameters (`bbox=W,S,E,N`, or `near=LAT,LON`
with `radius_km`), and `top_k`. It answers the JSON of `geosleuth locate --json`. With
`Accept: application/x-ndjson` it streams one JSON object per line: progress events as the
engine passes its stages, then `{"event": "result", ...}` (or `"error"`). An answer with
verified correspondences names its evidence picture, `evidence.picture`: a
`GET /v1/evidence/{id}` for the same token draws it while the photo is kept (`expires_in_s`).
`POST /v1/fuse` joins answers already given, `{"photos": [{"label", "time_s", "result"}]}`,
into one album answer (`engine.album`) by the server's answer model. `GET /v1/index` names
the index version and size, the backends, and the areas covers have added (`covered`).

A hostile or broken client gets a one-line refusal, never a traceback: the body is read only
with room in the queue and among the uploads, within a deadline; pictures are drawn in a
bounded pool of their own; /v1/health answers from state and waits on nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.album import AlbumPhoto
from engine.async_engine import AsyncEngine
from engine.config import DecodeConfig
from engine.errors import ConfigError, EngineBusy, GeoSleuthError, SearchAreaError
from engine.evidence_picture import render_result_evidence
from engine.geo import SearchArea, parse_bbox, parse_latlon
from engine.results import LocateResult, Progress, result_from_json
from engine.server.config import ServerConfig
from engine.server.covers import cover_routes
from engine.server.errors import (
    BadRequest,
    UploadAborted,
    UploadTimeout,
    http_status,
)
from engine.server.evidence import EvidenceStore
from engine.server.health import Readiness
from engine.server.metrics import ServerMetrics
from engine.server.pictures import PicturePool
from engine.server.slots import Slots

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
DEFAULT_RADIUS_KM = 5.0
MULTIPART_OVERHEAD = 16 * 1024
REFERENCE_QUALITY = 90
MAX_REF_ID = 2**63 - 1  # SQLite's largest integer; any larger id names no reference
ENGINE_KEY = web.AppKey("engine", AsyncEngine)
METRICS_KEY = web.AppKey("metrics", ServerMetrics)
BODY_LIMIT_KEY = web.AppKey("body_limit", int)
EVIDENCE_KEY = web.AppKey("evidence", EvidenceStore)
DECODE_KEY = web.AppKey("decode", DecodeConfig)
SERVER_KEY = web.AppKey("server", ServerConfig)
UPLOADS_KEY = web.AppKey("uploads", Slots)
PICTURES_KEY = web.AppKey("pictures", PicturePool)
READINESS_KEY = web.AppKey("readiness", Readiness)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(engine: AsyncEngine, config: ServerConfig, decode: DecodeConfig) -> web.Application:
    """The application over a started engine; refuses to exist without a token to check."""
    if not config.tokens:
        raise ConfigError("geosleuth serve needs at least one bearer token: set"
                          " $GEOSLEUTH_SERVER_TOKENS or [server] tokens")
    body_limit = decode.max_bytes + MULTIPART_OVERHEAD
    app = web.Application(middlewares=[_bearer_auth(config.tokens), _typed_refusals(config)],
                          client_max_size=body_limit)
    app[BODY_LIMIT_KEY] = body_limit
    app[DECODE_KEY] = decode
    app[SERVER_KEY] = config
    app[UPLOADS_KEY] = Slots(config.max_uploads, "photos being uploaded")
    app[PICTURES_KEY] = PicturePool(config.picture_workers, config.picture_queue)
    app[READINESS_KEY] = Readiness(engine, config.health_probe_s)
    app.cleanup_ctx.append(_background)
    evidence = EvidenceStore(config.evidence_ttl_s, config.evidence_store_mb * 1024 * 1024)
    app[EVIDENCE_KEY] = evidence
    app[ENGINE_KEY] = engine
    app[METRICS_KEY] = ServerMetrics(lambda: engine.queue_length, lambda: evidence.size_bytes)
    app.router.add_post("/v1/locate", _locate)
    app.router.add_post("/v1/fuse", _fuse)
    app.router.add_get("/v1/evidence/{evidence_id}", _evidence)
    app.router.add_get("/v1/health", _health)
    app.router.add_get("/v1/index", _index)
    app.router.add_get("/v1/references/{ref_id}/picture", _reference_picture)
    app.router.add_get("/metrics", _metrics)
    app.router.add_routes(cover_routes(engine))
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The readiness probe runs while the app serves; the picture threads end with it."""
    readiness = app[READINESS_KEY]
    await readiness.probe()  # known before the first health check
    probing = asyncio.create_task(readiness.probe_forever(), name="geosleuth-health-probe")
    yield
    probing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probing
    app[PICTURES_KEY].close()


def _bearer_auth(tokens: tuple[str, ...]) -> Any:
    """Every path but the health check needs one of the tokens; compared in constant time."""
    expected = [t.encode() for t in tokens]

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/v1/health":
            return await handler(request)
        # A header's non-UTF-8 bytes come through as surrogates: kept as the bytes they were.
        given = _bearer_token(request).encode("utf-8", "surrogateescape")
        matched = False
        for token in expected:  # no early exit: the time does not tell which one is close
            matched |= hmac.compare_digest(given, token)
        if not given or not matched:
            return _refusal(401, "unauthorized", "a valid bearer token is needed",
                            {"WWW-Authenticate": 'Bearer realm="geosleuth"'})
        return await handler(request)

    return check


def _bearer_token(request: web.Request) -> str:
    """The token of an `Authorization: Bearer ...` header; empty for any other scheme."""
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    return offered.strip() if scheme.lower() == "bearer" else ""


def _typed_refusals(config: ServerConfig) -> Any:
    """Engine errors become their HTTP status with one line of reason; nothing else leaks."""

    @web.middleware
    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        metrics = request.app[METRICS_KEY]
        try:
            return await handler(request)
        except GeoSleuthError as exc:
            status, kind = http_status(exc)
            metrics.refused(kind, locate=request.path == "/v1/locate")
            headers = {"Retry-After": str(config.retry_after_s)} if status == 503 else None
            refusal = _refusal(status, kind, str(exc), headers)
            if isinstance(exc, UploadTimeout | UploadAborted):
                log.warning("upload from %s cut off: %s", request.remote, exc)
                # The connection ends after the refusal (the rest of the body, if it comes,
                # is read and dropped for aiohttp's lingering time): nothing is kept of it.
                refusal.force_close()
            return refusal
        except web.HTTPRequestEntityTooLarge:
            metrics.refused("too_large")  # only /v1/locate takes a body
            limit = request.app[BODY_LIMIT_KEY]
            return _refusal(413, "too_large", f"the request body is over the limit of"
                            f" {limit:,} bytes; send a smaller or recompressed copy")

    return answer


def _refusal(status: int, kind: str, message: str,
             headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": kind, "message": message}, status=status,
                             headers=headers)


async def _locate(request: web.Request) -> web.StreamResponse:
    engine, metrics = request.app[ENGINE_KEY], request.app[METRICS_KEY]
    started = time.perf_counter()
    area, top_k = _area(request), _top_k(request)
    data = await _receive_photo(request)
    if NDJSON not in request.headers.get("Accept", ""):
        result = await engine.locate(data, area=area, top_k=top_k)
        _count(metrics, result, started)
        return web.json_response(_answer(request, data, result))
    return await _NdjsonLocate(request, data).run(area, top_k, started)


class _NdjsonLocate:
    """One streamed locate. The status line goes out with the first event (the job is
    queued): a refusal before that (a full queue) is still a plain 503 with Retry-After,
    which a client may retry. A client that leaves the stream has its job cancelled."""

    def __init__(self, request: web.Request, data: bytes) -> None:
        self._request = request
        self._data = data
        self._stream = web.StreamResponse(headers={"Content-Type": NDJSON})
        self._job: asyncio.Future[LocateResult] | None = None
        self._gone = False

    async def run(self, area: SearchArea | None, top_k: int | None,
                  started: float) -> web.StreamResponse:
        engine, metrics = self._request.app[ENGINE_KEY], self._request.app[METRICS_KEY]
        self._job = asyncio.ensure_future(
            engine.locate(self._data, area=area, top_k=top_k, on_progress=self._progress))
        try:
            result = await self._job
        except asyncio.CancelledError:
            if not self._gone:
                raise  # the server is stopping, not the client leaving
            return self._stream
        except GeoSleuthError as exc:
            if not self._stream.prepared:
                raise
            status, kind = http_status(exc)  # the status line is sent: the refusal is in-band
            metrics.refused(kind)
            await self._send({"event": "error", "status": status, "error": kind,
                              "message": str(exc)})
        else:
            _count(metrics, result, started)
            await self._send({"event": "result",
                              "result": _answer(self._request, self._data, result)})
        if not self._gone:
            await self._stream.write_eof()
        return self._stream

    async def _progress(self, event: Progress) -> None:
        await self._send({"event": "progress", "stage": event.stage.value,
                          "position": event.position, "step": event.step,
                          "total": event.total})

    async def _send(self, event: dict[str, Any]) -> None:
        if self._gone:
            return
        try:
            if not self._stream.prepared:
                await self._stream.prepare(self._request)
            await self._stream.write(json.dumps(event).encode() + b"\n")
        except ConnectionResetError:
            self._left()

    def _left(self) -> None:
        """Said once: the client closed its stream, so its job is not worth finishing."""
        self._gone = True
        self._request.app[METRICS_KEY].refused("client_left")
        # A warning like an aborted upload's: a default serve (no -v) shows both.
        log.warning("a client at %s left its locate stream; its job is cancelled",
                    self._request.remote)
        if self._job is not None:
            self._job.cancel()


def _answer(request: web.Request, photo: bytes, result: LocateResult) -> dict[str, Any]:
    """The CLI's JSON; with verified correspondences, also where to get the evidence picture."""
    answer = result.to_json(evidence=True)
    store = request.app[EVIDENCE_KEY]
    evidence_id = store.keep(_bearer_token(request), photo, result)
    if evidence_id is not None:
        answer["evidence"]["picture"] = f"/v1/evidence/{evidence_id}"
        answer["evidence"]["expires_in_s"] = store.ttl_s
    return answer


async def _fuse(request: web.Request) -> web.Response:
    """An album's answer from its photos' answers (as /v1/locate gave them)."""
    most = request.app[SERVER_KEY].max_album_photos
    try:
        listed = (await request.json())["photos"]
        photos = [AlbumPhoto(str(p["label"]), result_from_json(p["result"]),
                             None if p.get("time_s") is None else float(p["time_s"]))
                  for p in listed]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BadRequest('the body must be {"photos": [{"label", "time_s", "result"}, ...]},'
                         " each result as /v1/locate answered it") from None
    if not 1 <= len(photos) <= most:
        raise BadRequest(f"an album has 1 to {most} photos, not {len(photos)}")
    album = await request.app[ENGINE_KEY].fuse(photos)
    return web.json_response(album.to_json())


async def _evidence(request: web.Request) -> web.Response:
    """The photo beside its best reference, correspondences drawn (PNG), while it is kept."""
    found = request.app[EVIDENCE_KEY].find(_bearer_token(request),
                                           request.match_info["evidence_id"])
    if found is None:
        return _refusal(404, "no_such_evidence", "no evidence picture with that id: it has"
                        " expired, or it was made for another client")
    photo, result = found
    best_reference = result.best_reference
    assert best_reference is not None  # nothing is kept without one
    engine, decode = request.app[ENGINE_KEY], request.app[DECODE_KEY]
    best = result.best_match
    caption = (f"The photo (left) and reference {best_reference.source}:"
               f"{best_reference.source_id} (right):"
               f" {best.inliers if best else 0} verified correspondences")

    def draw() -> bytes:
        reference = engine.read_reference_picture(best_reference)
        return render_result_evidence(photo, decode, reference, result, caption)

    png = await request.app[PICTURES_KEY].draw(draw)
    return web.Response(body=png, content_type="image/png")


def _count(metrics: ServerMetrics, result: LocateResult, started: float) -> None:
    metrics.requests.labels(result.status.value).inc()
    metrics.request_seconds.observe(time.perf_counter() - started)
    for stage, ms in result.timings_ms.items():
        metrics.stage_seconds.labels(stage).observe(ms / 1000)


async def _receive_photo(request: web.Request) -> bytes:
    """The photo's bytes, read only while the queue has room and the uploads are few, and
    only for `upload_timeout_s`: a stalled or huge upload holds no memory for long."""
    engine, config = request.app[ENGINE_KEY], request.app[SERVER_KEY]
    if engine.queue_full:
        raise EngineBusy(engine.queue_length)  # before the body: the client keeps its bytes
    with request.app[UPLOADS_KEY].hold():
        try:
            async with asyncio.timeout(config.upload_timeout_s):
                return await _photo(request)
        except TimeoutError:
            raise UploadTimeout(f"the photo did not arrive within {config.upload_timeout_s:g}"
                                " s") from None
        except ConnectionResetError:
            raise UploadAborted("the client closed the connection before its photo"
                                " arrived") from None
        finally:
            _drop_failed_read(request)


def _drop_failed_read(request: web.Request) -> None:
    """aiohttp keeps the error that ended a body's reading (a lost connection) on the
    request's payload. Its traceback holds the frames that read the body, with the part
    that came and the request itself: a cycle only the garbage collector frees, which runs
    by object count, not bytes, so up to 4 MB an aborted upload stayed for minutes. Without
    the traceback, all of it is freed once the refusal is sent."""
    failed = request.content.exception()
    if failed is not None:
        failed.__traceback__ = None


async def _photo(request: web.Request) -> bytes:
    if request.content_type == "multipart/form-data":
        try:
            form = await request.post()
        except (ValueError, BadHttpMessage):
            raise BadRequest("the multipart form could not be read: it needs a boundary and"
                             " a file field 'photo'") from None
        field = form.get("photo")
        if field is None or isinstance(field, str):
            raise BadRequest("the multipart form needs the photo as a file field 'photo'")
        return field.file.read()
    return await request.read()


def _area(request: web.Request) -> SearchArea | None:
    query = request.query
    if "bbox" in query and "near" in query:
        raise SearchAreaError("give either bbox or near, not both")
    if "bbox" in query:
        return parse_bbox(query["bbox"])
    if "near" in query:
        lat, lon = parse_latlon(query["near"])
        return SearchArea.around(lat, lon, _number(query, "radius_km", DEFAULT_RADIUS_KM) * 1000)
    if "radius_km" in query:
        raise SearchAreaError("radius_km needs near=LAT,LON (the centre of the circle)")
    return None


def _top_k(request: web.Request) -> int | None:
    if "top_k" not in request.query:
        return None
    value = _number(request.query, "top_k", 0)
    most = request.app[SERVER_KEY].max_top_k
    if not 1 <= value <= most or not float(value).is_integer():
        raise BadRequest(f"top_k must be a whole number from 1 to {most}, not {value:g}")
    return int(value)


def _number(query: Any, name: str, default: float) -> float:
    try:
        return float(query.get(name, default))
    except ValueError:
        raise BadRequest(f"{name} must be a number, not {query[name]!r}") from None


async def _health(request: web.Request) -> web.Response:
    """From state only: a health check that waited behind work would get a busy engine
    killed by its orchestrator."""
    engine = request.app[ENGINE_KEY]
    if not engine.healthy:
        return web.json_response({"status": "unavailable"}, status=503)
    if not request.app[READINESS_KEY].vectors_ready:  # why is in the log: no token here
        return web.json_response({"status": "index_unavailable"}, status=503)
    return web.json_response({"status": "ready", "queue": engine.queue_length})


async def _index(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE_KEY].describe_engine())


async def _reference_picture(request: web.Request) -> web.Response:
    """A reference's stored picture, for a remote client to draw the evidence with."""
    engine = request.app[ENGINE_KEY]
    ref_id = _ref_id(request.match_info["ref_id"])
    entry = None if ref_id is None else engine.reference_entry(ref_id)
    if entry is None:
        return _refusal(404, "no_such_reference", "the index holds no reference with that id")

    def encode() -> bytes:
        out = io.BytesIO()
        Image.fromarray(engine.read_reference_picture(entry)).save(out, "JPEG",
                                                                   quality=REFERENCE_QUALITY)
        return out.getvalue()

    return web.Response(body=await request.app[PICTURES_KEY].draw(encode),
                        content_type="image/jpeg")


def _ref_id(text: str) -> int | None:
    """A reference id as the catalogue can hold it; None for anything else."""
    try:
        ref_id = int(text)
    except ValueError:  # not a number, or more digits than Python converts
        return None
    return ref_id if 0 <= ref_id <= MAX_REF_ID else None


async def _metrics(request: web.Request) -> web.Response:
    engine, metrics = request.app[ENGINE_KEY], request.app[METRICS_KEY]
    if engine.healthy:
        described = engine.describe_engine()
        metrics.references.set(float(described["references"]))  # type: ignore[arg-type]
        metrics.model.labels(described["descriptor"], described["verifier"],
                             described["device"]).set(1)
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
