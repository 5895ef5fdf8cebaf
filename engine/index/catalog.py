"""`catalog.sqlite`: one row per reference photo; the row's id is its label in the vector index."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.results import CatalogEntry, ReferenceRecord

CATALOG_NAME = "catalog.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS refs (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    source_id TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    heading REAL,
    captured_at TEXT,
    attribution TEXT,
    licence TEXT,
    creator TEXT,
    link TEXT,
    original_path TEXT NOT NULL,
    store_path TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'indexed', 'failed')),
    error TEXT,
    UNIQUE (source, source_id)
);
CREATE INDEX IF NOT EXISTS refs_status ON refs (status);
"""
# Columns added after the first release, each with its type: older catalogues gain them.
_ADDED_COLUMNS = {"licence": "TEXT", "creator": "TEXT", "link": "TEXT"}


@dataclass(frozen=True, slots=True)
class PendingRef:
    ref_id: int
    original_path: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class CatalogStats:
    indexed: int
    pending: int
    failed: int
    sources: dict[str, int]
    bbox: tuple[float, float, float, float] | None  # W, S, E, N of indexed references


class Catalog:
    """Thread-safe wrapper over one SQLite connection (WAL, so readers never block a build)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        if not read_only:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._add_missing_columns()
        # A read-only catalogue from before a column was added reads it as NULL.
        present = {row[1] for row in self._db.execute("PRAGMA table_info(refs)")}
        self._added = ", ".join(n if n in present else f"NULL AS {n}" for n in _ADDED_COLUMNS)

    def _add_missing_columns(self) -> None:
        present = {row[1] for row in self._db.execute("PRAGMA table_info(refs)")}
        with self._db:
            for name, kind in _ADDED_COLUMNS.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE refs ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self._db.close()

    def add(self, records: Iterable[ReferenceRecord]) -> int:
        """Insert records not seen before ((source, source_id) decides); return how many."""
        rows = [
            (r.source, r.source_id, r.lat, r.lon, r.heading_deg, r.captured_at, r.attribution,
             r.licence, r.creator, r.link, r.image_path)
            for r in records
        ]
        with self._lock, self._db:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO refs (source, source_id, lat, lon, heading, captured_at,"
                " attribution, licence, creator, link, original_path)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return self._db.total_changes - before

    def count_done(self, records: Iterable[ReferenceRecord]) -> int:
        """How many of `records` an earlier run already indexed or gave up on (not pending)."""
        with self._lock, self._db:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS scanned"
                             " (source TEXT, source_id TEXT)")
            self._db.execute("DELETE FROM scanned")
            self._db.executemany("INSERT INTO scanned VALUES (?, ?)",
                                 ((r.source, r.source_id) for r in records))
            (done,) = self._db.execute(
                "SELECT COUNT(*) FROM scanned JOIN refs USING (source, source_id)"
                " WHERE refs.status != 'pending'").fetchone()
            self._db.execute("DELETE FROM scanned")
        return int(done)

    def pending(self, limit: int | None = None) -> list[PendingRef]:
        sql = ("SELECT id, original_path, lat, lon FROM refs WHERE status = 'pending'"
               " ORDER BY id")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            return [PendingRef(*row) for row in self._db.execute(sql)]

    def mark_indexed(self, stored: Sequence[tuple[int, str]]) -> None:
        """Record (ref_id, store_path) pairs as searchable."""
        with self._lock, self._db:
            self._db.executemany(
                "UPDATE refs SET status='indexed', store_path=?, error=NULL WHERE id=?",
                [(path, ref_id) for ref_id, path in stored],
            )

    def mark_failed(self, failures: Sequence[tuple[int, str]]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "UPDATE refs SET status='failed', error=? WHERE id=?",
                [(reason, ref_id) for ref_id, reason in failures],
            )

    def entries(self, ref_ids: Sequence[int]) -> dict[int, CatalogEntry]:
        if not ref_ids:
            return {}
        marks = ",".join("?" * len(ref_ids))
        with self._lock:
            rows = self._db.execute(
                "SELECT id, source, source_id, lat, lon, store_path, heading, captured_at,"
                f" attribution, {self._added} FROM refs WHERE id IN ({marks})"
                " AND status='indexed'",
                [int(i) for i in ref_ids],
            ).fetchall()
        return {row[0]: CatalogEntry(*row) for row in rows}

    def indexed_positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, lats, lons) of every searchable reference, for area filters."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, lat, lon FROM refs WHERE status='indexed' ORDER BY id"
            ).fetchall()
        data = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return data[:, 0].astype(np.int64), data[:, 1], data[:, 2]

    def failures(self, limit: int = 5) -> list[tuple[str, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT original_path, error FROM refs WHERE status='failed' ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()

    def stats(self) -> CatalogStats:
        with self._lock:
            counts = dict(self._db.execute("SELECT status, COUNT(*) FROM refs GROUP BY status"))
            sources = dict(
                self._db.execute(
                    "SELECT source, COUNT(*) FROM refs WHERE status='indexed' GROUP BY source"
                )
            )
            box = self._db.execute(
                "SELECT MIN(lon), MIN(lat), MAX(lon), MAX(lat) FROM refs WHERE status='indexed'"
            ).fetchone()
        return CatalogStats(
            indexed=counts.get("indexed", 0),
            pending=counts.get("pending", 0),
            failed=counts.get("failed", 0),
            sources=sources,
            bbox=None if box[0] is None else tuple(box),
        )
