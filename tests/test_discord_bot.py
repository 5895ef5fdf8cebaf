"""The Discord bot end to end: the real discord.py client against a fake Discord on loopback."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import discord
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from bot.adapters.discord_bot import _embed as _discord_embed
from bot.adapters.discord_bot import _media_kind, _safe_name
from bot.adapters.errors import ServiceDied, StartupFailed
from bot.adapters.runner import run_bots
from bot.config import (
    AppConfig,
    DiscordConfig,
    RateLimitConfig,
    StoreConfig,
)
from bot.render.map import MapStyle
from bot.render.text import AnswerSummary
from engine.config import EngineConfig, EngineLimits
from engine.errors import IndexMissing
from engine.geo import haversine_m
from tests.case_files import geojson_features, kml_placemarks, kml_point
from tests.conftest import jpeg_bytes
from tests.fakes import telegram_api
from tests.fakes.discord_api import (
    DEFAULT_BOT_PERMISSIONS,
    Call,
    FakeDiscord,
    Permission,
    dm_channel,
    member,
    role,
    text_channel,
)
from tests.videos import lund_photos, lund_walk_video, make_video

GUILD = 910000000000000001
CHANNEL = 910000000000000010
OTHER_CHANNEL = 910000000000000011
ANALYST = role(910000000000000500, "analyst", 0)
ALICE = member(910000000000000100, "alice", roles=[int(ANALYST["id"])])
BOB = member(910000000000000101, "bob")
BOBS_DM = 910000000000000901
COORDINATES = re.compile(r"(-?\d+\.\d+), (-?\d+\.\d+)")
ANSWER_EDIT = "PATCH /webhooks/.*/messages/@original"


def _run(scenario, timeout: float = 90):
    return asyncio.run(asyncio.wait_for(scenario(), timeout=timeout))


@asynccontextmanager
async def running_bot(tmp_path, engine: EngineConfig, *, discord: DiscordConfig | None = None,
                      **sections) -> AsyncIterator[FakeDiscord]:
    """`geosleuth bot` with Discord enabled, against a fake Discord."""
    async with FakeDiscord() as fake:
        fake.add_guild(GUILD, "OSINT", channels=[text_channel(CHANNEL, "general"),
                                                 text_channel(OTHER_CHANNEL, "random")],
                       members=[ALICE, BOB], roles=[ANALYST])
        config = AppConfig(
            engine=engine, map=MapStyle(tiles_enabled=False),
            store=StoreConfig(path=tmp_path / "bot.sqlite"),
            discord=discord or DiscordConfig(enabled=True, token=fake.token),
        )
        config = replace(config, **sections)
        stop = asyncio.Event()
        with fake.patch_discord():
            bot = asyncio.create_task(run_bots(config, stop))
            await fake.wait_for("PUT /applications/.*/commands", timeout=30)
            await fake.wait_ready(timeout=30)
            await asyncio.sleep(2.2)  # discord.py's guild_ready_timeout before it is ready
            try:
                yield fake
            finally:
                stop.set()
                await asyncio.wait_for(bot, 30)


def _embed(fake: FakeDiscord, interaction) -> dict:
    message = fake.original_response(interaction)
    assert message is not None and message["embeds"], message
    return message["embeds"][0]


def _fields(embed: dict) -> dict[str, str]:
    return {f["name"]: f["value"] for f in embed.get("fields", [])}


def test_locate_answers_with_an_embed_the_map_and_buttons(tmp_path, street_index, street_queries):
    view = street_queries[0]

    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            command = fake.slash_command("locate", GUILD, CHANNEL, ALICE,
                                         attachment=(jpeg_bytes(view.rgb), "street.jpg",
                                                     "image/jpeg"))
            edits = await fake.wait_for(lambda c: c.method == "PATCH" and "@original" in c.path
                                        and bool(c.files), timeout=30)
            callbacks = fake.calls_to("POST", "/interactions/.*/callback")
            return _embed(fake, command), edits[-1], callbacks, fake.original_response(command)

    embed, edit, callbacks, message = _run(scenario)
    assert callbacks[0].json["type"] == 5  # deferred at once
    lat, lon = (float(v) for v in COORDINATES.search(embed["title"]).groups())
    assert haversine_m(view.lat, view.lon, lat, lon) <= 25
    fields = _fields(embed)
    assert fields["Confidence"].endswith("(high)") and "within about" in fields["Uncertainty"]
    assert "openstreetmap.org" in fields["Maps"] and "google.com/maps" in fields["Maps"]
    assert "verified correspondences" in fields["Best reference"]
    assert "(https://example.org/street/" in fields["Best reference"]  # linked to its page
    assert embed["footer"]["text"].startswith("Imagery: © tester, CC-BY-4.0 (synthetic)")
    assert edit.file("map.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert "/map.png" in embed["image"]["url"]
    buttons = [c["custom_id"] for row in message["components"] for c in row["components"]]
    assert [b.split(":")[1] for b in buttons] == ["alt", "ev", "ok", "no"]


@pytest.mark.real_data
def test_held_out_lund_frame_through_discord_is_within_25_m(tmp_path, lund_index, lund_split):
    _, held_out = lund_split
    record = held_out[2]
    with open(record.image_path, "rb") as handle:
        data = handle.read()

    async def scenario():
        async with running_bot(tmp_path, lund_index) as fake:
            command = fake.slash_command("locate", GUILD, CHANNEL, ALICE,
                                         attachment=(data, "lund.jpg", "image/jpeg"))
            [edit] = await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files),
                                         timeout=30)
            return _embed(fake, command), edit

    embed, edit = _run(scenario)
    lat, lon = (float(v) for v in COORDINATES.search(embed["title"]).groups())
    assert haversine_m(record.lat, record.lon, lat, lon) <= 25
    assert edit.file("map.png")[:4] == b"\x89PNG"


def test_the_context_menu_locates_a_message_photo(tmp_path, street_index, street_queries):
    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            posted = fake.post_message(CHANNEL, BOB, "seen this?", attachments=[
                (jpeg_bytes(street_queries[1].rgb), "photo.jpg", "image/jpeg")])
            command = fake.message_command("Locate photo", GUILD, CHANNEL, ALICE, posted)
            await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), timeout=30)
            text_only = fake.post_message(CHANNEL, BOB, "no picture here")
            refused = fake.message_command("Locate photo", GUILD, CHANNEL, ALICE, text_only)
            await fake.wait_for(lambda c: "has no image" in str(c.json), timeout=30)
            return _embed(fake, command), fake.original_response(refused)

    embed, refusal = _run(scenario)
    assert COORDINATES.search(embed["title"])
    assert "has no image" in refusal["content"]
    assert refusal["flags"] & 64  # ephemeral


def test_a_link_preview_is_fetched_only_through_discords_media_proxy(
    tmp_path, street_index, street_queries
):
    """An embed's origin URL is the poster's to choose (a host inside the bot's network, say):
    the bot fetches the proxied copy, and refuses an embed whose proxy is not Discord's."""
    photo = jpeg_bytes(street_queries[1].rgb)

    async def scenario():
        origin_hits: list[str] = []

        async def origin(request: web.Request) -> web.Response:
            origin_hits.append(request.path)
            return web.Response(body=photo, content_type="image/jpeg")

        app = web.Application()
        app.router.add_get("/{tail:.*}", origin)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        origin_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/internal.jpg"
        try:
            async with running_bot(tmp_path, street_index) as fake:
                proxied = fake.add_attachment(photo, "preview.jpg", channel_id=CHANNEL)
                good = fake.post_message(CHANNEL, BOB, origin_url, embeds=[{
                    "type": "image", "url": origin_url,
                    "thumbnail": {"url": origin_url, "proxy_url": proxied["proxy_url"]}}])
                located = fake.message_command("Locate photo", GUILD, CHANNEL, ALICE, good)
                await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), timeout=30)
                bad = fake.post_message(CHANNEL, BOB, origin_url, embeds=[{
                    "type": "image", "url": origin_url,
                    "thumbnail": {"url": origin_url, "proxy_url": origin_url}}])
                refused = fake.message_command("Locate photo", GUILD, CHANNEL, ALICE, bad)
                await fake.wait_for(lambda c: "media proxy" in str(c.json), timeout=30)
                return _embed(fake, located), fake.original_response(refused), origin_hits
        finally:
            await runner.cleanup()

    embed, refusal, origin_hits = _run(scenario)
    assert COORDINATES.search(embed["title"])
    assert "Discord's media proxy" in refusal["content"]
    assert origin_hits == []


