"""The Discord adapter (discord.py): application commands in, service calls, embeds out.

Every command is declared in `GeoSleuthCog`'s neighbourhood below and synced in
`setup_hook`; each handler turns the interaction into a `Requester`, awaits the service, and
turns the reply into an embed, a file and buttons. Refusals are ephemeral.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar
from urllib.parse import urlsplit

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands

from bot.adapters.errors import StartupFailed, why_it_ended
from bot.adapters.progress import EditPacer, progress_text
from bot.chat.cover_area import PlaceChoice
from bot.chat.covers import CoverStarted
from bot.chat.service import (
    Answer,
    BotService,
    ProgressEvent,
    Refusal,
    RefusalReason,
    Requester,
    Upload,
)
from bot.chat.store import CoverWatch, RequestRecord, Tally
from bot.config import DiscordConfig
from bot.render.export import FORMATS
from bot.render.text import AnswerSummary

log = logging.getLogger(__name__)

PLATFORM = "discord"
# A link preview's picture is fetched only through Discord's own media hosts, never from the
# origin URL in the embed: that would let any user make the bot fetch hosts in its network.
DISCORD_MEDIA_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
DISCORD_MEDIA_SUFFIX = ".discordapp.net"  # images-ext-N.discordapp.net: the external proxy
DOWNLOAD_TIMEOUT_S = 30.0
DOWNLOAD_CHUNK = 1 << 16
MESSAGE_LIMIT = 2000
# Discord's embed limits: a field's value, the fields of an embed, all of an embed's text.
EMBED_FIELD_CHARS = 1024
EMBED_FIELDS = 25
EMBED_TOTAL_CHARS = 6000
# GIFs go with the videos: they may be animated, and the photo decoder refuses animated images.
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/x-m4v",
                         "image/gif"})
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".m4v", ".gif")  # when Discord gives no type
LABEL_CHARS = 40
# A file name as shown: letters, digits and a few marks; the rest could be markdown (a masked
# link), a mention or a control character that reverses the text.
UNSAFE_NAME_CHARS = re.compile(r"[^\w .,()+-]")
HELP = (
    "Attach a street-level photo to /locate and I will find where it was taken, by comparing"
    " it with geotagged reference photos.\n\n"
    "• /locate with the photo as `image`; know the area? Add it: `area: Amsterdam` or"
    " `area: 52.37,4.89 5km`. With `private: true` only you see the answer.\n"
    "• Several photos of one place (`image2` to `image4`) are located together: one answer,"
    " with a line per photo saying whether it agrees.\n"
    "• A video (MP4, MOV, WebM or GIF; size and length are capped) as `image`: I locate a few"
    " of its frames and name their times; a walk is answered with its track. A video goes on"
    " its own, without photos.\n"
    "• A photo already posted: right-click the message → Apps → Locate photo (all its photos"
    " together, or its video).\n\n"
    "I answer with a map, the coordinates, how sure I am, and the evidence."
    " /privacy says what I keep; /history lists this channel's recent results (in a DM, yours,"
    " private answers included); /forget deletes them.\n"
    "• /export sends them as GeoJSON and KML files for map tools (QGIS, Google Earth), or"
    " `format: csv` for a table; in a channel, for those who can manage its messages.\n"
    "• /coverage shows where I have reference photos. Members who can manage the server (and"
    " the bot's admins) can fetch an area's open street-level imagery with /cover `area: Lund`"
    " (or `55.70,13.19 2` for a radius in km, or `W,S,E,N`): its progress is shown in the"
    " channel, and this channel's unplaced photos from there are looked at again when it ends."
)


class MediaRefused(Exception):
    """An embed's picture that is not fetched: where it lives, or how large it is."""
EMBED_COLOUR_LOCATED = discord.Colour.from_rgb(220, 38, 38)
EMBED_COLOUR_NO_MATCH = discord.Colour.from_rgb(120, 120, 120)


class GeoSleuthClient(discord.Client):
    """A client with our command tree; commands are synced once, in `setup_hook`."""

    def __init__(self, config: DiscordConfig, service: BotService) -> None:
        # GeoSleuth never joins voice: no warnings about voice libraries it does not need.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(intents=intents)
        self.config = config
        self.service = service
        self.tree = app_commands.CommandTree(self)
        self.handlers = DiscordHandlers(self)
        _declare_commands(self.tree, self.handlers)
        self.tree.error(_answer_failure)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        self.service.metrics.updates.labels("discord").inc()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AnswerButton, CoverButton)
        if self.config.dev_guilds:
            for guild_id in self.config.dev_guilds:
                guild = discord.Object(id=int(guild_id))
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()


