"""The cover endpoints: areas crawled into the served index, and where it has references.

- `POST /v1/cover/plan` with {"bbox": [W, S, E, N], "sources": [...], "label": "...",
  "requested_by": "..."}: what covering it would fetch and take (200, `CoverPlan`).
- `POST /v1/cover` with the same body (`?plan=1`: plan only): the job, queued (202).
- `GET /v1/cover?requested_by=...`: the jobs, newest first (all without the parameter).
- `GET /v1/cover/{id}`: one job, with its progress or summary; `DELETE` cancels it.
- `GET /v1/coverage?cell_km=1`: cells that hold references, with how many.

A body that is not such an object is 400; an area over the cap, an unknown source or covers
turned off 422 (`cover_refused`); a platform that cannot be reached or refuses the engine's
token 502; an unknown job 404.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from engine.async_engine import AsyncEngine
from engine.cover import CoverJob, CoverRequest
from engine.server.errors import BadRequest

MAX_BODY_BYTES = 16 * 1024
DEFAULT_CELL_KM = 1.0
BODY_SHAPE = ('the body must be {"bbox": [W, S, E, N], "sources": [names], "label": "...",'
              ' "requested_by": "..."}')


def cover_routes(engine: AsyncEngine) -> list[web.RouteDef]:
    async def plan(request: web.Request) -> web.Response:
        found = await engine.plan_cover(await _cover_request(request))
        return web.json_response(found.to_json())

    async def start(request: web.Request) -> web.Response:
        if request.query.get("plan") in ("1", "true"):
            return await plan(request)
        job = await engine.start_cover(await _cover_request(request))
        return web.json_response(job.to_json(), status=202)

    async def listed(request: web.Request) -> web.Response:
        jobs = await engine.cover_jobs(request.query.get("requested_by"))
        return web.json_response({"jobs": [job.to_json() for job in jobs]})

    async def one(request: web.Request) -> web.Response:
        return _job_or_404(await engine.cover_job(_job_id(request)))

    async def cancel(request: web.Request) -> web.Response:
        return _job_or_404(await engine.cancel_cover(_job_id(request)))

    async def coverage(request: web.Request) -> web.Response:
        try:
            cell_km = float(request.query.get("cell_km", DEFAULT_CELL_KM))
        except ValueError:
            raise BadRequest("cell_km must be a number") from None
        return web.json_response({"cells": await engine.coverage(cell_km)})

    return [web.post("/v1/cover/plan", plan), web.post("/v1/cover", start),
            web.get("/v1/cover", listed), web.get("/v1/cover/{job_id}", one),
            web.delete("/v1/cover/{job_id}", cancel), web.get("/v1/coverage", coverage)]


async def _cover_request(request: web.Request) -> CoverRequest:
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"a cover request is at most {MAX_BODY_BYTES:,} bytes")
    try:
        data: Any = json.loads(body)
        return CoverRequest.from_json(data)
    except (ValueError, KeyError, TypeError):
        raise BadRequest(BODY_SHAPE) from None


def _job_id(request: web.Request) -> int:
    """The id in the path; any text that is no id names no job (404, as an unknown one)."""
    try:
        job_id = int(request.match_info["job_id"])
    except ValueError:
        return -1
    return job_id if 0 <= job_id < 2**63 else -1


def _job_or_404(job: CoverJob | None) -> web.Response:
    if job is None:
        return web.json_response({"error": "no_such_cover",
                                  "message": "no cover with that id"}, status=404)
    return web.json_response(job.to_json())
