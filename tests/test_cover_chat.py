"""`/cover` and `/coverage` in the chat: the real bot against the fake Telegram server and fakes
of Panoramax and Mapillary on 127.0.0.1 serving real Lund photos."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.config import ServiceConfig
from engine.config import EngineConfig
from engine.evaluation import split_every
from engine.geo import haversine_m
from engine.index.builder import build_index
from engine.ingest.config import IngestConfig
from engine.results import ReferenceRecord
from engine.sources import SourceScan, scan_source
from engine.synthetic import make_street
from tests.conftest import GEOSLEUTH, ROOT, jpeg_bytes, shared_data
from tests.fakes.platforms import MAPILLARY_TOKEN, FakeImage, FakePlatform, FakeServer, Faults
from tests.fakes.telegram_api import FakeTelegram, private_chat
from tests.test_discord_bot import ALICE as DISCORD_ALICE
from tests.test_discord_bot import BOB as DISCORD_BOB
from tests.test_discord_bot import CHANNEL, GUILD
from tests.test_discord_bot import running_bot as discord_bot
from tests.test_telegram_bot import ALICE, BOB, TEAM, _coordinates, _run, running_bot

QUICK = IngestConfig(first_batch=4, batch_size=4, backoff_s=0.01, backoff_max_s=0.1,
                     requests_per_s=200.0, downloads_per_s=200.0, concurrency=2,
                     allow_private_hosts=True)
FAST_POLL = ServiceConfig(cover_poll_s=0.3)
BOT = "@geosleuth_test_bot"


def _ingest(panoramax_url: str, mapillary_url: str | None = None) -> IngestConfig:
    config = replace(QUICK, panoramax_url=f"{panoramax_url}/api")
    if mapillary_url is not None:
        config = replace(config, mapillary_url=mapillary_url, mapillary_token=MAPILLARY_TOKEN,
                         mapillary_tiles_url=f"{mapillary_url}/tiles")
    return config


def _with_ingest(engine: EngineConfig, index: Path,
                 ingest: IngestConfig) -> tuple[EngineConfig, dict]:
    """An engine over `index` that covers with `ingest` (load_config copies [ingest] into the
    engine; a config built in code does it here), and the bot's other sections."""
    return (replace(engine, index_path=index, ingest=ingest),
            {"ingest": ingest, "service": FAST_POLL})


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def _texts(tg: FakeTelegram, chat_id: int) -> list[str]:
    return [c.params.get("text", "") for c in tg.calls
            if c.params.get("chat_id") == chat_id and c.method in ("sendMessage",
                                                                    "editMessageText")]


def test_who_may_cover_and_each_refusal_is_one_sentence(tmp_path, street_index):
    async def scenario():
        engine, sections = _with_ingest(street_index, street_index.index_path,
                                        _ingest(_closed_port_url()))
        async with running_bot(tmp_path, engine, **sections) as tg:
            tg.set_admins(TEAM, [ALICE])
            tg.send_text(TEAM, BOB, "/cover Lund")
            await tg.wait_for(lambda c: "Only this group's admins" in c.params.get("text", ""))
            tg.send_text(private_chat(ALICE), ALICE, "/cover Lund")  # not the bot's admin
            await tg.wait_for(lambda c: "Only the bot's admins" in c.params.get("text", ""))
            tg.send_text(TEAM, ALICE, "/cover Springfield")
            [choice] = await tg.wait_for(lambda c: "Which Springfield" in c.params.get("text",
                                                                                        ""))
            tg.send_text(TEAM, ALICE, "/cover 55.70,13.19 20")
            await tg.wait_for(lambda c: "over this engine's limit" in c.params.get("text", ""))
            tg.send_text(TEAM, ALICE, "/cover 55.70,13.19 1")
            await tg.wait_for(lambda c: "panoramax" in c.params.get("text", "").lower()
                              and c.method == "sendMessage" and "reach" in c.params["text"],
                              timeout=30)
            asked = tg.messages_in(TEAM["id"], from_bot=True)
            question = next(m for m in asked if "Which Springfield" in m.get("text", ""))
            # A place id that exists but was never offered here (Umm Al Sheif, say): forged.
            for data in ("cv:99999999999", "cv:1e5", "cc:12", "cv:-1", "cv:99"):
                tg.press_button(TEAM, BOB if data == "cc:12" else ALICE, question, data)
            await tg.wait_for("answerCallbackQuery", count=5)
            # An offered namesake is taken once (its platform is down here: said so); the
            # same button again starts nothing.
            offered = choice.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            tg.press_button(TEAM, ALICE, question, offered)
            await tg.wait_for("answerCallbackQuery", count=6, timeout=30)
            tg.press_button(TEAM, ALICE, question, offered)
            await tg.wait_for("answerCallbackQuery", count=7)
            return choice, _texts(tg, TEAM["id"]), tg.calls_to("answerCallbackQuery")

    choice, texts, answers = _run(scenario)
    buttons = [b for row in choice.params["reply_markup"]["inline_keyboard"] for b in row]
    assert len(buttons) >= 3 and all(b["callback_data"].startswith("cv:") for b in buttons)
    assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)
    assert any("Missouri" in b["text"] for b in buttons)
    refusals = [t for t in texts if not t.startswith("Which")]
    assert all(t.count(". ") <= 1 for t in refusals), refusals  # one sentence each
    assert not any("Covering" in t for t in texts), "nothing was started"
    said = [a.params.get("text", "") for a in answers]
    assert said.count("This button has expired.") == 2  # "1e5" and "-1" are not numbers
    # No such gazetteer entry, one never offered in this chat, and an offer already taken.
    assert said.count("That choice has expired; ask with /cover again.") == 3
    assert "reach" in said[5], said  # the offered one was taken: the platform is down
    assert "Only this chat's admins can cancel a cover." in said


