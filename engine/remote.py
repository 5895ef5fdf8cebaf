"""`RemoteEngine`: the `AsyncEngine` interface over HTTP, to an engine run by `geosleuth
serve` on another host (a GPU host); the bot then loads no index and no model.

Retried only where it is safe: a connection that could not be made (nothing reached the
server) and a 503 (the server refused before doing anything), the latter after its
Retry-After. A connection lost once the request left is never retried: the photo may be what
brought the engine down. Every request has a connection of its own, so a lost one is never a
stale pooled connection that the server had already closed. Every other failure becomes the
engine error it stands for, with the server's own one-line reason, so the bot answers the
user exactly as it does with the engine in-process. Progress comes as the server streams it
(NDJSON). Covers are asked for and followed over /v1/cover, with the same methods as the
in-process engine.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
from PIL import Image
from yarl import URL

from engine.album import AlbumPhoto, AlbumResult, album_from_json
from engine.async_engine import ProgressHandler
from engine.config import RemoteConfig
from engine.cover import CoverJob, CoverPlan, CoverRequest
from engine.errors import (
    ConfigError,
    CoverRefused,
    EngineBusy,
    EngineFailed,
    GeoSleuthError,
    ImageError,
    SearchAreaError,
    SourceAuthFailed,
    SourceUnavailable,
)
from engine.geo import SearchArea
from engine.results import CatalogEntry, LocateResult, Progress, Stage, result_from_json

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
CONNECT_BACKOFF_S = 0.5
DEFAULT_RETRY_AFTER_S = 1.0
MAX_RETRY_AFTER_S = 30.0


class EngineUnreachable(EngineFailed):
    def __init__(self, where: str) -> None:
        GeoSleuthError.__init__(self, f"The engine at {where} can't be reached right now; try"
                                " again in a minute.")


class RemoteImageRefused(ImageError):
    """The server refused the photo (too large, not an image, broken): its reason, verbatim."""


class RemoteNotFound(EngineFailed):
    """The server has no such thing (a cover job, say)."""


class RemoteEngine:
    def __init__(self, config: RemoteConfig) -> None:
        if not config.url:
            raise ConfigError("'engine.remote.url' is empty")
        self._config = config
        self._url = config.url.rstrip("/")
        self._where = str(URL(self._url).origin()).rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._described: dict[str, Any] = {}
        self._described_at = -math.inf
        self._in_flight = 0

    async def start(self) -> None:
        """Connect and read what the server serves. A refused token is a ConfigError here; a
        server that is down is only logged, since it may come up after the bot."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            headers={"Authorization": f"Bearer {self._config.token}"},
            timeout=aiohttp.ClientTimeout(total=self._config.timeout_s))
        try:
            await self._describe()
        except EngineUnreachable as exc:
            log.warning("%s", exc)

    async def _describe(self) -> None:
        self._described = await self._get_json("/v1/index")
        self._described_at = time.monotonic()

    async def current_answer_key(self) -> str:
        """The answer key, asked of the server again once it is `index_check_s` old: a bot
        answering from its cache never locates, so it would not see a new index otherwise."""
        if time.monotonic() - self._described_at >= self._config.index_check_s:
            try:
                await self._describe()
            except (EngineFailed, ConfigError) as exc:  # the last key known stands meanwhile
                log.warning("could not ask the engine for its index: %s", exc)
        return self.answer_key

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def worker(self) -> asyncio.Task[None] | None:
        return None  # nothing runs here: a server that is down fails each photo, clearly

    @property
    def healthy(self) -> bool:
        return self._session is not None and not self._session.closed

    @property
    def queue_length(self) -> int:
        return self._in_flight

    @property
    def answer_key(self) -> str:
        return str(self._described.get("answer_key", ""))

    @property
    def index_version(self) -> str:
        return str(self._described.get("index_version", ""))

    async def reference_picture(self, entry: CatalogEntry) -> np.ndarray:
        data = await self._request("GET", f"/v1/references/{entry.ref_id}/picture")
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))

    async def locate(self, data: bytes, *, area: SearchArea | None = None,
                     top_k: int | None = None,
                     on_progress: ProgressHandler | None = None) -> LocateResult:
        params = _query(area, top_k)
        if not self._described:
            await self._describe()  # the server was down at start: its answer key is needed
        self._in_flight += 1
        try:
            events = await self._request("POST", "/v1/locate", data=data, params=params,
                                         stream=True)
            async for event in events:
                if event["event"] == "progress" and on_progress is not None:
                    outcome = on_progress(Progress(Stage(event["stage"]), event["position"],
                                                   event["step"], event["total"]))
                    if inspect.isawaitable(outcome):
                        await outcome
                elif event["event"] == "result":
                    result = result_from_json(event["result"])
                    if result.index_version != self.index_version:
                        await self._describe()  # the server now serves another index
                    return result
                elif event["event"] == "error":
                    raise _refusal(event["status"], event["error"], event["message"])
            raise EngineFailed("the engine's answer ended before its result")
        finally:
            self._in_flight -= 1

    async def fuse(self, photos: Sequence[AlbumPhoto]) -> AlbumResult:
        """The album's answer by the server's answer model; each photo keeps the answer (with
        its evidence) the server gave it."""
        body = json.dumps({"photos": [
            {"label": p.label, "time_s": p.time_s, "result": p.result.to_json()}
            for p in photos
        ]}).encode()
        album = album_from_json(json.loads(await self._request("POST", "/v1/fuse", data=body)))
        return replace(album, photos=tuple(
            replace(fused, result=given.result)
            for fused, given in zip(album.photos, photos, strict=True)))

    async def plan_cover(self, request: CoverRequest) -> CoverPlan:
        return CoverPlan.from_json(await self._cover("POST", "/v1/cover/plan", request))

    async def start_cover(self, request: CoverRequest) -> CoverJob:
        return CoverJob.from_json(await self._cover("POST", "/v1/cover", request))

    async def cover_job(self, job_id: int) -> CoverJob | None:
        return await self._job_or_none("GET", job_id)

    async def cover_jobs(self, requested_by: str | None = None) -> list[CoverJob]:
        params = {"requested_by": requested_by} if requested_by is not None else None
        listed = json.loads(await self._request("GET", "/v1/cover", params=params))
        return [CoverJob.from_json(job) for job in listed["jobs"]]

    async def cancel_cover(self, job_id: int) -> CoverJob | None:
        return await self._job_or_none("DELETE", job_id)

    async def coverage(self, cell_km: float = 1.0) -> list[dict[str, object]]:
        answer = await self._request("GET", "/v1/coverage", params={"cell_km": str(cell_km)})
        return json.loads(answer)["cells"]

    async def _cover(self, method: str, path: str, request: CoverRequest) -> dict[str, Any]:
        body = json.dumps(request.to_json()).encode()
        return json.loads(await self._request(method, path, data=body))

    async def _job_or_none(self, method: str, job_id: int) -> CoverJob | None:
        try:
            answer = await self._request(method, f"/v1/cover/{int(job_id)}")
        except RemoteNotFound:
            return None
        return CoverJob.from_json(json.loads(answer))

    async def _get_json(self, path: str) -> dict[str, Any]:
        return json.loads(await self._request("GET", path))

    async def _request(self, method: str, path: str, *, data: bytes | None = None,
                       params: dict[str, str] | None = None, stream: bool = False) -> Any:
        """The body (or, with `stream`, an async iterator of NDJSON events), retrying
        connect errors and 503s only."""
        assert self._session is not None, "start() first"
        connect_tries, busy_tries = 0, 0
        headers = {"Accept": NDJSON} if stream else {}
        while True:
            try:
                response = await self._session.request(method, self._url + path, data=data,
                                                       params=params, headers=headers)
            except aiohttp.ClientConnectorError:  # no connection: nothing was sent
                connect_tries += 1
                if connect_tries > self._config.connect_retries:
                    raise EngineUnreachable(self._where) from None
                await asyncio.sleep(CONNECT_BACKOFF_S * 2 ** (connect_tries - 1))
                continue
            except (aiohttp.ClientConnectionError, TimeoutError):  # after the request left
                raise EngineUnreachable(self._where) from None
            if response.status == 503 and busy_tries < self._config.busy_retries:
                busy_tries += 1
                wait = _retry_after(response)
                response.release()
                await asyncio.sleep(wait)
                continue
            if response.status >= 400:
                body = await _json_or_empty(response)
                raise _refusal(response.status, body.get("error", ""),
                               body.get("message", f"HTTP {response.status}"))
            if stream:
                return _events(response, self._where)
            try:
                return await response.read()
            finally:
                response.release()


