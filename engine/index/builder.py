"""Builds and extends an index; resumable and idempotent.

Order of commits: catalogue rows first (pending), then vectors and pictures, then a checkpoint
that commits the vector store (saves the hnswlib file, flushes Milvus) and only afterwards marks
its rows indexed. A crash at any point leaves rows pending that the next run redoes; adding a
label again replaces it, in hnswlib and in Milvus (an upsert) alike.
One build at a time holds an index (engine/index/locks.py); a new index whose build is
refused before it has a manifest leaves nothing behind.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.config import EngineConfig
from engine.decode import decode_file
from engine.descriptors import create_descriptor
from engine.descriptors.base import GlobalDescriptor
from engine.errors import (
    ConfigError,
    DescriptorMismatch,
    GeoSleuthError,
    IndexMissing,
    SourceError,
)
from engine.index.catalog import CATALOG_NAME, Catalog, PendingRef
from engine.index.feature_store import FeatureStore
from engine.index.locks import LOCK_NAME as LOCK_NAME  # where callers have long found it
from engine.index.locks import building
from engine.index.manifest import MANIFEST_NAME, Manifest
from engine.index.store import ReferenceStore
from engine.index.stores import check_backend, open_for_build
from engine.index.vector_store import VectorStore
from engine.sources import SourceScan
from engine.threads import worker_pool
from engine.verifiers import create_verifier

# (phase, done, total): the CLI turns it into progress bars.
BuildProgress = Callable[[str, int, int], None]

CHECKPOINT_EVERY_S = 30.0
# Saving the graph takes longer as it grows: wait at least this many times as long as the
# last save took, so checkpoints never cost more than a tenth of the build.
CHECKPOINT_COST_RATIO = 9.0
CHUNK = 64
PREFETCH_CHUNKS = 1


@dataclass(frozen=True, slots=True)
class BuildReport:
    new_records: int
    indexed_now: int
    failed_now: int
    skipped_no_position: int
    skipped_unreadable: int
    duplicates: int
    total_indexed: int
    seconds: float
    failures: tuple[tuple[str, str], ...]

    @property
    def images_per_s(self) -> float:
        return self.indexed_now / self.seconds if self.seconds > 0 else 0.0


def build_index(
    directory: Path,
    scans: Sequence[SourceScan],
    config: EngineConfig,
    *,
    descriptor_name: str | None = None,
    must_exist: bool = False,
    progress: BuildProgress | None = None,
) -> BuildReport:
    """Add the scanned photos to the index at `directory`, creating it unless `must_exist`."""
    started = time.perf_counter()
    report = _noop if progress is None else progress
    existing = (directory / MANIFEST_NAME).is_file()
    if must_exist and not existing:
        raise IndexMissing(str(directory))
    if not existing and not any(scan.records for scan in scans):
        raise _nothing_to_index(scans)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with building(directory):
            try:
                return _build_locked(directory, scans, config, descriptor_name, report, started)
            except BaseException:
                if not (directory / MANIFEST_NAME).is_file():
                    _remove_refused(directory)
                raise
    finally:
        if created and not (directory / MANIFEST_NAME).is_file():
            shutil.rmtree(directory, ignore_errors=True)


def _build_locked(
    directory: Path,
    scans: Sequence[SourceScan],
    config: EngineConfig,
    descriptor_name: str | None,
    report: BuildProgress,
    started: float,
) -> BuildReport:
    catalog = Catalog(directory / CATALOG_NAME)
    try:
        records = [record for scan in scans for record in scan.records]
        already = catalog.count_done(records)
        new_records = catalog.add(records)
        store = ReferenceStore(directory)
        descriptor, manifest = _open_descriptor(directory, catalog, store, config,
                                                descriptor_name, report)
        vectors = open_for_build(directory, manifest, config.index)
        try:
            features = _feature_store(directory, manifest, config)
            indexed, failed = _describe_pending(
                directory, catalog, store, descriptor, features, vectors, manifest, config,
                report,
            )
        finally:
            vectors.close()
        stats = catalog.stats()
        failures = tuple(catalog.failures())
    finally:
        catalog.close()
    return BuildReport(
        new_records=new_records,
        indexed_now=indexed,
        failed_now=failed,
        skipped_no_position=sum(s.skipped_no_position for s in scans),
        skipped_unreadable=sum(s.skipped_unreadable for s in scans),
        duplicates=already,
        total_indexed=stats.indexed,
        seconds=time.perf_counter() - started,
        failures=failures,
    )


def _nothing_to_index(scans: Sequence[SourceScan]) -> SourceError:
    """Why a new index would be empty, in words that send the user the right way."""
    no_position = sum(s.skipped_no_position for s in scans)
    unreadable = sum(s.skipped_unreadable for s in scans)
    if no_position:
        also = f" ({unreadable} more could not be read)" if unreadable else ""
        return SourceError(
            f"None of the {no_position} photos found has a position{also}. Give each one: EXIF"
            " GPS, a VPR-style name (@UTM_E@UTM_N@ZONE@BAND@LAT@LON@...), or a CSV manifest"
            " with columns path,lat,lon. '-v' lists the photos skipped and why."
        )
    if unreadable:
        return SourceError(f"None of the {unreadable} photos found could be read; '-v' lists"
                           " them and why.")
    return SourceError("No photos found (JPEG, PNG, WebP or HEIC) in the given folders or"
                       " manifests.")


def _remove_refused(directory: Path) -> None:
    """What a refused first build wrote: its catalogue rows would be counted again later."""
    for name in (CATALOG_NAME, f"{CATALOG_NAME}-wal", f"{CATALOG_NAME}-shm"):
        (directory / name).unlink(missing_ok=True)


def _noop(phase: str, done: int, total: int) -> None:
    return None


def _open_descriptor(
    directory: Path,
    catalog: Catalog,
    store: ReferenceStore,
    config: EngineConfig,
    descriptor_name: str | None,
    report: BuildProgress,
) -> tuple[GlobalDescriptor, Manifest]:
    """Load the index's descriptor, or create (and fit) it for a new index."""
    if (directory / MANIFEST_NAME).is_file():
        manifest = Manifest.load(directory)
        check_backend(directory, manifest, config.index)
        wanted = descriptor_name or manifest.descriptor
        if wanted != manifest.descriptor:
            raise DescriptorMismatch(manifest.descriptor, wanted)
        descriptor = create_descriptor(manifest.descriptor, config)
        descriptor.load_state(directory, manifest.descriptor_state)
        return descriptor, manifest

    descriptor = create_descriptor(descriptor_name or config.descriptor, config)
    # Before the vocabulary pass: a missing or wrong weight file is refused in seconds.
    verifier = create_verifier(config.verifier, config)
    if descriptor.needs_fit:
        sample = _fit_sample(catalog.pending(), config.vlad.vocabulary_sample_images)
        report("learning vocabulary", 0, len(sample))
        descriptor.fit(_pictures(sample, store, config, report), len(sample))
    state = descriptor.save_state(directory)
    manifest = Manifest(
        descriptor=descriptor.name,
        dim=descriptor.dim,
        descriptor_fingerprint=descriptor.fingerprint(),
        descriptor_state=state,
        features_verifier=verifier.name if config.store_reference_features else None,
        features_fingerprint=verifier.fingerprint() if config.store_reference_features else None,
        vector_store=config.index.backend,
        milvus_collection=config.index.collection if config.index.backend == "milvus" else None,
    )
    manifest.save(directory)
    return descriptor, manifest


