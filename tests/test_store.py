"""The bots' store against real SQLite files: schema upgrades, request lifecycle, feedback."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.chat.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError, Tally

SHA_A = "a" * 64
SHA_B = "b" * 64
REPO_ROOT = Path(__file__).resolve().parents[1]


async def _start(store: Store, chat_id: str = "chat-1", user: str = "u1", sha: str = SHA_A) -> int:
    return await store.start_request(
        "telegram", chat_id, user, f"name-{user}", "group", sha, b"\xff\xd8jpeg"
    )


async def _answered(store: Store, chat_id: str = "chat-1", sha: str = SHA_A) -> int:
    request_id = await _start(store, chat_id, sha=sha)
    await store.finish_request(request_id, '{"lat": 1}', "idx-1", "idx-1")
    return request_id


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_fresh_database_is_at_latest_version_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bot.sqlite"

    async def scenario() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(scenario())
    con = _raw(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION > 1
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_version_1_database_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    con = _raw(path)
    for statement in MIGRATIONS[0]:
        con.execute(statement)
    con.execute("PRAGMA user_version = 1")
    con.execute(
        "INSERT INTO requests (platform, chat_id, user_id, user_name, chat_type, image_sha256,"
        " status, created_at, finished_at, result_json, index_version)"
        " VALUES ('discord', 'c', 'u', 'Ann', 'guild', ?, 'done', ?, ?, '{}', 'v1')",
        (SHA_A, "2024-01-01T00:00:00.000000+00:00", "2024-01-01T00:00:01.000000+00:00"),
    )
    con.execute(
        "INSERT INTO feedback (request_id, user_id, user_name, vote, created_at)"
        " VALUES (1, 'u2', 'Bob', 'confirm', '2024-01-01T00:00:02.000000+00:00')"
    )
    con.close()

    async def scenario() -> None:
        async with await Store.open(path) as store:
            record = await store.get_request(1)
            assert record is not None
            assert (record.user_name, record.status, record.reply_ref) == ("Ann", "done", None)
            assert record.created_at == "2024-01-01T00:00:00.000000+00:00"
            # Kept, but never reused: it may have been searched in an area, by other settings.
            assert await store.cached_result(SHA_A, "v1") is None
            assert await store.tally(1) == Tally(confirm=("Bob",))
            await store.set_reply_ref(1, "msg-9")
            assert await store.find_by_reply_ref("discord", "c", "msg-9") == (
                await store.get_request(1)
            )
            await store.set_chat_settings("discord", "c", {"lang": "en"})

    asyncio.run(scenario())
    con = _raw(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    con = _raw(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()

    with pytest.raises(StoreError, match="newer than this GeoSleuth knows"):
        asyncio.run(Store.open(path))


def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not sqlite, just some text that is long enough " * 20)

    with pytest.raises(StoreError, match=r"notes\.txt"):
        asyncio.run(Store.open(path))


def test_pending_request_becomes_done_or_failed_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            ok = await _start(store)
            bad = await _start(store)
            pending = await store.get_request(ok)
            assert pending is not None
            assert (pending.status, pending.finished_at) == ("pending", None)
            assert datetime.fromisoformat(pending.created_at).utcoffset() == timedelta(0)

            await store.finish_request(ok, '{"lat": 48.85}', "idx-7", "idx-7")
            await store.fail_request(bad, "no match")

            done = await store.get_request(ok)
            failed = await store.get_request(bad)
            assert done is not None and failed is not None
            assert (done.status, done.result_json, done.index_version) == (
                "done",
                '{"lat": 48.85}',
                "idx-7",
            )
            assert done.finished_at is not None and done.finished_at >= done.created_at
            assert (failed.status, failed.error, failed.result_json) == ("failed", "no match", None)
            with pytest.raises(StoreError, match="not pending"):
                await store.fail_request(ok, "too late")
            assert await store.get_request(999) is None

    asyncio.run(scenario())


def test_cached_result_matches_only_the_same_photo_and_answer_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            first = await _start(store)
            await store.finish_request(first, '{"n": 1}', "idx-1", "idx-1")
            second = await _start(store)
            await store.finish_request(second, '{"n": 2}', "idx-1", "idx-1")
            failed = await _start(store)
            await store.fail_request(failed, "boom")

            assert await store.cached_result(SHA_A, "idx-1") == '{"n": 2}'
            assert await store.cached_result(SHA_A, "idx-2") is None
            assert await store.cached_result(SHA_B, "idx-1") is None

    asyncio.run(scenario())


def test_requests_pending_at_a_crash_are_reported_interrupted_after_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite"
    crash = textwrap.dedent(
        f"""
        import asyncio, os
        from pathlib import Path
        from bot.chat.store import Store

        async def main():
            store = await Store.open(Path({str(path)!r}))
            await store.start_request("telegram", "c", "u", "Ann", "private", {SHA_A!r}, None)
            os._exit(3)  # no close, no finish: the process dies mid-request

        asyncio.run(main())
        """
    )
    died = subprocess.run([sys.executable, "-c", crash], cwd=REPO_ROOT, timeout=60)
    assert died.returncode == 3

    async def scenario() -> None:
        async with await Store.open(path) as store:
            done = await _answered(store)
            interrupted = await store.interrupted_requests()
            assert [(r.user_name, r.status) for r in interrupted] == [("Ann", "interrupted")]
            assert interrupted[0].finished_at is not None
            record = await store.get_request(done)
            assert record is not None and record.status == "done"
            assert await store.interrupted_requests() == []

    asyncio.run(scenario())


def test_one_vote_per_user_a_second_replaces_the_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            request_id = await _answered(store)
            assert await store.vote(request_id, "u1", "Ann", "confirm") == Tally(confirm=("Ann",))
            await store.vote(request_id, "u2", "Bob", "dispute")
            await store.vote(request_id, "u3", "Cid", "confirm")
            assert await store.vote(request_id, "u1", "Ann", "dispute") == Tally(
                confirm=("Cid",), dispute=("Bob", "Ann")
            )
            assert await store.tally(request_id) == Tally(confirm=("Cid",), dispute=("Bob", "Ann"))
            assert (await store.stats()).disputes == 2

            with pytest.raises(StoreError, match="no request 999"):
                await store.vote(999, "u1", "Ann", "confirm")
            unanswered = await _start(store)
            with pytest.raises(StoreError, match="no answer"):
                await store.vote(unanswered, "u1", "Ann", "confirm")
            with pytest.raises(ValueError, match="vote must be one of"):
                await store.vote(request_id, "u1", "Ann", "maybe")  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_forget_chat_removes_that_chats_requests_feedback_and_settings_only(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            gone = await _answered(store, "chat-1")
            await _start(store, "chat-1")
            kept = await _answered(store, "chat-2")
            await store.vote(gone, "u9", "Zed", "confirm")
            await store.vote(kept, "u9", "Zed", "dispute")
            await store.set_chat_settings("telegram", "chat-1", {"public": True})
            await store.set_chat_settings("telegram", "chat-2", {"public": False})

            assert await store.forget_chat("telegram", "chat-1") == 2

            assert await store.get_request(gone) is None
            assert await store.history("telegram", "chat-1") == []
            assert await store.tally(gone) == Tally()
            assert await store.get_chat_settings("telegram", "chat-1") == {}
            assert [r.id for r in await store.history("telegram", "chat-2")] == [kept]
            assert await store.tally(kept) == Tally(dispute=("Zed",))
            assert await store.get_chat_settings("telegram", "chat-2") == {"public": False}
            stats = await store.stats()
            assert (stats.requests_total, stats.confirms, stats.disputes) == (1, 0, 1)

    asyncio.run(scenario())


def test_chat_settings_are_replaced_whole_and_kept_per_platform(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            await store.set_chat_settings("telegram", "42", {"lang": "de", "map": True})
            await store.set_chat_settings("telegram", "42", {"lang": "fr"})
            assert await store.get_chat_settings("telegram", "42") == {"lang": "fr"}
            assert await store.get_chat_settings("discord", "42") == {}

    asyncio.run(scenario())


def test_history_lists_a_chats_answered_requests_newest_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            answered = [await _answered(store) for _ in range(4)]
            await _start(store)
            failed = await _start(store)
            await store.fail_request(failed, "nope")
            await _answered(store, "chat-2")

            history = await store.history("telegram", "chat-1", limit=3)
            assert [r.id for r in history] == answered[::-1][:3]
            assert await store.history("discord", "chat-1") == []

    asyncio.run(scenario())


def test_answers_for_export_are_one_chats_answered_requests_with_votes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            first, second = await _answered(store), await _answered(store)
            await _start(store)
            failed = await _start(store)
            await store.fail_request(failed, "nope")
            other = await _answered(store, "chat-2")
            for voter, vote in (("v1", "confirm"), ("v2", "confirm"), ("v3", "dispute")):
                await store.vote(second, voter, voter, vote)
            await store.vote(other, "v1", "v1", "dispute")

            answers = await store.answers_for_export("telegram", "chat-1")
            assert [a.request_id for a in answers] == [first, second]  # oldest first
            assert [(a.confirms, a.disputes) for a in answers] == [(0, 0), (2, 1)]
            assert answers[0].user_name == "name-u1" and answers[0].result_json == '{"lat": 1}'
            assert await store.answers_for_export("discord", "chat-1") == []

    asyncio.run(scenario())


def test_images_are_stored_only_when_keep_images_is_set(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "bot.sqlite"
        async with await Store.open(path) as store:
            plain = await _start(store)
            record = await store.get_request(plain)
            assert record is not None and record.image is None
        async with await Store.open(path, keep_images=True) as store:
            kept = await _start(store)
            record = await store.get_request(kept)
            assert record is not None and record.image == b"\xff\xd8jpeg"
            assert "jpeg" not in repr(record)

    asyncio.run(scenario())
    con = _raw(tmp_path / "bot.sqlite")
    assert con.execute("SELECT count(*) FROM requests WHERE image IS NOT NULL").fetchone() == (1,)
    con.close()


def test_purge_drops_requests_and_feedback_older_than_the_retention(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite"

    async def scenario() -> None:
        async with await Store.open(path) as store:
            old = await _answered(store)
            fresh = await _answered(store)
            await store.vote(old, "u2", "Bob", "confirm")
            # Another process (an admin's sqlite3 shell) backdates one row while the bot runs.
            long_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="microseconds")
            con = _raw(path)
            con.execute("UPDATE requests SET created_at = ? WHERE id = ?", (long_ago, old))
            con.close()

            assert (await store.stats()).requests_last_24h == 1
            assert await store.purge_older_than(30) == 1
            assert await store.get_request(old) is None
            assert await store.get_request(fresh) is not None
            assert (await store.stats()).confirms == 0
            assert await store.purge_older_than(30) == 0
            with pytest.raises(ValueError, match="negative"):
                await store.purge_older_than(-1)

    asyncio.run(scenario())


def test_fifty_concurrent_requests_are_all_recorded(tmp_path: Path) -> None:
    async def one(store: Store, n: int) -> int:
        request_id = await store.start_request(
            "discord", f"chat-{n % 5}", f"user-{n}", f"User {n}", "guild", f"{n:064x}", None
        )
        await asyncio.sleep(0)
        await store.finish_request(request_id, f'{{"n": {n}}}', "idx-1", "idx-1")
        return request_id

    async def doomed_vote(store: Store) -> None:
        # A transaction that fails midway must not take the other tasks' writes with it.
        with pytest.raises(StoreError):
            await store.vote(10_000, "u", "Nobody", "confirm")

    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            jobs = [one(store, n) for n in range(50)] + [doomed_vote(store) for _ in range(5)]
            results = await asyncio.gather(*jobs)
            ids = results[:50]
            assert len(set(ids)) == 50
            for n, request_id in enumerate(ids):
                assert await store.cached_result(f"{n:064x}", "idx-1") == f'{{"n": {n}}}'
                record = await store.get_request(request_id)
                assert record is not None and record.user_id == f"user-{n}"
            stats = await store.stats()
            assert (stats.requests_total, stats.done, stats.pending) == (50, 50, 0)

    asyncio.run(scenario())


def test_stats_count_requests_people_chats_and_votes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            done = await _answered(store, "chat-1")
            await _answered(store, "chat-2")
            failed = await _start(store, "chat-1", user="u2")
            await store.fail_request(failed, "x")
            await _start(store, "chat-3", user="u3")  # still pending
            await store.start_request("discord", "chat-1", "u1", "Ann", "guild", SHA_A, None)
            await store.interrupted_requests()
            await _start(store, "chat-1")
            await store.vote(done, "u5", "Eve", "confirm")
            await store.vote(done, "u6", "Fay", "confirm")
            await store.vote(done, "u7", "Gus", "dispute")

            stats = await store.stats()
            assert stats.requests_total == 6
            assert (stats.pending, stats.done, stats.failed, stats.interrupted) == (1, 2, 1, 2)
            assert stats.requests_last_24h == 6
            # u1 on telegram and u1 on discord are different people; likewise chat-1.
            assert (stats.distinct_users, stats.distinct_chats) == (4, 4)
            assert (stats.confirms, stats.disputes) == (2, 1)

    asyncio.run(scenario())


def test_unknown_platform_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            with pytest.raises(ValueError, match="platform must be one of telegram, discord"):
                await store.start_request(
                    "irc",  # type: ignore[arg-type]
                    "c",
                    "u",
                    "n",
                    "private",
                    SHA_A,
                    None,
                )

    asyncio.run(scenario())
