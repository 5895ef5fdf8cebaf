"""`AsyncEngine`: the asyncio bridge to a `Locator` owned by one worker thread.

Jobs wait in a bounded queue (a full queue is `EngineBusy`, never a silent drop); the worker
takes up to `batch_size` waiting jobs at once and describes them in one call; each job has a
timeout counted from submission; progress events reach the caller on the event loop.

References appended to the index (a cover's batch, `geosleuth ingest` beside the engine) are
served without a restart: `refresh_index` opens a newer view in a thread of its own over the
loaded models and the worker swaps it in between batches; the manifest is also watched. Covers
(engine/cover) run in a thread of their own; their methods here are the API the chat and the
server use.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from engine.album import AlbumPhoto, AlbumResult, fuse
from engine.config import EngineLimits
from engine.cover import CoverJob, CoverPlan, CoverRequest, Covers, coverage_cells
from engine.errors import (
    Cancelled,
    CoverRefused,
    EngineBusy,
    EngineFailed,
    EngineStopped,
    EngineTimeout,
    GeoSleuthError,
    VectorStoreUnavailable,
)
from engine.geo import SearchArea
from engine.locator import Locator, Query
from engine.refresh import Stamp, manifest_stamp, open_newer
from engine.results import CatalogEntry, LocateResult, Progress, Stage

log = logging.getLogger(__name__)

# How long a refresh asked for waits for a build in progress to commit (the manifest watch
# does not wait: it looks again at its next check).
REFRESH_WAIT_S = 60.0

ProgressHandler = Callable[[Progress], Awaitable[None] | None]


@dataclass(eq=False)
class _Job:
    data: bytes
    area: SearchArea | None
    top_k: int | None
    future: asyncio.Future[LocateResult]
    on_progress: ProgressHandler | None
    cancel: threading.Event = field(default_factory=threading.Event)


class AsyncEngine:
    def __init__(self, open_locator: Callable[[], Locator], limits: EngineLimits) -> None:
        self._open_locator = open_locator
        self._limits = limits
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        # The vector store's readiness is asked in a thread of its own: a health check never
        # waits behind pictures or other work in the loop's default pool.
        self._probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-probe")
        self._waiting: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._locator: Locator | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._emitting: set[asyncio.Task[None]] = set()
        # A newer view of the index is opened here, never on the worker: no query waits.
        self._reloader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-reload")
        self._refreshing = asyncio.Lock()
        self._swap: tuple[Locator, asyncio.Future[None]] | None = None
        self._seen: Stamp = None
        self._watch: asyncio.Task[None] | None = None
        self._covers: Covers | None = None
        self._coverage: dict[tuple[str, float], list[dict[str, object]]] = {}

    async def start(self) -> None:
        """Open the index and models in the worker thread (errors such as a missing index
        surface here, at start-up, not on the first user's photo); then resume the covers."""
        self._loop = asyncio.get_running_loop()
        self._locator = await self._loop.run_in_executor(self._thread, self._open_locator)
        directory, config = self._locator.index.directory, self._locator.config
        self._seen = manifest_stamp(directory)
        self._worker = asyncio.create_task(self._work(), name="geosleuth-engine")
        if self._limits.index_check_s > 0:
            self._watch = asyncio.create_task(self._watch_index(), name="geosleuth-index-watch")
        if config.cover.enabled:
            try:
                self._covers = await asyncio.to_thread(Covers, directory, config,
                                                       self._refresh_from_thread)
            except (OSError, sqlite3.Error) as exc:  # a read-only index: served, not grown
                log.warning("covers are off: %s cannot keep them (%s)", directory, exc)
            else:
                self._covers.start()

    @property
    def healthy(self) -> bool:
        """Started, not closing, and its worker still running (for health checks)."""
        return self._worker is not None and not self._worker.done() and not self._closing

    async def vectors_ready(self) -> bool:
        """Whether the vector store would answer a search now (Milvus may be down for a while;
        the engine keeps running and is ready again when it is back)."""
        if self._locator is None:
            return False
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._probe, self._locator.index.vectors.check_ready)
        except VectorStoreUnavailable:
            return False
        return True

    @property
    def worker(self) -> asyncio.Task[None] | None:
        """The task that runs the jobs; it ends only on close(), or when it crashed."""
        return self._worker

    @property
    def queue_length(self) -> int:
        return len(self._waiting)

    @property
    def queue_full(self) -> bool:
        """Whether a job submitted now would be refused as `EngineBusy`."""
        return len(self._waiting) >= self._limits.queue_size

    @property
    def answer_key(self) -> str:
        """Changes whenever the same photo could get another answer (see Locator)."""
        if self._locator is None:
            raise EngineStopped()
        return self._locator.answer_key

    async def current_answer_key(self) -> str:
        """The answer key as a remote engine gives it (there, it may have to be asked for)."""
        return self.answer_key

    @property
    def index_version(self) -> str:
        if self._locator is None:
            raise EngineStopped()
        return self._locator.index.version

    def describe_engine(self) -> dict[str, object]:
        """What serves the answers: index version and size, backends and the device they run
        on (for /v1/index and the metrics)."""
        if self._locator is None:
            raise EngineStopped()
        locator = self._locator
        runtime = getattr(locator.verifier, "runtime", None)
        return {
            "index_version": locator.index.version,
            "answer_key": locator.answer_key,
            "references": len(locator.index),
            "descriptor": locator.descriptor.name,
            "verifier": locator.verifier.name,
            "vector_store": locator.index.vectors.backend,
            "device": runtime.label if runtime is not None else "cpu",
            "covered": self._covers.covered() if self._covers is not None else [],
        }

    def reference_entry(self, ref_id: int) -> CatalogEntry | None:
        """A reference by its id, or None if the index has no such reference."""
        if self._locator is None:
            raise EngineStopped()
        return self._locator.index.entries([ref_id]).get(ref_id)

    async def reference_picture(self, entry: CatalogEntry) -> np.ndarray:
        """A reference's stored picture (for evidence), read beside the worker, not behind it."""
        return await asyncio.to_thread(self.read_reference_picture, entry)

    def read_reference_picture(self, entry: CatalogEntry) -> np.ndarray:
        """The same in the caller's thread, for a caller that bounds its own pool."""
        if self._locator is None:
            raise EngineStopped()
        return self._locator.index.load_picture(entry)

    async def locate(
        self,
        data: bytes,
        *,
        area: SearchArea | None = None,
        top_k: int | None = None,
        on_progress: ProgressHandler | None = None,
    ) -> LocateResult:
        if self._closing or self._worker is None or self._loop is None:
            raise EngineStopped()
        if self._worker.done():
            raise EngineFailed("the engine worker has stopped; restart the service")
        if self.queue_full:
            raise EngineBusy(len(self._waiting))
        job = _Job(data, area, top_k, self._loop.create_future(), on_progress)
        self._waiting.append(job)
        self._wake.set()
        await self._emit(job, Progress(Stage.QUEUED, position=len(self._waiting)))
        try:
            return await asyncio.wait_for(
                asyncio.shield(job.future), timeout=self._limits.job_timeout_s
            )
        except TimeoutError:
            job.cancel.set()
            self._discard(job)
            raise EngineTimeout(self._limits.job_timeout_s) from None
        except asyncio.CancelledError:
            job.cancel.set()
            self._discard(job)
            raise

    async def fuse(self, photos: Sequence[AlbumPhoto]) -> AlbumResult:
        """One answer for an album from its photos' own answers, by this engine's answer
        model (cheap: no image work, so it runs on the loop, not behind the worker)."""
        if self._locator is None:
            raise EngineStopped()
        config = self._locator.config
        return fuse(photos, config.estimate, self._locator.curve, config.search.cluster_radius_m)

    async def close(self) -> None:
        """Refuse new jobs, fail the waiting ones, stop the running cover at a clean point
        (it resumes at the next start), finish the running batch, free the models."""
        self._closing = True
        while self._waiting:
            job = self._waiting.popleft()
            if not job.future.done():
                job.future.set_exception(EngineStopped())
        if self._watch is not None:
            self._watch.cancel()
        if self._covers is not None:
            await asyncio.to_thread(self._covers.close)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._swap is not None:
            newer, swapped = self._swap
            self._swap = None
            newer.index.close()
            swapped.cancel()
        if self._locator is not None and self._loop is not None:
            await self._loop.run_in_executor(self._thread, self._locator.close)
            self._locator = None
        self._thread.shutdown(wait=True)
        self._reloader.shutdown(wait=True)
        self._probe.shutdown(wait=False)  # a probe stuck on a dead Milvus ends on its deadline

    def _discard(self, job: _Job) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(job)

    async def refresh_index(self) -> bool:
        """Serve what builds have committed to the index since this engine opened it (a
        cover's batch, `geosleuth ingest` beside it), without a restart. True when a newer
        view was swapped in; False when there was none, or a build kept the index past
        REFRESH_WAIT_S (the manifest watch then picks it up)."""
        return await self._refresh(REFRESH_WAIT_S)

    async def _refresh(self, wait_s: float) -> bool:
        if self._closing or self._locator is None or self._loop is None or self._worker is None:
            raise EngineStopped()
        async with self._refreshing:
            directory = self._locator.index.directory
            stamp = manifest_stamp(directory)  # before opening: a later commit is seen again
            try:
                newer, read = await self._loop.run_in_executor(
                    self._reloader, open_newer, self._locator, wait_s)
            except (GeoSleuthError, OSError) as exc:  # the served view stays; said once a try
                log.warning("the index at %s could not be opened again: %s", directory, exc)
                return False
            if read:
                self._seen = stamp
            if newer is None:
                return False
            swapped = self._loop.create_future()
            self._swap = (newer, swapped)
            self._wake.set()
            await asyncio.wait({swapped, self._worker}, return_when=asyncio.FIRST_COMPLETED)
            if not swapped.done() or swapped.cancelled():
                raise EngineStopped()
            log.info("now serving %d references (index %s)", len(newer.index),
                     newer.index.version)
            return True

    def _refresh_from_thread(self) -> None:
        """For the cover thread, after each batch it commits: waits until the batch is served."""
        assert self._loop is not None
        try:
            asyncio.run_coroutine_threadsafe(self.refresh_index(),
                                             self._loop).result(REFRESH_WAIT_S * 2)
        except Exception as exc:  # stopping, or the index unreadable: the cover goes on
            log.warning("the engine did not take up the new references: %s",
                        str(exc) or type(exc).__name__)

    async def _watch_index(self) -> None:
        """One stat every `index_check_s`; a changed manifest is a commit to serve."""
        assert self._locator is not None
        directory = self._locator.index.directory
        while True:
            await asyncio.sleep(self._limits.index_check_s)
            if manifest_stamp(directory) != self._seen and not self._refreshing.locked():
                with contextlib.suppress(EngineStopped):
                    await self._refresh(0.0)

    async def plan_cover(self, request: CoverRequest) -> CoverPlan:
        """What covering the area would fetch and take (asks each platform for one cell)."""
        return await asyncio.to_thread(self._cover_service().plan, request)

    async def start_cover(self, request: CoverRequest) -> CoverJob:
        """Queue a cover; it runs after those before it, in the background."""
        return await asyncio.to_thread(self._cover_service().submit, request)

    async def cover_job(self, job_id: int) -> CoverJob | None:
        return await asyncio.to_thread(self._cover_service().job, job_id)

    async def cover_jobs(self, requested_by: str | None = None) -> list[CoverJob]:
        """Newest first; only those `requested_by` names, if given."""
        return await asyncio.to_thread(self._cover_service().jobs, requested_by)

    async def cancel_cover(self, job_id: int) -> CoverJob | None:
        """A queued cover ends now; a running one stops at its next clean point (its
        progress says "cancelling" until then) and keeps what it fetched."""
        return await asyncio.to_thread(self._cover_service().cancel, job_id)

    async def coverage(self, cell_km: float = 1.0) -> list[dict[str, object]]:
        """Cells of about `cell_km` that hold references ({"west", "south", "east", "north",
        "references"}), from the catalogue; cached per index version."""
        if self._locator is None:
            raise EngineStopped()
        index = self._locator.index
        key = (index.version, float(cell_km))
        if key not in self._coverage:
            _, lats, lons = await asyncio.to_thread(index.catalog.indexed_positions)
            cells = coverage_cells(lats, lons, cell_km)
            self._coverage = {k: v for k, v in self._coverage.items() if k[0] == key[0]}
            self._coverage[key] = cells
        return self._coverage[key]

    def _cover_service(self) -> Covers:
        if self._locator is None or self._closing:
            raise EngineStopped()
        if self._covers is None:
            raise CoverRefused("Covering new areas is turned off on this engine.")
        return self._covers

    async def _work(self) -> None:
        assert self._loop is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._swap_if_due()
            while self._waiting:
                batch = [self._waiting.popleft()
                         for _ in range(min(self._limits.batch_size, len(self._waiting)))]
                batch = [job for job in batch if not job.cancel.is_set()]
                for position, job in enumerate(self._waiting, 1):
                    self._emit_soon(job, Progress(Stage.QUEUED, position=position))
                if batch:
                    await self._loop.run_in_executor(self._thread, self._run_batch, batch)
                await self._swap_if_due()

    async def _swap_if_due(self) -> None:
        """Between batches: the next one reads the newer view; the old one is closed on the
        worker, after the last batch that used it."""
        if self._swap is None:
            return
        assert self._loop is not None and self._locator is not None
        newer, swapped = self._swap
        self._swap = None
        old, self._locator = self._locator, newer
        await self._loop.run_in_executor(self._thread, old.index.close)
        if not swapped.done():
            swapped.set_result(None)

    def _run_batch(self, batch: list[_Job]) -> None:
        """In the worker thread: decode each, describe together, then finish one by one."""
        assert self._locator is not None
        locator = self._locator
        prepared: list[tuple[_Job, Query]] = []
        for job in batch:
            self._emit_threadsafe(job, Progress(Stage.DECODING))
            try:
                prepared.append((job, locator.prepare(job.data)))
            except Exception as exc:
                self._fail(job, exc)
        if not prepared:
            return
        for job, _ in prepared:
            self._emit_threadsafe(job, Progress(Stage.DESCRIBING))
        try:
            vectors = locator.describe([q for _, q in prepared])
        except Exception as exc:
            for job, _ in prepared:
                self._fail(job, exc)
            return
        for (job, query), vector in zip(prepared, vectors, strict=True):
            try:
                result = locator.finish(
                    query, vector, area=job.area, top_k=job.top_k, cancel=job.cancel,
                    progress=lambda event, job=job: self._emit_threadsafe(job, event),
                )
            except Exception as exc:
                self._fail(job, exc)
            else:
                self._resolve(job, result)

    def _resolve(self, job: _Job, result: LocateResult) -> None:
        assert self._loop is not None

        def settle() -> None:
            if not job.future.done():
                job.future.set_result(result)

        self._loop.call_soon_threadsafe(settle)

    def _fail(self, job: _Job, exc: Exception) -> None:
        assert self._loop is not None
        if isinstance(exc, Cancelled):
            return  # its caller has already been answered (timeout) or has gone
        if not isinstance(exc, GeoSleuthError):
            log.exception("engine failed on a job", exc_info=exc)
            exc = EngineFailed(type(exc).__name__)

        def settle() -> None:
            if not job.future.done():
                job.future.set_exception(exc)

        self._loop.call_soon_threadsafe(settle)

    def _emit_threadsafe(self, job: _Job, event: Progress) -> None:
        assert self._loop is not None
        if job.on_progress is not None:
            self._loop.call_soon_threadsafe(self._emit_soon, job, event)

    def _emit_soon(self, job: _Job, event: Progress) -> None:
        """On the loop, without waiting: a slow handler (a chat edit) never holds the worker."""
        if job.on_progress is None:
            return
        task = asyncio.get_running_loop().create_task(self._emit(job, event))
        self._emitting.add(task)
        task.add_done_callback(self._emitting.discard)

    async def _emit(self, job: _Job, event: Progress) -> None:
        """Deliver a progress event; a failing handler must not fail the job."""
        if job.on_progress is None or job.cancel.is_set():
            return
        try:
            outcome = job.on_progress(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("progress handler failed")