def _fake_images(records, first_id: int) -> list[FakeImage]:
    images = []
    for i, record in enumerate(records):
        with Image.open(record.image_path) as image:
            rgb = np.asarray(image.convert("RGB"))
        images.append(FakeImage(str(first_id + i), record.lat, record.lon, rgb, heading=None))
    return images


@pytest.fixture(scope="module")
def lund_walk():
    """(references the fakes serve, held-out frames): every third Lund frame held out."""
    return split_every(scan_source(shared_data("lund")).records, 3)


@pytest.fixture(scope="module")
def berlin_index(tmp_path_factory) -> Path:
    """The default funnel's index of Berlin (the cathedral and a generated street): no Lund."""
    folder = tmp_path_factory.mktemp("berlin")
    records = list(scan_source(shared_data("berlin")).records)
    for i, view in enumerate(make_street(seed=5, n_views=12, origin=(52.50, 13.40))):
        path = folder / f"v{i}.jpg"
        path.write_bytes(jpeg_bytes(view.rgb))
        records.append(ReferenceRecord("synthetic", path.stem, view.lat, view.lon, str(path)))
    build_index(folder / "index", [SourceScan(tuple(records))], EngineConfig())
    return folder / "index"


def _lund_platforms(references, delay_s: float) -> tuple[FakePlatform, FakePlatform]:
    """Half the walk on each platform, served slowly enough that a cover takes a while."""
    return (FakePlatform(images=_fake_images(references[::2], 5000),
                         faults=Faults(image_delay_s=delay_s)),
            FakePlatform(images=_fake_images(references[1::2], 6000), page_size=100,
                         faults=Faults(image_delay_s=delay_s)))