def _huge_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (9000, 6700), (120, 130, 140)).save(out, "JPEG", quality=50)
    return out.getvalue()


def test_bad_inputs_get_clear_ephemeral_answers(tmp_path, street_index):
    rng = np.random.default_rng(2)
    corrupt = jpeg_bytes((rng.random((300, 400, 3)) * 255).astype(np.uint8))[:3000]
    cases = [
        ((b"%PDF-1.7 report", "report.pdf", "application/pdf"), "is not an image"),
        ((corrupt, "broken.jpg", "image/jpeg"), "truncated or corrupt"),
        ((_huge_jpeg(), "huge.jpg", "image/jpeg"), "megapixels"),
    ]

    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            commands = [fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=a)
                        for a, _ in cases]
            for _, words in cases:
                await fake.wait_for(lambda c, w=words: w in str(c.json), timeout=60)
            return [fake.original_response(c) for c in commands]

    answers = _run(scenario)
    for answer, (_, words) in zip(answers, cases, strict=True):
        assert words in answer["content"]
        assert answer["flags"] & 64 or answer.get("interaction_metadata") is not None


def test_missing_permissions_are_said_in_plain_text(tmp_path, street_index, street_queries):
    without_files = DEFAULT_BOT_PERMISSIONS & ~Permission.ATTACH_FILES

    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            fake.slash_command(
                "locate", GUILD, CHANNEL, ALICE, app_permissions=without_files,
                attachment=(jpeg_bytes(street_queries[0].rgb), "s.jpg", "image/jpeg"))
            [reply] = await fake.wait_for(lambda c: c.path.endswith("/callback")
                                          and "permission" in str(c.json), timeout=30)
            return reply.json["data"]

    answer = _run(scenario)
    assert "Attach Files permission" in answer["content"]  # plain text: no embed, no file
    assert not answer.get("embeds") and answer["flags"] & 64


