"""`Locator`: the synchronous funnel (decode, describe, search, verify, estimate) for one index."""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass, field

import numpy as np

from engine.calibration import curve_for
from engine.config import EngineConfig
from engine.decode import decode_image
from engine.descriptors import create_descriptor
from engine.descriptors.base import GlobalDescriptor
from engine.errors import Cancelled, DescriptorMismatch, ImageTooSmall
from engine.estimate import (
    Candidate,
    Verified,
    cluster_candidates,
    estimate,
    pick_for_verification,
    settled_inliers,
)
from engine.geo import SearchArea
from engine.index.feature_store import FeatureStore
from engine.index.reference_index import ReferenceIndex
from engine.index.store import ReferenceStore
from engine.query_views import check_query_config, combine_views, merge_hits, query_views
from engine.results import LatLon, LocateResult, Match, Progress, Stage
from engine.threads import worker_pool
from engine.verifiers import create_verifier
from engine.verifiers.base import LocalFeatures, Verification

ProgressCallback = Callable[[Progress], None]
MAX_CORRESPONDENCES = 300


@dataclass(slots=True)
class Query:
    """A decoded query on its way through the funnel: only the downscaled pixels are kept."""

    picture: np.ndarray  # downscaled like the reference pictures
    size: tuple[int, int]  # (width, height) of the photo as sent
    exif_gps: LatLon | None
    timings_ms: dict[str, float] = field(default_factory=dict)