@pytest.mark.real_data
def test_an_admins_cover_of_lund_places_the_groups_waiting_photo_without_a_restart(
        tmp_path, berlin_index, lund_walk):
    references, held_out = lund_walk
    waiting, later = (Path(held_out[i].image_path).read_bytes() for i in (2, 5))
    berlin_photo = (shared_data("berlin") / "01.jpg").read_bytes()
    index = Path(shutil.copytree(berlin_index, tmp_path / "index"))
    panoramax, mapillary = _lund_platforms(references, 0.15)

    async def scenario(engine, sections):
        async with running_bot(tmp_path, engine, **sections) as tg:
            tg.set_admins(TEAM, [ALICE])
            tg.send_photo(TEAM, BOB, waiting, caption=f"{BOT} Lund")
            [unplaced] = await tg.wait_for("sendPhoto", timeout=60)
            tg.send_text(TEAM, ALICE, "/cover Lund")
            [started] = await tg.wait_for(lambda c: "Covering Lund" in c.params.get("text", "")
                                          and c.method == "sendMessage", timeout=60)
            await tg.wait_for(lambda c: c.method == "editMessageText"
                              and "references indexed" in c.params.get("text", ""), timeout=60)
            tg.send_photo(TEAM, BOB, berlin_photo, caption=BOT)  # answered during the cover
            await tg.wait_for("sendPhoto", count=2, timeout=60)
            berlin_answered_at = len(tg.calls)
            [done] = await tg.wait_for(lambda c: "Covered Lund" in c.params.get("text", ""),
                                       timeout=120)
            [placed] = await tg.wait_for(lambda c: c.method == "sendPhoto"
                                         and "Now placed" in c.params.get("caption", ""),
                                         timeout=60)
            tg.send_photo(TEAM, BOB, later, caption=BOT)
            *_, answer = await tg.wait_for(lambda c: c.method == "sendPhoto"
                                           and "Now placed" not in c.params.get("caption", ""),
                                           count=3, timeout=60)
            edits = [c for c in tg.calls_to("editMessageText")
                     if c.params.get("message_id") == started.result["message_id"]]
            return (unplaced, started, done, placed, tg.calls[-1:], edits, berlin_answered_at,
                    tg.calls.index(done), answer)

    with FakeServer("panoramax", panoramax) as p, FakeServer("mapillary", mapillary) as m:
        engine, sections = _with_ingest(EngineConfig(), index, _ingest(p.url, m.url))
        (unplaced, started, done, placed, _, edits, berlin_at, done_at,
         answer) = _run(lambda: scenario(engine, sections), timeout=300)

    assert "No confident match" in unplaced.params["caption"]
    assert "Ask an admin to /cover Lund" in unplaced.params["caption"]
    plan = started.params["text"]
    assert "≈" in plan and "pictures in" in plan and "from panoramax, mapillary" in plan
    assert "this takes about" in plan
    [[cancel]] = started.params["reply_markup"]["inline_keyboard"]
    assert cancel["callback_data"].startswith("cc:")
    assert len(edits) >= 2 and done in edits  # progress and summary in the one message
    assert berlin_at < done_at, "another photo was answered while the cover ran"
    assert f"{len(references)} references added" in done.params["text"]
    assert "reply_markup" not in done.params or not done.params["reply_markup"]
    frame = held_out[2]
    lat, lon = _coordinates(placed.params["caption"])
    assert haversine_m(frame.lat, frame.lon, lat, lon) <= 25
    assert placed.params["reply_parameters"]["message_id"] == unplaced.result["message_id"]
    lat, lon = _coordinates(answer.params["caption"])
    assert haversine_m(held_out[5].lat, held_out[5].lon, lat, lon) <= 25
    assert set(panoramax.image_downloads().values()) == {1}
    assert set(mapillary.image_downloads().values()) == {1}


