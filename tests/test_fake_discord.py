"""The fake Discord, proven against the real discord.py client, command tree and views."""

from __future__ import annotations

import asyncio
import io
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import discord
import pytest
from discord import app_commands
from PIL import Image

from tests.fakes.discord_api import (
    DEFAULT_BOT_PERMISSIONS,
    DEFERRED_CHANNEL_MESSAGE,
    EPHEMERAL,
    LOADING,
    UPDATE_MESSAGE,
    FakeDiscord,
    Permission,
    dm_channel,
    member,
    text_channel,
)

GUILD = 900000000000000001
CHANNEL = 900000000000000010
DM = 900000000000000020
ALICE = member(900000000000000100, "alice")
BOB = member(900000000000000101, "bob")
AGAIN = "geosleuth:again"


def _image(fmt: str, width: int = 64, height: int = 48, color: tuple[int, int, int] = (0, 90, 200),
           ) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, fmt)
    return out.getvalue()


PHOTO = _image("JPEG", 640, 480)
MAP_PNG = _image("PNG", 32, 32, (200, 30, 30))


class _Again(discord.ui.View):
    """The button under a result; pressing it answers with an ephemeral note."""

    def __init__(self) -> None:
        super().__init__(timeout=60)

    @discord.ui.button(label="Try again", custom_id=AGAIN, style=discord.ButtonStyle.primary)
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_message("Send me another photo.", ephemeral=True)


