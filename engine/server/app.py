"""The aiohttp application: /v1/locate, /v1/evidence, /v1/health, /v1/index and /metrics.

`POST /v1/locate` takes the photo as the raw body (any image type) or as the `photo` field
of a multipart form, and the area as query parameters (`bbox=W,S,E,N`, or `near=LAT,LON`
with `radius_km`), and `top_k`. It answers the JSON of `geosleuth locate --json`. With
`Accept: application/x-ndjson` it streams one JSON object per line: progress events as the
engine passes its stages, then `{"event": "result", ...}` (or `"error"`). An answer with
verified correspondences names its evidence picture, `evidence.picture`: a
`GET /v1/evidence/{id}` for the same token draws it while the photo is kept (`expires_in_s`).
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.async_engine import AsyncEngine
from engine.config import DecodeConfig
from engine.errors import ConfigError, GeoSleuthError, SearchAreaError
from engine.evidence_picture import render_result_evidence
from engine.geo import SearchArea, parse_bbox, parse_latlon
from engine.results import LocateResult, Progress
from engine.server.config import ServerConfig
from engine.server.errors import BadRequest, http_status
from engine.server.evidence import EvidenceStore
from engine.server.metrics import ServerMetrics

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
DEFAULT_RADIUS_KM = 5.0
MULTIPART_OVERHEAD = 16 * 1024
REFERENCE_QUALITY = 90  # the form's boundaries and headers around the photo
ENGINE_KEY = web.AppKey("engine", AsyncEngine)
METRICS_KEY = web.AppKey("metrics", ServerMetrics)
BODY_LIMIT_KEY = web.AppKey("body_limit", int)
EVIDENCE_KEY = web.AppKey("evidence", EvidenceStore)
DECODE_KEY = web.AppKey("decode", DecodeConfig)
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
    evidence = EvidenceStore(config.evidence_ttl_s, config.evidence_store_mb * 1024 * 1024)
    app[EVIDENCE_KEY] = evidence
    app[ENGINE_KEY] = engine
    app[METRICS_KEY] = ServerMetrics(lambda: engine.queue_length, lambda: evidence.size_bytes)
    app.router.add_post("/v1/locate", _locate)
    app.router.add_get("/v1/evidence/{evidence_id}", _evidence)
    app.router.add_get("/v1/health", _health)
    app.router.add_get("/v1/index", _index)
    app.router.add_get("/v1/references/{ref_id}/picture", _reference_picture)
    app.router.add_get("/metrics", _metrics)
    return app


def _bearer_auth(tokens: tuple[str, ...]) -> Any:
    """Every path but the health check needs one of the tokens; compared in constant time."""
    expected = [t.encode() for t in tokens]

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/v1/health":
            return await handler(request)
        given = _bearer_token(request).encode()
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
            return _refusal(status, kind, str(exc), headers)
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
    data = await _photo(request)
    if NDJSON not in request.headers.get("Accept", ""):
        result = await engine.locate(data, area=area, top_k=top_k)
        _count(metrics, result, started)
        return web.json_response(_answer(request, data, result))

    # The status line goes out with the first event (the job is queued): a refusal before
    # that (a full queue) is still a plain 503 with Retry-After, which a client may retry.
    stream = web.StreamResponse(headers={"Content-Type": NDJSON})

    async def send(event: dict[str, Any]) -> None:
        if not stream.prepared:
            await stream.prepare(request)
        await stream.write(json.dumps(event).encode() + b"\n")

    async def progress(event: Progress) -> None:
        await send({"event": "progress", "stage": event.stage.value,
                    "position": event.position, "step": event.step, "total": event.total})

    try:
        result = await engine.locate(data, area=area, top_k=top_k, on_progress=progress)
    except GeoSleuthError as exc:
        if not stream.prepared:
            raise
        status, kind = http_status(exc)  # the status line is sent: the refusal goes in-band
        metrics.refused(kind)
        await send({"event": "error", "status": status, "error": kind, "message": str(exc)})
    else:
        _count(metrics, result, started)
        await send({"event": "result", "result": _answer(request, data, result)})
    await stream.write_eof()
    return stream


def _answer(request: web.Request, photo: bytes, result: LocateResult) -> dict[str, Any]:
    """The CLI's JSON; with verified correspondences, also where to get the evidence picture."""
    answer = result.to_json(evidence=True)
    store = request.app[EVIDENCE_KEY]
    evidence_id = store.keep(_bearer_token(request), photo, result)
    if evidence_id is not None:
        answer["evidence"]["picture"] = f"/v1/evidence/{evidence_id}"
        answer["evidence"]["expires_in_s"] = store.ttl_s
    return answer


async def _evidence(request: web.Request) -> web.Response:
    """The photo beside its best reference, correspondences drawn (PNG), while it is kept."""
    found = request.app[EVIDENCE_KEY].find(_bearer_token(request),
                                           request.match_info["evidence_id"])
    if found is None:
        return _refusal(404, "no_such_evidence", "no evidence picture with that id: it has"
                        " expired, or it was made for another client")
    photo, result = found
    assert result.best_reference is not None  # nothing is kept without one
    reference = await request.app[ENGINE_KEY].reference_picture(result.best_reference)
    best = result.best_match
    caption = (f"The photo (left) and reference {result.best_reference.source}:"
               f"{result.best_reference.source_id} (right):"
               f" {best.inliers if best else 0} verified correspondences")
    png = await asyncio.to_thread(render_result_evidence, photo, request.app[DECODE_KEY],
                                  reference, result, caption)
    return web.Response(body=png, content_type="image/png")


def _count(metrics: ServerMetrics, result: LocateResult, started: float) -> None:
    metrics.requests.labels(result.status.value).inc()
    metrics.request_seconds.observe(time.perf_counter() - started)
    for stage, ms in result.timings_ms.items():
        metrics.stage_seconds.labels(stage).observe(ms / 1000)


async def _photo(request: web.Request) -> bytes:
    if request.content_type == "multipart/form-data":
        form = await request.post()
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
    if value < 1 or not float(value).is_integer():
        raise BadRequest(f"top_k must be a whole number of at least 1, not {value:g}")
    return int(value)


def _number(query: Any, name: str, default: float) -> float:
    try:
        return float(query.get(name, default))
    except ValueError:
        raise BadRequest(f"{name} must be a number, not {query[name]!r}") from None


async def _health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    if not engine.healthy:
        return web.json_response({"status": "unavailable"}, status=503)
    if not await engine.vectors_ready():  # why is in the log: this path needs no token
        return web.json_response({"status": "index_unavailable"}, status=503)
    return web.json_response({"status": "ready", "queue": engine.queue_length})


async def _index(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE_KEY].describe_engine())


async def _reference_picture(request: web.Request) -> web.Response:
    """A reference's stored picture, for a remote client to draw the evidence with."""
    engine = request.app[ENGINE_KEY]
    try:
        entry = engine.reference_entry(int(request.match_info["ref_id"]))
    except ValueError:
        entry = None
    if entry is None:
        return _refusal(404, "no_such_reference", "the index holds no reference with that id")
    rgb = await engine.reference_picture(entry)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=REFERENCE_QUALITY)
    return web.Response(body=out.getvalue(), content_type="image/jpeg")


async def _metrics(request: web.Request) -> web.Response:
    engine, metrics = request.app[ENGINE_KEY], request.app[METRICS_KEY]
    if engine.healthy:
        described = engine.describe_engine()
        metrics.references.set(float(described["references"]))  # type: ignore[arg-type]
        metrics.model.labels(described["descriptor"], described["verifier"],
                             described["device"]).set(1)
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
