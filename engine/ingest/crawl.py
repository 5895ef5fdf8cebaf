"""The crawl: cells → listings → downloads → staged files → the index, in batches.

Each source is crawled in turn over the grid of cells its platform says are worth asking
(densest first), a cell cut off at the platform's limit is split in four, and every listing
is deduplicated on (source, id) against this run and every earlier one before its image is
fetched. Downloads run `concurrency` at a time on the source's polite client; panoramas are
cut into views. Staged images go into the index through the same resumable builder as
`index build`, a batch at a time; the first batch of a new index is larger, since the
descriptor's vocabulary is learned from it. Ctrl-C, or the `cancel` event (a cover
cancelled or an engine stopping), lets the downloads in flight finish and stages them, so a
resumed run fetches nothing twice; a cancelled run also indexes what it staged.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

from engine.config import EngineConfig
from engine.decode import decode_image
from engine.errors import ImageError, IndexBusy, IngestError, SourceUnavailable
from engine.index.builder import BuildProgress, build_index
from engine.index.manifest import MANIFEST_NAME
from engine.ingest.area import BBox
from engine.ingest.config import IngestConfig
from engine.ingest.http import BadAnswer, ImageMissing
from engine.ingest.listing import Listing
from engine.ingest.panorama import cut_views
from engine.ingest.platform import RECORD_ERRORS, Platform
from engine.ingest.state import IngestState
from engine.results import ReferenceRecord
from engine.sources import SourceScan

log = logging.getLogger(__name__)

STAGING_NAME = "ingest-staging"
# --refresh asks for captures from a day before the last run began: uploads lag captures,
# and clocks differ. Whatever that asks again is dropped as a duplicate before download.
REFRESH_OVERLAP = timedelta(days=1)
BUSY_POLL_S = 2.0  # how often a last flush asks again for an index another build holds
PANORAMA_MAX_SIDE = 8192  # equirectangular width kept when decoding before the cut
VIEW_QUALITY = 90

# (source, cells done, cells total, new images so far): after each cell and each new image
CrawlProgress = Callable[[str, int, int, int], None]
# After each batch is committed to the index, with the summaries it counted towards.
BatchIndexed = Callable[[Sequence["SourceSummary"]], None]


@dataclass(slots=True)
class SourceSummary:
    source: str
    cells: int = 0
    found: int = 0
    new: int = 0
    duplicates: int = 0
    added: int = 0  # reference photos handed to the index (a panorama gives several)
    skipped: Counter = field(default_factory=Counter)  # malformed records, by reason
    failed: Counter = field(default_factory=Counter)  # images that could not be had
    error: str | None = None  # why the source stopped early, if it did
    # Cells not done: a listing could not be used, or the platform cut off even the smallest
    # cell. The next run asks for them again.
    cells_unfinished: int = 0
    complete: bool = False  # every cell crawled whole (so a later --refresh starts from it)
    seconds: float = 0.0
    index_seconds: float = 0.0  # of which in the builder (downloads go on meanwhile)

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped.values())

    @property
    def failed_count(self) -> int:
        return sum(self.failed.values())


@dataclass(frozen=True, slots=True)
class CrawlRequest:
    bbox: BBox
    since: str | None = None  # ISO 8601 date or time: only captures from then on
    refresh: bool = False
    max_images: int | None = None  # new images per source


class _Stop(Exception):
    """The run stops early at a clean point: --max-images is reached, or it is cancelled."""


class Crawler:
    def __init__(self, directory: Path, engine_config: EngineConfig, config: IngestConfig,
                 *, progress: CrawlProgress | None = None,
                 build_progress: BuildProgress | None = None,
                 indexed: BatchIndexed | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.directory = directory
        self.engine_config = engine_config
        self.config = config
        self._progress = progress or (lambda *_: None)
        self._build_progress = build_progress
        self._indexed = indexed or (lambda _: None)
        self._cancel = cancel or threading.Event()
        self._staging = directory / STAGING_NAME
        self._cells = (0, 0)  # the source being crawled: cells done, cells in all
        self.summaries: list[SourceSummary] = []  # this run's, as they grow (for progress)

    def run(self, platforms: Sequence[Platform], request: CrawlRequest) -> list[SourceSummary]:
        created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        state = IngestState(self.directory)
        try:
            summaries = self.summaries = []
            for platform in platforms:
                if self._cancel.is_set():
                    platform.client.close()
                    continue
                summary = SourceSummary(platform.name)
                summaries.append(summary)
                began = time.perf_counter()
                try:
                    self._crawl_source(platform, request, state, summary)
                except IngestError as exc:
                    summary.error = str(exc)
                    self._flush(state, summaries)  # keep what was fetched before it stopped
                finally:
                    platform.client.close()
                    summary.seconds = time.perf_counter() - began
            return summaries
        finally:
            nothing_kept = state.staged_count() == 0
            state.close()
            if created and nothing_kept and not (self.directory / MANIFEST_NAME).is_file():
                shutil.rmtree(self.directory, ignore_errors=True)  # nothing half-written

    def _crawl_source(self, platform: Platform, request: CrawlRequest, state: IngestState,
                      summary: SourceSummary) -> None:
        started = _now()
        since = self._since(platform.name, request, state)
        run = f"{request.bbox.key}|{since or ''}"
        try:
            cells = platform.order_cells(request.bbox.grid(self.config.cell_km))
        except (BadAnswer, *RECORD_ERRORS) as exc:
            why = str(exc) if isinstance(exc, BadAnswer) else type(exc).__name__
            raise SourceUnavailable(platform.name, f"its coverage could not be read ({why})"
                                    ) from None
        summary.cells = len(cells)
        self._cells = (0, len(cells))
        self._progress(platform.name, 0, len(cells), 0)
        with ThreadPoolExecutor(self.config.concurrency,
                                thread_name_prefix=f"fetch-{platform.name}") as pool:
            try:
                for done, cell in enumerate(cells, 1):
                    self._check_cancel()
                    if not state.cell_done(platform.name, run, cell.key):
                        if self._crawl_cell(platform, cell, since, request, state, summary,
                                            pool):
                            state.finish_cell(platform.name, run, cell.key)
                        else:
                            summary.cells_unfinished += 1  # asked again by the next run
                    self._cells = (done, len(cells))
                    self._progress(platform.name, done, len(cells), summary.new)
            except _Stop:
                self._flush(state, [summary])
                return
        self._flush(state, [summary])
        summary.complete = summary.cells_unfinished == 0
        if summary.complete:
            state.finish_run(platform.name, run, request.bbox.key, started, _now())

    def _since(self, source: str, request: CrawlRequest, state: IngestState) -> str | None:
        since = request.since
        if request.refresh:
            last = state.last_run_start(source, request.bbox.key)
            if last is not None:
                from_last = (datetime.fromisoformat(last) - REFRESH_OVERLAP).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")
                since = max(since, from_last) if since else from_last
        return since

    def _crawl_cell(self, platform: Platform, cell: BBox, since: str | None,
                    request: CrawlRequest, state: IngestState, summary: SourceSummary,
                    pool: ThreadPoolExecutor, depth: int = 0) -> bool:
        """Crawl one cell (its quarters where the platform cut it off); False when part of
        it could not be listed, or was cut off even at the smallest size, so the run is not
        done with it."""
        try:
            listing = platform.list_cell(cell, since)
        except BadAnswer as exc:
            summary.failed[f"a cell's listing could not be used: {exc}"] += 1
            return False
        except RECORD_ERRORS as exc:  # an answer shaped so that its parser broke
            summary.failed["a cell's listing could not be used: an answer that could not be"
                           f" read ({type(exc).__name__})"] += 1
            return False
        if not listing.complete and depth < self.config.max_splits:
            quarters = [self._crawl_cell(platform, quarter, since, request, state, summary,
                                         pool, depth + 1) for quarter in cell.quarters()]
            return all(quarters)
        done = listing.complete  # else kept, but never reported done: images are missing
        if not done:
            summary.failed[f"a cell still full after {depth} splits: images past the"
                           " platform's limit left out"] += 1
        for reason in listing.malformed:
            summary.skipped[reason] += 1
        fresh: list[Listing] = []
        fresh_ids: set[str] = set()
        for item in listing.listings:
            summary.found += 1
            if item.source_id in fresh_ids or state.known(item.source, item.source_id):
                summary.duplicates += 1
                continue
            if request.max_images is not None and summary.new + len(fresh) >= request.max_images:
                self._download(platform, fresh, state, summary, pool)
                raise _Stop()
            fresh.append(item)
            fresh_ids.add(item.source_id)
        self._download(platform, fresh, state, summary, pool)
        return done

    def _download(self, platform: Platform, listings: list[Listing], state: IngestState,
                  summary: SourceSummary, pool: ThreadPoolExecutor) -> None:
        self._check_cancel()
        futures = {pool.submit(self._fetch, platform, item): item for item in listings}
        try:
            for future in as_completed(futures):
                self._stage(future, futures[future], state, summary)
                if state.staged_count() >= self._batch_size():
                    self._flush(state, [summary], wait=False)  # the downloads go on
                self._check_cancel()
        except (KeyboardInterrupt, _Stop):
            # Let what is in flight land, so the resumed run need not fetch it again.
            for future in futures:
                future.cancel()
            for future, item in futures.items():
                if not future.cancelled() and not future.done():
                    future.exception()  # waits
                if future.done() and not future.cancelled() and not state.known(
                        item.source, item.source_id):
                    self._stage(future, item, state, summary)
            raise

    def _stage(self, future: Future, item: Listing, state: IngestState,
               summary: SourceSummary) -> None:
        try:
            records = future.result()
        except ImageMissing as exc:
            summary.failed[f"image not available: {exc}"] += 1
            return
        except ImageError as exc:
            summary.failed[f"not a usable image: {exc}"] += 1
            return
        except Exception as exc:  # one record the platform got wrong never stops the crawl
            log.warning("%s/%s could not be staged", item.source, item.source_id,
                        exc_info=True)
            summary.failed[f"could not be staged ({type(exc).__name__})"] += 1
            return
        state.stage(item.source, item.source_id, records)
        summary.new += 1
        self._progress(item.source, *self._cells, summary.new)

    def _fetch(self, platform: Platform, item: Listing) -> list[ReferenceRecord]:
        """Download one listing's image into the staging folder; a panorama becomes views."""
        data = platform.client.download(item.image_url)
        folder = self._staging / item.source
        folder.mkdir(parents=True, exist_ok=True)
        stem = hashlib.sha256(item.source_id.encode()).hexdigest()[:32]
        if not item.panorama:
            decode_image(data, self.engine_config.decode, max_side=64)  # refuse what is no photo
            path = folder / f"{stem}.jpg"
            _write_atomically(path, data)
            return [_record(item, item.source_id, path, item.heading_deg)]
        decoded = decode_image(data, self.engine_config.decode, max_side=PANORAMA_MAX_SIDE)
        records = []
        for k, view in enumerate(cut_views(decoded.rgb, item.heading_deg, self.config.panorama)):
            path = folder / f"{stem}_v{k}.jpg"
            buffer = io.BytesIO()
            Image.fromarray(view.rgb).save(buffer, "JPEG", quality=VIEW_QUALITY)
            _write_atomically(path, buffer.getvalue())
            records.append(_record(item, f"{item.source_id}#v{k}", path, view.heading_deg))
        return records

    def _batch_size(self) -> int:
        if (self.directory / MANIFEST_NAME).is_file():
            return self.config.batch_size
        return max(self.config.batch_size, self.config.first_batch)

    def _flush(self, state: IngestState, summaries: Sequence[SourceSummary], *,
               wait: bool = True) -> None:
        """Index what is staged. Another process may be building into the index (a
        `geosleuth ingest` beside a cover): a flush in mid-crawl (`wait` False) then leaves
        its images staged for the next one; a last flush waits for the other build, up to
        `index_busy_wait_s`. Cancelled while waiting, the images stay staged for a later run."""
        staged = state.staged()
        if not staged:
            return
        records = tuple(r for s in staged for r in s.records)
        began = time.perf_counter()
        deadline = time.monotonic() + (self.config.index_busy_wait_s if wait else 0.0)
        while True:
            try:
                build_index(self.directory, [SourceScan(records)], self.engine_config,
                            progress=self._build_progress)
                break
            except IndexBusy:
                if not wait or self._cancel.is_set():
                    return
                if time.monotonic() >= deadline:
                    raise
                log.info("another build holds %s; the staged images wait for it",
                         self.directory)
                self._cancel.wait(BUSY_POLL_S)
        state.mark_indexed(staged)
        by_source = Counter(s.source for s in staged for _ in s.records)
        for summary in summaries:
            summary.added += by_source.get(summary.source, 0)
        summaries[-1].index_seconds += time.perf_counter() - began
        for item in staged:
            for record in item.records:
                Path(record.image_path).unlink(missing_ok=True)
        self._indexed(summaries)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise _Stop()


def _record(item: Listing, source_id: str, path: Path,
            heading: float | None) -> ReferenceRecord:
    return ReferenceRecord(
        source=item.source, source_id=source_id, lat=item.lat, lon=item.lon,
        image_path=str(path), heading_deg=heading, captured_at=item.captured_at,
        attribution=item.credit, licence=item.licence, creator=item.creator, link=item.link,
    )


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
