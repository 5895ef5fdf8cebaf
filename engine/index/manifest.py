"""The index's `manifest.json`: what built it, so a query with another descriptor is refused."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import IndexCorrupt, IndexMissing

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Manifest:
    descriptor: str
    dim: int
    descriptor_fingerprint: str
    descriptor_state: dict[str, Any]
    count: int = 0
    # The verifier (name, settings fingerprint) whose reference features the index stores.
    features_verifier: str | None = None
    features_fingerprint: str | None = None
    failed: int = 0
    # The graph a new index gets (bench/bench_index_scale.py, 1,000,000 vectors, one thread:
    # recall@1 0.99 at ef 48 in 0.46 ms with M 32, only at ef 200 in 1.23 ms with M 16; 6 %
    # more bytes per vector). An index keeps the M it was built with.
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    # Where the vectors live: "hnswlib" (files here) or "milvus" (this collection there).
    vector_store: str = "hnswlib"
    milvus_collection: str | None = None
    created_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)
    format_version: int = FORMAT_VERSION

    @property
    def version(self) -> str:
        """Changes whenever the indexed content changes (keys caches of results)."""
        return f"{self.descriptor}-{self.descriptor_fingerprint[:8]}-{self.count}-{self.updated_at}"

    def updated(self, **changes: Any) -> Manifest:
        return replace(self, updated_at=utc_now(), **changes)

    def save(self, directory: Path) -> None:
        """Write atomically: a crash leaves the old or the new manifest, never half of one."""
        tmp = directory / (MANIFEST_NAME + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, directory / MANIFEST_NAME)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise IndexMissing(str(directory))
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise IndexCorrupt(str(directory), f"manifest.json: {exc}") from exc
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexCorrupt(
                str(directory),
                f"format version {version}, this GeoSleuth reads {FORMAT_VERSION}; rebuild it",
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise IndexCorrupt(str(directory), f"manifest.json: {exc}") from exc