def test_file_over_the_limit_busy_engine_and_missing_index(tmp_path, street_index,
                                                          street_queries):
    photo = (jpeg_bytes(street_queries[0].rgb), "s.jpg", "image/jpeg")
    busy = replace(street_index, limits=EngineLimits(queue_size=0))

    async def over_limit_and_busy():
        from bot.config import ServiceConfig

        async with running_bot(tmp_path, busy,
                               service=ServiceConfig(max_file_bytes=10_000)) as fake:
            big = fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=photo)
            await fake.wait_for(lambda c: "the limit is" in str(c.json), timeout=30)
            return fake.original_response(big)

    async def busy_engine():
        async with running_bot(tmp_path / "b", busy) as fake:
            command = fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=photo)
            await fake.wait_for(lambda c: "busy" in str(c.json), timeout=30)
            return fake.original_response(command)

    (tmp_path / "b").mkdir()
    assert "the limit is" in _run(over_limit_and_busy)["content"]
    assert "Try again in a minute" in _run(busy_engine)["content"]


def _config(tmp_path, engine: EngineConfig, fake: FakeDiscord, token: str | None = None
            ) -> AppConfig:
    return AppConfig(engine=engine, map=MapStyle(tiles_enabled=False),
                     store=StoreConfig(path=tmp_path / "bot.sqlite"),
                     discord=DiscordConfig(enabled=True, token=token or fake.token))


def test_a_missing_index_refuses_to_start_before_connecting(tmp_path):
    async def scenario():
        async with FakeDiscord() as fake:
            missing = replace(EngineConfig(), index_path=tmp_path / "nothing")
            with fake.patch_discord(), pytest.raises(IndexMissing):
                await run_bots(_config(tmp_path, missing, fake), asyncio.Event())
            return fake.calls

    assert _run(scenario) == []


def test_a_rejected_token_is_one_reason_and_nothing_is_left_running(tmp_path, street_index):
    async def scenario():
        async with FakeDiscord() as fake:
            with fake.patch_discord(), pytest.raises(StartupFailed) as refused:
                await run_bots(_config(tmp_path, street_index, fake, token="Bot.WRONG.token"),
                               asyncio.Event())
            return str(refused.value)

    reason = _run(scenario)
    assert reason.startswith("Discord refused the bot token") and "WRONG" not in reason


def test_a_dead_gateway_connection_stops_the_process(tmp_path, street_index):
    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            bot = next(t for t in asyncio.all_tasks() if t.get_coro().__name__ == "run_bots")
            await fake.close_gateway(4004)  # authentication failed: discord.py gives up
            with pytest.raises(ServiceDied, match="Discord gateway connection ended"):
                await asyncio.wait_for(bot, 30)

    with pytest.raises(ServiceDied):  # running_bot's own wait on the bot sees it too
        _run(scenario)


