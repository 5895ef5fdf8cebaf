"""The engine's covers: the queue in the index directory and the thread that runs it.

Blocking (SQLite, and the platforms for a plan): the async engine calls it from threads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.cover.jobs import CoverJob, CoverPlan, CoverRequest
from engine.cover.plan import plan_cover, settle
from engine.cover.queue import CoverQueue
from engine.cover.runner import CoverRunner


class Covers:
    def __init__(self, directory: Path, config: EngineConfig,
                 refresh: Callable[[], None]) -> None:
        self._config = config
        self._queue = CoverQueue(directory)
        self._runner = CoverRunner(self._queue, directory, config, refresh)

    def start(self) -> None:
        """Run what waits, a job stopped mid-way by the last shutdown or crash first."""
        self._runner.start()

    def close(self) -> None:
        self._runner.stop()
        self._queue.close()

    def plan(self, request: CoverRequest) -> CoverPlan:
        return plan_cover(request, self._config)

    def submit(self, request: CoverRequest) -> CoverJob:
        settled, _ = settle(request, self._config)
        job = self._queue.add(settled)
        self._runner.wake()
        return job

    def job(self, job_id: int) -> CoverJob | None:
        return self._queue.get(job_id)

    def jobs(self, requested_by: str | None = None) -> list[CoverJob]:
        return self._queue.jobs(requested_by)

    def cancel(self, job_id: int) -> CoverJob | None:
        return self._runner.cancel(job_id)

    def covered(self) -> list[dict[str, Any]]:
        """The areas of the covers that finished, newest first (for /v1/index)."""
        return [{"bbox": job.request.bbox.as_list(), "label": job.request.label,
                 "sources": list(job.request.sources), "finished_at": job.finished_at,
                 "added": sum(int(s.get("added", 0)) for s in job.summary)}
                for job in self._queue.jobs() if job.state == "done"]
