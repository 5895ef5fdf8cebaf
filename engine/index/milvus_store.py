"""The vectors in a Milvus collection: id, vector, lat, lon and the index version per row.

The area filter runs inside Milvus's vector search as a scalar filter on lat/lon. A circle
(near + radius) is filtered by its bounding box there and cut to the circle here, asking for
more until the top-k inside the circle is full, so a circle keeps a full top-k as a box does.
Every call has a deadline; a Milvus that does not answer in time raises VectorStoreUnavailable
(a sentence for the user, the detail for the log), and the next call simply tries again:
gRPC reconnects on its own, so no restart is needed once Milvus is back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import IndexConfig
from engine.errors import ConfigError, IndexCorrupt, SearchAreaError, VectorStoreUnavailable
from engine.geo import SearchArea

try:
    import grpc
    from pymilvus import DataType, MilvusClient
    from pymilvus.exceptions import MilvusException
except ImportError:  # the `milvus` extra is not installed
    MilvusClient = None

log = logging.getLogger(__name__)

VERSION_PROPERTY = "geosleuth.version"
# Milvus answers at most this many hits per search (its `topk` limit).
MAX_LIMIT = 16_384
# Rows per upsert: Milvus caps one request's size (64 MB by default); 512-d float rows are 2 KB.
UPSERT_BATCH = 1_000
_FIELDS = ("id", "vector", "lat", "lon", "version")
# Milvus's status code for a collection not loaded for search: after a Milvus restart it may
# come back released, so the store loads it again instead of failing until the engine restarts.
COLLECTION_NOT_LOADED = 101


def local_uri(uri: str) -> bool:
    """A path to a `.db` file is Milvus Lite, embedded in this process."""
    return uri.endswith(".db") and "://" not in uri


class MilvusStore:
    backend = "milvus"

    def __init__(self, client: Any, settings: IndexConfig, collection: str, dim: int,
                 version: str) -> None:
        self._client = client
        self._uri = settings.uri
        self._settings = settings
        self.collection = collection
        self._dim = dim
        self._version = version

    @classmethod
    def connect(cls, settings: IndexConfig, collection: str, dim: int,
                version: str) -> MilvusStore:
        """A client for the collection of this index (`version`: see `store_key`)."""
        if MilvusClient is None:
            raise ConfigError("the Milvus backend needs pymilvus: pip install 'geosleuth[milvus]'")
        if not settings.uri:
            raise ConfigError(f"the index keeps its vectors in Milvus collection '{collection}';"
                              " set 'engine.index.uri' to its address")
        if local_uri(settings.uri):
            Path(settings.uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
        with _calls(settings.uri):
            client = MilvusClient(uri=settings.uri, token=settings.token,
                                  timeout=settings.timeout_s)
        return cls(client, settings, collection, dim, version)

    def ensure_collection(self) -> None:
        """Create the collection (schema, index, version), or check an existing one."""
        with self._calls():
            if self._client.has_collection(self.collection, timeout=self._timeout):
                self._check_collection()
                return
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
            schema.add_field("lat", DataType.DOUBLE)
            schema.add_field("lon", DataType.DOUBLE)
            schema.add_field("version", DataType.VARCHAR, max_length=64)
            index = self._client.prepare_index_params()
            index.add_index("vector", index_type=self._settings.index_type, metric_type="IP",
                            params=dict(self._settings.index_params))
            self._client.create_collection(self.collection, schema=schema, index_params=index,
                                           properties={VERSION_PROPERTY: self._version},
                                           timeout=self._timeout)

    def load(self) -> None:
        """Check the collection holds this index's vectors, and load it for searching."""
        with self._calls():
            if not self._client.has_collection(self.collection, timeout=self._timeout):
                raise IndexCorrupt(self._where, f"Milvus has no collection '{self.collection}'")
            self._check_collection()
            self._client.load_collection(self.collection, timeout=self._timeout)

    def _check_collection(self) -> None:
        info = self._client.describe_collection(self.collection, timeout=self._timeout)
        fields = {f["name"]: f for f in info["fields"]}
        if set(_FIELDS) - set(fields):
            raise IndexCorrupt(self._where, f"collection '{self.collection}' has fields"
                               f" {sorted(fields)}, not {list(_FIELDS)}; it was not made by"
                               " GeoSleuth")
        stored_dim = int(fields["vector"]["params"]["dim"])
        held = info.get("properties", {}).get(VERSION_PROPERTY)
        if stored_dim != self._dim or held != self._version:
            raise IndexCorrupt(self._where, f"collection '{self.collection}' holds vectors of"
                               f" index version {held} ({stored_dim}-d), this index is"
                               f" {self._version} ({self._dim}-d); name another collection or"
                               " rebuild")

    @property
    def version(self) -> str:
        return self._version

    @property
    def _where(self) -> str:
        return f"milvus {self._uri}"

    @property
    def _timeout(self) -> float:
        return self._settings.timeout_s

    @contextmanager
    def _calls(self) -> Iterator[None]:
        with _calls(self._uri):
            yield

    def __len__(self) -> int:
        with self._calls():
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"],
                                      consistency_level="Strong", timeout=self._timeout)
        return int(rows[0]["count(*)"])

    def add(self, vectors: np.ndarray, labels: np.ndarray, lats: np.ndarray,
            lons: np.ndarray) -> None:
        """Upsert, so a batch sent again after a crash replaces its rows instead of doubling
        them (Milvus's insert does not enforce unique primary keys)."""
        version = self._version
        rows = [{"id": int(label), "vector": vector.astype(np.float32).tolist(),
                 "lat": float(lat), "lon": float(lon), "version": version}
                for label, vector, lat, lon in zip(labels, vectors, lats, lons, strict=True)]
        with self._calls():
            for start in range(0, len(rows), UPSERT_BATCH):
                self._client.upsert(self.collection, rows[start:start + UPSERT_BATCH],
                                    timeout=self._timeout)

    def delete(self, labels: np.ndarray) -> None:
        if len(labels):
            with self._calls():
                self._client.delete(self.collection, ids=[int(i) for i in labels],
                                    timeout=self._timeout)

    def commit(self) -> None:
        with self._calls():
            self._client.flush(self.collection, timeout=self._timeout)

    def search(self, vector: np.ndarray, k: int, *, ef: int,
               area: SearchArea | None = None) -> tuple[np.ndarray, np.ndarray]:
        circle = area is not None and area.centre is not None
        expression = "" if area is None else _box_expression(area)
        limit = k if not circle else min(MAX_LIMIT, 2 * k)
        while True:
            labels, sims, lats, lons = self._search_once(vector, limit, ef, expression)
            if circle:
                assert area is not None
                inside = area.contains(lats, lons)
                found, full = int(inside.sum()), len(labels) == limit
                labels, sims = labels[inside], sims[inside]
                if found < k and full and limit < MAX_LIMIT:
                    limit = min(MAX_LIMIT, 4 * limit)
                    continue
            break
        if area is not None and not len(labels):
            raise SearchAreaError("no reference photos lie in that search area")
        return labels[:k], sims[:k]

    def _search_once(self, vector: np.ndarray, limit: int, ef: int, expression: str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        params: dict[str, Any] = dict(self._settings.search_params)
        if self._settings.index_type.upper() == "HNSW":
            params["ef"] = max(int(params.get("ef", ef)), limit)  # Milvus wants ef >= limit
        with self._calls():
            try:
                hits = self._search_call(vector, limit, expression, params)
            except MilvusException as exc:
                if exc.code != COLLECTION_NOT_LOADED:
                    raise
                self._client.load_collection(self.collection, timeout=self._timeout)
                hits = self._search_call(vector, limit, expression, params)
        labels = np.array([h["id"] for h in hits], dtype=np.int64)
        sims = np.array([h["distance"] for h in hits], dtype=np.float32)
        lats = np.array([h["entity"]["lat"] for h in hits], dtype=np.float64)
        lons = np.array([h["entity"]["lon"] for h in hits], dtype=np.float64)
        return labels, sims, lats, lons

    def _search_call(self, vector: np.ndarray, limit: int, expression: str,
                     params: dict[str, Any]) -> list[dict[str, Any]]:
        return self._client.search(
            self.collection, [vector.reshape(-1).astype(np.float32).tolist()], limit=limit,
            filter=expression, output_fields=["lat", "lon"],
            search_params={"metric_type": "IP", "params": params}, timeout=self._timeout,
        )[0]

    def vectors_of(self, labels: np.ndarray) -> dict[int, tuple[np.ndarray, str]]:
        """(vector, version) by label, for checking a migration."""
        with self._calls():
            rows = self._client.get(self.collection, ids=[int(i) for i in labels],
                                    output_fields=["vector", "version"], timeout=self._timeout)
        return {int(r["id"]): (np.asarray(r["vector"], np.float32), str(r["version"]))
                for r in rows}

    def check_ready(self) -> None:
        """Reachable and loaded; a collection found released (Milvus restarted) is loaded."""
        with self._calls():
            state = self._client.get_load_state(self.collection, timeout=self._timeout)
            if "Loaded" not in str(state.get("state")):
                self._client.load_collection(self.collection, timeout=self._timeout)
                state = self._client.get_load_state(self.collection, timeout=self._timeout)
        if "Loaded" not in str(state.get("state")):
            raise VectorStoreUnavailable(f"{self._where}: collection '{self.collection}' is"
                                         f" {state.get('state')}")

    def close(self) -> None:
        self._client.close()


@contextmanager
def _calls(uri: str) -> Iterator[None]:
    """Milvus's and gRPC's failures as the one error the engine knows how to answer."""
    try:
        yield
    except (MilvusException, grpc.RpcError, ConnectionError, TimeoutError) as exc:
        detail = f"milvus {uri}: {type(exc).__name__}: {exc}"
        log.warning("vector store unavailable: %s", detail)
        raise VectorStoreUnavailable(detail) from None


def _box_expression(area: SearchArea) -> str:
    return (f"lat >= {area.south!r} and lat <= {area.north!r}"
            f" and lon >= {area.west!r} and lon <= {area.east!r}")
