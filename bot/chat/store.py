"""What the bots remember across restarts: requests, their answers, feedback and chat settings.

One SQLite file in WAL mode behind one aiosqlite connection. Every operation holds the store's
lock, so a multi-statement transaction from one task never takes in another task's statements.
Rate-limit state is deliberately not here: the service keeps it in memory, and a restart
forgetting it errs on the side of users. One bot process per database file, because
`interrupted_requests` treats every pending row as its own.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast, get_args

import aiosqlite

from engine.errors import GeoSleuthError

Platform = Literal["telegram", "discord"]
RequestStatus = Literal["pending", "done", "failed", "interrupted"]
Vote = Literal["confirm", "dispute"]

BUSY_TIMEOUT_MS = 5_000  # another process (the CLI's stats) may hold the write lock briefly

# Each step is applied in its own transaction and bumps PRAGMA user_version by one.
# Never edit a released step: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: requests and the votes on their answers
    (
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL CHECK (platform IN ('telegram', 'discord')),
            chat_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            user_name TEXT NOT NULL,
            chat_type TEXT NOT NULL,
            image_sha256 TEXT NOT NULL,
            image BLOB,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'done', 'failed', 'interrupted')),
            error TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            result_json TEXT,
            index_version TEXT
        )""",
        "CREATE INDEX requests_by_chat ON requests (platform, chat_id, created_at)",
        "CREATE INDEX requests_by_image ON requests (image_sha256, index_version, status)",
        "CREATE INDEX requests_by_created ON requests (created_at)",
        """CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            request_id INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            user_name TEXT NOT NULL,
            vote TEXT NOT NULL CHECK (vote IN ('confirm', 'dispute')),
            created_at TEXT NOT NULL,
            UNIQUE (request_id, user_id)
        )""",
    ),
    # 2: where the bot answered (so buttons find their request) and per-chat settings
    (
        "ALTER TABLE requests ADD COLUMN reply_ref TEXT",
        "CREATE INDEX requests_by_reply ON requests (platform, chat_id, reply_ref)",
        """CREATE TABLE chat_settings (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            settings_json TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (platform, chat_id)
        ) WITHOUT ROWID""",
    ),
    # 3: answers are reused only for the same photo, search area and engine settings
    (
        "ALTER TABLE requests ADD COLUMN answer_key TEXT",
        "CREATE INDEX requests_by_answer ON requests (image_sha256, answer_key, status)",
    ),
    # 4: the area a request was searched in (a finished cover looks at the chat's unplaced
    # photos there again), and the covers a chat watches (a restart goes on reporting them)
    (
        "ALTER TABLE requests ADD COLUMN area_json TEXT",
        """CREATE TABLE cover_watches (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL,
            platform TEXT NOT NULL CHECK (platform IN ('telegram', 'discord')),
            chat_id TEXT NOT NULL,
            chat_type TEXT NOT NULL,
            user_id TEXT NOT NULL,
            message_ref TEXT NOT NULL,
            label TEXT NOT NULL,
            reported INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (platform, chat_id, job_id)
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_RECORD_COLUMNS = (
    "id, platform, chat_id, user_id, user_name, chat_type, image_sha256, status, error,"
    " created_at, finished_at, result_json, index_version, reply_ref, image, area_json"
)
_WATCH_COLUMNS = "id, job_id, platform, chat_id, chat_type, user_id, message_ref, label"


class StoreError(GeoSleuthError):
    """The database cannot be used as asked; the message says which file or request."""


@dataclass(frozen=True)
class RequestRecord:
    """One photo someone asked about, and what became of it."""

    id: int
    platform: Platform
    chat_id: str
    user_id: str
    user_name: str
    chat_type: str
    image_sha256: str
    status: RequestStatus
    error: str | None
    created_at: str  # UTC ISO 8601, as stored
    finished_at: str | None
    result_json: str | None
    index_version: str | None
    reply_ref: str | None
    image: bytes | None = field(default=None, repr=False)  # only with keep_images
    # The search area it was asked with: JSON {"text", "west", "south", "east", "north"}.
    area_json: str | None = None


@dataclass(frozen=True)
class CoverWatch:
    """A cover a chat asked for, and the message that shows its progress."""

    id: int
    job_id: int
    platform: Platform
    chat_id: str
    chat_type: str
    user_id: str
    message_ref: str  # the platform's reference to the progress message
    label: str


@dataclass(frozen=True)
class Tally:
    """Who confirmed and who disputed an answer, by name, in the order they voted."""

    confirm: tuple[str, ...] = ()
    dispute: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordedAnswer:
    """A finished request with its answer and vote counts: one entry of a case export."""

    request_id: int
    created_at: str  # UTC ISO 8601, as stored
    user_name: str
    result_json: str | None
    confirms: int
    disputes: int


@dataclass(frozen=True)
class StoreStats:
    """The figures behind the admins' /stats command."""

    requests_total: int
    pending: int
    done: int
    failed: int
    interrupted: int
    requests_last_24h: int
    distinct_users: int
    distinct_chats: int
    confirms: int
    disputes: int


def _now() -> str:
    # Fixed-width UTC ISO strings sort and compare as text, so SQL can use them directly.
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).isoformat(timespec="microseconds")