def test_a_failure_after_defer_still_ends_in_an_answer(tmp_path, street_index, street_queries):
    photo = (jpeg_bytes(street_queries[0].rgb), "s.jpg", "image/jpeg")

    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            with sqlite3.connect(tmp_path / "bot.sqlite") as db:
                db.execute("DROP TABLE requests")  # the store fails under the service
            command = fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=photo)
            await fake.wait_for(lambda c: "went wrong" in str(c.json), timeout=30)
            return fake.original_response(command)

    answer = _run(scenario)
    assert "Something went wrong on my side" in answer["content"]


def test_rate_limit_and_guild_controls(tmp_path, street_index, street_queries):
    photo = (jpeg_bytes(street_queries[0].rgb), "s.jpg", "image/jpeg")
    controls = DiscordConfig(enabled=True, token="", allowed_channels=(str(CHANNEL),),
                             allowed_role="analyst")

    async def scenario():
        async with FakeDiscord() as probe:
            token = probe.token
        async with running_bot(tmp_path, street_index,
                               discord=replace(controls, token=token),
                               rate_limit=RateLimitConfig(user_requests=1)) as fake:
            wrong_channel = fake.slash_command("locate", GUILD, OTHER_CHANNEL, ALICE,
                                               attachment=photo)
            no_role = fake.slash_command("locate", GUILD, CHANNEL, BOB, attachment=photo)
            fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=photo)
            await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), timeout=30)
            second = fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=photo)
            await fake.wait_for(lambda c: "Try again in" in str(c.json), timeout=30)
            return [fake.original_response(i)["content"] for i in (wrong_channel, no_role,
                                                                    second)]

    wrong_channel, no_role, limited = _run(scenario)
    assert "not enabled in this channel" in wrong_channel
    assert "'analyst' role" in no_role
    assert re.search(r"Try again in \d+ s", limited)


def test_two_members_confirm_and_dispute_with_names_on_the_message(tmp_path, street_index,
                                                                    street_queries):
    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            command = fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=(
                jpeg_bytes(street_queries[0].rgb), "s.jpg", "image/jpeg"))
            await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), timeout=30)
            message = fake.original_response(command)
            ids = [c["custom_id"] for row in message["components"] for c in row["components"]]
            fake.press_button(ids[2], GUILD, CHANNEL, ALICE, message)
            await fake.wait_for(lambda c: "Confirmed by" in str(c.json), timeout=30)
            fake.press_button(ids[3], GUILD, CHANNEL, BOB, fake.original_response(command))
            await fake.wait_for(lambda c: "bob" in str(c.json) and "Disputed" in str(c.json),
                                timeout=30)
            fake.press_button(ids[0], GUILD, CHANNEL, BOB, fake.original_response(command))
            await fake.wait_for(lambda c: "alternatives.png" in str(c.file_names), timeout=30)
            return _embed(fake, command)

    fields = _fields(_run(scenario))
    assert fields["✅ Confirmed by"] == "alice"
    assert fields["❌ Disputed by"] == "bob"


def test_a_forged_button_for_another_servers_request_sends_nothing_of_it(
    tmp_path, street_index, street_queries
):
    """Custom ids are the client's to choose: Bob replays the server's request id in a DM."""
    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            command = fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=(
                jpeg_bytes(street_queries[0].rgb), "s.jpg", "image/jpeg"))
            await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), timeout=30)
            message = fake.original_response(command)
            ids = [c["custom_id"] for row in message["components"] for c in row["components"]]
            fake.add_channel(dm_channel(BOBS_DM, BOB))
            for custom_id in ids:
                fake.press_button(custom_id, None, BOBS_DM, BOB, message)
            refusals = await fake.wait_for(
                lambda c: "That answer is no longer available." in str(c.json),
                count=len(ids), timeout=30)
            return refusals, fake.calls

    refusals, calls = _run(scenario)
    assert len(refusals) == 4
    assert not [c for c in calls if "evidence.png" in str(c.file_names)
                or "alternatives.png" in str(c.file_names)]
    assert not [c for c in calls if "Confirmed by" in str(c.json) or "Disputed by" in str(c.json)]


