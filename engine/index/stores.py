"""Opens the vector store an index's manifest names, refusing a config that says otherwise."""

from __future__ import annotations

from pathlib import Path

from engine.config import IndexConfig
from engine.errors import ConfigError
from engine.index.hnsw_store import HnswStore, Positions
from engine.index.manifest import Manifest
from engine.index.milvus_store import MilvusStore
from engine.index.vector_store import VectorStore, store_key


def check_backend(directory: Path, manifest: Manifest, settings: IndexConfig) -> None:
    """An index keeps its vectors where it was built (or migrated); a config naming the other
    backend is a mistake to point out, not to follow silently."""
    if manifest.vector_store != settings.backend:
        fix = (f"run 'geosleuth index migrate --index {directory} --to milvus://HOST:PORT/NAME'"
               if manifest.vector_store == "hnswlib"
               else f"set engine.index.backend = \"{manifest.vector_store}\"")
        raise ConfigError(f"the index at {directory} keeps its vectors in"
                          f" {manifest.vector_store}, but engine.index.backend is"
                          f" '{settings.backend}': {fix}")


def milvus_for(manifest: Manifest, settings: IndexConfig) -> MilvusStore:
    collection = manifest.milvus_collection or settings.collection
    return MilvusStore.connect(settings, collection, manifest.dim, store_key(manifest))


def open_for_build(directory: Path, manifest: Manifest, settings: IndexConfig) -> VectorStore:
    check_backend(directory, manifest, settings)
    if manifest.vector_store == "milvus":
        store = milvus_for(manifest, settings)
        store.ensure_collection()
        return store
    return HnswStore.open_for_build(directory, manifest)


def open_for_queries(directory: Path, manifest: Manifest, settings: IndexConfig,
                     positions: Positions | None) -> VectorStore:
    check_backend(directory, manifest, settings)
    if manifest.vector_store == "milvus":
        store = milvus_for(manifest, settings)
        store.load()
        return store
    return HnswStore.open(directory, manifest, positions)