def _record(row: Sequence[Any]) -> RequestRecord:
    return RequestRecord(
        id=row[0],
        platform=row[1],
        chat_id=row[2],
        user_id=row[3],
        user_name=row[4],
        chat_type=row[5],
        image_sha256=row[6],
        status=row[7],
        error=row[8],
        created_at=row[9],
        finished_at=row[10],
        result_json=row[11],
        index_version=row[12],
        reply_ref=row[13],
        image=row[14],
        area_json=row[15],
    )


class Store:
    """The bots' database; open with `await Store.open(path)` and close when done."""

    def __init__(self, db: aiosqlite.Connection, *, keep_images: bool) -> None:
        self._db = db
        self._keep_images = keep_images
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, keep_images: bool = False) -> Store:
        """Open (creating or upgrading) the database at `path`; refuse one newer than this code."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit at the driver: transactions are begun and ended explicitly below.
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL still survives a process crash; only a power cut may lose
            # the last commits.
            await db.execute("PRAGMA synchronous = NORMAL")
            await _migrate(db, path)
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise StoreError(f"cannot use {path} as the bot's database: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        return cls(db, keep_images=keep_images)

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- requests ---------------------------------------------------------------------------

    async def start_request(
        self,
        platform: Platform,
        chat_id: str,
        user_id: str,
        user_name: str,
        chat_type: str,
        image_sha256: str,
        image: bytes | None,
        area_json: str | None = None,
    ) -> int:
        """Record a pending request at once, so a crash before the answer leaves a trace."""
        _check(platform, Platform, "platform")
        kept = image if self._keep_images else None
        async with self._write() as db:
            cursor = await db.execute(
                "INSERT INTO requests (platform, chat_id, user_id, user_name, chat_type,"
                " image_sha256, image, created_at, area_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (platform, chat_id, user_id, user_name, chat_type, image_sha256, kept, _now(),
                 area_json),
            )
            request_id = cursor.lastrowid
        assert request_id is not None  # an INSERT into a rowid table always sets it
        return request_id

    async def finish_request(self, request_id: int, result_json: str, index_version: str,
                             answer_key: str) -> None:
        """Keep the engine's answer; it also serves later requests with the same photo and
        `answer_key` (what the answer depends on besides the photo: see BotService)."""
        await self._settle(
            request_id,
            "status = 'done', result_json = ?, index_version = ?, answer_key = ?",
            (result_json, index_version, answer_key),
        )

    async def fail_request(self, request_id: int, error: str) -> None:
        await self._settle(request_id, "status = 'failed', error = ?", (error,))

    async def set_reply_ref(self, request_id: int, reply_ref: str) -> None:
        """Remember the message that carries the answer, for buttons pressed on it later."""
        async with self._write() as db:
            cursor = await db.execute(
                "UPDATE requests SET reply_ref = ? WHERE id = ?", (reply_ref, request_id)
            )
            if cursor.rowcount == 0:
                raise StoreError(f"there is no request {request_id}")

    async def get_request(self, request_id: int) -> RequestRecord | None:
        rows = await self._read(
            f"SELECT {_RECORD_COLUMNS} FROM requests WHERE id = ?", (request_id,)
        )
        return _record(rows[0]) if rows else None

    async def find_by_reply_ref(
        self, platform: Platform, chat_id: str, reply_ref: str
    ) -> RequestRecord | None:
        """The request whose answer is the message `reply_ref` in that chat."""
        rows = await self._read(
            f"SELECT {_RECORD_COLUMNS} FROM requests"
            " WHERE platform = ? AND chat_id = ? AND reply_ref = ? ORDER BY id DESC LIMIT 1",
            (platform, chat_id, reply_ref),
        )
        return _record(rows[0]) if rows else None

    async def interrupted_requests(self) -> list[RequestRecord]:
        """Mark the requests a restart cut short, and return them so their users can be told."""
        async with self._write() as db:
            rows = await db.execute_fetchall(
                "UPDATE requests SET status = 'interrupted', finished_at = ?"
                f" WHERE status = 'pending' RETURNING {_RECORD_COLUMNS}",
                (_now(),),
            )
        return sorted((_record(row) for row in rows), key=lambda record: record.id)

    async def cached_result(self, image_sha256: str, answer_key: str) -> str | None:
        """The latest answer for the same photo and answer key, if there is one."""
        rows = await self._read(
            "SELECT result_json FROM requests"
            " WHERE image_sha256 = ? AND answer_key = ? AND status = 'done'"
            " ORDER BY finished_at DESC, id DESC LIMIT 1",
            (image_sha256, answer_key),
        )
        return rows[0][0] if rows else None

    async def history(
        self, platform: Platform, chat_id: str, limit: int = 10
    ) -> list[RequestRecord]:
        """A chat's answered requests, newest first."""
        rows = await self._read(
            f"SELECT {_RECORD_COLUMNS} FROM requests"
            " WHERE platform = ? AND chat_id = ? AND status = 'done'"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (platform, chat_id, limit),
        )
        return [_record(row) for row in rows]

    async def answers_for_export(self, platform: Platform, chat_id: str) -> list[RecordedAnswer]:
        """Every answered request of one chat, oldest first, with its votes counted (one query)."""
        rows = await self._read(
            "SELECT r.id, r.created_at, r.user_name, r.result_json,"
            " count(f.id) FILTER (WHERE f.vote = 'confirm'),"
            " count(f.id) FILTER (WHERE f.vote = 'dispute')"
            " FROM requests AS r LEFT JOIN feedback AS f ON f.request_id = r.id"
            " WHERE r.platform = ? AND r.chat_id = ? AND r.status = 'done'"
            " GROUP BY r.id ORDER BY r.created_at, r.id",
            (platform, chat_id),
        )
        return [RecordedAnswer(*row) for row in rows]

    async def forget_chat(self, platform: Platform, chat_id: str) -> int:
        """Erase everything kept about a chat; returns how many requests went."""
        async with self._write() as db:
            # feedback goes with its requests (ON DELETE CASCADE)
            cursor = await db.execute(
                "DELETE FROM requests WHERE platform = ? AND chat_id = ?", (platform, chat_id)
            )
            for table in ("chat_settings", "cover_watches"):
                await db.execute(
                    f"DELETE FROM {table} WHERE platform = ? AND chat_id = ?", (platform, chat_id)
                )
            return cursor.rowcount

    async def purge_older_than(self, days: float) -> int:
        """Retention: drop requests (and their feedback) created more than `days` ago."""
        if days < 0:
            raise ValueError(f"days must not be negative, got {days}")
        async with self._write() as db:
            cursor = await db.execute(
                "DELETE FROM requests WHERE created_at < ?", (_ago(timedelta(days=days)),)
            )
            return cursor.rowcount

    async def unplaced_requests(
        self, platform: Platform, chat_id: str, days: float, limit: int
    ) -> list[RequestRecord]:
        """A chat's recent single photos answered "no confident match", newest first, each
        only if no later answer in the chat is for the same photo (a cover's second look)."""
        rows = await self._read(
            f"SELECT {_RECORD_COLUMNS} FROM requests AS r"
            " WHERE platform = ? AND chat_id = ? AND status = 'done' AND created_at >= ?"
            " AND json_extract(result_json, '$.status') != 'located'"
            " AND coalesce(json_extract(result_json, '$.kind'), '') != 'album'"
            " AND NOT EXISTS (SELECT 1 FROM requests AS later WHERE later.platform = r.platform"
            " AND later.chat_id = r.chat_id AND later.image_sha256 = r.image_sha256"
            " AND later.status = 'done' AND later.id > r.id)"
            " ORDER BY id DESC LIMIT ?",
            (platform, chat_id, _ago(timedelta(days=days)), limit),
        )
        return [_record(row) for row in rows]

    # -- covers -----------------------------------------------------------------------------

    async def watch_cover(self, job_id: int, platform: Platform, chat_id: str, chat_type: str,
                          user_id: str, message_ref: str, label: str) -> CoverWatch:
        """Remember that this chat follows the cover in `message_ref`, across restarts."""
        _check(platform, Platform, "platform")
        async with self._write() as db:
            rows = await db.execute_fetchall(
                "INSERT INTO cover_watches (job_id, platform, chat_id, chat_type, user_id,"
                " message_ref, label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (platform, chat_id, job_id) DO UPDATE"
                " SET message_ref = excluded.message_ref, reported = 0"
                f" RETURNING {_WATCH_COLUMNS}",
                (job_id, platform, chat_id, chat_type, user_id, message_ref, label, _now()),
            )
        return CoverWatch(*next(iter(rows)))

    async def cover_watch(self, platform: Platform, chat_id: str,
                          job_id: int) -> CoverWatch | None:
        """The chat's watch of that cover, reported or not (a Cancel button finds it)."""
        rows = await self._read(
            f"SELECT {_WATCH_COLUMNS} FROM cover_watches"
            " WHERE platform = ? AND chat_id = ? AND job_id = ?", (platform, chat_id, job_id))
        return CoverWatch(*rows[0]) if rows else None

    async def open_cover_watches(self, platform: Platform) -> list[CoverWatch]:
        """Covers whose end has not been reported yet, oldest first (a restart goes on)."""
        rows = await self._read(
            f"SELECT {_WATCH_COLUMNS} FROM cover_watches WHERE platform = ? AND reported = 0"
            " ORDER BY id", (platform,))
        return [CoverWatch(*row) for row in rows]

    async def cover_reported(self, watch_id: int) -> bool:
        """Mark a watch reported; False if it was already, or is gone (/forget)."""
        async with self._write() as db:
            cursor = await db.execute(
                "UPDATE cover_watches SET reported = 1 WHERE id = ? AND reported = 0",
                (watch_id,))
            return cursor.rowcount == 1

    # -- feedback ---------------------------------------------------------------------------

    async def vote(self, request_id: int, user_id: str, user_name: str, vote: Vote) -> Tally:
        """Record a user's verdict on an answer, replacing their earlier one; returns the tally."""
        _check(vote, Vote, "vote")
        async with self._write() as db:
            rows = await db.execute_fetchall(
                "SELECT status FROM requests WHERE id = ?", (request_id,)
            )
            if not rows:
                raise StoreError(f"there is no request {request_id}")
            if rows[0][0] != "done":
                raise StoreError(f"request {request_id} has no answer to vote on")
            # Delete then insert, so a changed vote counts as the newest in vote order.
            await db.execute(
                "DELETE FROM feedback WHERE request_id = ? AND user_id = ?", (request_id, user_id)
            )
            await db.execute(
                "INSERT INTO feedback (request_id, user_id, user_name, vote, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (request_id, user_id, user_name, vote, _now()),
            )
            return await _tally(db, request_id)

    async def tally(self, request_id: int) -> Tally:
        async with self._lock:
            return await _tally(self._db, request_id)

    # -- chat settings ----------------------------------------------------------------------

    async def get_chat_settings(self, platform: Platform, chat_id: str) -> dict[str, Any]:
        """The chat's settings; an empty dict when none were ever set."""
        rows = await self._read(
            "SELECT settings_json FROM chat_settings WHERE platform = ? AND chat_id = ?",
            (platform, chat_id),
        )
        return cast(dict[str, Any], json.loads(rows[0][0])) if rows else {}

    async def set_chat_settings(
        self, platform: Platform, chat_id: str, settings: Mapping[str, Any]
    ) -> None:
        """Replace the chat's settings with `settings` (JSON-serialisable values only)."""
        text = json.dumps(dict(settings), sort_keys=True)
        async with self._write() as db:
            await db.execute(
                "INSERT INTO chat_settings (platform, chat_id, settings_json, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (platform, chat_id) DO UPDATE"
                " SET settings_json = excluded.settings_json, updated_at = excluded.updated_at",
                (platform, chat_id, text, _now()),
            )

    # -- figures ----------------------------------------------------------------------------

    async def stats(self) -> StoreStats:
        async with self._lock:
            rows = await self._db.execute_fetchall(
                "SELECT count(*),"
                " count(*) FILTER (WHERE status = 'pending'),"
                " count(*) FILTER (WHERE status = 'done'),"
                " count(*) FILTER (WHERE status = 'failed'),"
                " count(*) FILTER (WHERE status = 'interrupted'),"
                " count(*) FILTER (WHERE created_at >= ?),"
                " count(DISTINCT platform || ':' || user_id),"
                " count(DISTINCT platform || ':' || chat_id)"
                " FROM requests",
                (_ago(timedelta(hours=24)),),
            )
            votes = await self._db.execute_fetchall(
                "SELECT count(*) FILTER (WHERE vote = 'confirm'),"
                " count(*) FILTER (WHERE vote = 'dispute') FROM feedback"
            )
        total, pending, done, failed, interrupted, last_24h, users, chats = next(iter(rows))
        confirms, disputes = next(iter(votes))
        return StoreStats(
            requests_total=total,
            pending=pending,
            done=done,
            failed=failed,
            interrupted=interrupted,
            requests_last_24h=last_24h,
            distinct_users=users,
            distinct_chats=chats,
            confirms=confirms,
            disputes=disputes,
        )

    # -- plumbing ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, all or nothing; IMMEDIATE so it never dead-locks on upgrade."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    async def _read(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def _settle(self, request_id: int, assignments: str, params: Sequence[Any]) -> None:
        async with self._write() as db:
            cursor = await db.execute(
                f"UPDATE requests SET {assignments}, finished_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (*params, _now(), request_id),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"request {request_id} is not pending: it cannot be settled again")


def _check(value: str, allowed: Any, what: str) -> None:
    if value not in get_args(allowed):
        raise ValueError(f"{what} must be one of {', '.join(get_args(allowed))}, got {value!r}")


async def _tally(db: aiosqlite.Connection, request_id: int) -> Tally:
    rows = await db.execute_fetchall(
        "SELECT user_name, vote FROM feedback WHERE request_id = ? ORDER BY id", (request_id,)
    )
    return Tally(
        confirm=tuple(name for name, vote in rows if vote == "confirm"),
        dispute=tuple(name for name, vote in rows if vote == "dispute"),
    )


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Bring the schema up to SCHEMA_VERSION one step at a time, each in its own transaction."""
    for version, statements in enumerate(MIGRATIONS, start=1):
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Read under the write lock, so two processes opening at once migrate only once.
            current = await _user_version(db)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} has schema version {current}, newer than this GeoSleuth knows"
                    f" ({SCHEMA_VERSION}); upgrade GeoSleuth or use another database file"
                )
            if current < version:
                for statement in statements:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            await db.rollback()
            raise
        await db.commit()


async def _user_version(db: aiosqlite.Connection) -> int:
    rows = await db.execute_fetchall("PRAGMA user_version")
    return int(next(iter(rows))[0])