def test_telegram_and_discord_in_one_process_then_sigterm(tmp_path, street_index,
                                                         street_queries):
    """`geosleuth bot` as a real process serving both fakes; SIGTERM stops it cleanly."""
    photo = jpeg_bytes(street_queries[0].rgb)
    alice_tg = telegram_api.user(5001, "Alice")

    async def scenario():
        async with FakeDiscord() as fake, telegram_api.FakeTelegram() as tg:
            fake.add_guild(GUILD, "OSINT", channels=[text_channel(CHANNEL, "general")],
                           members=[ALICE])
            tg.add_chat(telegram_api.private_chat(alice_tg))
            config = tmp_path / "geosleuth.toml"
            config.write_text(
                f'[engine]\nindex_path = "{street_index.index_path}"\n'
                f'[map]\ntiles_enabled = false\n'
                f'[store]\npath = "{tmp_path / "bot.sqlite"}"\n'
                f'[telegram]\nenabled = true\nbase_url = "{tg.base_url}"\n'
                f'base_file_url = "{tg.base_file_url}"\n'
                f'[discord]\nenabled = true\napi_base = "{fake.url}/api/v10"\n'
                f'gateway_url = "{fake.gateway_url}"\n')
            env = {**os.environ, "GEOSLEUTH_TELEGRAM_TOKEN": "123:TEST",
                   "GEOSLEUTH_DISCORD_TOKEN": fake.token}
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "--config", str(config), "bot", env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                await tg.wait_for("setMyCommands", timeout=60)
                await fake.wait_ready(timeout=60)
                await asyncio.sleep(2.5)
                tg.send_photo(telegram_api.private_chat(alice_tg), alice_tg, photo)
                fake.slash_command("locate", GUILD, CHANNEL, ALICE,
                                   attachment=(photo, "s.jpg", "image/jpeg"))
                await tg.wait_for("sendPhoto", timeout=60)
                await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), timeout=60)
                process.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(process.communicate(), 60)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            return process.returncode, err.decode()

    code, err = _run(scenario, timeout=180)
    assert code == 0, err
    assert "Traceback" not in err
    assert "stopped cleanly" in err
    assert not (tmp_path / "bot.sqlite-wal").exists() or (
        tmp_path / "bot.sqlite-wal").stat().st_size == 0


async def _ask(fake: FakeDiscord, name: str, guild: int | None, channel: int, member) -> dict:
    """A command's answer as the asker sees it, once the bot has given it."""
    interaction = fake.slash_command(name, guild, channel, member)
    await fake.wait_for(lambda c: c.method == "POST" and f"/interactions/{interaction['id']}/"
                        in c.path, timeout=30)
    answer = fake.original_response(interaction)
    assert answer is not None and answer["flags"] & 64, answer  # ephemeral: the asker's only
    return answer


def test_help_and_privacy_answer_only_the_asker(tmp_path, street_index):
    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            return [(await _ask(fake, name, GUILD, CHANNEL, BOB))["content"]
                    for name in ("help", "privacy")]

    help_text, privacy = _run(scenario)
    assert all(command in help_text for command in ("/locate", "/history", "/forget",
                                                    "Locate photo", "image2", "video"))
    assert "SHA-256" in privacy and "/forget" in privacy


def test_history_and_forget_are_per_channel_and_a_private_answer_is_its_askers_own(
        tmp_path, street_index, street_queries):
    photo = (jpeg_bytes(street_queries[0].rgb), "s.jpg", "image/jpeg")
    nothing = "No photos have been located in this chat yet."

    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            fake.add_channel(dm_channel(BOBS_DM, BOB))
            fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=photo)
            await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), timeout=30)
            private = fake.slash_command("locate", GUILD, CHANNEL, BOB, {"private": True},
                                         attachment=photo)
            await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), count=2,
                                timeout=30)
            answer = fake.original_response(private)
            alternatives = answer["components"][0]["components"][0]["custom_id"]
            fake.press_button(alternatives, GUILD, CHANNEL, BOB, answer)
            await fake.wait_for(lambda c: "alternatives.png" in str(c.file_names), timeout=30)
            seen = {}
            for label, guild, channel, member in (
                    ("channel", GUILD, CHANNEL, BOB), ("other channel", GUILD, OTHER_CHANNEL, BOB),
                    ("bob's dm", None, BOBS_DM, BOB)):
                seen[label] = (await _ask(fake, "history", guild, channel, member))["content"]
            forgets = [(await _ask(fake, "forget", guild, channel, member))["content"]
                       for guild, channel, member in ((GUILD, CHANNEL, BOB),
                                                      (GUILD, CHANNEL, ALICE),
                                                      (None, BOBS_DM, BOB))]
            after = [(await _ask(fake, "history", guild, channel, BOB))["content"]
                     for guild, channel in ((GUILD, CHANNEL), (None, BOBS_DM))]
            return seen, forgets, after

    seen, (bob_in_channel, alice_in_channel, bob_in_dm), after = _run(scenario)
    channel_lines = seen["channel"].splitlines()
    assert len(channel_lines) == 2 and " alice: " in channel_lines[1]  # not bob's private one
    assert seen["other channel"] == nothing
    dm_lines = seen["bob's dm"].splitlines()
    assert len(dm_lines) == 2 and " bob: " in dm_lines[1]
    assert "Only members who can manage messages" in bob_in_channel
    assert alice_in_channel == "Deleted this channel's history (1 requests and their votes)."
    assert bob_in_dm == "Deleted your history (1 requests and their votes)."
    assert after == [nothing, nothing]


