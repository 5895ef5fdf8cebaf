"""`ingest.sqlite` beside the catalogue: what each crawl has fetched, and how far it got.

A listing is 'staged' once its image (or its panorama's views) is on disk, and 'indexed'
once a builder run has taken it in: a crash or Ctrl-C in between loses nothing, and a rerun
neither downloads a staged image again nor lists an indexed one as new. Cells finished by
an unfinished run are skipped when the same run is resumed; a run that finishes records its
start, which `--refresh` asks the platform to go beyond.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.results import ReferenceRecord

STATE_NAME = "ingest.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS listings (
    source TEXT NOT NULL,
    source_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('staged', 'indexed')),
    records TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (source, source_id)
);
CREATE TABLE IF NOT EXISTS cells_done (
    source TEXT NOT NULL,
    run TEXT NOT NULL,
    cell TEXT NOT NULL,
    PRIMARY KEY (source, run, cell)
);
CREATE TABLE IF NOT EXISTS runs (
    source TEXT NOT NULL,
    area TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Staged:
    source: str
    source_id: str
    records: tuple[ReferenceRecord, ...]


class IngestState:
    def __init__(self, directory: Path) -> None:
        self._db = sqlite3.connect(directory / STATE_NAME)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def known(self, source: str, source_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM listings WHERE source=? AND source_id=?",
                               (source, source_id)).fetchone()
        return row is not None

    def stage(self, source: str, source_id: str, records: Iterable[ReferenceRecord]) -> None:
        payload = json.dumps([_record_dict(r) for r in records])
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO listings VALUES (?, ?, 'staged', ?)",
                             (source, source_id, payload))

    def staged(self) -> list[Staged]:
        rows = self._db.execute("SELECT source, source_id, records FROM listings"
                                " WHERE status='staged' ORDER BY rowid").fetchall()
        return [Staged(s, i, tuple(ReferenceRecord(**r) for r in json.loads(p)))
                for s, i, p in rows]

    def staged_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM listings WHERE status='staged'").fetchone()[0]

    def mark_indexed(self, staged: Iterable[Staged]) -> None:
        with self._db:
            self._db.executemany(
                "UPDATE listings SET status='indexed', records='[]'"
                " WHERE source=? AND source_id=?",
                [(s.source, s.source_id) for s in staged])

    def cell_done(self, source: str, run: str, cell: str) -> bool:
        row = self._db.execute("SELECT 1 FROM cells_done WHERE source=? AND run=? AND cell=?",
                               (source, run, cell)).fetchone()
        return row is not None

    def finish_cell(self, source: str, run: str, cell: str) -> None:
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO cells_done VALUES (?, ?, ?)",
                             (source, run, cell))

    def finish_run(self, source: str, run: str, area: str, started_at: str,
                   finished_at: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM cells_done WHERE source=? AND run=?", (source, run))
            self._db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)",
                             (source, area, started_at, finished_at))

    def last_run_start(self, source: str, area: str) -> str | None:
        row = self._db.execute("SELECT MAX(started_at) FROM runs WHERE source=? AND area=?",
                               (source, area)).fetchone()
        return row[0]


def _record_dict(record: ReferenceRecord) -> dict:
    return {name: getattr(record, name) for name in ReferenceRecord.__dataclass_fields__}