def test_discord_cover_and_coverage_at_parity(tmp_path, street_index):
    """A server's manager covers a box (progress in one channel message, then the summary);
    a member without Manage Server is refused; /coverage is a picture naming the areas."""
    views = make_street(seed=21, n_views=6, origin=(52.5300, 13.4300))
    fake_images = [FakeImage(str(7000 + i), v.lat, v.lon, v.rgb) for i, v in enumerate(views)]
    panoramax = FakePlatform(images=fake_images, faults=Faults(image_delay_s=0.2))
    index = Path(shutil.copytree(street_index.index_path, tmp_path / "index"))
    box = "13.4290,52.5290,13.4340,52.5320"

    async def scenario(engine, sections):
        async with discord_bot(tmp_path, engine, **sections) as fake:
            refused = await _discord_answer(fake, "cover", DISCORD_BOB, {"area": box})
            asked = await _discord_answer(fake, "cover", DISCORD_ALICE, {"area": box})
            await fake.wait_for(lambda c: c.method == "PATCH" and "/channels/" in c.path
                                and "Covered" in str(c.json), timeout=120)
            progress = [m for m in fake.sent_messages(CHANNEL)
                        if "Covered" in (m.get("content") or "")]
            edits = [c for c in fake.calls if c.method == "PATCH" and "/channels/" in c.path]
            coverage = fake.slash_command("coverage", GUILD, CHANNEL, DISCORD_BOB)
            [upload] = await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files)
                                           and fake.interaction(coverage).token in c.path,
                                           timeout=60)
            return refused, asked, progress, edits, fake.original_response(coverage), upload

    with FakeServer("panoramax", panoramax) as p:
        engine, sections = _with_ingest(street_index, index, _ingest(p.url))
        refused, asked, [progress], edits, coverage, upload = _run(
            lambda: scenario(engine, sections), timeout=240)

    assert refused["content"].startswith("Only this group's admins and the bot's admins")
    assert asked["content"] == "Started: its progress is shown in the channel."
    assert {c.path for c in edits} == {f"/channels/{CHANNEL}/messages/{progress['id']}"}
    assert f"{len(fake_images)} references added" in progress["content"]
    assert not progress.get("components"), "no Cancel button once it has ended"
    # The street the index held, and the one just covered, each named by the nearest place.
    assert "Mitte, Germany (10 references)" in coverage["content"]
    assert f"Prenzlauer Berg, Germany ({len(fake_images)} references)" in coverage["content"]
    [name] = upload.file_names.values()
    assert name == "coverage.png" and upload.file(name)[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(panoramax.image_downloads().values()) == {1}


async def _discord_answer(fake, name: str, person, options: dict) -> dict:
    """A deferred command's answer as the asker sees it, once the bot has edited it in."""
    interaction = fake.slash_command(name, GUILD, CHANNEL, person, options)
    token = fake.interaction(interaction).token
    await fake.wait_for(lambda c: c.method == "PATCH" and token in c.path, timeout=60)
    answer = fake.original_response(interaction)
    assert answer is not None and answer["flags"] & 64, answer  # ephemeral: the asker's only
    return answer


def _bot_config(path: Path, index: Path, telegram: FakeTelegram, panoramax: str,
                mapillary: str) -> Path:
    """The TOML an operator would write, pointed at the fakes."""
    path.write_text(f"""
[engine]
index_path = "{index}"
[ingest]
panoramax_url = "{panoramax}/api"
mapillary_url = "{mapillary}"
mapillary_tiles_url = "{mapillary}/tiles"
mapillary_token = "{MAPILLARY_TOKEN}"
allow_private_hosts = true
requests_per_s = 5.0
downloads_per_s = 200.0
first_batch = 4
batch_size = 4
concurrency = 2
backoff_s = 0.01
backoff_max_s = 0.1
[access]
admins = ["{ALICE['id']}"]
[service]
cover_poll_s = 0.3
[store]
path = "{path.parent / 'bot.sqlite'}"
[map]
tiles_enabled = false
[telegram]
enabled = true
base_url = "{telegram.base_url}"
base_file_url = "{telegram.base_file_url}"
""")
    return path


async def _geosleuth_bot(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *GEOSLEUTH, "--config", str(config), "bot", cwd=ROOT, stdout=out, stderr=out,
            env=os.environ | {"GEOSLEUTH_TELEGRAM_TOKEN": "123:TEST"})


@pytest.mark.real_data
def test_a_bot_killed_mid_cover_finishes_it_after_a_restart_fetching_nothing_twice(
        tmp_path, berlin_index, lund_walk):
    references, _ = lund_walk
    index = Path(shutil.copytree(berlin_index, tmp_path / "index"))
    panoramax, mapillary = _lund_platforms(references, 0.0)
    chat = private_chat(ALICE)

    def fetched() -> int:
        return sum(panoramax.image_downloads().values()) + sum(
            mapillary.image_downloads().values())

    async def between_downloads() -> None:
        """Panoramax's pictures fetched, and the next (empty) cell asked for: no download is
        in flight (the API is asked 5 times a second, so there is time to kill)."""
        while sum(panoramax.image_downloads().values()) < len(panoramax.images):
            await asyncio.sleep(0.02)
        searches = panoramax.requests["/api/search"]
        while panoramax.requests["/api/search"] == searches:
            await asyncio.sleep(0.005)

    async def scenario(panoramax_url: str, mapillary_url: str):
        async with FakeTelegram() as tg:
            tg.add_chat(chat, members=(ALICE,))
            config = _bot_config(tmp_path / "bot.toml", index, tg, panoramax_url,
                                 mapillary_url)
            first = await _geosleuth_bot(config, tmp_path / "bot.log")
            try:
                await tg.wait_for("setMyCommands", timeout=90)
                tg.send_text(chat, ALICE, "/cover Lund")
                [started] = await tg.wait_for(
                    lambda c: c.method == "sendMessage"
                    and "Covering Lund" in c.params.get("text", ""), timeout=90)
                await asyncio.wait_for(between_downloads(), 120)
            finally:
                first.send_signal(signal.SIGKILL)
                await first.wait()
            cut_at = fetched()
            second = await _geosleuth_bot(config, tmp_path / "bot.log")
            try:
                done, *_ = await tg.wait_for(
                    lambda c: "Covered Lund" in c.params.get("text", ""), timeout=180)
            finally:
                second.send_signal(signal.SIGTERM)
                await second.wait()
            return started, done, cut_at

    with FakeServer("panoramax", panoramax) as p, FakeServer("mapillary", mapillary) as m:
        started, done, cut_at = _run(lambda: scenario(p.url, m.url), timeout=400)

    assert 0 < cut_at < len(references), "killed mid-cover"
    assert done.params["message_id"] == started.result["message_id"]  # the same message
    downloads = {**panoramax.image_downloads(), **mapillary.image_downloads()}
    assert len(downloads) == len(references) and set(downloads.values()) == {1}