async def _export(fake: FakeDiscord, guild: int | None, channel: int, member,
                  options: dict | None = None) -> tuple[dict, Call | None]:
    """/export's answer as the asker sees it, and the upload of its files (None if none)."""
    interaction = fake.slash_command("export", guild, channel, member, options)
    token = fake.interaction(interaction).token
    [edit] = await fake.wait_for(lambda c: c.method == "PATCH" and token in c.path, timeout=30)
    answer = fake.original_response(interaction)
    assert answer is not None and answer["flags"] & 64, answer  # ephemeral: the asker's only
    return answer, edit if edit.files else None


def test_export_gives_a_channels_case_to_its_moderators_and_a_dm_its_own(
        tmp_path, street_index, street_queries):
    channel_view, bobs_view = street_queries[0], street_queries[2]

    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            fake.add_channel(dm_channel(BOBS_DM, BOB))
            fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=(
                jpeg_bytes(channel_view.rgb), "a.jpg", "image/jpeg"))
            await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), timeout=30)
            # Bob's answer only he sees: his own history, never the channel's.
            fake.slash_command("locate", GUILD, CHANNEL, BOB, {"private": True}, attachment=(
                jpeg_bytes(bobs_view.rgb), "b.jpg", "image/jpeg"))
            await fake.wait_for(lambda c: c.method == "PATCH" and bool(c.files), count=2,
                                timeout=30)
            return (await _export(fake, GUILD, CHANNEL, BOB),
                    await _export(fake, GUILD, CHANNEL, ALICE),
                    await _export(fake, None, BOBS_DM, BOB, {"format": "kml"}))

    (refused, nothing), (channel, upload), (_, bobs) = _run(scenario)
    assert refused["content"] == "Only this chat's admins can export its history."
    assert nothing is None
    assert channel["content"] == "This chat's case: 1 located answer."
    names = sorted(upload.file_names.values())
    assert [n.rsplit(".", 1)[1] for n in names] == ["geojson", "kml"]
    assert names[0].startswith(f"geosleuth-discord-{CHANNEL}-")
    [feature] = geojson_features(upload.file(names[0]).decode())
    assert feature["properties"]["asked_by"] == "alice"  # bob's private answer is not here
    lon, lat = feature["geometry"]["geometries"][0]["coordinates"]
    assert haversine_m(channel_view.lat, channel_view.lon, lat, lon) <= 25
    [placemark] = kml_placemarks(upload.file(names[1]))
    assert kml_point(placemark) == pytest.approx((lon, lat), abs=1e-6)
    [name] = bobs.file_names.values()
    assert name.startswith(f"geosleuth-discord-dm_{BOB['user']['id']}-") and name.endswith(".kml")
    [placemark] = kml_placemarks(bobs.file(name))
    lon, lat = kml_point(placemark)
    assert haversine_m(bobs_view.lat, bobs_view.lon, lat, lon) <= 25


def _answer_edits(fake: FakeDiscord, interaction) -> list[Call]:
    """The edits that put an answer (with its map) on `interaction`'s message."""
    token = fake.interaction(interaction).token
    return [c for c in fake.calls if c.method == "PATCH" and token in c.path and c.files]


async def _answered(fake: FakeDiscord, interaction, timeout: float = 60) -> None:
    token = fake.interaction(interaction).token
    await fake.wait_for(lambda c: c.method == "PATCH" and token in c.path and bool(c.files),
                        timeout=timeout)


