"""Albums and videos through Telegram: the real python-telegram-bot against the fake Bot API.

Real photos: the Lund frames the index holds out (every third), sent as an album or cut into a
video, against the index of the others.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.config import VideoConfig
from engine.geo import haversine_m
from tests.fakes.telegram_api import AlbumItem, private_chat
from tests.test_telegram_bot import ALICE, BOB, TEAM, _coordinates, _run, running_bot
from tests.videos import make_video

pytestmark = pytest.mark.real_data
PLACED_AT = re.compile(r"frame at (\d+:\d+\.\d): placed at (-?\d+\.\d+), (-?\d+\.\d+)")


def _bytes(record) -> bytes:
    return Path(record.image_path).read_bytes()


def _rgb(record) -> np.ndarray:
    with Image.open(record.image_path) as image:
        return np.asarray(image.convert("RGB"))


def _video(records, seconds_each: float = 2.0, fps: float = 4.0) -> bytes:
    """Each photo held for `seconds_each`: a walk filmed in steps."""
    frames = [rgb for record in records for rgb in [_rgb(record)] * round(seconds_each * fps)]
    return make_video(frames, fps)


def test_an_album_of_three_held_out_photos_is_one_answer_placed_where_they_were_taken(
        tmp_path, lund_index, lund_split):
    _, held_out = lund_split
    photos = held_out[:3]  # 03, 06 and 09.jpg: about 30 m of one street
    middle = photos[1]

    async def scenario():
        async with running_bot(tmp_path, lund_index) as tg:
            tg.send_album(private_chat(ALICE), ALICE, [_bytes(p) for p in photos])
            [answer] = await tg.wait_for("sendPhoto", timeout=90)
            [pin] = await tg.wait_for("sendLocation")
            progress = tg.calls_to("sendMessage")
            return answer, pin, progress

    answer, pin, progress = _run(scenario, timeout=150)
    caption = answer.params["caption"]
    assert "Located (3 photos)" in caption
    assert all(f"photo {i}: agrees" in caption for i in (1, 2, 3)), caption
    lat, lon = _coordinates(caption)
    assert haversine_m(middle.lat, middle.lon, lat, lon) <= 25
    assert haversine_m(middle.lat, middle.lon, pin.params["latitude"],
                       pin.params["longitude"]) <= 25
    assert [m.params["text"] for m in progress] == ["⏳ Queued (3 photos)…"]  # one answer
    with sqlite3.connect(tmp_path / "bot.sqlite") as db:
        assert db.execute("SELECT count(*) FROM requests").fetchone() == (1,)


def test_a_broken_photo_is_named_and_the_rest_still_answer_and_groups_need_a_mention(
        tmp_path, lund_index, lund_split):
    _, held_out = lund_split

    async def scenario():
        async with running_bot(tmp_path, lund_index) as tg:
            tg.send_album(TEAM, BOB, [_bytes(held_out[0]), _bytes(held_out[1])])  # not for us
            tg.send_album(TEAM, ALICE, [_bytes(held_out[0]), b"\x00not an image" * 50,
                                        _bytes(held_out[1])],
                          caption="@geosleuth_test_bot")
            [answer] = await tg.wait_for("sendPhoto", timeout=90)
            request_id = answer.params["reply_markup"]["inline_keyboard"][1][0][
                "callback_data"].split(":")[1]
            tg.press_button(TEAM, BOB, answer.result["message_id"], f"ok:{request_id}")
            [voted] = await tg.wait_for("editMessageCaption")
            return answer, voted, tg.calls_to("sendPhoto")

    answer, voted, every = _run(scenario, timeout=150)
    caption = answer.params["caption"]
    assert "photo 2:" in caption and "(not read)" in caption, caption
    assert "photo 1: agrees" in caption and "photo 3: agrees" in caption
    assert len(every) == 1  # Bob's album without a mention got nothing
    redrawn = voted.params["caption"]  # after a vote, the same lines and the voter
    assert "(not read)" in redrawn and "photo 3: agrees" in redrawn and "✅ Bob" in redrawn


def test_a_short_video_is_placed_and_a_walk_answers_with_its_track(
        tmp_path, lund_index, lund_split):
    _, held_out = lund_split
    short = held_out[1:3]  # 06 and 09.jpg, 23 m apart: one place
    walk = held_out[3:8]  # 12 to 24.jpg: about 100 m of street

    async def scenario():
        async with running_bot(tmp_path, lund_index) as tg:
            tg.send_video(private_chat(ALICE), ALICE, _video(short), duration=4)
            [first] = await tg.wait_for("sendPhoto", timeout=120)
            tg.send_video(private_chat(BOB), BOB, _video(walk), duration=10)
            [_, second] = await tg.wait_for("sendPhoto", count=2, timeout=180)
            return first, second

    first, second = _run(scenario, timeout=330)
    caption = first.params["caption"]
    assert "Located (2 frames)" in caption, caption
    lat, lon = _coordinates(caption)
    assert min(haversine_m(p.lat, p.lon, lat, lon) for p in short) <= 25
    assert "frame at 0:00.0" in caption and "frame at 0:02.0" in caption
    walked = second.params["caption"]
    assert "a track" in walked and "Track:" in walked, walked
    placed = PLACED_AT.findall(walked)
    assert len(placed) >= 3
    for time_text, lat_text, lon_text in placed:
        minutes, seconds = time_text.split(":")
        shown = walk[min(int((int(minutes) * 60 + float(seconds)) // 2), len(walk) - 1)]
        assert haversine_m(shown.lat, shown.lon, float(lat_text), float(lon_text)) <= 25


def test_bad_videos_each_get_one_clear_sentence(tmp_path, lund_index, lund_split):
    _, held_out = lund_split
    dark = make_video([np.zeros((240, 320, 3), np.uint8)] * 8, 4)
    long_clip = make_video([_rgb(held_out[0])[:240, :320]] * 2, 0.05)  # 40 s of two frames
    engine = replace(lund_index, video=VideoConfig(max_seconds=30.0))

    async def scenario():
        async with running_bot(tmp_path, engine) as tg:
            chat = private_chat(ALICE)
            tg.send_video(chat, ALICE, b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 4000, duration=3)
            tg.send_video(chat, ALICE, dark, duration=2)
            tg.send_video(chat, ALICE, long_clip, duration=5)  # the client's duration lies
            tg.send_video(chat, ALICE, long_clip, duration=40)  # refused before download
            said = await tg.wait_for(_a_final_word, count=4, timeout=90)
            return [c.params["text"] for c in said], tg.calls_to("sendPhoto")

    texts, photos = _run(scenario, timeout=120)
    assert not photos
    joined = "\n".join(texts)
    assert "not a video GeoSleuth can read" in joined, joined
    assert "dark, uniform or blurred" in joined, joined
    assert joined.count("the limit is 0:30") + joined.count("0:30 limit") == 2, joined


def _a_final_word(call) -> bool:
    """A message or edit that is not a progress step: what the user is finally told."""
    return (call.method in ("sendMessage", "editMessageText")
            and not call.params["text"].startswith(("⏳", "🔎", "🎞")))


def test_a_document_album_names_the_file_that_is_no_photo_and_a_mixed_album_is_refused(
        tmp_path, lund_index, lund_split):
    _, held_out = lund_split
    first, second = held_out[0], held_out[1]

    async def scenario():
        async with running_bot(tmp_path, lund_index) as tg:
            chat = private_chat(ALICE)
            tg.send_album(chat, ALICE, [
                AlbumItem("document", _bytes(first), "IMG_1.jpg", "image/jpeg"),
                AlbumItem("document", b"notes from the scene", "notes\u202egpj.txt",
                          "text/plain"),
                AlbumItem("document", _bytes(second), "IMG_2.jpg", "image/jpeg"),
            ])
            [answer] = await tg.wait_for("sendPhoto", timeout=90)
            tg.send_album(private_chat(BOB), BOB, [
                _bytes(first), AlbumItem("video", _video([second]), "clip.mp4", "video/mp4")])
            [mixed] = await tg.wait_for(
                lambda c: c.method == "sendMessage" and c.params["chat_id"] == BOB["id"],
                timeout=30)
            await asyncio.sleep(2)  # nothing else comes for Bob's album
            bob = [c for c in tg.calls if c.params.get("chat_id") == BOB["id"]]
            return answer, mixed, bob, list(tg.downloads)

    answer, mixed, bob, downloads = _run(scenario, timeout=150)
    caption = answer.params["caption"]
    assert "Located (2 photos)" in caption, caption
    assert "photo 2 (notes-gpj.txt): not an image or a video (not read)" in caption, caption
    assert "photo 1: agrees" in caption and "photo 3: agrees" in caption
    assert "mixes photos and a video" in mixed.params["text"]
    assert [c.method for c in bob] == ["sendMessage"]  # one sentence, no answer, no progress
    assert not any(path.endswith(".txt") for path in downloads)  # the text file never fetched