async def _events(response: aiohttp.ClientResponse, where: str):
    try:
        async for line in response.content:
            if line.strip():
                yield json.loads(line)
    except (aiohttp.ClientError, TimeoutError):
        raise EngineUnreachable(where) from None
    finally:
        response.release()


def _refusal(status: int, kind: str, message: str) -> GeoSleuthError:
    """The engine error a served refusal stands for, keeping the server's sentence."""
    if status == 401:
        return ConfigError("the engine refused this bot's token ('engine.remote.token' or"
                           " $GEOSLEUTH_ENGINE_TOKEN)")
    if kind == "cover_refused":
        return CoverRefused(message)
    if kind in ("source_unavailable", "source_auth_failed"):
        source, _, _ = message.partition(":")
        error: GeoSleuthError = (SourceUnavailable(source, "") if kind == "source_unavailable"
                                 else SourceAuthFailed(source, status))
        error.args = (message,)
        return error
    if status == 404:
        missing = RemoteNotFound(kind or "HTTP 404")
        missing.args = (message,)
        return missing
    if status in (413, 415, 422):
        return RemoteImageRefused(message)
    if status == 400:
        return SearchAreaError(message)
    if status == 503 and kind == "busy":
        busy = EngineBusy(0)
        busy.args = (message,)
        return busy
    failed = EngineFailed(kind or f"HTTP {status}")
    failed.args = (message,)
    return failed


def _query(area: SearchArea | None, top_k: int | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if area is not None:
        if area.centre is not None and area.radius_m is not None:
            params["near"] = f"{area.centre[0]},{area.centre[1]}"
            params["radius_km"] = str(area.radius_m / 1000)
        else:
            params["bbox"] = f"{area.west},{area.south},{area.east},{area.north}"
    if top_k is not None:
        params["top_k"] = str(top_k)
    return params


def _retry_after(response: aiohttp.ClientResponse) -> float:
    """The server's Retry-After in seconds, capped; one that is not a finite, non-negative
    number (an HTTP date, "inf", "nan") is ignored for the default."""
    try:
        wait = float(response.headers.get("Retry-After", DEFAULT_RETRY_AFTER_S))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    if not math.isfinite(wait) or wait < 0:
        return DEFAULT_RETRY_AFTER_S
    return min(wait, MAX_RETRY_AFTER_S)


async def _json_or_empty(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return {}
    finally:
        response.release()
    return body if isinstance(body, dict) else {}
