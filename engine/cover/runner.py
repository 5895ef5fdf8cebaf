"""Runs the queued covers one at a time, in a thread of its own beside the engine's worker.

Each cover is the crawl `geosleuth ingest` runs, into the served index; after each batch the
builder commits, the engine is asked to serve the new references (and once at the end). A
cancel stops the crawl between cells and downloads, indexes what was staged, and ends the
job; an engine stopping stops it the same way but leaves it queued for the next start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.cover.jobs import CoverJob
from engine.cover.queue import CoverQueue
from engine.cover.tally import RunTally, SourceTally
from engine.errors import ConfigError, GeoSleuthError
from engine.ingest.crawl import Crawler, CrawlRequest, SourceSummary
from engine.ingest.platform import Platform
from engine.ingest.registry import create_platform

log = logging.getLogger(__name__)

IDLE_WAIT_S = 60.0  # a new job wakes the thread at once; this only bounds a missed wake
STOP_WAIT_S = 10.0  # a batch still being indexed then is finished by the next start


class CoverRunner:
    def __init__(self, queue: CoverQueue, directory: Path, config: EngineConfig,
                 refresh: Callable[[], None]) -> None:
        self._queue = queue
        self._directory = directory
        self._config = config
        self._refresh = refresh
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._cancel = threading.Event()  # the running crawl's: set by a cancel or a stop
        self._running: int | None = None
        self._lock = threading.Lock()
        # Daemon: an interpreter exiting mid-batch is a crash the crawl state recovers from.
        self._thread = threading.Thread(target=self._serve, name="cover", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: int) -> CoverJob | None:
        job = self._queue.cancel(job_id)
        with self._lock:
            if job is not None and job.state == "running" and self._running == job_id:
                self._cancel.set()
        return job

    def stop(self) -> None:
        """Stop the running crawl at a clean point; it resumes at the next start."""
        self._stopping.set()
        self._cancel.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_S)
            if self._thread.is_alive():
                log.warning("a cover is still indexing a batch; the next start finishes it")

    def _serve(self) -> None:
        while not self._stopping.is_set():
            job = self._queue.next_queued()
            if job is None:
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
                continue
            try:
                self._run(job)
            except Exception:  # one cover going wrong must not end the covers after it
                log.exception("cover %d failed", job.id)
                self._queue.finish(job.id, "failed", [], "the cover failed unexpectedly;"
                                   " the engine's log says why")
            finally:
                with self._lock:
                    self._running = None
                    self._cancel.clear()

    def _run(self, job: CoverJob) -> None:
        with self._lock:
            self._running = job.id
            if self._stopping.is_set():
                return
        self._queue.start(job.id)
        # A job started before (the engine stopped or died) goes on counting from there.
        tallies = {name: RunTally(SourceTally.from_json(job.progress[name]["tally"])
                                  if "tally" in job.progress.get(name, {}) else SourceTally())
                   for name in job.request.sources}
        progress: dict[str, Any] = {name: {"cells_done": 0, "cells_total": 0, "new": 0,
                                           "added": 0} for name in job.request.sources}
        platforms, unusable = self._platforms(job)

        def record(summary: SourceSummary) -> None:
            total = tallies[summary.source].total(summary)
            progress[summary.source].update(new=total.new, added=total.added,
                                            tally=total.to_json())
            self._queue.progress(job.id, progress)

        def on_cells(source: str, done: int, total: int, new: int) -> None:
            summary = crawler.summaries[-1]
            if done != progress[source]["cells_done"]:
                tallies[source].cell_finished(summary)
            progress[source].update(cells_done=done, cells_total=total)
            record(summary)

        def on_batch(summaries: Sequence[SourceSummary]) -> None:
            for summary in summaries:
                record(summary)
            self._refresh()

        crawler = Crawler(self._directory, self._config, self._config.ingest, progress=on_cells,
                          indexed=on_batch, cancel=self._cancel)
        log.info("cover %d (%s) starts", job.id, job.request.label)
        try:
            summaries = crawler.run(platforms, CrawlRequest(job.request.bbox))
        except GeoSleuthError as exc:  # the index refused the batch (another build, say)
            self._queue.finish(job.id, "failed", [], str(exc))
            return
        finally:
            self._refresh()
        if self._stopping.is_set() and not self._queue.cancel_asked(job.id):
            self._queue.requeue(job.id)
            return
        for s in summaries:  # the crawl ended here: its counts are final, cell or not
            tallies[s.source].cell_finished(s)
        summary = [_summary_json(s, tallies[s.source].total(s)) for s in summaries] + unusable
        errors = [s["error"] for s in summary if s["error"]]
        if self._queue.cancel_asked(job.id):
            state, error = "cancelled", None
        elif errors and len(errors) == len(summary):
            state, error = "failed", "; ".join(errors)
        else:
            state, error = "done", None
        self._queue.finish(job.id, state, summary, error)
        log.info("cover %d (%s) %s", job.id, job.request.label, state)

    def _platforms(self, job: CoverJob) -> tuple[list[Platform], list[dict[str, Any]]]:
        """The job's platforms, and a summary for each that cannot be made (a token gone)."""
        platforms, unusable = [], []
        for name in job.request.sources:
            try:
                platforms.append(create_platform(name, self._config.ingest))
            except ConfigError as exc:
                unusable.append(_summary_json(SourceSummary(name, error=str(exc)),
                                              SourceTally()))
        return platforms, unusable


def _summary_json(summary: SourceSummary, total: SourceTally) -> dict[str, Any]:
    """A source's summary: the counts over every start of the job, this start's state."""
    return {"source": summary.source, "cells": summary.cells, "found": total.found,
            "new": total.new, "duplicates": total.duplicates, "added": total.added,
            "skipped": dict(total.skipped), "failed": dict(total.failed),
            "error": summary.error, "cells_unfinished": summary.cells_unfinished,
            "complete": summary.complete, "seconds": round(summary.seconds, 1)}