def _fit_sample(pending: list[PendingRef], limit: int) -> list[PendingRef]:
    """Evenly spaced, so a sorted folder's every part teaches the vocabulary."""
    if len(pending) <= limit:
        return pending
    picks = np.linspace(0, len(pending) - 1, limit).round().astype(int)
    return [pending[i] for i in picks]


def _pictures(
    sample: list[PendingRef], store: ReferenceStore, config: EngineConfig, report: BuildProgress
) -> Iterator[np.ndarray]:
    for done, ref in enumerate(sample, 1):
        try:
            yield store.downscale(decode_file(Path(ref.original_path), config.decode,
                                                    store.max_side).rgb)
        except GeoSleuthError:
            continue  # the describe pass records the failure against the row
        finally:
            report("learning vocabulary", done, len(sample))


def _feature_store(
    directory: Path, manifest: Manifest, config: EngineConfig
) -> FeatureStore | None:
    """The store for reference features, if this index keeps them; settings must not drift."""
    if manifest.features_verifier is None:
        return None
    verifier = create_verifier(manifest.features_verifier, config)
    if verifier.fingerprint() != manifest.features_fingerprint:
        raise ConfigError(
            f"the index stores '{manifest.features_verifier}' features made with other"
            f" [{manifest.features_verifier}] settings; restore them or rebuild the index"
        )
    return FeatureStore(directory, verifier)


@dataclass(slots=True)
class _Prepared:
    ref_id: int
    picture: np.ndarray | None = None
    store_path: str | None = None
    vector: np.ndarray | None = None
    error: str | None = None