class _FeatureCache:
    """LRU of reference features by ref id: popular places are verified again and again."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[int, LocalFeatures] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ref_id: int) -> LocalFeatures | None:
        with self._lock:
            features = self._items.get(ref_id)
            if features is not None:
                self._items.move_to_end(ref_id)
            return features

    def put(self, ref_id: int, features: LocalFeatures) -> None:
        with self._lock:
            self._items[ref_id] = features
            self._items.move_to_end(ref_id)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)


class Locator:
    def __init__(self, config: EngineConfig, index: ReferenceIndex) -> None:
        manifest = index.manifest
        if config.descriptor != manifest.descriptor:
            raise DescriptorMismatch(manifest.descriptor, config.descriptor)
        self.config = config
        descriptor = create_descriptor(manifest.descriptor, config)
        descriptor.load_state(index.directory, manifest.descriptor_state)
        self.verifier = create_verifier(config.verifier, config)
        check_query_config(config.query)
        self._cache = _FeatureCache(config.sift.cache_size)
        self._pool = worker_pool(config.neural.cpu_threads, "verify")
        self._attach(index, descriptor)
        self.descriptor.warm_up()
        self.verifier.warm_up()

    def _attach(self, index: ReferenceIndex, descriptor: GlobalDescriptor) -> None:
        """Serve `index` with `descriptor`, whose learned state must be the index's."""
        manifest = index.manifest
        if descriptor.fingerprint() != manifest.descriptor_fingerprint:
            raise DescriptorMismatch(
                f"{manifest.descriptor} ({manifest.descriptor_fingerprint[:12]})",
                f"{self.config.descriptor} ({descriptor.fingerprint()[:12]})",
            )
        self.index = index
        self.descriptor = descriptor
        self.curve, self.curve_source = curve_for(self.verifier.calibration_key,
                                                  index.directory, self.config.estimate)
        self._settled_inliers = settled_inliers(self.curve)
        self._features: FeatureStore | None = None
        if (manifest.features_verifier == self.verifier.name
                and manifest.features_fingerprint == self.verifier.fingerprint()):
            self._features = FeatureStore(index.directory, self.verifier)
        self._store = ReferenceStore(index.directory)
        self.answer_key = self._answer_key()

    def with_index(self, index: ReferenceIndex) -> Locator:
        """The same models over a newer view of the index (references appended): no weights
        are loaded again; the descriptor's learned state only if the manifest's differs (an
        index rebuilt in place), into a copy that shares the network."""
        if index.manifest.descriptor != self.descriptor.name:
            raise DescriptorMismatch(index.manifest.descriptor, self.descriptor.name)
        twin = copy.copy(self)
        descriptor = self.descriptor
        if index.manifest.descriptor_fingerprint != self.index.manifest.descriptor_fingerprint:
            descriptor = copy.copy(descriptor)
            descriptor.load_state(index.directory, index.manifest.descriptor_state)
        if index.manifest.created_at != self.index.manifest.created_at:
            twin._cache = _FeatureCache(self.config.sift.cache_size)  # its ids name others
        twin._attach(index, descriptor)
        return twin

    def _answer_key(self) -> str:
        """A fingerprint of everything but the photo that an answer depends on: the index,
        the models and their settings, the curve, and the search and estimate settings."""
        config = self.config
        parts = {
            "index": self.index.version,
            "descriptor": self.descriptor.fingerprint(),
            "verifier": self.verifier.fingerprint(),
            "curve": asdict(self.curve),
            "settings": [asdict(section) for section in (config.decode, config.query,
                                                         config.search, config.estimate)],
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    @classmethod
    def open(cls, config: EngineConfig) -> Locator:
        return cls(config, ReferenceIndex.open(config.index_path, config.index))

    def close(self) -> None:
        """Free the models' threads and the index (a locator replaced by `with_index` only
        closes its index: the threads are its successor's)."""
        self._pool.shutdown(wait=True)
        self.index.close()

    def locate(
        self,
        data: bytes,
        *,
        area: SearchArea | None = None,
        top_k: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> LocateResult:
        """The whole funnel for one photo's bytes."""
        notify = progress or _ignore
        notify(Progress(Stage.DECODING))
        query = self.prepare(data)
        notify(Progress(Stage.DESCRIBING))
        vector = self.describe([query])[0]
        return self.finish(query, vector, area=area, top_k=top_k, progress=notify, cancel=cancel)

    def prepare(self, data: bytes) -> Query:
        started = time.perf_counter()
        decoded = decode_image(data, self.config.decode, self._store.max_side)
        if min(decoded.size) < self.config.decode.min_side:
            raise ImageTooSmall(decoded.size, self.config.decode.min_side)
        query = Query(self._store.downscale(decoded.rgb), decoded.size, decoded.exif_gps)
        query.timings_ms["decode"] = _ms_since(started)
        return query

    def describe(self, queries: Sequence[Query]) -> np.ndarray:
        """(queries, crops, dim): concurrent jobs share one descriptor call (as a GPU needs)."""
        started = time.perf_counter()
        views = [view for q in queries for view in query_views(q.picture, self.config.query)]
        rows = self.descriptor.describe(views)
        vectors = combine_views(rows, len(queries), self.config.query)
        elapsed = _ms_since(started) / max(1, len(queries))
        for query in queries:
            query.timings_ms["describe"] = elapsed
        return vectors

    def finish(
        self,
        query: Query,
        vector: np.ndarray,
        *,
        area: SearchArea | None = None,
        top_k: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> LocateResult:
        """Search (each crop's row of `vector`), verify and estimate for a described query."""
        notify = progress or _ignore
        timings = query.timings_ms
        search = self.config.search
        _check(cancel)
        notify(Progress(Stage.SEARCHING))
        started = time.perf_counter()
        searches = [self.index.search(row, search.top_n, ef=search.ef, area=area)
                    for row in np.atleast_2d(vector)]
        hits = [(i, s) for i, s in merge_hits(searches, search.top_n)
                if s >= search.similarity_floor]
        entries = self.index.entries([i for i, _ in hits])
        ranked = [(entries[i], s) for i, s in hits if i in entries]
        candidates = cluster_candidates(ranked, search.cluster_radius_m)
        chosen = pick_for_verification(candidates, top_k or search.top_k)
        timings["search"] = _ms_since(started)

        started = time.perf_counter()
        verified, best_evidence = self._verify(query, chosen, notify, cancel)
        timings["verify"] = _ms_since(started)

        started = time.perf_counter()
        answer = estimate(verified, self.config.estimate, self.curve)
        timings["estimate"] = _ms_since(started)
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        notify(Progress(Stage.DONE))

        correspondences: tuple[tuple[float, float, float, float], ...] = ()
        if answer.best is not None and answer.best.candidate.entry.ref_id in best_evidence:
            evidence = best_evidence[answer.best.candidate.entry.ref_id]
            correspondences = _correspondences(evidence, query)
        return LocateResult(
            status=answer.status,
            lat=answer.lat,
            lon=answer.lon,
            confidence=answer.confidence,
            radius_m=answer.radius_m,
            alternatives=answer.alternatives,
            matches=tuple(_match(v) for v in sorted(verified,
                                                     key=lambda v: (-v.decisive, -v.inliers))),
            exif_gps=query.exif_gps,
            timings_ms=dict(timings),
            descriptor=self.descriptor.name,
            verifier=self.verifier.name,
            index_version=self.index.version,
            query_size=query.size,
            correspondences=correspondences,
            best_reference=None if answer.best is None else answer.best.candidate.entry,
        )

    def _verify(
        self,
        query: Query,
        chosen: Sequence[Candidate],
        notify: ProgressCallback,
        cancel: threading.Event | None,
    ) -> tuple[list[Verified], dict[int, Verification]]:
        """Every candidate through `verify`; then, for a cascade, the best few by its inliers
        through `decide`, whose counts alone the answer model weighs."""
        if not chosen:
            return [], {}
        query_features = self.verifier.extract(query.picture)
        depth = self.verifier.decide_depth(len(chosen))
        total = len(chosen) + depth
        notify(Progress(Stage.VERIFYING, step=0, total=total))
        first = self._verify_all(query_features, chosen,
                                 lambda step: notify(Progress(Stage.VERIFYING, step=step,
                                                              total=total)), cancel)
        verified = {c.entry.ref_id: _verified(c, v, decisive=depth == 0) for c, v in first}
        evidence = {c.entry.ref_id: v for c, v in first}
        ranked = sorted(first, key=lambda cv: (-cv[1].inliers, -cv[0].similarity))
        # Where it checks them all (a GPU), every count is kept for the answer model.
        may_stop = depth < len(chosen)
        for step, (candidate, _) in enumerate(ranked[:depth], len(chosen) + 1):
            # One at a time, strongest first: the matcher holds the model (or the GPU) anyway,
            # and once a place is settled the weaker candidates cannot unsettle it.
            result = self._pool.submit(self._verify_one, self.verifier.decide, query_features,
                                       candidate, cancel).result()
            verified[candidate.entry.ref_id] = _verified(candidate, result, decisive=True)
            evidence[candidate.entry.ref_id] = result
            settled = may_stop and result.inliers >= self._settled_inliers
            # A settled place skips the rest: progress is complete.
            notify(Progress(Stage.VERIFYING, step=total if settled else step, total=total))
            if settled:
                break
        _check(cancel)
        return list(verified.values()), evidence

    def _verify_all(
        self,
        query_features: LocalFeatures,
        candidates: Sequence[Candidate],
        on_step: Callable[[int], None],
        cancel: threading.Event | None,
    ) -> list[tuple[Candidate, Verification]]:
        """`verify` on every candidate in the pool, in the order they finish."""
        futures = {self._pool.submit(self._verify_one, self.verifier.verify, query_features, c,
                                     cancel): c
                   for c in candidates}
        out = []
        for step, future in enumerate(as_completed(futures), 1):
            out.append((futures[future], future.result()))
            on_step(step)
        return out

    def _verify_one(
        self,
        check: Callable[[LocalFeatures, LocalFeatures], Verification],
        query_features: LocalFeatures,
        candidate: Candidate,
        cancel: threading.Event | None,
    ) -> Verification:
        _check(cancel)
        return check(query_features, self._reference_features(candidate))

    def _reference_features(self, candidate: Candidate) -> LocalFeatures:
        ref_id = candidate.entry.ref_id
        features = self._cache.get(ref_id)
        if features is None and self._features is not None:
            features = self._features.load(ref_id)
        if features is None:
            features = self.verifier.extract(self.index.load_picture(candidate.entry))
        self._cache.put(ref_id, features)
        return features


def _ignore(_: Progress) -> None:
    return None


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _verified(candidate: Candidate, result: Verification, *, decisive: bool) -> Verified:
    return Verified(candidate, result.inliers, result.inlier_ratio, decisive=decisive,
                    view_scale=result.view_scale)


def _match(v: Verified) -> Match:
    e = v.candidate.entry
    return Match(ref_id=e.ref_id, source=e.source, source_id=e.source_id, lat=e.lat, lon=e.lon,
                 similarity=v.candidate.similarity, inliers=v.inliers,
                 inlier_ratio=v.inlier_ratio, attribution=e.attribution, licence=e.licence,
                 creator=e.creator, link=e.link, place=v.candidate.cluster,
                 decisive=v.decisive, view_scale=v.view_scale)


def _correspondences(
    evidence: Verification, query: Query
) -> tuple[tuple[float, float, float, float], ...]:
    """Inlier pairs, query side in the original photo's pixels, reference side in the store's."""
    scale = query.size[0] / query.picture.shape[1]
    pairs = np.hstack([evidence.query_points * scale, evidence.reference_points])
    if len(pairs) > MAX_CORRESPONDENCES:
        pairs = pairs[np.linspace(0, len(pairs) - 1, MAX_CORRESPONDENCES).astype(int)]
    return tuple(tuple(float(x) for x in row) for row in pairs)
