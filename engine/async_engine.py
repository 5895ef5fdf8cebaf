"""`AsyncEngine`: the asyncio bridge to a `Locator` owned by one worker thread.

Jobs wait in a bounded queue (a full queue is `EngineBusy`, never a silent drop); the worker
takes up to `batch_size` waiting jobs at once and describes them in one call; each job has a
timeout counted from submission; progress events reach the caller on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from engine.album import AlbumPhoto, AlbumResult, fuse
from engine.config import EngineLimits
from engine.errors import (
    Cancelled,
    EngineBusy,
    EngineFailed,
    EngineStopped,
    EngineTimeout,
    GeoSleuthError,
    VectorStoreUnavailable,
)
from engine.geo import SearchArea
from engine.locator import Locator, Query
from engine.results import CatalogEntry, LocateResult, Progress, Stage

log = logging.getLogger(__name__)

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

    async def start(self) -> None:
        """Open the index and models in the worker thread (errors such as a missing index
        surface here, at start-up, not on the first user's photo)."""
        self._loop = asyncio.get_running_loop()
        self._locator = await self._loop.run_in_executor(self._thread, self._open_locator)
        self._worker = asyncio.create_task(self._work(), name="geosleuth-engine")

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
        return fuse(photos, self._locator.config.estimate, self._locator.curve)

    async def close(self) -> None:
        """Refuse new jobs, fail the waiting ones, finish the running batch, free the models."""
        self._closing = True
        while self._waiting:
            job = self._waiting.popleft()
            if not job.future.done():
                job.future.set_exception(EngineStopped())
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._locator is not None and self._loop is not None:
            await self._loop.run_in_executor(self._thread, self._locator.close)
            self._locator = None
        self._thread.shutdown(wait=True)
        self._probe.shutdown(wait=False)  # a probe stuck on a dead Milvus ends on its deadline

    def _discard(self, job: _Job) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(job)

    async def _work(self) -> None:
        assert self._loop is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch = [self._waiting.popleft()
                         for _ in range(min(self._limits.batch_size, len(self._waiting)))]
                batch = [job for job in batch if not job.cancel.is_set()]
                for position, job in enumerate(self._waiting, 1):
                    self._emit_soon(job, Progress(Stage.QUEUED, position=position))
                if batch:
                    await self._loop.run_in_executor(self._thread, self._run_batch, batch)

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
