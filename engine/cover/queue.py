"""`covers.sqlite` beside the catalogue: the covers asked for, in order, and how each went.

It outlives the process: a cover running or waiting when the engine stopped (or died) is run
again when it starts, and the crawl's own state (`ingest.sqlite`) makes sure that nothing
already fetched is fetched again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.cover.jobs import CoverJob, CoverRequest

COVERS_NAME = "covers.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS covers (
    id INTEGER PRIMARY KEY,
    request TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    cancel INTEGER NOT NULL DEFAULT 0,
    progress TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS covers_by ON covers (requested_by);
"""
_COLUMNS = "id, request, state, progress, summary, created_at, started_at, finished_at, error"


class CoverQueue:
    """Thread-safe: the event loop reads it while the cover thread writes."""

    def __init__(self, directory: Path) -> None:
        self._db = sqlite3.connect(directory / COVERS_NAME, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            # Stopped mid-way: run again, unless its cancel had been asked for.
            self._db.execute("UPDATE covers SET state='cancelled', finished_at=?"
                             " WHERE state IN ('queued', 'running') AND cancel=1", (_now(),))
            self._db.execute("UPDATE covers SET state='queued' WHERE state='running'")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, request: CoverRequest) -> CoverJob:
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO covers (request, requested_by, state, created_at)"
                " VALUES (?, ?, 'queued', ?)",
                (json.dumps(request.to_json()), request.requested_by, _now()))
        job = self.get(int(cursor.lastrowid or 0))
        assert job is not None
        return job

    def get(self, job_id: int) -> CoverJob | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM covers WHERE id=?",
                                   (job_id,)).fetchone()
            return None if row is None else self._job(row)

    def jobs(self, requested_by: str | None = None) -> list[CoverJob]:
        """Newest first."""
        where, args = ("WHERE requested_by=?", (requested_by,)) if requested_by is not None \
            else ("", ())
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM covers {where} ORDER BY id DESC",
                                    args).fetchall()
            return [self._job(row) for row in rows]

    def next_queued(self) -> CoverJob | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM covers WHERE state='queued'"
                                   " ORDER BY id LIMIT 1").fetchone()
            return None if row is None else self._job(row)

    def start(self, job_id: int) -> None:
        self._set(job_id, state="running", started_at=_now())

    def progress(self, job_id: int, progress: dict[str, Any]) -> None:
        self._set(job_id, progress=json.dumps(progress))

    def finish(self, job_id: int, state: str, summary: list[dict[str, Any]],
               error: str | None) -> None:
        self._set(job_id, state=state, summary=json.dumps(summary), error=error,
                  finished_at=_now())

    def requeue(self, job_id: int) -> None:
        """The engine is stopping: the job runs again at the next start."""
        self._set(job_id, state="queued")

    def cancel(self, job_id: int) -> CoverJob | None:
        """A queued job ends now; a running one is marked, and its crawl told to stop."""
        with self._lock, self._db:
            self._db.execute("UPDATE covers SET state='cancelled', finished_at=?"
                             " WHERE id=? AND state='queued'", (_now(), job_id))
            self._db.execute("UPDATE covers SET cancel=1 WHERE id=? AND state='running'",
                             (job_id,))
        return self.get(job_id)

    def cancel_asked(self, job_id: int) -> bool:
        with self._lock:
            row = self._db.execute("SELECT cancel FROM covers WHERE id=?", (job_id,)).fetchone()
            return bool(row and row[0])

    def _set(self, job_id: int, **values: Any) -> None:
        assignments = ", ".join(f"{name}=?" for name in values)
        with self._lock, self._db:
            self._db.execute(f"UPDATE covers SET {assignments} WHERE id=?",
                             (*values.values(), job_id))

    def _job(self, row: tuple) -> CoverJob:
        """Under the lock: the row as a job, with its place in line if it waits."""
        job_id, request, state, progress, summary, created, started, finished, error = row
        position = None
        if state == "queued":
            (ahead,) = self._db.execute("SELECT COUNT(*) FROM covers WHERE state='queued'"
                                        " AND id<?", (job_id,)).fetchone()
            position = ahead + 1
        decoded = json.loads(progress)
        if state == "running" and self._db.execute(
                "SELECT cancel FROM covers WHERE id=?", (job_id,)).fetchone()[0]:
            decoded = {**decoded, "cancelling": True}
        return CoverJob(job_id, CoverRequest.from_json(json.loads(request)), state, position,
                        decoded, json.loads(summary), created, started, finished, error)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