class _Bot(discord.Client):
    """A minimal bot shaped like ours: a tree synced to the guild in setup_hook."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.ready = asyncio.Event()
        self.errors: list[BaseException] = []
        self.downloaded: list[bytes] = []
        self.seen_permissions: list[discord.Permissions] = []
        self.tree.on_error = self._on_tree_error  # type: ignore[method-assign]

        @self.tree.command(name="locate", description="Find where a photo was taken")
        async def locate(interaction: discord.Interaction, image: discord.Attachment) -> None:
            await interaction.response.defer(thinking=True)
            self.downloaded.append(await image.read())
            self.seen_permissions.append(interaction.app_permissions)
            embed = discord.Embed(title="Lund, Sweden", description="Best match")
            embed.add_field(name="Confidence", value="0.87")
            embed.add_field(name="Radius", value="150 m")
            embed.set_image(url="attachment://map.png")
            if interaction.app_permissions.attach_files:
                await interaction.edit_original_response(
                    embed=embed, attachments=[discord.File(io.BytesIO(MAP_PNG), "map.png")],
                    view=_Again())
            else:
                embed.set_image(url=None)
                await interaction.edit_original_response(embed=embed, view=_Again())

        @self.tree.context_menu(name="Locate photo")
        async def locate_message(interaction: discord.Interaction,
                                 message: discord.Message) -> None:
            data = await message.attachments[0].read()
            self.downloaded.append(data)
            await interaction.response.send_message(
                f"{message.attachments[0].filename}: {len(data)} bytes", ephemeral=True)

        @self.tree.command(name="quiet", description="Answer privately after thinking")
        async def quiet(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send("done", ephemeral=True)

    async def setup_hook(self) -> None:
        self.tree.copy_global_to(guild=discord.Object(GUILD))
        await self.tree.sync(guild=discord.Object(GUILD))
        await self.tree.sync()

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_error(self, event: str, *args: object, **kwargs: object) -> None:
        error = sys.exc_info()[1]
        if error is not None:
            self.errors.append(error)

    async def _on_tree_error(self, interaction: discord.Interaction,
                             error: app_commands.AppCommandError) -> None:
        self.errors.append(error)


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        asyncio.run(asyncio.wait_for(scenario(), timeout=15))


@asynccontextmanager
async def _online(**fake_options: object) -> AsyncIterator[tuple[FakeDiscord, _Bot]]:
    """A fake with one guild and a DM, the real client connected and ready; then closed."""
    async with FakeDiscord(**fake_options) as fake:  # type: ignore[arg-type]
        fake.add_guild(GUILD, "OSINT team", channels=[text_channel(CHANNEL, "general")],
                       members=[ALICE, BOB])
        fake.add_channel(dm_channel(DM, ALICE))
        with fake.patch_discord():
            bot = _Bot()
            await bot.login(fake.token)
            connection = asyncio.create_task(bot.connect())
            try:
                await fake.wait_ready(timeout=5)
                await asyncio.wait_for(bot.ready.wait(), timeout=5)
                yield fake, bot
            finally:
                await bot.close()
                await asyncio.wait_for(connection, timeout=5)
        assert not bot.errors, bot.errors


def test_start_up_syncs_commands_and_receives_the_guild() -> None:
    async def scenario() -> None:
        async with _online() as (fake, bot):
            assert [c.path for c in fake.calls[:2]] == ["/users/@me", "/oauth2/applications/@me"]
            [guild_sync] = fake.calls_to("PUT", rf"/guilds/{GUILD}/commands$")
            assert {c["name"] for c in guild_sync.json} == {"locate", "quiet", "Locate photo"}
            synced = {c["name"]: c for c in guild_sync.response}
            assert synced["Locate photo"]["description"] == ""
            assert synced["locate"]["options"][0]["type"] == 11
            guild = bot.get_guild(GUILD)
            assert guild is not None and guild.name == "OSINT team"
            assert guild.member_count == 3  # the members themselves need the members intent
            assert bot.get_channel(CHANNEL) is not None
            assert bot.user is not None and bot.user.id == fake.bot_id
            assert fake.identifies == 1 and not fake.unknown
            assert guild.me.guild_permissions.value == DEFAULT_BOT_PERMISSIONS
            assert fake.gateway_connects[0]["compress"] == "zlib-stream"
            assert fake.gateway_connects[0]["v"] == "10"

    _run(scenario)


def test_slash_command_defers_downloads_and_edits_with_embed_file_and_button() -> None:
    async def scenario() -> None:
        async with _online() as (fake, bot):
            interaction = fake.slash_command("locate", GUILD, CHANNEL, ALICE,
                                             attachment=(PHOTO, "street.jpg", "image/jpeg"))
            [edit] = await fake.wait_for("PATCH /webhooks/.*/messages/@original$", timeout=5)

            [callback] = fake.calls_to("POST", "/callback$")
            assert callback.json == {"type": DEFERRED_CHANNEL_MESSAGE}
            assert callback.query["with_response"] == "1"
            assert callback.response["interaction"]["response_message_loading"] is True
            assert fake.calls_to("GET", "^/attachments/"), "the photo was never downloaded"
            assert bot.downloaded == [PHOTO]

            assert edit.file("map.png") == MAP_PNG
            [embed] = edit.json["embeds"]
            assert embed["title"] == "Lund, Sweden"
            assert [f["name"] for f in embed["fields"]] == ["Confidence", "Radius"]
            [row] = edit.json["components"]
            assert row["components"][0]["custom_id"] == AGAIN

            final = fake.original_response(interaction)
            assert final is not None and not final["flags"] & LOADING
            assert final["attachments"][0]["filename"] == "map.png"
            assert final["embeds"][0]["image"]["url"] == final["attachments"][0]["url"]
            assert fake.attachment_bytes(final["attachments"][0]) == MAP_PNG
            assert fake.sent_messages(CHANNEL)[-1]["id"] == final["id"]

            press = fake.press_button(AGAIN, GUILD, CHANNEL, BOB, final)
            [answer] = await fake.wait_for(
                lambda c: c.path == f"/interactions/{press['id']}/{press['token']}/callback")
            assert answer.json["type"] == 4
            assert answer.json["data"]["content"] == "Send me another photo."
            assert answer.json["data"]["flags"] & EPHEMERAL

    _run(scenario)


def test_message_context_menu_reads_the_target_photo() -> None:
    async def scenario() -> None:
        async with _online() as (fake, _bot):
            posted = fake.post_message(CHANNEL, BOB, "where is this?",
                                       attachments=[(PHOTO, "cafe.jpg", "image/jpeg")])
            assert posted["attachments"][0]["width"] == 640
            interaction = fake.message_command("Locate photo", GUILD, CHANNEL, ALICE, posted)
            [answer] = await fake.wait_for("POST /interactions/.*/callback", timeout=5)
            assert answer.json["data"]["content"] == f"cafe.jpg: {len(PHOTO)} bytes"
            reply = fake.original_response(interaction)
            assert reply is not None and reply["flags"] & EPHEMERAL
            assert reply["type"] == 23  # CONTEXT_MENU_COMMAND

    _run(scenario)


def test_slash_command_in_a_dm_carries_a_user_not_a_member() -> None:
    async def scenario() -> None:
        async with _online() as (fake, _bot):
            interaction = fake.slash_command("locate", None, DM, ALICE,
                                             attachment=(PHOTO, "dm.jpg", "image/jpeg"))
            assert "member" not in interaction and interaction["user"]["username"] == "alice"
            await fake.wait_for("PATCH /webhooks/.*/@original", timeout=5)
            final = fake.original_response(interaction)
            assert final is not None and final["attachments"][0]["filename"] == "map.png"

    _run(scenario)


def test_missing_attach_files_permission_is_seen_by_the_bot() -> None:
    async def scenario() -> None:
        async with _online() as (fake, bot):
            denied = DEFAULT_BOT_PERMISSIONS & ~Permission.ATTACH_FILES
            interaction = fake.slash_command("locate", GUILD, CHANNEL, ALICE,
                                             attachment=(PHOTO, "x.jpg", "image/jpeg"),
                                             app_permissions=denied)
            [edit] = await fake.wait_for("PATCH /webhooks/.*/@original", timeout=5)
            assert edit.ok and not edit.files
            assert not bot.seen_permissions[0].attach_files
            final = fake.original_response(interaction)
            assert final is not None and final["attachments"] == []

    _run(scenario)


def test_fake_enforces_interaction_rules() -> None:
    async def scenario() -> None:
        async with _online(interaction_deadline_s=0.2) as (fake, bot):
            # Presses of a button nobody handles: the test answers them by hand.
            target = fake.post_message(CHANNEL, fake.bot_user, "old result")

            def callback(press: dict) -> discord.http.Route:
                record = fake.interaction(press)
                return discord.http.Route("POST", "/interactions/{i}/{t}/callback",
                                          i=record.id, t=record.token)

            late = fake.press_button("stale", GUILD, CHANNEL, ALICE, target)
            await asyncio.sleep(0.3)
            with pytest.raises(discord.NotFound) as too_late:
                await bot.http.request(callback(late), json={"type": 6})
            assert too_late.value.code == 10062

            twice = fake.press_button("stale", GUILD, CHANNEL, ALICE, target)
            await bot.http.request(callback(twice), json={"type": 6})
            with pytest.raises(discord.HTTPException) as again:
                await bot.http.request(callback(twice), json={"type": 6})
            assert again.value.code == 40060

            with pytest.raises(discord.NotFound):
                await bot.http.request(discord.http.Route("GET", "/nowhere"))
            assert fake.unknown[-1].path == "/nowhere"
            with pytest.raises(discord.HTTPException) as long_text:
                await bot.http.request(discord.http.Route(
                    "POST", "/channels/{c}/messages", c=CHANNEL), json={"content": "x" * 2001})
            assert long_text.value.code == 50035 and "2000" in long_text.value.text

    _run(scenario)


def test_update_message_and_channel_send_round_trip() -> None:
    async def scenario() -> None:
        async with _online() as (fake, bot):
            channel = bot.get_channel(CHANNEL)
            assert isinstance(channel, discord.TextChannel)
            sent = await channel.send("hello", file=discord.File(io.BytesIO(MAP_PNG), "m.png"))
            assert sent.attachments[0].filename == "m.png"
            assert await sent.attachments[0].read() == MAP_PNG
            edited = await sent.edit(content="bye")
            assert edited.content == "bye" and edited.edited_at is not None
            stored = fake.message(sent.id)
            assert stored is not None and stored["content"] == "bye"
            assert len(stored["attachments"]) == 1
            [call] = fake.calls_to("POST", rf"^/channels/{CHANNEL}/messages$")
            assert call.file("m.png") == MAP_PNG and call.json["content"] == "hello"
            # A component answered with UPDATE_MESSAGE edits the message the button is on.
            view_message = fake.post_message(CHANNEL, fake.bot_user, "pick")
            press = fake.press_button("nobody-listens", GUILD, CHANNEL, ALICE, view_message)
            record = fake.interaction(press)
            route = discord.http.Route("POST", "/interactions/{i}/{t}/callback",
                                       i=record.id, t=record.token)
            answer = await bot.http.request(
                route, json={"type": UPDATE_MESSAGE, "data": {"content": "picked"}},
                params={"with_response": "1"})
            assert answer["resource"]["message"]["content"] == "picked"
            assert fake.original_response(press)["id"] == view_message["id"]  # type: ignore[index]

    _run(scenario)


def test_first_followup_after_a_deferral_replaces_the_thinking_message() -> None:
    async def scenario() -> None:
        async with _online() as (fake, _bot):
            interaction = fake.slash_command("quiet", GUILD, CHANNEL, ALICE)
            await fake.wait_for(r"POST /webhooks/\d+/", timeout=5)
            final = fake.original_response(interaction)
            assert final is not None and final["content"] == "done"
            assert final["flags"] & EPHEMERAL and not final["flags"] & LOADING
            assert fake.followups(interaction) == []

    _run(scenario)


def test_reconnect_resumes_the_session_and_commands_keep_working() -> None:
    async def scenario() -> None:
        async with _online() as (fake, bot):
            fake.request_reconnect()
            deadline = asyncio.get_running_loop().time() + 5
            while fake.resumes < 1:  # the client answers op 7 with a RESUME on a new socket
                assert asyncio.get_running_loop().time() < deadline, fake.summary()
                await asyncio.sleep(0.01)
            interaction = fake.slash_command("quiet", GUILD, CHANNEL, ALICE)
            await fake.wait_for(r"POST /webhooks/\d+/", timeout=5)
            assert fake.original_response(interaction)["content"] == "done"  # type: ignore[index]
            assert fake.identifies == 1 and len(fake.gateway_connects) == 2
            assert bot.is_ready()

    _run(scenario)