def _prefetched(
    pool: ThreadPoolExecutor, work: Callable[[PendingRef], _Prepared], pending: list[PendingRef]
) -> Iterator[list[_Prepared]]:
    """Chunks of prepared photos, with the next ones already being prepared in the pool.

    Like a DataLoader with prefetching: while the caller describes one chunk (on a GPU, say),
    the pool decodes the next `PREFETCH_CHUNKS`, so the device does not wait for JPEG decoding.
    """
    chunks = [pending[start:start + CHUNK] for start in range(0, len(pending), CHUNK)]
    in_flight: deque[list[Future[_Prepared]]] = deque()
    for chunk in chunks:
        in_flight.append([pool.submit(work, ref) for ref in chunk])
        if len(in_flight) > PREFETCH_CHUNKS:
            yield [future.result() for future in in_flight.popleft()]
    while in_flight:
        yield [future.result() for future in in_flight.popleft()]


def _describe_pending(
    directory: Path,
    catalog: Catalog,
    store: ReferenceStore,
    descriptor: GlobalDescriptor,
    features: FeatureStore | None,
    vectors: VectorStore,
    manifest: Manifest,
    config: EngineConfig,
    report: BuildProgress,
) -> tuple[int, int]:
    pending = catalog.pending()
    total = len(pending)
    indexed = failed = 0
    done_rows: list[tuple[int, str]] = []
    failed_rows: list[tuple[int, str]] = []
    next_checkpoint = time.monotonic() + CHECKPOINT_EVERY_S
    # CPU descriptors describe in the worker threads, photo by photo (and `vlad` shares its SIFT
    # run with the `sift` verifier there); device descriptors get whole batches on this thread.
    per_photo = descriptor.batch_size == 1

    def prepare(ref: PendingRef) -> _Prepared:
        prepared = _Prepared(ref.ref_id)
        try:
            picture = store.downscale(decode_file(Path(ref.original_path), config.decode,
                                                    store.max_side).rgb)
            prepared.store_path = store.save(ref.ref_id, picture)
            if per_photo:
                prepared.vector = descriptor.describe([picture])[0]
            else:
                prepared.picture = picture
            if features is not None:
                features.save(ref.ref_id, features.verifier.extract(picture))
        except GeoSleuthError as exc:
            prepared.error = str(exc)
        except OSError as exc:
            prepared.error = f"unreadable: {exc}"
        return prepared

    def describe_batch(chunk: list[_Prepared]) -> None:
        waiting = [p for p in chunk if p.error is None and p.vector is None]
        if waiting:
            rows = descriptor.describe([p.picture for p in waiting])
            for prepared, row in zip(waiting, rows, strict=True):
                prepared.vector, prepared.picture = row, None

    def checkpoint() -> None:
        nonlocal manifest, done_rows, failed_rows
        # A row that failed now may hold a vector from a crashed earlier run: not searchable.
        vectors.delete(np.array([ref_id for ref_id, _ in failed_rows], dtype=np.int64))
        if done_rows or failed_rows:
            vectors.commit()
        catalog.mark_indexed(done_rows)
        catalog.mark_failed(failed_rows)
        manifest = manifest.updated(count=len(vectors),
                                    failed=manifest.failed + len(failed_rows))
        manifest.save(directory)
        done_rows, failed_rows = [], []

    report("indexing", 0, total)
    done = 0
    positions = {ref.ref_id: (ref.lat, ref.lon) for ref in pending}
    with worker_pool(config.neural.cpu_threads, "prepare") as pool:
        for chunk in _prefetched(pool, prepare, pending):
            describe_batch(chunk)
            good = [p for p in chunk if p.vector is not None]
            if good:
                stacked = np.stack([p.vector for p in good])
                labels = np.array([p.ref_id for p in good])
                lats, lons = np.array([positions[p.ref_id] for p in good]).T
                vectors.add(stacked, labels, lats, lons)
            done_rows += [(p.ref_id, p.store_path) for p in good if p.store_path]
            failed_rows += [(p.ref_id, p.error or "unknown") for p in chunk if p.vector is None]
            indexed += len(good)
            failed += len(chunk) - len(good)
            done += len(chunk)
            report("indexing", done, total)
            if time.monotonic() > next_checkpoint:
                saving = time.monotonic()
                checkpoint()
                cost = time.monotonic() - saving
                next_checkpoint = time.monotonic() + max(CHECKPOINT_EVERY_S,
                                                         CHECKPOINT_COST_RATIO * cost)
    checkpoint()
    return indexed, failed