def _one_sentence(text: str) -> bool:
    return text.endswith(".") and ". " not in text and "Traceback" not in text


def test_several_attachments_are_one_answer_naming_each_and_the_one_not_read(
        tmp_path, street_index, street_queries):
    """/locate with two photos and a PDF, the context menu on a message with two photos and a
    text file: one answer and one history line each. A video posted with photos is refused
    before anything is downloaded."""
    view, other = street_queries[0], street_queries[1]

    async def scenario():
        async with running_bot(tmp_path, street_index) as fake:
            album = fake.slash_command("locate", GUILD, CHANNEL, ALICE, {
                "image2": fake.add_attachment(jpeg_bytes(view.rgb, 75), "b.jpg", "image/jpeg",
                                              channel_id=CHANNEL),
                "image3": fake.add_attachment(b"%PDF-1.7 report", "report.pdf",
                                              "application/pdf", channel_id=CHANNEL),
            }, attachment=(jpeg_bytes(view.rgb), "a.jpg", "image/jpeg"))
            await _answered(fake, album)
            posted = fake.post_message(CHANNEL, BOB, "same corner?", attachments=[
                (jpeg_bytes(other.rgb), "one.jpg", "image/jpeg"),
                (jpeg_bytes(other.rgb, 70), "two.jpg", "image/jpeg"),
                (b"taken from the bridge", "notes.txt", "text/plain")])
            menu = fake.message_command("Locate photo", GUILD, CHANNEL, ALICE, posted)
            await _answered(fake, menu)
            mixed = fake.post_message(CHANNEL, BOB, "and a clip", attachments=[
                (jpeg_bytes(other.rgb), "one.jpg", "image/jpeg"),
                (b"\0\0\0\x18ftypmp42", "clip.mp4", "video/mp4")])
            refused = fake.message_command("Locate photo", GUILD, CHANNEL, ALICE, mixed)
            await fake.wait_for(lambda c: "not both" in str(c.json), timeout=30)
            history = await _ask(fake, "history", GUILD, CHANNEL, ALICE)
            answers = [_answer_edits(fake, i) for i in (album, menu)]
            return (_embed(fake, album), _embed(fake, menu), answers,
                    fake.original_response(refused), history["content"],
                    fake.calls_to("GET", "/attachments/.*/clip.mp4"))

    album, menu, answers, refusal, history, clip_downloads = _run(scenario)
    assert [len(a) for a in answers] == [1, 1]
    assert answers[0][0].file("map.png")[:4] == b"\x89PNG"
    lat, lon = (float(v) for v in COORDINATES.search(album["title"]).groups())
    assert haversine_m(view.lat, view.lon, lat, lon) <= 25
    lines = _fields(album)["Photos"].splitlines()
    assert [line.split(":")[0] for line in lines] == ["photo 1 (a.jpg)", "photo 2 (b.jpg)",
                                                      "photo 3 (report.pdf)"]
    assert "agrees" in lines[0] and lines[2].endswith("(not read)")
    photos = _fields(menu)["Photos"]
    assert "one.jpg" in photos and "two.jpg" in photos and "notes.txt" not in photos
    assert COORDINATES.search(menu["title"])
    assert "not both at once" in refusal["content"] and refusal["flags"] & 64
    assert clip_downloads == []
    history_lines = history.splitlines()[1:]
    assert len(history_lines) == 2 and all("(2 photos)" in line for line in history_lines)


@pytest.mark.real_data
def test_three_held_out_lund_photos_on_one_locate_are_one_answer_within_25_m(
        tmp_path, lund_index, lund_split):
    photos = lund_split[1][:3]
    names = ["first.jpg", "second.jpg", "third.jpg"]
    data = [(Path(r.image_path).read_bytes(), name, "image/jpeg")
            for r, name in zip(photos, names, strict=True)]

    async def scenario():
        async with running_bot(tmp_path, lund_index) as fake:
            more = {f"image{i}": fake.add_attachment(*d, channel_id=CHANNEL)
                    for i, d in enumerate(data[1:], 2)}
            command = fake.slash_command("locate", GUILD, CHANNEL, ALICE, more,
                                         attachment=data[0])
            await _answered(fake, command)
            return _embed(fake, command), _answer_edits(fake, command)

    embed, answers = _run(scenario)
    assert len(answers) == 1
    lat, lon = (float(v) for v in COORDINATES.search(embed["title"]).groups())
    assert max(haversine_m(r.lat, r.lon, lat, lon) for r in photos) <= 25
    lines = _fields(embed)["Photos"].splitlines()
    for i, name in enumerate(names, 1):
        assert any(line.startswith(f"photo {i} ({name}): agrees") for line in lines), lines


