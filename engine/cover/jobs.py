"""What a cover is asked as, planned as and tracked as; each as JSON for the HTTP API."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from engine.errors import SearchAreaError
from engine.ingest.area import BBox

KM_PER_DEGREE = 111.32
STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")


def area_km2(bbox: BBox) -> float:
    """The box's area on the sphere's surface near its middle latitude (plenty for a cap)."""
    middle = math.radians((bbox.south + bbox.north) / 2)
    return ((bbox.north - bbox.south) * KM_PER_DEGREE
            * (bbox.east - bbox.west) * KM_PER_DEGREE * math.cos(middle))


def bbox_from_json(value: Any) -> BBox:
    """[W, S, E, N] in degrees; SearchAreaError, in one sentence, for anything else."""
    if not isinstance(value, list | tuple) or len(value) != 4 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value):
        raise SearchAreaError("bbox must be [W, S, E, N]: four numbers in degrees")
    west, south, east, north = (float(v) for v in value)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise SearchAreaError("bbox needs -180 <= W < E <= 180 and -90 <= S < N <= 90")
    return BBox(west, south, east, north)


@dataclass(frozen=True)
class CoverRequest:
    bbox: BBox
    sources: tuple[str, ...]  # empty: the engine's [engine.cover] sources
    label: str
    requested_by: str = ""  # opaque to the engine; the caller finds its own jobs by it

    def to_json(self) -> dict[str, Any]:
        return {"bbox": self.bbox.as_list(), "sources": list(self.sources),
                "label": self.label, "requested_by": self.requested_by}

    @classmethod
    def from_json(cls, data: Any) -> CoverRequest:
        """KeyError, TypeError or ValueError for a body of the wrong shape; SearchAreaError
        for a bad box."""
        if not isinstance(data, dict):
            raise TypeError("a cover request is a JSON object")
        sources = data.get("sources") or []
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise TypeError("sources must be a list of names")
        label, requested_by = data.get("label", ""), data.get("requested_by", "")
        if not isinstance(label, str) or not isinstance(requested_by, str):
            raise TypeError("label and requested_by must be strings")
        return cls(bbox_from_json(data["bbox"]), tuple(sources), label, requested_by)


@dataclass(frozen=True)
class CoverPlan:
    area_km2: float
    cells: int  # cells the platforms say are worth asking, all sources together
    sources: tuple[str, ...]  # the sources that would be crawled
    pictures_estimate: int | None
    seconds_estimate: float | None
    notes: tuple[str, ...] = ()  # e.g. a default source left out, and why

    def to_json(self) -> dict[str, Any]:
        return {"area_km2": self.area_km2, "cells": self.cells, "sources": list(self.sources),
                "pictures_estimate": self.pictures_estimate,
                "seconds_estimate": self.seconds_estimate, "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CoverPlan:
        return cls(float(data["area_km2"]), int(data["cells"]), tuple(data["sources"]),
                   data.get("pictures_estimate"), data.get("seconds_estimate"),
                   tuple(data.get("notes", ())))


@dataclass(frozen=True)
class CoverJob:
    id: int
    request: CoverRequest
    state: str  # queued | running | done | failed | cancelled
    position: int | None  # a queued job's place in line: 1 runs next
    # By source: cells_done, cells_total, new (images fetched), added (references indexed);
    # "cancelling": true once a cancel is asked for and the crawl is stopping.
    progress: dict[str, Any] = field(default_factory=dict)
    # One per source: found, new, duplicates, added, skipped and failed (by reason), error,
    # cells_unfinished.
    summary: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "request": self.request.to_json(), "state": self.state,
                "position": self.position, "progress": self.progress, "summary": self.summary,
                "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at, "error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CoverJob:
        return cls(int(data["id"]), CoverRequest.from_json(data["request"]), data["state"],
                   data.get("position"), data.get("progress") or {}, data.get("summary") or [],
                   data.get("created_at", ""), data.get("started_at"), data.get("finished_at"),
                   data.get("error"))
