"""The Telegram bot end to end: the real python-telegram-bot against a fake Bot API server."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from bot.adapters.errors import StartupFailed
from bot.adapters.runner import run_bots
from bot.chat.store import Store
from bot.config import (
    AccessConfig,
    AppConfig,
    RateLimitConfig,
    ServiceConfig,
    StoreConfig,
    TelegramConfig,
)
from bot.render.map import MapStyle
from engine.config import EngineConfig, EngineLimits
from engine.errors import IndexMissing
from engine.geo import haversine_m
from tests.case_files import geojson_features, kml_placemarks, kml_point
from tests.conftest import STREET_CREDIT, jpeg_bytes
from tests.fakes.telegram_api import FakeTelegram, group_chat, private_chat, user

ALICE = user(1001, "Alice", "alice_osint")
BOB = user(1002, "Bob", "bob_maps")
TEAM = group_chat(-1001234567890, "OSINT team")
COORDINATES = re.compile(r"<code>(-?\d+\.\d+), (-?\d+\.\d+)</code>")


def _run(scenario, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(scenario(), timeout=timeout))


@asynccontextmanager
async def running_bot(tmp_path, engine: EngineConfig, **sections) -> AsyncIterator[FakeTelegram]:
    """The whole `geosleuth bot` process (engine, store, adapter) against a fake Telegram."""
    async with FakeTelegram() as tg:
        for chat in (private_chat(ALICE), private_chat(BOB), TEAM):
            tg.add_chat(chat, members=(ALICE, BOB))
        config = AppConfig(
            engine=engine,
            map=MapStyle(tiles_enabled=False),
            store=StoreConfig(path=tmp_path / "bot.sqlite"),
            telegram=TelegramConfig(enabled=True, token="123:TEST", base_url=tg.base_url,
                                    base_file_url=tg.base_file_url),
        )
        config = replace(config, **sections)
        stop = asyncio.Event()
        bot = asyncio.create_task(run_bots(config, stop))
        await tg.wait_for("setMyCommands", timeout=30)
        try:
            yield tg
        finally:
            stop.set()
            await asyncio.wait_for(bot, 30)  # a clean stop, and any crash surfaces here


def _answers(tg: FakeTelegram, chat_id: int) -> list:
    return [c for c in tg.calls if c.params.get("chat_id") == chat_id
            and c.method in ("sendPhoto", "sendMessage", "editMessageText")]


def _coordinates(caption: str) -> tuple[float, float]:
    match = COORDINATES.search(caption)
    assert match, caption
    return float(match[1]), float(match[2])


def test_private_photo_gets_progress_map_caption_and_pin(tmp_path, street_index, street_queries):
    view = street_queries[0]

    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(view.rgb))
            [photo] = await tg.wait_for("sendPhoto", timeout=30)
            [pin] = await tg.wait_for("sendLocation")
            progress = tg.calls_to("sendMessage")
            return photo, pin, progress, tg.calls_to("editMessageText"), tg.deleted

    photo, pin, progress, edits, deleted = _run(scenario)
    assert progress[0].params["text"].startswith("⏳ Queued")
    assert edits, "the progress message is edited as the stages pass"
    assert deleted, "the progress message is removed once the answer is there"
    assert photo.files["photo"][:8] == b"\x89PNG\r\n\x1a\n"
    lat, lon = _coordinates(photo.params["caption"])
    assert haversine_m(view.lat, view.lon, lat, lon) <= 25
    caption = photo.params["caption"]
    assert "Confidence" in caption and "openstreetmap.org" in caption
    assert "Imagery: © tester, CC-BY-4.0 (synthetic)" in caption  # the matched photo's credit
    assert '<a href="https://example.org/street/' in caption  # and its page
    assert haversine_m(view.lat, view.lon, pin.params["latitude"], pin.params["longitude"]) <= 25
    keyboard = photo.params["reply_markup"]["inline_keyboard"]
    assert [b["callback_data"].split(":")[0] for row in keyboard for b in row] == [
        "alt", "ev", "ok", "no"]


@pytest.mark.real_data
def test_held_out_lund_frame_through_telegram_is_within_25_m(tmp_path, lund_index, lund_split):
    _, held_out = lund_split
    record = held_out[1]
    with open(record.image_path, "rb") as handle:
        data = handle.read()

    async def scenario():
        async with running_bot(tmp_path, lund_index) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, data)
            [photo] = await tg.wait_for("sendPhoto", timeout=30)
            [pin] = await tg.wait_for("sendLocation")
            return photo, pin

    photo, pin = _run(scenario)
    lat, lon = _coordinates(photo.params["caption"])
    assert haversine_m(record.lat, record.lon, lat, lon) <= 25
    assert haversine_m(record.lat, record.lon, pin.params["latitude"],
                       pin.params["longitude"]) <= 25


def test_group_locate_reply_and_caption_mention_and_ignored_photo(
    tmp_path, street_index, street_queries
):
    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            photo = tg.send_photo(TEAM, ALICE, jpeg_bytes(street_queries[0].rgb))
            photo_id = photo["message"]["message_id"]
            tg.send_photo(TEAM, BOB, jpeg_bytes(street_queries[1].rgb))  # not addressed to us
            tg.send_text(TEAM, BOB, "/locate@geosleuth_test_bot",
                         reply_to_message=photo["message"])
            await tg.wait_for("sendPhoto", timeout=30)
            mentioned = tg.send_photo(TEAM, BOB, jpeg_bytes(street_queries[2].rgb),
                                      caption="@geosleuth_test_bot where is this?")
            await tg.wait_for("sendPhoto", count=2, timeout=30)
            return photo_id, mentioned["message"]["message_id"], tg.calls_to("sendPhoto")

    photo_id, mentioned_id, answers = _run(scenario)
    assert len(answers) == 2, "the photo nobody asked about is ignored"
    assert answers[0].params["reply_parameters"]["message_id"] == photo_id
    assert answers[1].params["reply_parameters"]["message_id"] == mentioned_id


def test_document_with_exif_gps_reports_it_beside_the_answer(tmp_path, street_index,
                                                             street_queries):
    view = street_queries[0]
    image = Image.fromarray(view.rgb)
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (52.0, 31.0, 12.0), "E", (13.0, 24.0, 18.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)

    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            tg.send_document(private_chat(ALICE), ALICE, buffer.getvalue(), "IMG_0001.jpg",
                             "image/jpeg")
            [photo] = await tg.wait_for("sendPhoto", timeout=30)
            return photo

    caption = _run(scenario).params["caption"]
    assert "Photo&#x27;s own GPS: 52.520000, 13.405000" in caption
    assert "m from the visual answer" in caption


def _bad_inputs(tg: FakeTelegram, chat) -> list[str]:
    """Each bad input, and the words its answer must contain."""
    rng = np.random.default_rng(1)
    corrupt = jpeg_bytes((rng.random((300, 400, 3)) * 255).astype(np.uint8))[:3000]
    huge = io.BytesIO()
    Image.new("RGB", (9000, 6700), (120, 130, 140)).save(huge, "JPEG", quality=50)
    tg.send_sticker(chat, ALICE)
    tg.send_video(chat, ALICE)
    tg.send_animation(chat, ALICE)
    tg.send_document(chat, ALICE, b"%PDF-1.7 a report", "report.pdf", "application/pdf")
    tg.send_document(chat, ALICE, corrupt, "broken.jpg", "image/jpeg")
    tg.send_document(chat, ALICE, huge.getvalue(), "huge.jpg", "image/jpeg")
    return ["Stickers can't be located", "not a video GeoSleuth can read", "not an image",
            "truncated or corrupt", "megapixels"]


def test_every_bad_input_gets_a_clear_answer(tmp_path, street_index):
    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            expected = _bad_inputs(tg, private_chat(ALICE))
            await tg.wait_for(lambda c: c.method == "editMessageText"
                              and "megapixels" in c.params.get("text", ""), timeout=30)
            await tg.wait_for(lambda c: c.method == "editMessageText"
                              and "corrupt" in c.params.get("text", ""), timeout=30)
            # The video and the GIF (an animation): neither is a video the fake's bytes make.
            await tg.wait_for(lambda c: c.method == "editMessageText"
                              and "not a video" in c.params.get("text", ""), count=2, timeout=30)
            return expected, [c.params.get("text", "") for c in _answers(tg, ALICE["id"])]

    expected, texts = _run(scenario)
    for words in expected:
        assert any(words in text for text in texts), (words, texts)


def test_a_file_over_the_limit_is_refused_before_download(tmp_path, street_index, street_queries):
    async def scenario():
        async with running_bot(tmp_path, street_index,
                               service=ServiceConfig(max_file_bytes=10_000)) as tg:
            tg.send_document(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[0].rgb),
                             "big.jpg", "image/jpeg")
            [reply] = await tg.wait_for("sendMessage", timeout=30)
            return reply, tg.downloads

    reply, downloads = _run(scenario)
    assert "the limit is 0 MB" in reply.params["text"] or "limit is" in reply.params["text"]
    assert downloads == []


def test_a_busy_engine_is_said_so(tmp_path, street_index, street_queries):
    busy = replace(street_index, limits=EngineLimits(queue_size=0))

    async def scenario():
        async with running_bot(tmp_path, busy) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[0].rgb))
            return await tg.wait_for(lambda c: c.method == "editMessageText"
                                     and "busy" in c.params.get("text", ""), timeout=30)

    [reply] = _run(scenario)
    assert "Try again in a minute" in reply.params["text"]


def test_a_missing_index_refuses_to_start_before_connecting(tmp_path):
    missing = replace(EngineConfig(), index_path=tmp_path / "no-index")

    async def scenario():
        async with FakeTelegram() as tg:
            config = AppConfig(engine=missing, store=StoreConfig(path=tmp_path / "bot.sqlite"),
                               telegram=TelegramConfig(enabled=True, token="123:TEST",
                                                       base_url=tg.base_url))
            with pytest.raises(IndexMissing, match="geosleuth index build --index"):
                await run_bots(config, asyncio.Event())
            return tg.calls

    assert _run(scenario) == []  # not even getMe: the bot never came up to fail every photo


def test_a_rejected_token_or_an_unreachable_telegram_is_one_reason(tmp_path, street_index):
    async def start(token: str, base_url: str | None) -> str:
        async with FakeTelegram(token="999:RIGHT") as tg:
            config = AppConfig(engine=street_index,
                               store=StoreConfig(path=tmp_path / "bot.sqlite"),
                               telegram=TelegramConfig(enabled=True, token=token,
                                                       base_url=base_url or tg.base_url))
            with pytest.raises(StartupFailed) as refused:
                await run_bots(config, asyncio.Event())
            return str(refused.value)

    rejected = _run(lambda: start("123:WRONG", None))
    unreachable = _run(lambda: start("999:RIGHT", "http://127.0.0.1:9/bot"))
    assert rejected.startswith("Telegram refused the bot token")
    assert unreachable.startswith("cannot reach Telegram at http://127.0.0.1:9/bot")
    assert "WRONG" not in rejected and "RIGHT" not in unreachable


def test_old_records_are_purged_while_running_and_no_exif_gps_is_kept(tmp_path, street_index,
                                                                      street_queries):
    image = Image.fromarray(street_queries[0].rgb)
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (52.0, 31.0, 12.0), "E", (13.0, 24.0, 18.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    database = tmp_path / "bot.sqlite"

    async def scenario():
        store = StoreConfig(path=database, retention_days=30, purge_interval_s=0.5)
        async with running_bot(tmp_path, street_index, store=store) as tg:
            tg.send_document(private_chat(ALICE), ALICE, buffer.getvalue(), "IMG_1.jpg",
                             "image/jpeg")
            [answer] = await tg.wait_for("sendPhoto", timeout=30)
            with sqlite3.connect(database) as db:
                [(kept,)] = db.execute("SELECT result_json FROM requests").fetchall()
                db.execute("UPDATE requests SET created_at = '2020-01-01T00:00:00+00:00'")
            await asyncio.sleep(1.5)  # three rounds of the retention timer
            with sqlite3.connect(database) as db:
                left = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            return answer, json.loads(kept), left

    answer, kept, left = _run(scenario)
    assert "own GPS: 52.520000, 13.405000" in answer.params["caption"]  # told, then not kept
    assert kept["exif_gps"] is None and kept["status"] == "located"
    assert left == 0


def test_an_answer_for_an_area_is_not_reused_for_another_search(tmp_path, street_index,
                                                               street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, photo, caption="/locate Lund, Sweden 3km")
            await tg.wait_for(lambda c: "no reference photos" in c.params.get("caption", ""),
                              timeout=30)
            tg.send_photo(private_chat(ALICE), ALICE, photo)
            _, everywhere = await tg.wait_for("sendPhoto", count=2, timeout=30)
            tg.send_photo(private_chat(ALICE), ALICE, photo, caption="/locate Berlin")
            *_, berlin = await tg.wait_for("sendPhoto", count=3, timeout=30)
            tg.send_photo(private_chat(ALICE), ALICE, photo, caption="/locate Berlin")
            *_, again = await tg.wait_for("sendPhoto", count=4, timeout=30)
            return everywhere, berlin, again

    everywhere, berlin, again = _run(scenario)
    assert "Located" in everywhere.params["caption"]
    assert "from the cache" not in everywhere.params["caption"]
    assert "from the cache" not in berlin.params["caption"]
    assert "from the cache" in again.params["caption"]  # the same photo, the same area


def test_rate_limit_says_when_to_try_again(tmp_path, street_index, street_queries):
    async def scenario():
        async with running_bot(tmp_path, street_index,
                               rate_limit=RateLimitConfig(user_requests=1)) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[0].rgb))
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[1].rgb))
            limited = await tg.wait_for(lambda c: "Try again in" in c.params.get("text", ""),
                                        timeout=30)
            await tg.wait_for("sendPhoto", timeout=30)
            return limited, tg.calls_to("sendPhoto")

    [limited], photos = _run(scenario)
    assert re.search(r"Try again in \d+ s", limited.params["text"])
    assert len(photos) == 1


def test_users_outside_the_allowlist_are_refused(tmp_path, street_index, street_queries):
    async def scenario():
        async with running_bot(tmp_path, street_index,
                               access=AccessConfig(allowed_users=("1002",))) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[0].rgb))
            [refusal] = await tg.wait_for("sendMessage", timeout=30)
            return refusal, tg.downloads

    refusal, downloads = _run(scenario)
    assert "this GeoSleuth bot is private" in refusal.params["text"]
    assert downloads == []


def test_two_members_vote_and_the_tally_shows_their_names(tmp_path, street_index,
                                                          street_queries):
    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            photo = tg.send_photo(TEAM, ALICE, jpeg_bytes(street_queries[0].rgb))
            tg.send_text(TEAM, ALICE, "/locate", reply_to_message=photo["message"])
            [answer] = await tg.wait_for("sendPhoto", timeout=30)
            request_id = answer.params["reply_markup"]["inline_keyboard"][1][0][
                "callback_data"].split(":")[1]
            tg.press_button(TEAM, ALICE, answer.result["message_id"], f"ok:{request_id}")
            await tg.wait_for("editMessageCaption")
            tg.press_button(TEAM, BOB, answer.result["message_id"], f"no:{request_id}")
            await tg.wait_for("editMessageCaption", count=2)
            tg.press_button(TEAM, BOB, answer.result["message_id"], f"ok:{request_id}")
            edits = await tg.wait_for("editMessageCaption", count=3)
            return edits, tg.calls_to("answerCallbackQuery")

    edits, answered = _run(scenario)
    assert "✅ Alice" in edits[0].params["caption"]
    assert "✅ Alice" in edits[1].params["caption"] and "❌ Bob" in edits[1].params["caption"]
    assert "✅ Alice, Bob" in edits[2].params["caption"]  # one vote per member: Bob changed his
    assert "❌" not in edits[2].params["caption"].split("Imagery")[0].split("\n", 3)[-1]
    assert len(answered) == 3


def test_alternatives_and_evidence_buttons_send_pictures(tmp_path, street_index, street_queries):
    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[0].rgb))
            [answer] = await tg.wait_for("sendPhoto", timeout=30)
            request_id = answer.params["reply_markup"]["inline_keyboard"][0][0][
                "callback_data"].split(":")[1]
            tg.press_button(private_chat(ALICE), ALICE, answer.result["message_id"],
                            f"ev:{request_id}")
            tg.press_button(private_chat(ALICE), ALICE, answer.result["message_id"],
                            f"alt:{request_id}")
            return await tg.wait_for("sendPhoto", count=3, timeout=30)

    _, *extras = _run(scenario)
    captions = " ".join(c.params.get("caption", "") for c in extras)
    assert "verified correspondences" in captions  # the evidence picture
    assert all(c.files["photo"][:4] == b"\x89PNG" for c in extras)


def test_a_forged_button_for_another_chats_request_sends_nothing_of_it(
    tmp_path, street_index, street_queries
):
    """Callback data is the client's to choose: Bob replays the team's request id in his DM."""
    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            photo = tg.send_photo(TEAM, ALICE, jpeg_bytes(street_queries[0].rgb))
            tg.send_text(TEAM, ALICE, "/locate", reply_to_message=photo["message"])
            [answer] = await tg.wait_for("sendPhoto", timeout=30)
            request_id = answer.params["reply_markup"]["inline_keyboard"][0][0][
                "callback_data"].split(":")[1]
            bobs_chat = private_chat(BOB)
            own = tg.send_text(bobs_chat, BOB, "hello")
            for action in ("ev", "alt", "ok", "no"):
                tg.press_button(bobs_chat, BOB, own["message"], f"{action}:{request_id}")
            answered = await tg.wait_for("answerCallbackQuery", count=4, timeout=30)
            return answered, tg.calls

    answered, calls = _run(scenario)
    assert all(c.params.get("text") == "That answer is no longer available." for c in answered)
    assert not [c for c in calls if c.params.get("chat_id") == BOB["id"]
                and c.method in ("sendPhoto", "editMessageCaption")]
    assert not [c for c in calls if c.method == "editMessageCaption"]  # no vote was counted


def test_forget_deletes_the_chat_history(tmp_path, street_index, street_queries):
    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            chat = private_chat(ALICE)
            tg.send_photo(chat, ALICE, jpeg_bytes(street_queries[0].rgb))
            await tg.wait_for("sendPhoto", timeout=30)
            tg.send_text(chat, ALICE, "/history")
            await tg.wait_for(lambda c: "Recent results" in c.params.get("text", ""))
            tg.send_text(chat, ALICE, "/forget")
            await tg.wait_for(lambda c: "Deleted this chat's history" in c.params.get("text", ""))
            tg.send_text(chat, ALICE, "/history")
            await tg.wait_for(lambda c: "No photos have been located" in c.params.get("text", ""))
            return [c.params.get("text", "") for c in tg.calls_to("sendMessage")]

    texts = _run(scenario)
    assert any("Deleted this chat's history (1 requests" in t for t in texts)


def test_a_request_interrupted_by_a_restart_is_told_after_it(tmp_path, street_index):
    async def scenario():
        store = await Store.open(tmp_path / "bot.sqlite")
        await store.start_request("telegram", str(ALICE["id"]), str(ALICE["id"]), "Alice",
                                  "private", "ab" * 32, None)
        await store.close()  # the process died before answering
        async with running_bot(tmp_path, street_index) as tg:
            return await tg.wait_for(lambda c: "interrupted by a restart"
                                     in c.params.get("text", ""), timeout=30)

    [message] = _run(scenario)
    assert message.params["chat_id"] == ALICE["id"]


def test_fifty_photos_from_ten_users_each_get_exactly_one_answer(tmp_path, street_index,
                                                                 street_queries):
    users = [user(2000 + i, f"User{i}", f"user{i}") for i in range(10)]
    photos = [jpeg_bytes(v.rgb) for v in street_queries]

    async def scenario():
        queue16 = replace(street_index, limits=EngineLimits(queue_size=16))
        async with running_bot(tmp_path, queue16) as tg:
            for person in users:
                tg.add_chat(private_chat(person))
            sent = []
            for i in range(50):
                person = users[i % 10]
                update = tg.send_photo(private_chat(person), person, photos[i % len(photos)])
                sent.append(update["message"]["message_id"])

            def answered(call) -> bool:
                return (call.method == "sendPhoto"
                        or (call.method in ("sendMessage", "editMessageText")
                            and any(w in call.params.get("text", "") for w in
                                    ("busy", "Try again in", "can't"))))
            await tg.wait_for(answered, count=50, timeout=240)
            await asyncio.sleep(1.0)  # nothing more may arrive: exactly one answer each
            return [c for c in tg.calls if answered(c)]

    answers = _run(scenario, timeout=300)
    assert len(answers) == 50
    per_chat: dict[int, int] = {}
    for call in answers:
        per_chat[call.params["chat_id"]] = per_chat.get(call.params["chat_id"], 0) + 1
    assert per_chat == {2000 + i: 5 for i in range(10)}


def test_the_same_photo_again_is_answered_from_the_cache(tmp_path, street_index, street_queries):
    photo = jpeg_bytes(street_queries[0].rgb)

    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, photo)
            await tg.wait_for("sendPhoto", timeout=30)
            tg.send_photo(private_chat(ALICE), ALICE, photo)
            return await tg.wait_for("sendPhoto", count=2, timeout=30)

    first, second = _run(scenario)
    assert "from the cache" not in first.params["caption"]
    assert "from the cache" in second.params["caption"]
    assert _coordinates(first.params["caption"]) == _coordinates(second.params["caption"])


def test_an_area_in_the_caption_narrows_the_search(tmp_path, street_index, street_queries):
    # The generated street stands in Berlin: searching Berlin finds it, searching Lund cannot.
    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[0].rgb),
                          caption="/locate Berlin")
            [answer] = await tg.wait_for("sendPhoto", timeout=30)
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[1].rgb),
                          caption="/locate Lund, Sweden 3km")
            [elsewhere] = await tg.wait_for(
                lambda c: "no reference photos" in c.params.get("caption", ""), timeout=30)
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[2].rgb),
                          caption="/locate Xyzzyville")
            [unknown] = await tg.wait_for(
                lambda c: "don't know a place" in c.params.get("text", ""), timeout=30)
            return answer, elsewhere, unknown

    answer, elsewhere, unknown = _run(scenario)
    assert "Searched within" in answer.params["caption"] and "Berlin" in answer.params["caption"]
    # Nothing there to match: no match, and the way to get references there (for an admin).
    assert "No confident match" in elsewhere.params["caption"]
    assert "Ask an admin to /cover 55.70" in elsewhere.params["caption"]
    assert "Xyzzyville" in unknown.params["text"]


def test_help_privacy_and_admin_stats(tmp_path, street_index):
    async def scenario():
        async with running_bot(tmp_path, street_index,
                               access=AccessConfig(admins=(str(BOB["id"]),))) as tg:
            for person, command in ((ALICE, "/start"), (ALICE, "/privacy"), (ALICE, "/stats"),
                                    (BOB, "/stats")):
                tg.send_text(private_chat(person), person, command)
            await tg.wait_for("sendMessage", count=4, timeout=30)
            return {(c.params["chat_id"], c.params["text"][:40]): c.params["text"]
                    for c in tg.calls_to("sendMessage")}

    texts = list(_run(scenario).values())
    assert any(t.startswith("Send me a street-level photo") for t in texts)
    assert any("the photo itself is not stored" in t for t in texts)
    assert any(t == "Only the bot's admins can see its statistics." for t in texts)
    assert any(t.startswith("Requests: 0") and "Engine: queue 0" in t for t in texts)


def test_webhook_mode_answers_updates_posted_to_it(tmp_path, street_index, street_queries):
    import socket

    import aiohttp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario():
        async with FakeTelegram() as tg:
            tg.add_chat(private_chat(ALICE))
            config = AppConfig(
                engine=street_index, map=MapStyle(tiles_enabled=False),
                store=StoreConfig(path=tmp_path / "bot.sqlite"),
                telegram=TelegramConfig(
                    enabled=True, token="123:TEST", base_url=tg.base_url,
                    base_file_url=tg.base_file_url, mode="webhook",
                    # Telegram posts to the public https address; a proxy forwards to the port.
                    webhook_url="https://bot.example.org/telegram", webhook_listen="127.0.0.1",
                    webhook_port=port, webhook_secret="s3cret"),
            )
            stop = asyncio.Event()
            bot = asyncio.create_task(run_bots(config, stop))
            await tg.wait_for("setWebhook", timeout=30)
            update = tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[0].rgb))
            for _ in range(100):  # setWebhook comes before the listener opens: wait for it
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                else:
                    writer.close()
                    break
            async with aiohttp.ClientSession() as session:
                refused = await session.post(f"http://127.0.0.1:{port}/telegram", json=update)
                accepted = await session.post(
                    f"http://127.0.0.1:{port}/telegram", json=update,
                    headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"})
            [photo] = await tg.wait_for("sendPhoto", timeout=30)
            stop.set()
            await asyncio.wait_for(bot, 30)
            return refused.status, accepted.status, photo, tg.webhook_url

    refused, accepted, photo, webhook_url = _run(scenario)
    assert refused == 403  # a post without Telegram's secret is not an update
    assert accepted == 200
    assert webhook_url == "https://bot.example.org/telegram"
    assert COORDINATES.search(photo.params["caption"])


def test_in_a_group_only_its_admins_may_forget(tmp_path, street_index):
    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            tg.set_admins(TEAM, [ALICE])
            tg.send_text(TEAM, BOB, "/forget")
            await tg.wait_for(lambda c: "Only this group's admins" in c.params.get("text", ""))
            tg.send_text(TEAM, ALICE, "/forget")
            await tg.wait_for(lambda c: "Deleted this chat's history" in c.params.get("text", ""))
            return [c.params["text"] for c in tg.calls_to("sendMessage")]

    texts = _run(scenario)
    assert texts == ["Only this group's admins can delete its history.",
                     "Deleted this chat's history (0 requests and their votes)."]


def test_export_sends_a_groups_case_to_its_admins_and_nothing_of_other_chats(
        tmp_path, street_index, street_queries):
    team_view, bobs_view = street_queries[0], street_queries[2]

    async def scenario():
        async with running_bot(tmp_path, street_index) as tg:
            tg.set_admins(TEAM, [ALICE])
            photo = tg.send_photo(TEAM, ALICE, jpeg_bytes(team_view.rgb))
            tg.send_text(TEAM, ALICE, "/locate", reply_to_message=photo["message"])
            await tg.wait_for("sendPhoto", timeout=30)
            tg.send_photo(private_chat(BOB), BOB, jpeg_bytes(bobs_view.rgb))
            await tg.wait_for("sendPhoto", count=2, timeout=30)
            tg.send_text(TEAM, BOB, "/export")
            await tg.wait_for(lambda c: "admins can export" in c.params.get("text", ""))
            tg.send_text(TEAM, ALICE, "/export")
            team = await tg.wait_for("sendDocument", count=2, timeout=30)
            tg.send_text(private_chat(BOB), BOB, "/export kml")
            await tg.wait_for("sendDocument", count=3, timeout=30)
            for text in ("/export shp", "/export"):
                tg.send_text(private_chat(ALICE), ALICE, text)
            await tg.wait_for(lambda c: c.params.get("chat_id") == ALICE["id"], count=2)
            return team, tg.calls_to("sendDocument")[2], tg.calls

    (geojson, kml), bobs, calls = _run(scenario)
    assert geojson.params["chat_id"] == kml.params["chat_id"] == TEAM["id"]
    assert re.fullmatch(rf"geosleuth-telegram-{TEAM['id']}-\d{{4}}-\d\d-\d\d\.geojson",
                        geojson.file_names["document"])
    assert kml.file_names["document"].endswith(".kml")
    assert geojson.params["caption"] == "This chat's case: 1 located answer."
    [feature] = geojson_features(geojson.files["document"].decode())
    assert feature["properties"]["asked_by"] == "Alice"  # Bob's private answer is not here
    lon, lat = feature["geometry"]["geometries"][0]["coordinates"]
    assert haversine_m(team_view.lat, team_view.lon, lat, lon) <= 25
    assert feature["properties"]["references"][0]["attribution"] == STREET_CREDIT
    [placemark] = kml_placemarks(kml.files["document"])
    assert kml_point(placemark) == pytest.approx((lon, lat), abs=1e-6)
    assert bobs.params["chat_id"] == BOB["id"] and bobs.file_names["document"].endswith(".kml")
    [bobs_placemark] = kml_placemarks(bobs.files["document"])
    lon, lat = kml_point(bobs_placemark)
    assert haversine_m(bobs_view.lat, bobs_view.lon, lat, lon) <= 25
    said = [c.params["text"] for c in calls if c.method == "sendMessage"
            and c.params["chat_id"] in (ALICE["id"], TEAM["id"])
            and not c.params["text"].startswith("⏳")]  # the locate's progress message
    assert said == ["Only this chat's admins can export its history.",
                    "Unknown format 'shp': choose geojson, kml or csv (or none, for GeoJSON and"
                    " KML).",
                    "No photos have been located in this chat yet: there is nothing to export."]


def test_a_bot_far_from_the_engine_answers_through_geosleuth_serve(tmp_path, street_index,
                                                                  street_queries):
    """No index here: `[engine.remote] url` names a server, and the answer and its evidence
    come from it as they do in-process."""
    from engine.config import RemoteConfig
    from tests.test_remote_engine import TOKEN, served

    view = street_queries[0]

    async def scenario():
        async with served(street_index) as (_, url):
            engine = replace(EngineConfig(), index_path=tmp_path / "no-index-here",
                             remote=RemoteConfig(url=url, token=TOKEN))
            async with running_bot(tmp_path, engine) as tg:
                tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(view.rgb))
                [answer] = await tg.wait_for("sendPhoto", timeout=60)
                edits = tg.calls_to("editMessageText")
                request_id = answer.params["reply_markup"]["inline_keyboard"][0][0][
                    "callback_data"].split(":")[1]
                tg.press_button(private_chat(ALICE), ALICE, answer.result["message_id"],
                                f"ev:{request_id}")
                _, evidence = await tg.wait_for("sendPhoto", count=2, timeout=60)
                return answer, edits, evidence

    answer, edits, evidence = _run(scenario, timeout=120)
    lat, lon = _coordinates(answer.params["caption"])
    assert haversine_m(view.lat, view.lon, lat, lon) <= 25
    assert edits, "progress reached the chat as the remote stages passed"
    assert "verified correspondences" in evidence.params.get("caption", "")


def test_the_bot_serves_its_metrics(tmp_path, street_index, street_queries):
    import socket
    import urllib.request

    from bot.config import ServiceConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario():
        async with running_bot(tmp_path, street_index,
                               service=ServiceConfig(metrics_port=port)) as tg:
            tg.send_photo(private_chat(ALICE), ALICE, jpeg_bytes(street_queries[0].rgb))
            await tg.wait_for("sendPhoto", timeout=30)
            tg.send_photo(private_chat(ALICE), ALICE, b"not a photo at all")
            edits = await tg.wait_for("editMessageText", count=3, timeout=30)
            assert "not an image" in edits[-1].params["text"]
            url = f"http://127.0.0.1:{port}/metrics"
            return await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())

    metrics = _run(scenario)
    assert 'geosleuth_bot_updates_total{platform="telegram"} 2.0' in metrics
    assert 'geosleuth_bot_answers_total{outcome="located"} 1.0' in metrics
    assert 'geosleuth_bot_refusals_total{reason="bad_image"} 1.0' in metrics
    assert "geosleuth_bot_answer_seconds_count 2.0" in metrics


def test_an_engine_killed_under_a_bot_leaves_no_request_unanswered(tmp_path, street_index,
                                                                  street_queries):
    """`geosleuth serve` SIGKILLed while the bot's photos are with it: each user is told, the
    store holds no request still pending, and the restarted engine answers the next photo."""
    import signal
    import sqlite3

    from engine.config import RemoteConfig
    from tests.conftest import start_serve
    from tests.test_remote_engine import TOKEN

    child, url = start_serve(street_index.index_path, TOKEN)
    port = int(url.rsplit(":", 1)[1])
    photos = [jpeg_bytes(view.rgb) for view in street_queries[:3]]
    users = [ALICE, BOB, user(1003, "Carol", "carol_geo")]

    async def scenario():
        nonlocal child
        engine = replace(EngineConfig(), index_path=tmp_path / "no-index-here",
                         remote=RemoteConfig(url=url, token=TOKEN, connect_retries=0))
        async with running_bot(tmp_path, engine) as tg:
            for person, photo in zip(users, photos, strict=True):
                tg.send_photo(private_chat(person), person, photo)
            await tg.wait_for("editMessageText", timeout=60)  # the engine is at work
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            told = await tg.wait_for(
                lambda c: "can't be reached" in c.params.get("text", ""), count=3, timeout=60)
            child, _ = start_serve(street_index.index_path, TOKEN, port=port)
            tg.send_photo(private_chat(ALICE), ALICE, photos[0])
            [answer] = await tg.wait_for("sendPhoto", timeout=60)
            return told, answer

    try:
        told, answer = _run(scenario, timeout=180)
    finally:
        child.kill()
        child.stderr.close()
    assert {c.params["chat_id"] for c in told} == {u["id"] for u in users}
    assert "°" in answer.params["caption"]
    with sqlite3.connect(tmp_path / "bot.sqlite") as db:
        statuses = [s for (s,) in db.execute("SELECT status FROM requests ORDER BY id")]
    assert statuses == ["failed", "failed", "failed", "done"]