@pytest.mark.real_data
def test_a_video_is_placed_naming_its_frame_times_and_bad_videos_get_one_sentence(
        tmp_path, lund_index):
    """A walk past three Lund photos as an MP4; a cut-short MOV, and a GIF longer than the
    10 s allowed here (a GIF goes the video way: it may be animated)."""
    walk = lund_walk_video(count=3, seconds_each=2.0)
    (small, _), = lund_photos(1, 1, (64, 48))
    too_long = make_video([small] * 24, 2.0, "gif", "gif")  # 12 s
    engine = replace(lund_index, video=replace(lund_index.video, max_seconds=10))

    async def scenario():
        async with running_bot(tmp_path, engine) as fake:
            video = fake.slash_command("locate", GUILD, CHANNEL, ALICE,
                                       attachment=(walk.video, "walk.mp4", "video/mp4"))
            await _answered(fake, video, timeout=120)
            bad = [fake.slash_command("locate", GUILD, CHANNEL, ALICE, attachment=attachment)
                   for attachment in ((walk.video[:len(walk.video) // 2], "cut.mov",
                                       "video/quicktime"),
                                      (too_long, "long.gif", "image/gif"))]
            for words in ("damaged or cut short", "limit"):
                await fake.wait_for(lambda c, w=words: w in str(c.json), timeout=60)
            return _embed(fake, video), [fake.original_response(b)["content"] for b in bad]

    embed, (corrupt, over_long) = _run(scenario, timeout=180)
    lat, lon = (float(v) for v in COORDINATES.search(embed["title"]).groups())
    assert max(haversine_m(s.lat, s.lon, lat, lon) for s in walk.spans) <= 25
    frames = _fields(embed)["Frames"]
    assert re.search(r"frame at 0:0\d\.\d", frames), frames
    assert "damaged or cut short" in corrupt and _one_sentence(corrupt)
    assert "0:10 limit" in over_long and _one_sentence(over_long)


def _attachment(filename: str, content_type: str | None) -> discord.Attachment:
    data = {"id": "1", "size": 1, "filename": filename, "url": "", "proxy_url": ""}
    if content_type is not None:
        data["content_type"] = content_type
    return discord.Attachment(data=data, state=SimpleNamespace(http=None))


def test_gifs_and_videos_without_a_type_go_the_video_way_other_files_nowhere():
    kinds = {name: _media_kind(_attachment(name, kind)) for name, kind in (
        ("a.jpg", "image/jpeg"), ("b.gif", "image/gif"), ("c.MOV", None), ("d.m4v", None),
        ("e.webm", "video/webm"), ("f.txt", "text/plain"), ("g.avi", "video/x-msvideo"),
        ("h.jpg", None))}
    assert kinds == {"a.jpg": "photo", "b.gif": "video", "c.MOV": "video", "d.m4v": "video",
                     "e.webm": "video", "f.txt": None, "g.avi": None, "h.jpg": None}


def test_a_hostile_file_name_is_shown_short_and_inert():
    shown = _safe_name("[your bank](https://evil.example/login) @everyone\u202egpj.exe\n"
                       + "x" * 60)
    assert len(shown) <= 40 and shown.endswith("…")
    assert not set(shown) & set("[]@\u202e\n<>*`|~")


def test_many_detail_lines_are_cut_at_whole_lines_within_discords_embed_limits():
    lines = tuple(f"photo {i} ({'x' * 36}.jpg): disagrees, placed at 55.70000, 13.19000,"
                  f" 1,234 m away (12%)" for i in range(1, 41))
    summary = AnswerSummary(
        located=False, headline="No confident match (40 photos)", coordinates=None, dms=None,
        confidence="12% (low)", radius=None, place=None, osm_url=None, google_url=None,
        reference=None, reference_url=None, exif=None, area=None, attribution=None,
        advice="a" * 4000, details=lines)
    embed = _discord_embed(summary)
    value = {f.name: f.value for f in embed.fields}["Photos"]
    assert len(value) <= 1024 and len(embed) <= 6000
    *shown, more = value.splitlines()
    assert list(lines[:len(shown)]) == shown and more == f"…and {40 - len(shown)} more"