FAILURE_TEXT = "Something went wrong on my side. It has been logged; please try again."


async def _answer_failure(interaction: discord.Interaction,
                          error: app_commands.AppCommandError) -> None:
    """Every command ends with an answer: a failure after `defer` would leave "thinking..."."""
    log.error("command %s failed", interaction.command and interaction.command.name,
              exc_info=error)
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=FAILURE_TEXT, embeds=[],
                                                     attachments=[], view=None)
        else:
            await interaction.response.send_message(FAILURE_TEXT, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell the user about the failure")


def _declare_commands(tree: app_commands.CommandTree, handlers: DiscordHandlers) -> None:
    # A slash command has no list option: the album's further photos are optional options.
    @tree.command(name="locate", description="Where was this photo (or video) taken?")
    @app_commands.describe(image="a street-level photo, or a video (MP4, MOV, WebM, GIF)",
                           image2="another photo of the same place: located together",
                           image3="another photo of the same place",
                           image4="another photo of the same place",
                           area="optional search area, e.g. 'Amsterdam' or '52.37,4.89 5km'",
                           private="answer only to you")
    async def locate(interaction: discord.Interaction, image: discord.Attachment,
                     image2: discord.Attachment | None = None,
                     image3: discord.Attachment | None = None,
                     image4: discord.Attachment | None = None,
                     area: str | None = None, private: bool = False) -> None:
        attachments = [a for a in (image, image2, image3, image4) if a is not None]
        await handlers.locate(interaction, attachments, area or "", private)

    @tree.context_menu(name="Locate photo")
    async def locate_message(interaction: discord.Interaction, message: discord.Message) -> None:
        await handlers.locate_message(interaction, message)

    @tree.command(name="help", description="how to use GeoSleuth")
    async def show_help(interaction: discord.Interaction) -> None:
        await _tell(interaction, HELP)

    @tree.command(name="privacy", description="what is stored, and for how long")
    async def privacy(interaction: discord.Interaction) -> None:
        await handlers.privacy(interaction)

    @tree.command(name="history", description="recent results in this channel (only you see"
                                              " this answer)")
    async def history(interaction: discord.Interaction) -> None:
        await handlers.history(interaction)

    @tree.command(name="forget", description="delete this channel's history (in a DM: yours)")
    async def forget(interaction: discord.Interaction) -> None:
        await handlers.forget(interaction)

    @tree.command(name="export", description="this channel's results as GeoJSON and KML files"
                                             " (in a DM: yours)")
    @app_commands.rename(fmt="format")
    @app_commands.describe(fmt="only this format (default: GeoJSON and KML)")
    @app_commands.choices(fmt=[app_commands.Choice(name=f, value=f) for f in FORMATS])
    async def export(interaction: discord.Interaction, fmt: str | None = None) -> None:
        await handlers.export(interaction, fmt)

    @tree.command(name="cover", description="fetch an area's street-level imagery into the"
                                            " index (server managers)")
    @app_commands.describe(area="a town ('Lund'), 'LAT,LON RADIUS_KM' or 'W,S,E,N'")
    async def cover(interaction: discord.Interaction, area: str) -> None:
        await handlers.cover(interaction, area)

    @tree.command(name="coverage", description="a map of the areas the index covers")
    async def coverage(interaction: discord.Interaction) -> None:
        await handlers.coverage(interaction)

    admin = app_commands.Group(name="geosleuth", description="GeoSleuth administration")

    @admin.command(name="stats", description="usage statistics (bot admins only)")
    async def stats(interaction: discord.Interaction) -> None:
        await handlers.stats(interaction)

    tree.add_command(admin)


class DiscordHandlers:
    def __init__(self, client: GeoSleuthClient) -> None:
        self._client = client

    @property
    def _service(self) -> BotService:
        return self._client.service

    # --- commands ------------------------------------------------------------------------

    async def locate(self, interaction: discord.Interaction,
                     attachments: list[discord.Attachment], area: str, private: bool) -> None:
        await self._locate_attachments(interaction, attachments, area, private)

    async def locate_message(self, interaction: discord.Interaction,
                             message: discord.Message) -> None:
        """The context menu: the message's photos (together) or its video, else its first image
        embed. Other files are passed over: the poster, not the asker, chose them."""
        media = [a for a in message.attachments if _media_kind(a) is not None]
        if media:
            await self._locate_attachments(interaction, media, "", False)
            return
        pictures = [e.image if e.image.url else e.thumbnail for e in message.embeds
                    if e.image.url or e.thumbnail.url]
        if not pictures:
            await _refuse(interaction, "That message has no image to locate.")
            return
        proxied = pictures[0].proxy_url
        if not proxied or not _is_discord_media(proxied):
            await _refuse(interaction, "I only fetch pictures through Discord's media proxy, and"
                                       " this link preview has none. Attach the photo instead.")
            return
        await self._locate(interaction, proxied, "", False)

    async def stats(self, interaction: discord.Interaction) -> None:
        text = await self._service.stats_text(_requester(interaction))
        await interaction.response.send_message(text, ephemeral=True)

    async def privacy(self, interaction: discord.Interaction) -> None:
        await _tell(interaction, self._service.privacy_text())

    async def history(self, interaction: discord.Interaction) -> None:
        """This channel's recent results (a DM: the user's own), to the asker only."""
        refusal = self._guild_refusal(interaction)
        await _tell(interaction, refusal or await self._service.history_text(
            _requester(interaction)))

    async def forget(self, interaction: discord.Interaction) -> None:
        """A channel's history is deleted by those who may delete its messages (as a Telegram
        group's by its admins); a DM's, private answers included, by its user."""
        if interaction.guild is not None and not interaction.permissions.manage_messages:
            await _tell(interaction, "Only members who can manage messages in this channel"
                                     " can delete its history.")
            return
        count = await self._service.forget(_requester(interaction))
        whose = "this channel's" if interaction.guild is not None else "your"
        await _tell(interaction, f"Deleted {whose} history ({count} requests and their votes).")

    async def export(self, interaction: discord.Interaction, fmt: str | None) -> None:
        """The case file, to the asker only: a channel's holds every member's questions and
        names, and it was its moderators who asked for it, not the channel (as /history)."""
        refusal = self._guild_refusal(interaction)
        if refusal is not None:
            await _refuse(interaction, refusal)
            return
        chat_admin = interaction.guild is not None and interaction.permissions.manage_messages
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await self._service.export(_requester(interaction), fmt, chat_admin=chat_admin)
        if isinstance(outcome, Refusal):
            await interaction.edit_original_response(content=outcome.text)
            return
        files = [discord.File(io.BytesIO(data), filename=name) for name, data in outcome.files]
        await interaction.edit_original_response(content=outcome.summary, attachments=files)

    async def cover(self, interaction: discord.Interaction, area: str) -> None:
        """/cover: the plan and the refusals to the asker; the progress in the channel."""
        refusal = self._guild_refusal(interaction)
        if refusal is not None:
            await _refuse(interaction, refusal)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        who = _requester(interaction)
        outcome = await self._service.covers.ask(who, area, chat_admin=_manages(interaction))
        await self._cover_started(interaction, who, outcome)

    async def cover_choice(self, interaction: discord.Interaction, action: str,
                           value: int) -> None:
        """A namesake's button (its value a gazetteer entry), or a cover's Cancel."""
        refusal = self._guild_refusal(interaction)
        if refusal is not None:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        who = _requester(interaction)
        if action == "cc":
            text = await self._service.covers.cancel(who, value, chat_admin=_manages(interaction))
            await interaction.response.send_message(text, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await self._service.covers.ask_place(who, value,
                                                       chat_admin=_manages(interaction))
        await self._cover_started(interaction, who, outcome)

    async def _cover_started(self, interaction: discord.Interaction, who: Requester,
                             outcome: CoverStarted | PlaceChoice | Refusal) -> None:
        if isinstance(outcome, Refusal):
            await interaction.edit_original_response(content=outcome.text)
            return
        if isinstance(outcome, PlaceChoice):
            view = discord.ui.View(timeout=None)
            for place in outcome.places:
                view.add_item(CoverButton("cv", place.index, f"{place.label()}"
                                                             f" ({place.population:,})"))
            await interaction.edit_original_response(
                content=f"Which {outcome.name}? Several places have that name.", view=view)
            return
        channel = self._client.get_partial_messageable(interaction.channel_id)
        message = await channel.send(outcome.text, view=_cancel_view(outcome.job.id))
        await interaction.edit_original_response(content="Started: its progress is shown in"
                                                         " the channel.", view=None)
        await self._service.covers.follow(outcome.job, outcome.label, who,
                                          f"{message.channel.id}:{message.id}",
                                          CoverMessages(self._client))

    async def coverage(self, interaction: discord.Interaction) -> None:
        """/coverage: the map of where the index has references, to the asker."""
        refusal = self._guild_refusal(interaction) or _said(
            self._service.admit(_requester(interaction), None))
        if refusal is not None:
            await _refuse(interaction, refusal)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await self._service.covers.coverage()
        if isinstance(outcome, Refusal):
            await interaction.edit_original_response(content=outcome.text)
            return
        caption, png = outcome
        await interaction.edit_original_response(
            content=caption[:MESSAGE_LIMIT],
            attachments=[discord.File(io.BytesIO(png), filename="coverage.png")])

    # --- the locate flow -----------------------------------------------------------------

    async def _locate_attachments(self, interaction: discord.Interaction,
                                  attachments: Sequence[discord.Attachment], area: str,
                                  private: bool) -> None:
        """One photo, several as one album, or one video.

        A video with photos, or a second video, is refused rather than partly located: a
        video's frames are an album of their own (with times, perhaps a track), and an answer
        that quietly left some attachments out would be read as covering them. Refused before
        anything is downloaded or counted, it costs the asker only a resend.
        """
        videos = [a for a in attachments if _media_kind(a) == "video"]
        if videos and len(attachments) > 1:
            await _refuse(interaction, self._guild_refusal(interaction) or
                          "I locate a video on its own, or photos together, not both at once:"
                          " send the video by itself.")
        elif videos:
            await self._locate_video(interaction, videos[0], area, private)
        elif len(attachments) == 1:
            await self._locate(interaction, attachments[0], area, private)
        else:
            await self._locate_album(interaction, attachments, area, private)

    async def _locate(self, interaction: discord.Interaction,
                      image: discord.Attachment | str, area: str, private: bool) -> None:
        who = _requester(interaction, private=private)
        not_image = None
        if isinstance(image, discord.Attachment) and _media_kind(image) != "photo":
            not_image = (f"'{_safe_name(image.filename)}' is not an image. Attach a JPEG, PNG,"
                         " WebP or HEIC photo, or an MP4, MOV or WebM video.")
        size = image.size if isinstance(image, discord.Attachment) else None
        progress = await self._start(interaction, private, self._guild_refusal(interaction)
                                     or not_image or _said(self._service.admit(who, size)))
        if progress is None:
            return
        try:
            data = await _read(image, self._service.max_file_bytes, "image")
        except MediaRefused as exc:
            await progress.finish(str(exc))
            return
        outcome = await self._service.locate(who, data, area, progress.update)
        if not isinstance(outcome, Refusal) and outcome.cover_offer is not None:
            offer = self._service.cover_offer_text(
                outcome.cover_offer,
                may_cover=self._service.covers.may_cover(who, chat_admin=_manages(interaction)))
            outcome = replace(outcome, summary=replace(
                outcome.summary, advice=f"{outcome.summary.advice or ''}\n{offer}".strip()))
        await self._reply(interaction, progress, outcome)

    async def _locate_album(self, interaction: discord.Interaction,
                            attachments: Sequence[discord.Attachment], area: str,
                            private: bool) -> None:
        """Several photos as one request: admitted once (by the largest), each downloaded.
        A file that is no photo is passed on all the same, so the answer names it as not read,
        with the decoder's reason, beside the photos that were."""
        who = _requester(interaction, private=private)
        labels = [f"photo {i} ({_safe_name(a.filename)})" for i, a in enumerate(attachments, 1)]
        largest = max(range(len(attachments)), key=lambda i: attachments[i].size)
        refusal = self._guild_refusal(interaction)
        if refusal is None:
            denied = self._service.admit(who, attachments[largest].size)
            too_large = denied is not None and denied.reason is RefusalReason.TOO_LARGE
            refusal = f"{labels[largest]}: {denied.text}" if too_large else _said(denied)
        progress = await self._start(interaction, private, refusal)
        if progress is None:
            return
        uploads = []
        for label, attachment in zip(labels, attachments, strict=True):
            try:
                uploads.append(Upload(label, await _read(attachment, self._service.max_file_bytes,
                                                         "file")))
            except MediaRefused as exc:
                await progress.finish(f"{label}: {exc}")
                return
        await self._reply(interaction, progress, await self._service.locate_album(
            who, uploads, area, progress.update))

    async def _locate_video(self, interaction: discord.Interaction, video: discord.Attachment,
                            area: str, private: bool) -> None:
        """A video: its size (and length, where Discord gives one) checked before downloading."""
        who = _requester(interaction, private=private)
        progress = await self._start(interaction, private, self._guild_refusal(interaction)
                                     or _said(self._service.admit_video(who, video.size,
                                                                        video.duration)))
        if progress is None:
            return
        try:
            data = await _read(video, self._service.max_video_bytes, "video")
        except MediaRefused as exc:
            await progress.finish(str(exc))
            return
        await self._reply(interaction, progress, await self._service.locate_video(
            who, data, area, progress.update))

    async def _start(self, interaction: discord.Interaction, private: bool,
                     refusal: str | None) -> _Progress | None:
        """A refusal (ephemeral), a missing permission said, or the deferred answer to edit as
        the work goes on; None when the asker has had their answer already."""
        if refusal is not None:
            await _refuse(interaction, refusal)
            return None
        missing = _missing_permissions(interaction)
        if missing and not private:
            await _refuse(interaction, f"I can't answer here: I lack the {missing} permission"
                                       " in this channel. Ask an admin, or use private:true.")
            return None
        try:
            await interaction.response.defer(ephemeral=private, thinking=True)
        except discord.NotFound:  # more than 3 s passed: the interaction is gone
            log.warning("interaction expired before it could be deferred")
            return None
        return _Progress(interaction)

    async def _reply(self, interaction: discord.Interaction, progress: _Progress,
                     outcome: Answer | Refusal) -> None:
        if isinstance(outcome, Refusal):
            await progress.finish(outcome.text)
        else:
            await self._send_answer(interaction, outcome)

    async def _send_answer(self, interaction: discord.Interaction, answer: Answer) -> None:
        embed = _embed(answer.summary, cached=answer.cached)
        embed.set_image(url="attachment://map.png")
        file = discord.File(io.BytesIO(answer.map_png), filename="map.png")
        try:
            message = await interaction.edit_original_response(
                content=None, embed=embed, attachments=[file],
                view=_answer_view(answer.request_id, Tally((), ())))
        except discord.NotFound:
            log.warning("interaction expired before the answer was ready")
            return
        await self._service.set_reply_ref(answer.request_id,
                                          f"{message.channel.id}:{message.id}")

    def _guild_refusal(self, interaction: discord.Interaction) -> str | None:
        """Discord's own controls: allowed guilds and channels, a role, DMs on or off."""
        config = self._client.config
        if interaction.guild is None:
            return None if config.dms_enabled else "GeoSleuth doesn't answer in DMs here."
        if config.allowed_guilds and str(interaction.guild.id) not in config.allowed_guilds:
            return "GeoSleuth is not enabled in this server."
        if config.allowed_channels and str(interaction.channel_id) not in config.allowed_channels:
            return "GeoSleuth is not enabled in this channel."
        if config.allowed_role and isinstance(interaction.user, discord.Member):
            roles = {str(r.id) for r in interaction.user.roles}
            roles |= {r.name for r in interaction.user.roles}
            if config.allowed_role not in roles:
                return f"You need the '{config.allowed_role}' role to use GeoSleuth here."
        return None

    # --- buttons -------------------------------------------------------------------------

    async def button(self, interaction: discord.Interaction, action: str, request_id: int) -> None:
        message = interaction.message
        who = _requester(interaction, private=message is not None and message.flags.ephemeral)
        refusal = self._guild_refusal(interaction)
        if refusal is None:
            admitted = self._service.admit(who, None)  # a press counts like a photo
            refusal = admitted.text if admitted is not None else None
        if refusal is not None:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        if action in ("ok", "no"):
            outcome = await self._service.vote(request_id, who,
                                               "confirm" if action == "ok" else "dispute")
            if isinstance(outcome, Refusal):
                await interaction.response.send_message(outcome.text, ephemeral=True)
                return
            summary = await self._service.answer_summary(request_id, who)
            if summary is None:
                await interaction.response.send_message("Vote recorded.", ephemeral=True)
                return
            embed = _embed(summary, tally=outcome)
            embed.set_image(url="attachment://map.png")
            await interaction.response.edit_message(embed=embed,
                                                    view=_answer_view(request_id, outcome))
            return
        await interaction.response.defer(thinking=True, ephemeral=True)
        picture = await (self._service.alternatives(request_id, who) if action == "alt"
                         else self._service.evidence(request_id, who))
        if isinstance(picture, Refusal):
            await interaction.followup.send(picture.text, ephemeral=True)
            return
        text, png = picture
        name = "alternatives.png" if action == "alt" else "evidence.png"
        await interaction.followup.send(text[:2000], file=discord.File(io.BytesIO(png), name),
                                        ephemeral=True)


class AnswerButton(discord.ui.DynamicItem[discord.ui.Button],
                   template=r"gs:(?P<action>alt|ev|ok|no):(?P<request>[0-9]+)"):
    """The answer's buttons; the request id lives in the custom id, so they survive restarts."""

    LABELS: ClassVar[dict[str, str]] = {"alt": "Alternatives", "ev": "Evidence",
                                        "ok": "Confirm", "no": "Dispute"}
    STYLES: ClassVar[dict[str, discord.ButtonStyle]] = {
        "alt": discord.ButtonStyle.secondary, "ev": discord.ButtonStyle.secondary,
        "ok": discord.ButtonStyle.success, "no": discord.ButtonStyle.danger,
    }

    def __init__(self, action: str, request_id: int, count: int = 0) -> None:
        label = self.LABELS[action] + (f" ({count})" if count else "")
        super().__init__(discord.ui.Button(label=label, style=self.STYLES[action],
                                           custom_id=f"gs:{action}:{request_id}"))
        self.action = action
        self.request_id = request_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> AnswerButton:
        return cls(match["action"], int(match["request"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        client = interaction.client
        assert isinstance(client, GeoSleuthClient)
        await client.handlers.button(interaction, self.action, self.request_id)


class CoverButton(discord.ui.DynamicItem[discord.ui.Button],
                  template=r"gs:(?P<action>cv|cc):(?P<value>[0-9]{1,12})"):
    """A namesake to cover (its gazetteer entry), or a cover's Cancel (its job); the value is
    checked by the service, since any client can send any custom id."""

    def __init__(self, action: str, value: int, label: str = "Cancel") -> None:
        style = discord.ButtonStyle.danger if action == "cc" else discord.ButtonStyle.primary
        super().__init__(discord.ui.Button(label=label[:80], style=style,
                                           custom_id=f"gs:{action}:{value}"))
        self.action = action
        self.value = value

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> CoverButton:
        return cls(match["action"], int(match["value"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        client = interaction.client
        assert isinstance(client, GeoSleuthClient)
        await client.handlers.cover_choice(interaction, self.action, self.value)


def _cancel_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CoverButton("cc", job_id))
    return view


class CoverMessages:
    """A cover's progress message in its channel, and the answers its second look placed
    (as replies to the earlier answers where they are known)."""

    def __init__(self, client: GeoSleuthClient) -> None:
        self._client = client

    async def show(self, watch: CoverWatch, text: str, *, running: bool) -> None:
        channel_id, _, message_id = watch.message_ref.partition(":")
        message = self._client.get_partial_messageable(int(channel_id)).get_partial_message(
            int(message_id))
        try:
            await message.edit(content=text[:MESSAGE_LIMIT],
                               view=_cancel_view(watch.job_id) if running else None)
        except discord.HTTPException as exc:
            log.debug("cover progress edit failed: %s", exc)

    async def placed(self, watch: CoverWatch, earlier: RequestRecord, answer: Answer) -> None:
        channel_id = int(watch.message_ref.partition(":")[0])
        channel = self._client.get_partial_messageable(channel_id)
        reference = None
        if earlier.reply_ref and earlier.reply_ref.startswith(f"{channel_id}:"):
            reference = discord.MessageReference(
                message_id=int(earlier.reply_ref.partition(":")[2]), channel_id=channel_id,
                fail_if_not_exists=False)
        embed = _embed(answer.summary)
        embed.set_image(url="attachment://map.png")
        when = earlier.created_at[:16].replace("T", " ")
        try:
            sent = await channel.send(
                f"📌 Now placed, after the cover of {watch.label}: the photo"
                f" {discord.utils.escape_markdown(earlier.user_name)} sent on {when} UTC.",
                embed=embed, file=discord.File(io.BytesIO(answer.map_png), filename="map.png"),
                view=_answer_view(answer.request_id, Tally((), ())), reference=reference,
                allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.warning("could not tell a channel that its photo is now placed: %s", exc)
            return
        await self._client.service.set_reply_ref(answer.request_id, f"{channel_id}:{sent.id}")


def _manages(interaction: discord.Interaction) -> bool:
    """A server's admin, as a Telegram group's: Manage Server (never in a DM)."""
    return interaction.guild is not None and interaction.permissions.manage_guild


def _answer_view(request_id: int, tally: Tally) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(AnswerButton("alt", request_id))
    view.add_item(AnswerButton("ev", request_id))
    view.add_item(AnswerButton("ok", request_id, len(tally.confirm)))
    view.add_item(AnswerButton("no", request_id, len(tally.dispute)))
    return view


class _Progress:
    """The deferred response, edited as the stages pass, paced like the Telegram one."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self._interaction = interaction
        self._pacer = EditPacer()

    async def update(self, event: ProgressEvent) -> None:
        text = progress_text(event)
        if text is not None and self._pacer.ready(text):
            await self._edit(text)

    async def finish(self, text: str) -> None:
        await self._edit(text)

    async def _edit(self, text: str) -> None:
        try:
            await self._interaction.edit_original_response(content=text)
        except discord.HTTPException as exc:
            log.debug("progress edit failed: %s", exc)


def _requester(interaction: discord.Interaction, *, private: bool = False) -> Requester:
    """Whose history a request joins, as a Telegram chat scopes it: a DM's is the user's own,
    a channel's that channel's. An answer only its asker sees joins the asker's own history,
    never the channel's. Access lists and the chat rate limit count the whole server."""
    user = interaction.user
    own = f"dm:{user.id}"
    if interaction.guild is None:
        return Requester(PLATFORM, own, "private", str(user.id), user.display_name)
    return Requester(PLATFORM, own if private else str(interaction.channel_id), "guild",
                     str(user.id), user.display_name, group_id=str(interaction.guild.id))


def _media_kind(attachment: discord.Attachment) -> str | None:
    """"photo", "video" or None (anything else), from Discord's media type, else the name."""
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    if kind in VIDEO_TYPES or (not kind and attachment.filename.lower().endswith(VIDEO_SUFFIXES)):
        return "video"
    return "photo" if kind.startswith("image/") else None


def _safe_name(filename: str) -> str:
    """A file name fit to show beside our words: only harmless characters, at most 40."""
    name = " ".join(UNSAFE_NAME_CHARS.sub("-", filename).split()) or "unnamed"
    return name if len(name) <= LABEL_CHARS else name[:LABEL_CHARS - 1] + "…"


def _said(refusal: Refusal | None) -> str | None:
    return None if refusal is None else refusal.text


def _missing_permissions(interaction: discord.Interaction) -> str | None:
    if interaction.guild is None:
        return None
    permissions = interaction.app_permissions
    if not permissions.embed_links:
        return "Embed Links"
    if not permissions.attach_files:
        return "Attach Files"
    return None


async def _tell(interaction: discord.Interaction, text: str) -> None:
    """A command's answer that only the asker sees, links not unfurled."""
    await interaction.response.send_message(text[:MESSAGE_LIMIT], ephemeral=True,
                                            suppress_embeds=True)


async def _refuse(interaction: discord.Interaction, text: str) -> None:
    """Refusals are ephemeral: only the person who asked sees them."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not send a refusal: %s", exc)


def _is_discord_media(url: str) -> bool:
    """Discord's media hosts, or the host its API is reached through (a proxy, a test double)."""
    parts = urlsplit(url)
    api = urlsplit(discord.http.Route.BASE)
    if api.hostname != "discord.com" and (parts.scheme, parts.netloc) == (api.scheme, api.netloc):
        return True
    host = parts.hostname or ""
    return parts.scheme == "https" and (host in DISCORD_MEDIA_HOSTS
                                        or host.endswith(DISCORD_MEDIA_SUFFIX))


async def _read(source: discord.Attachment | str, limit: int, what: str) -> bytes:
    """An attachment, or a link preview's proxied picture, downloaded within `limit` bytes
    whatever size it claimed; every failure is a MediaRefused the asker can read."""
    url = source.url if isinstance(source, discord.Attachment) else source
    try:
        return await _download(url, limit, what)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise MediaRefused(f"I couldn't download that {what} ({exc}). Try again.") from exc


async def _download(url: str, limit: int, what: str) -> bytes:
    """From Discord's media hosts only: streamed, capped, timed out."""
    if not _is_discord_media(url):
        raise MediaRefused("I only fetch pictures through Discord's media proxy.")
    too_large = MediaRefused(f"That {what} is over the {limit / 1e6:.0f} MB limit. Send a"
                             " smaller or compressed copy.")
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
    async with (aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, allow_redirects=False) as response):
        if response.status != 200:
            raise MediaRefused(f"Discord's media server answered HTTP {response.status} for"
                               f" that {what}. Try again, or attach it anew.")
        if response.content_length is not None and response.content_length > limit:
            raise too_large
        data = bytearray()
        async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK):
            data += chunk
            if len(data) > limit:
                raise too_large
    return bytes(data)


def _embed(summary: AnswerSummary, *, cached: bool = False, tally: Tally | None = None
           ) -> discord.Embed:
    if summary.located:
        embed = discord.Embed(title=f"📍 {summary.coordinates}", colour=EMBED_COLOUR_LOCATED,
                              url=summary.osm_url, description=summary.dms)
        embed.add_field(name="Confidence", value=summary.confidence)
        embed.add_field(name="Uncertainty", value=summary.radius or "-")
        if summary.place:
            embed.add_field(name="Near", value=summary.place)
        embed.add_field(name="Maps", value=f"[OpenStreetMap]({summary.osm_url}) ·"
                                           f" [Google Maps]({summary.google_url})", inline=False)
    else:
        embed = discord.Embed(title="❔ No confident match", colour=EMBED_COLOUR_NO_MATCH,
                              description=summary.advice)
        embed.add_field(name="Best confidence", value=summary.confidence)
    if summary.reference:
        value = summary.reference
        if summary.reference_url:
            value = f"[{value}]({summary.reference_url})"
        embed.add_field(name="Best reference", value=value, inline=False)
    if summary.exif:
        embed.add_field(name="EXIF", value=summary.exif, inline=False)
    if summary.area:
        embed.add_field(name="Search area", value=summary.area, inline=False)
    details_at = len(embed.fields)
    if tally is not None and (tally.confirm or tally.dispute):
        embed.add_field(name="✅ Confirmed by", value=", ".join(tally.confirm) or "-")
        embed.add_field(name="❌ Disputed by", value=", ".join(tally.dispute) or "-")
    footer = [f"Imagery: {summary.attribution}"] if summary.attribution else []
    if cached:
        footer.append("answered from the cache")
    if footer:
        embed.set_footer(text=" · ".join(footer))
    _insert_details(embed, summary, details_at)
    return embed


def _insert_details(embed: discord.Embed, summary: AnswerSummary, at: int) -> None:
    """An album's line per photo (a video's per frame) as one field, added last so that it
    gets what Discord's limits leave: whole lines, and how many did not fit."""
    name = "Frames" if summary.kind == "video" else "Photos"
    room = min(EMBED_FIELD_CHARS, EMBED_TOTAL_CHARS - len(embed) - len(name))
    value = _whole_lines(summary.details, room)
    if value and len(embed.fields) < EMBED_FIELDS:
        embed.insert_field_at(at, name=name, value=value, inline=False)


def _whole_lines(lines: Sequence[str], limit: int) -> str:
    """As many whole lines as fit in `limit` characters, then "…and N more"; "" if none fit."""
    for keep in range(len(lines), 0, -1):
        more = len(lines) - keep
        text = "\n".join([*lines[:keep], *([f"…and {more} more"] if more else [])])
        if len(text) <= limit:
            return text
    return ""


class DiscordAdapter:
    """The Discord side's lifecycle: log in, connect, and a clean close."""

    def __init__(self, config: DiscordConfig, service: BotService) -> None:
        self._config = config
        self.client = GeoSleuthClient(config, service)
        self._task = None

    async def start(self, interrupted: list) -> None:
        if self._config.api_base:
            discord.http.Route.BASE = self._config.api_base.rstrip("/")
        if self._config.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self._config.gateway_url)
        api = self._config.api_base or discord.http.Route.BASE
        try:
            await self.client.login(self._config.token)
        except discord.LoginFailure:
            raise StartupFailed("Discord refused the bot token: check GEOSLEUTH_DISCORD_TOKEN"
                                " (or discord.token)") from None
        except (aiohttp.ClientError, OSError, discord.HTTPException) as exc:
            raise StartupFailed(f"cannot reach Discord at {api}: {exc}") from None
        self._task = asyncio.create_task(self.client.connect(), name="discord-gateway")
        ready = asyncio.create_task(self.client.wait_until_ready())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            raise StartupFailed("the Discord gateway closed during start-up:"
                                f" {why_it_ended(self._task)}")
        log.info("discord bot %s started", self.client.user)
        for record in interrupted:
            if record.platform == PLATFORM:
                await self._tell_interrupted(record.user_id)
        await self.client.service.covers.resume(PLATFORM, CoverMessages(self.client))

    async def _tell_interrupted(self, user_id: str) -> None:
        try:
            user = await self.client.fetch_user(int(user_id))
            await user.send("Sorry - your photo from earlier was interrupted by a restart."
                            " Please use /locate again.")
        except discord.HTTPException as exc:
            log.warning("could not tell a user about an interrupted request: %s", exc)

    @property
    def connection(self) -> asyncio.Task | None:
        """The gateway connection; it ends only when stopped, or when it failed for good."""
        return self._task

    async def stop(self) -> None:
        await self.client.close()
        if self._task is not None:
            # Its failure, if any, was reported where it was noticed (start-up or the runner).
            with contextlib.suppress(Exception):
                await self._task

