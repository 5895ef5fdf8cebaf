"""A fake Discord (REST + gateway websocket) on 127.0.0.1, so tests drive the real discord.py.

It answers with the shapes discord.py 2.7.1 parses, enforces the limits and interaction rules
bots trip over (3 s to acknowledge, one acknowledgement, 2000-char content, embed and component
limits, missing Attach Files / Embed Links), records every REST call, and injects gateway
events such as slash commands, context menus and button presses. Everything runs on the
test's event loop; call the injection helpers from that loop.

    async with FakeDiscord() as fake:
        guild = fake.add_guild(GUILD, "OSINT", channels=[text_channel(CHAN, "general")],
                               members=[member(ALICE, "alice")])
        with fake.patch_discord():
            await client.login(fake.token)
            task = asyncio.create_task(client.connect())
            await fake.wait_ready()
            interaction = fake.slash_command("locate", GUILD, CHAN, alice,
                                             attachment=(jpeg, "street.jpg", "image/jpeg"))
            await fake.wait_for("PATCH /webhooks/.*/@original")
            fake.original_response(interaction)["embeds"]
            await client.close()

RESUME (op 6) replays the events after the client's sequence number, then RESUMED; an unknown
session gets op 9 (not resumable). Gateway payloads are JSON only; zlib-stream compression is
honoured when asked for, zstd-stream is answered with plain text frames (which the client reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import itertools
import json
import mimetypes
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.polling import wait_for_calls

JSON = dict[str, Any]

API_PREFIX = "/api/v10"
DEFAULT_TOKEN = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.fake.discord-test-token"
BOT_ID = 1100000000000000001  # the application id equals the bot user's id, as on Discord
OWNER_ID = 1100000000000000002
BOT_NAME = "GeoSleuth"
HEARTBEAT_INTERVAL_MS = 41_250
INTERACTION_DEADLINE_S = 3.0
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
DISCORD_EPOCH_MS = 1_420_070_400_000

MAX_CONTENT_CHARS = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL_CHARS = 6000
MAX_ACTION_ROWS = 5
MAX_ROW_COMPONENTS = 5
MAX_CUSTOM_ID_CHARS = 100
MAX_BUTTON_LABEL_CHARS = 80

# Interaction and callback types (Discord's numbers).
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE = 1, 4, 5
DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT, MODAL = 6, 7, 8, 9

# Message flags.
SUPPRESS_EMBEDS, EPHEMERAL, LOADING, IS_COMPONENTS_V2 = 1 << 2, 1 << 6, 1 << 7, 1 << 15

# Gateway intents the Developer Portal must switch on.
INTENT_GUILD_MEMBERS, INTENT_GUILD_PRESENCES, INTENT_MESSAGE_CONTENT = 1 << 1, 1 << 8, 1 << 15


class Permission:
    """Permission bits used by the fake and by tests that set `app_permissions`."""

    ADMINISTRATOR = 1 << 3
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    USE_EXTERNAL_EMOJIS = 1 << 18
    USE_APPLICATION_COMMANDS = 1 << 31
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ALL = (1 << 51) - 1


DEFAULT_BOT_PERMISSIONS = (
    Permission.ADD_REACTIONS | Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS | Permission.ATTACH_FILES | Permission.READ_MESSAGE_HISTORY
    | Permission.USE_EXTERNAL_EMOJIS | Permission.USE_APPLICATION_COMMANDS
    | Permission.SEND_MESSAGES_IN_THREADS
)
EVERYONE_PERMISSIONS = (
    Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES | Permission.READ_MESSAGE_HISTORY
    | Permission.EMBED_LINKS | Permission.ATTACH_FILES | Permission.ADD_REACTIONS
    | Permission.USE_APPLICATION_COMMANDS
)


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Call:
    """One REST request as the fake understood it (multipart `payload_json` decoded)."""

    method: str
    path: str  # below /api/v10, e.g. "/interactions/123/tok/callback"
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: dict[str, bytes] = field(default_factory=dict)  # form field ("files[0]") -> bytes
    file_names: dict[str, str] = field(default_factory=dict)  # form field -> filename
    status: int = 200
    response: Any = None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def file(self, filename: str) -> bytes:
        """The uploaded bytes of the file called `filename`."""
        for key, name in self.file_names.items():
            if name == filename:
                return self.files[key]
        raise KeyError(f"no file {filename!r} in {self.brief()}; have {self.file_names}")

    def brief(self) -> str:
        """One line for failure messages."""
        shown = []
        if isinstance(self.json, dict):
            for key in ("type", "content", "flags"):
                if key in self.json:
                    value = self.json[key]
                    if isinstance(value, str) and len(value) > 40:
                        value = value[:37] + "..."
                    shown.append(f"{key}={value!r}")
            data = self.json.get("data")
            if isinstance(data, dict) and "flags" in data:
                shown.append(f"data.flags={data['flags']}")
            for key in ("embeds", "components"):
                if self.json.get(key):
                    shown.append(f"{len(self.json[key])} {key}")
        shown.extend(f"<{self.file_names.get(k, k)}: {len(v)} B>" for k, v in self.files.items())
        return f"{self.method} {self.path} {' '.join(shown)} -> {self.status}".replace("  ", " ")


class DiscordError(Exception):
    """An error answer in Discord's shape: HTTP status, JSON code and message."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> JSON:
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def _invalid_form(errors: JSON) -> DiscordError:
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def _field_error(code: str, message: str) -> JSON:
    return {"_errors": [{"code": code, "message": message}]}


UNKNOWN_INTERACTION = (404, 10062, "Unknown interaction")
ALREADY_ACKNOWLEDGED = (400, 40060, "Interaction has already been acknowledged.")
UNKNOWN_MESSAGE = (404, 10008, "Unknown Message")
UNKNOWN_WEBHOOK = (404, 10015, "Unknown Webhook")
UNKNOWN_CHANNEL = (404, 10003, "Unknown Channel")
MISSING_PERMISSIONS = (403, 50013, "Missing Permissions")


@dataclass
class InteractionRecord:
    """What the fake knows about one injected interaction and the answers to it."""

    payload: JSON
    created_at: float
    channel_id: int
    callback_type: int | None = None
    original_id: int | None = None  # the message @original refers to
    followup_ids: list[int] = field(default_factory=list)
    modal: JSON | None = None
    choices: list[JSON] | None = None

    @property
    def id(self) -> int:
        return int(self.payload["id"])

    @property
    def token(self) -> str:
        return str(self.payload["token"])

    @property
    def app_permissions(self) -> int:
        return int(self.payload["app_permissions"])


@dataclass(eq=False)  # identity semantics: kept in sets and compared by `is`
class _Session:
    session_id: str
    shard: tuple[int, int]
    intents: int
    seq: int = 0
    history: list[JSON] = field(default_factory=list)
    connection: _Connection | None = None


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    zlib_stream: bool
    queue: asyncio.Queue[tuple[JSON, asyncio.Event | None]] = field(
        default_factory=asyncio.Queue)
    compressor: Any = field(default_factory=zlib.compressobj)
    session: _Session | None = None


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    json: Any
    files: dict[str, bytes]
    file_names: dict[str, str]

    def body(self) -> JSON:
        return self.json if isinstance(self.json, dict) else {}

    def uploads(self) -> list[tuple[int, str, bytes]]:
        """(index, filename, bytes) of `files[n]` parts, in index order."""
        found = []
        for key, data in self.files.items():
            match = re.fullmatch(r"files\[(\d+)\]", key) or re.fullmatch(r"file(\d*)", key)
            index = int(match.group(1) or 0) if match else len(found)
            found.append((index, self.file_names.get(key, key), data))
        return sorted(found)


# ----------------------------------------------------------------------------- factories


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def user(user_id: int, name: str, *, bot: bool = False, global_name: str | None = None) -> JSON:
    """A Discord user object (new username system: discriminator "0")."""
    return {
        "id": str(user_id), "username": name, "discriminator": "0",
        "global_name": global_name if global_name is not None else name, "avatar": None,
        "bot": bot, "public_flags": 0, "flags": 0, "banner": None, "accent_color": None,
        "avatar_decoration_data": None, "primary_guild": None, "collectibles": None,
    }


def member(user_id: int, name: str, roles: Iterable[int] = (), *, nick: str | None = None,
           bot: bool = False) -> JSON:
    """A guild member (with the `flags` discord.py requires)."""
    return {
        "user": user(user_id, name, bot=bot), "nick": nick, "avatar": None, "banner": None,
        "roles": [str(role_id) for role_id in roles], "joined_at": _now_iso(),
        "premium_since": None, "deaf": False, "mute": False, "flags": 0, "pending": False,
        "communication_disabled_until": None,
    }


def role(role_id: int, name: str, permissions: int = 0, *, position: int = 1) -> JSON:
    """A guild role; `permissions` is a bitfield (see Permission)."""
    return {
        "id": str(role_id), "name": name, "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False, "icon": None, "unicode_emoji": None, "position": position,
        "permissions": str(permissions), "managed": False, "mentionable": False, "flags": 0,
    }


def text_channel(channel_id: int, name: str, *, position: int = 0,
                 parent_id: int | None = None, nsfw: bool = False) -> JSON:
    """A guild text channel (guild_id is filled in by add_guild)."""
    return {
        "id": str(channel_id), "type": 0, "name": name, "position": position, "flags": 0,
        "permission_overwrites": [], "parent_id": str(parent_id) if parent_id else None,
        "nsfw": nsfw, "topic": None, "rate_limit_per_user": 0, "last_message_id": None,
    }


def dm_channel(channel_id: int, recipient: JSON) -> JSON:
    """The DM channel between the bot and `recipient` (a user or member)."""
    person = recipient.get("user", recipient)
    return {"id": str(channel_id), "type": 1, "recipients": [copy.deepcopy(person)],
            "last_message_id": None, "flags": 0}


def _probe_image(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an image, or None; Pillow is optional for the fake."""
    try:
        from PIL import Image
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # not an image or no Pillow: Discord then omits width/height too
        return None


def _content_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _id(value: int | str | JSON) -> int:
    return int(value["id"]) if isinstance(value, dict) else int(value)


# ----------------------------------------------------------------------------- the server


class FakeDiscord:
    """Discord's REST API and gateway on loopback: `async with FakeDiscord() as fake:`."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, bot_id: int = BOT_ID,
                 bot_name: str = BOT_NAME, interaction_deadline_s: float = INTERACTION_DEADLINE_S,
                 allowed_intents: int | None = None, echo_messages: bool = True,
                 heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS) -> None:
        self.token = token
        self.bot_id = bot_id
        self.application_id = bot_id
        self.bot_user = user(bot_id, bot_name, bot=True)
        self.interaction_deadline_s = interaction_deadline_s
        self.allowed_intents = allowed_intents  # None: every privileged intent is switched on
        self.echo_messages = echo_messages  # dispatch MESSAGE_CREATE for messages posted
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.port = 0
        self.calls: list[Call] = []
        self.unknown: list[Call] = []
        self.gateway_received: list[JSON] = []  # client->server frames, heartbeats included
        self.gateway_connects: list[dict[str, str]] = []  # query of each connection (v, compress)
        self.identifies = 0
        self.resumes = 0
        self.commands: dict[int | None, list[JSON]] = {}  # guild id (None: global) -> commands
        self.interactions: dict[int, InteractionRecord] = {}
        self.reactions: list[tuple[int, int, str]] = []  # (channel, message, emoji)
        self._guilds: dict[int, JSON] = {}
        self._channels: dict[int, JSON] = {}
        self._channel_guild: dict[int, int | None] = {}
        self._users: dict[int, JSON] = {bot_id: self.bot_user}
        self._messages: dict[int, JSON] = {}
        self._blobs: dict[str, tuple[bytes, str]] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._ready = asyncio.Event()
        self._last_snowflake = 0
        self._command_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._routes: list[tuple[str, re.Pattern[str],
                                 Callable[[_Request, re.Match[str]], Awaitable[Any]]]] = []
        for method, pattern, handler in (
            ("GET", r"/users/@me", self._get_me),
            ("GET", r"/users/(\d+)", self._get_user),
            ("POST", r"/users/@me/channels", self._create_dm),
            ("GET", r"/oauth2/applications/@me", self._get_application),
            ("GET", r"/applications/@me", self._get_application),
            ("GET", r"/gateway", self._get_gateway),
            ("GET", r"/gateway/bot", self._get_gateway_bot),
            ("PUT", r"/applications/(\d+)/commands", self._put_commands),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._put_commands),
            ("GET", r"/applications/(\d+)/commands", self._get_commands),
            ("GET", r"/applications/(\d+)/guilds/(\d+)/commands", self._get_commands),
            ("POST", r"/applications/(\d+)/commands", self._post_command),
            ("POST", r"/applications/(\d+)/guilds/(\d+)/commands", self._post_command),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._followup),
            ("GET", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._get_webhook_msg),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)",
             self._edit_webhook_msg),
            ("DELETE", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)",
             self._delete_webhook_msg),
            ("GET", r"/channels/(\d+)", self._get_channel),
            ("POST", r"/channels/(\d+)/messages", self._post_channel_message),
            ("GET", r"/channels/(\d+)/messages", self._get_history),
            ("GET", r"/channels/(\d+)/messages/(\d+)", self._get_channel_message),
            ("PATCH", r"/channels/(\d+)/messages/(\d+)", self._edit_channel_message),
            ("DELETE", r"/channels/(\d+)/messages/(\d+)", self._delete_channel_message),
            ("POST", r"/channels/(\d+)/typing", self._no_content),
            ("PUT", r"/channels/(\d+)/messages/(\d+)/reactions/([^/]+)/@me", self._react),
            ("DELETE", r"/channels/(\d+)/messages/(\d+)/reactions/([^/]+)/@me", self._unreact),
            ("GET", r"/guilds/(\d+)", self._get_guild),
            ("GET", r"/guilds/(\d+)/channels", self._get_guild_channels),
            ("GET", r"/guilds/(\d+)/members/(\d+)", self._get_member),
        ):
            self._routes.append((method, re.compile(pattern), handler))

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._handle_rest)
        app.router.add_route("GET", "/gateway", self._handle_gateway)
        app.router.add_route("GET", "/attachments/{tail:.+}", self._handle_download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """Stop serving; close the client first, or it reconnects and logs the failure."""
        for connection in list(self._connections):
            await connection.ws.close(code=1001, message=b"fake shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway here; restore them afterwards."""
        import discord.gateway
        import discord.http
        import yarl

        route_cls = discord.http.Route
        ws_cls = discord.gateway.DiscordWebSocket
        # Route.BASE is read when a Route is built, so in-flight requests keep the old base.
        old_base, old_gateway = route_cls.BASE, ws_cls.DEFAULT_GATEWAY
        route_cls.BASE = self.url + API_PREFIX
        ws_cls.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            route_cls.BASE, ws_cls.DEFAULT_GATEWAY = old_base, old_gateway

    # -- building the world ------------------------------------------------------------------

    def add_guild(self, guild_id: int, name: str, channels: Iterable[JSON] = (),
                  members: Iterable[JSON] = (), roles: Iterable[JSON] = (), *,
                  owner_id: int | None = None,
                  bot_permissions: int = DEFAULT_BOT_PERMISSIONS) -> JSON:
        """A guild the bot is in; sent as GUILD_CREATE on IDENTIFY (or at once if live)."""
        everyone = role(guild_id, "@everyone", EVERYONE_PERMISSIONS, position=0)
        bot_role = role(self._snowflake(), self.bot_user["username"], bot_permissions)
        bot_role["managed"] = True
        bot_role["tags"] = {"bot_id": str(self.bot_id)}
        all_roles = [everyone, bot_role, *copy.deepcopy(list(roles))]
        people = copy.deepcopy(list(members))
        bot_member = member(self.bot_id, self.bot_user["username"], [int(bot_role["id"])],
                            bot=True)
        bot_member["user"] = copy.deepcopy(self.bot_user)
        people.append(bot_member)
        for person in people:
            self._users[int(person["user"]["id"])] = person["user"]
        owner = owner_id if owner_id is not None else (
            int(people[0]["user"]["id"]) if len(people) > 1 else OWNER_ID)
        guild: JSON = {
            "id": str(guild_id), "name": name, "icon": None, "splash": None,
            "discovery_splash": None, "banner": None, "description": None,
            "owner_id": str(owner), "region": None, "afk_channel_id": None, "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0,
            "premium_subscription_count": 0, "premium_progress_bar_enabled": False,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "public_updates_channel_id": None, "safety_alerts_channel_id": None,
            "vanity_url_code": None, "preferred_locale": "en-US", "features": [],
            "max_members": 500_000, "max_video_channel_users": 25, "application_id": None,
            "joined_at": _now_iso(), "large": False, "unavailable": False, "lazy": True,
            "member_count": len(people), "roles": all_roles, "emojis": [], "stickers": [],
            "channels": [], "threads": [], "members": people, "presences": [],
            "voice_states": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [], "incidents_data": None,
        }
        self._guilds[guild_id] = guild
        for channel in channels:
            self._add_channel(channel, guild_id)
        session = self._session_for(guild_id)
        if session is not None:
            self._dispatch_to(session, "GUILD_CREATE",
                              self._guild_create(guild_id, session.intents))
        return copy.deepcopy(guild)

    def add_channel(self, channel: JSON, guild_id: int | None = None) -> JSON:
        """Another channel (a DM when guild_id is None)."""
        stored = self._add_channel(channel, guild_id)
        if guild_id is not None and self._session_for(guild_id) is not None:
            self.dispatch("CHANNEL_CREATE", copy.deepcopy(stored), guild_id=guild_id)
        return copy.deepcopy(stored)

    def _add_channel(self, channel: JSON, guild_id: int | None) -> JSON:
        stored = copy.deepcopy(channel)
        channel_id = int(stored["id"])
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
            self._guilds[guild_id]["channels"].append(stored)
        else:
            for person in stored.get("recipients", []):
                self._users[int(person["id"])] = person
        self._channels[channel_id] = stored
        self._channel_guild[channel_id] = guild_id
        return stored

    def add_attachment(self, data: bytes, filename: str, content_type: str | None = None, *,
                       channel_id: int = 0, attachment_id: int | None = None) -> JSON:
        """Serve `data` from the fake; returns the attachment object pointing there."""
        att_id = attachment_id or self._snowflake()
        path = f"/attachments/{channel_id}/{att_id}/{filename}"
        kind = content_type or _content_type(filename)
        self._blobs[path] = (bytes(data), kind)
        # Signed-URL parameters like the real CDN's, so bots that parse URLs meet them.
        expiry = format(int(time.time()) + 86_400, "x")
        url = f"{self.url}{path}?ex={expiry}&is={format(int(time.time()), 'x')}&hm={att_id:x}&"
        attachment: JSON = {
            "id": str(att_id), "filename": filename, "size": len(data), "url": url,
            "proxy_url": url,
            "content_type": kind,
        }
        size = _probe_image(data) if kind.startswith("image/") else None
        if size is not None:
            attachment["width"], attachment["height"] = size
        return attachment

    def post_message(self, channel: int | JSON, author: JSON, content: str = "", *,
                     attachments: Iterable[tuple[bytes, str, str | None]] = (),
                     embeds: Iterable[JSON] = (), dispatch: bool = True) -> JSON:
        """A message from a person (the target of a context menu); MESSAGE_CREATE if live.

        `embeds` are link previews as Discord stores them (type, url, image with url and
        proxy_url), given as the client would see them.
        """
        channel_id = _id(channel)
        person = author.get("user", author)
        message_id = self._snowflake()
        stored = self._new_message(channel_id, copy.deepcopy(person), message_id)
        stored["content"] = content
        stored["attachments"] = [
            self.add_attachment(data, name, kind, channel_id=channel_id)
            for data, name, kind in attachments
        ]
        stored["embeds"] = copy.deepcopy(list(embeds))
        guild_id = self._channel_guild.get(channel_id)
        if guild_id is not None and "user" in author:
            stored["member"] = {k: v for k, v in copy.deepcopy(author).items() if k != "user"}
        self._messages[message_id] = stored
        if dispatch:
            self._echo(stored)
        return copy.deepcopy(stored)

    # -- injecting interactions --------------------------------------------------------------

    def slash_command(self, name: str, guild: int | JSON | None, channel: int | JSON,
                      member: JSON, options: Mapping[str, Any] | None = None, *,
                      attachment: tuple[bytes, str, str | None] | None = None,
                      attachment_option: str | None = None,
                      app_permissions: int | None = None, locale: str = "en-US") -> JSON:
        """A CHAT_INPUT interaction; "group sub" in `name` nests subcommands.

        Option types come from the synced command where known, else from the Python value:
        a member/user dict is a USER option, a channel dict CHANNEL, an attachment dict
        (from add_attachment) ATTACHMENT; `attachment` fills the command's attachment option.
        """
        root, *subs = name.split()
        guild_id = None if guild is None else _id(guild)
        command = self._synced(root, guild_id, 1)
        spec = command.get("options", []) if command else []
        for sub in subs:
            spec = next((o.get("options", []) for o in spec if o["name"] == sub), [])
        values = dict(options or {})
        channel_id = _id(channel)
        if attachment is not None:
            option = attachment_option or next(
                (o["name"] for o in spec if o.get("type") == 11), "image")
            values[option] = self.add_attachment(*attachment, channel_id=channel_id)
        resolved: JSON = {}
        built = [self._option(key, value, spec, resolved, guild_id)
                 for key, value in values.items()]
        for depth, sub in reversed(list(enumerate(subs))):
            built = [{"name": sub, "type": 1 if depth == len(subs) - 1 else 2,
                      "options": built}]
        data: JSON = {"id": str(command["id"]) if command else str(self._snowflake()),
                      "name": root, "type": 1, "options": built}
        if resolved:
            data["resolved"] = resolved
        return self._inject_command(data, command, guild_id, channel, member,
                                    app_permissions, locale)

    def message_command(self, name: str, guild: int | JSON | None, channel: int | JSON,
                        member: JSON, target_message: JSON, *,
                        app_permissions: int | None = None, locale: str = "en-US") -> JSON:
        """A message context-menu interaction (type 3 command) on `target_message`."""
        guild_id = None if guild is None else _id(guild)
        command = self._synced(name, guild_id, 3)
        target = copy.deepcopy(self._messages.get(int(target_message["id"]), target_message))
        data: JSON = {"id": str(command["id"]) if command else str(self._snowflake()),
                      "name": name, "type": 3, "target_id": target["id"],
                      "resolved": {"messages": {target["id"]: target}}}
        return self._inject_command(data, command, guild_id, channel, member,
                                    app_permissions, locale)

    def user_command(self, name: str, guild: int | JSON | None, channel: int | JSON,
                     member: JSON, target: JSON, *, app_permissions: int | None = None,
                     locale: str = "en-US") -> JSON:
        """A user context-menu interaction (type 2 command) on `target` (member or user)."""
        guild_id = None if guild is None else _id(guild)
        command = self._synced(name, guild_id, 2)
        resolved: JSON = {}
        target_id = self._resolve_user(target, resolved, guild_id)
        data: JSON = {"id": str(command["id"]) if command else str(self._snowflake()),
                      "name": name, "type": 2, "target_id": target_id, "resolved": resolved}
        return self._inject_command(data, command, guild_id, channel, member,
                                    app_permissions, locale)

    def press_button(self, custom_id: str, guild: int | JSON | None, channel: int | JSON,
                     member: JSON, message: JSON, *, app_permissions: int | None = None,
                     locale: str = "en-US") -> JSON:
        """A MESSAGE_COMPONENT interaction: `member` pressed the button `custom_id`."""
        return self._inject_component({"custom_id": custom_id, "component_type": 2},
                                      guild, channel, member, message, app_permissions, locale)

    def choose(self, custom_id: str, values: Iterable[str], guild: int | JSON | None,
               channel: int | JSON, member: JSON, message: JSON, *,
               app_permissions: int | None = None, locale: str = "en-US") -> JSON:
        """A MESSAGE_COMPONENT interaction: `member` picked `values` in a string select."""
        data = {"custom_id": custom_id, "component_type": 3, "values": list(values)}
        return self._inject_component(data, guild, channel, member, message,
                                      app_permissions, locale)

    def inject_interaction(self, payload: JSON) -> JSON:
        """Dispatch a hand-built INTERACTION_CREATE (id/token/defaults are added if missing)."""
        guild_id = int(payload["guild_id"]) if payload.get("guild_id") else None
        channel_id = int(payload.get("channel_id") or payload["channel"]["id"])
        full = self._interaction_base(payload.get("type", APPLICATION_COMMAND), guild_id,
                                      channel_id, payload.get("member") or payload["user"],
                                      None, payload.get("locale", "en-US"))
        full.update(copy.deepcopy(payload))
        return self._register(full, channel_id, guild_id)

    def dispatch(self, event: str, data: JSON, *, guild_id: int | None = None) -> None:
        """Send any gateway event to the client's session for that guild (shard 0 for DMs)."""
        session = self._session_for(guild_id)
        if session is None:
            raise RuntimeError(f"no gateway session to send {event}: await fake.wait_ready()")
        self._dispatch_to(session, event, copy.deepcopy(data))

    async def close_gateway(self, code: int) -> None:
        """Close every live gateway connection with `code` (4004: authentication failed,
        which a client must not retry)."""
        for connection in list(self._connections):
            await connection.ws.close(code=code, message=b"closed by the fake")

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT to every live connection (the client then RESUMEs)."""
        for connection in self._connections:
            connection.queue.put_nowait(({"op": 7, "d": None}, None))

    # -- inspecting what the bot did ---------------------------------------------------------

    def calls_to(self, method: str, path_regex: str = ".*") -> list[Call]:
        """Calls with this method whose path matches `path_regex` (re.search)."""
        pattern = re.compile(path_regex)
        return [call for call in self.calls
                if call.method == method.upper() and pattern.search(call.path)]

    async def wait_for(self, what: str | Callable[[Call], bool], count: int = 1,
                       timeout: float = 10.0) -> list[Call]:
        """Calls matching `what` once there are `count`; TimeoutError says what was seen.

        A string is "METHOD path_regex" (or just a regex) searched in "METHOD /path".
        """
        if isinstance(what, str):
            pattern = re.compile(what)
            label = what

            def matches(call: Call) -> bool:
                return pattern.search(f"{call.method} {call.path}") is not None
        else:
            matches = what
            label = getattr(what, "__name__", "predicate")
        return await wait_for_calls(self.calls, matches, count, timeout, label, self.summary)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Until a client has IDENTIFYed and got READY and every GUILD_CREATE.

        The client's own on_ready fires `guild_ready_timeout` (default 2 s) later; pass
        `guild_ready_timeout=0.1` to the client to keep tests fast.
        """
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no client got READY within {timeout:g} s.\n"
                               f"{self.summary()}") from None

    def summary(self, last: int = 30) -> str:
        """What happened so far, for failure messages."""
        lines = [f"{len(self.calls)} REST call(s), {len(self.gateway_received)} gateway frame(s) "
                 f"received, {self.identifies} IDENTIFY, {len(self.interactions)} interaction(s)"]
        if len(self.calls) > last:
            lines.append(f"  ... {len(self.calls) - last} earlier call(s)")
        lines.extend(f"  {call.brief()}" for call in self.calls[-last:])
        if self.unknown:
            lines.append("unknown endpoints: " + ", ".join(
                f"{c.method} {c.path}" for c in self.unknown))
        return "\n".join(lines)

    def interaction(self, interaction: JSON | int | str) -> InteractionRecord:
        """The record of an injected interaction (by payload, id or token)."""
        if isinstance(interaction, dict):
            return self.interactions[int(interaction["id"])]
        if isinstance(interaction, str) and interaction in self._by_token:
            return self._by_token[interaction]
        return self.interactions[int(interaction)]

    def original_response(self, interaction: JSON | int | str) -> JSON | None:
        """The current state of the interaction's first answer, or None if none (yet)."""
        record = self.interaction(interaction)
        if record.original_id is None or record.original_id not in self._messages:
            return None
        return copy.deepcopy(self._messages[record.original_id])

    def followups(self, interaction: JSON | int | str) -> list[JSON]:
        """Live follow-up messages of an interaction, oldest first."""
        record = self.interaction(interaction)
        return [copy.deepcopy(self._messages[mid]) for mid in record.followup_ids
                if mid in self._messages]

    def sent_messages(self, channel_id: int) -> list[JSON]:
        """Live messages the bot posted in a channel (interaction answers included), in order."""
        return [copy.deepcopy(m) for mid, m in sorted(self._messages.items())
                if int(m["channel_id"]) == channel_id
                and int(m["author"]["id"]) in (self.bot_id, self.application_id)]

    def message(self, message_id: int) -> JSON | None:
        """Any stored message's current state (None when unknown or deleted)."""
        stored = self._messages.get(message_id)
        return copy.deepcopy(stored)

    def attachment_bytes(self, attachment: JSON) -> bytes:
        """The bytes behind an attachment object the fake produced."""
        path = re.sub(r"^https?://[^/]+", "", attachment["url"]).split("?")[0]
        return self._blobs[path][0]

    # -- REST plumbing -----------------------------------------------------------------------

    async def _handle_rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        try:
            payload, files, names = await self._read_body(request)
        except ValueError as error:
            return self._reply(request, path, None, {}, {}, DiscordError(
                400, 50109, f"The request body contains invalid JSON. ({error})"))
        req = _Request(request.method, path, dict(request.query), request.headers,
                       payload, files, names)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None or method != request.method:
                continue
            if not self._authorized(req, handler):
                return self._reply(request, path, payload, files, names,
                                   DiscordError(401, 0, "401: Unauthorized"))
            try:
                result = await handler(req, match)
            except DiscordError as error:
                return self._reply(request, path, payload, files, names, error)
            return self._reply(request, path, payload, files, names, result)
        error = DiscordError(404, 0, "404: Not Found")
        response = self._reply(request, path, payload, files, names, error)
        self.unknown.append(self.calls[-1])
        return response

    def _authorized(self, req: _Request, handler: Callable[..., Any]) -> bool:
        # Interaction callbacks and webhook routes authenticate by their token in the path.
        if handler in (self._callback, self._followup, self._get_webhook_msg,
                       self._edit_webhook_msg, self._delete_webhook_msg):
            return True
        return req.headers.get("Authorization") == f"Bot {self.token}"

    def _reply(self, request: web.Request, path: str, payload: Any, files: dict[str, bytes],
               names: dict[str, str], result: Any) -> web.Response:
        if isinstance(result, DiscordError):
            status, body = result.status, result.body()
        elif result is None:
            status, body = 204, None
        else:
            status, body = 200, result
        self.calls.append(Call(request.method, path, dict(request.query), payload, files,
                               names, status, copy.deepcopy(body)))
        if body is None:
            return web.Response(status=status)
        # Exactly "application/json": discord.py treats "; charset=utf-8" as text.
        return web.Response(status=status, body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, dict[str, bytes], dict[str, str]]:
        files: dict[str, bytes] = {}
        names: dict[str, str] = {}
        if not request.can_read_body:
            return None, files, names
        if request.content_type == "application/json":
            text = await request.text()
            return (json.loads(text) if text.strip() else None), files, names
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            reader = await request.multipart()
            async for part in reader:
                if part is None or not hasattr(part, "read"):
                    continue
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":
                    payload = json.loads(bytes(data).decode())
                elif part.filename is not None:  # type: ignore[union-attr]
                    files[part.name or f"files[{len(files)}]"] = bytes(data)
                    names[part.name or f"files[{len(names)}]"] = part.filename  # type: ignore[union-attr]
            return payload, files, names
        return (await request.read()).decode(errors="replace"), files, names

    async def _handle_download(self, request: web.Request) -> web.Response:
        path = "/attachments/" + request.match_info["tail"]
        blob = self._blobs.get(path)
        status = 200 if blob is not None else 404
        self.calls.append(Call("GET", path, dict(request.query), status=status))
        if blob is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=blob[0], headers={"Content-Type": blob[1]})

    # -- REST: identity, gateway discovery, commands ------------------------------------------

    async def _get_me(self, req: _Request, m: re.Match[str]) -> JSON:
        return {**copy.deepcopy(self.bot_user), "verified": True, "mfa_enabled": False,
                "email": None, "locale": "en-US", "premium_type": 0}

    async def _get_user(self, req: _Request, m: re.Match[str]) -> JSON:
        found = self._users.get(int(m.group(1)))
        if found is None:
            raise DiscordError(404, 10013, "Unknown User")
        return copy.deepcopy(found)

    async def _get_application(self, req: _Request, m: re.Match[str]) -> JSON:
        return {
            "id": str(self.application_id), "name": self.bot_user["username"], "icon": None,
            "description": "", "summary": "", "type": None, "hook": True,
            "bot_public": True, "bot_require_code_grant": False, "verify_key": "0" * 64,
            "owner": user(OWNER_ID, "owner"), "team": None, "flags": 1 << 19 | 1 << 23,
            "bot": copy.deepcopy(self.bot_user), "interactions_endpoint_url": None,
            "rpc_origins": [], "redirect_uris": [], "tags": [],
            "approximate_guild_count": len(self._guilds), "integration_types_config": {},
        }

    async def _get_gateway(self, req: _Request, m: re.Match[str]) -> JSON:
        return {"url": self.gateway_url}

    async def _get_gateway_bot(self, req: _Request, m: re.Match[str]) -> JSON:
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}

    def _check_app(self, app_id: str) -> None:
        if int(app_id) != self.application_id:
            raise DiscordError(403, 50001, "Missing Access")

    async def _put_commands(self, req: _Request, m: re.Match[str]) -> list[JSON]:
        self._check_app(m.group(1))
        guild_id = int(m.group(2)) if m.lastindex and m.lastindex >= 2 else None
        if not isinstance(req.json, list):
            raise _invalid_form({"_errors": [{"code": "BASE_TYPE_ARRAY", "message":
                                              "Must be an array."}]})
        known = {(c["name"], c["type"]): c for c in self.commands.get(guild_id, [])}
        self.commands[guild_id] = [
            self._stored_command(spec, guild_id, known.get((spec["name"], spec.get("type", 1))))
            for spec in req.json
        ]
        return copy.deepcopy(self.commands[guild_id])

    async def _post_command(self, req: _Request, m: re.Match[str]) -> JSON:
        self._check_app(m.group(1))
        guild_id = int(m.group(2)) if m.lastindex and m.lastindex >= 2 else None
        spec = req.body()
        commands = self.commands.setdefault(guild_id, [])
        old = next((c for c in commands if c["name"] == spec.get("name")
                    and c["type"] == spec.get("type", 1)), None)
        stored = self._stored_command(spec, guild_id, old)
        commands[:] = [c for c in commands if c is not old] + [stored]
        return copy.deepcopy(stored)

    async def _get_commands(self, req: _Request, m: re.Match[str]) -> list[JSON]:
        self._check_app(m.group(1))
        guild_id = int(m.group(2)) if m.lastindex and m.lastindex >= 2 else None
        return copy.deepcopy(self.commands.get(guild_id, []))

    def _stored_command(self, spec: JSON, guild_id: int | None, old: JSON | None) -> JSON:
        command_type = spec.get("type", 1)
        stored: JSON = {
            "id": old["id"] if old else str(self._snowflake()),
            "application_id": str(self.application_id),
            "version": str(self._snowflake()), "default_member_permissions": None,
            "type": command_type, "nsfw": False, "contexts": None, "integration_types": [0],
            **copy.deepcopy(spec),
        }
        stored["description"] = spec.get("description", "") if command_type == 1 else ""
        stored.setdefault("options", [])
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        return stored

    def _synced(self, name: str, guild_id: int | None, command_type: int) -> JSON | None:
        for scope in ((guild_id, None) if guild_id is not None else (None,)):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command["type"] == command_type:
                    return command
        return None

    # -- REST: interactions ------------------------------------------------------------------

    async def _callback(self, req: _Request, m: re.Match[str]) -> JSON | None:
        record = self.interactions.get(int(m.group(1)))
        if record is None or record.token != m.group(2):
            raise DiscordError(*UNKNOWN_INTERACTION)
        if time.monotonic() - record.created_at > self.interaction_deadline_s:
            raise DiscordError(*UNKNOWN_INTERACTION)
        if record.callback_type is not None:
            raise DiscordError(*ALREADY_ACKNOWLEDGED)
        body = req.body()
        kind = body.get("type")
        data = body.get("data") or {}
        itype = record.payload["type"]
        allowed = {PING: {PONG}, APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE,
                                                       MODAL},
                   MESSAGE_COMPONENT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE,
                                       DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE, MODAL},
                   AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
                   MODAL_SUBMIT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE,
                                  DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE}}
        if kind not in allowed.get(itype, set()):
            raise _invalid_form({"type": _field_error(
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Callback type {kind} is not valid for interaction type {itype}.")})
        message: JSON | None = None
        if kind == CHANNEL_MESSAGE:
            message = self._create_message(record.channel_id, data, req, record=record,
                                           flags_allowed=EPHEMERAL | SUPPRESS_EMBEDS | (1 << 12)
                                           | IS_COMPONENTS_V2)
            record.original_id = int(message["id"])
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            message = self._new_message(record.channel_id, self._interaction_author(),
                                        self._snowflake(), record=record)
            message["flags"] = LOADING | (int(data.get("flags", 0)) & EPHEMERAL)
            self._messages[int(message["id"])] = message
            record.original_id = int(message["id"])
        elif kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            target = int(record.payload["message"]["id"])
            record.original_id = target
            if kind == UPDATE_MESSAGE:
                message = self._edit_message(target, data, req, record=record)
        elif kind == MODAL:
            record.modal = copy.deepcopy(data)
        elif kind == AUTOCOMPLETE_RESULT:
            record.choices = copy.deepcopy(data.get("choices", []))
        record.callback_type = kind
        if message is not None and not message["flags"] & EPHEMERAL and kind != UPDATE_MESSAGE:
            self._echo(message)
        if req.query.get("with_response", "false").lower() not in ("1", "true"):
            return None
        stored = self._messages.get(record.original_id or 0)
        answer: JSON = {"interaction": {
            "id": str(record.id), "type": itype,
            "response_message_id": str(record.original_id) if record.original_id else None,
            "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE,
            "response_message_ephemeral": bool(stored and stored["flags"] & EPHEMERAL),
        }}
        if kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE):
            answer["resource"] = {"type": kind, "message": copy.deepcopy(stored)}
        elif kind == DEFERRED_UPDATE_MESSAGE:
            answer["resource"] = {"type": kind}
        return answer

    def _webhook_record(self, app_id: str, token: str) -> InteractionRecord:
        record = self._by_token.get(token)
        if record is None or int(app_id) != self.application_id:
            raise DiscordError(*UNKNOWN_WEBHOOK)
        return record

    def _webhook_message_id(self, record: InteractionRecord, which: str) -> int:
        if which == "@original":
            if record.original_id is None:
                raise DiscordError(*UNKNOWN_MESSAGE)
            return record.original_id
        message_id = int(which)
        if message_id != record.original_id and message_id not in record.followup_ids:
            raise DiscordError(*UNKNOWN_MESSAGE)
        return message_id

    async def _followup(self, req: _Request, m: re.Match[str]) -> JSON | None:
        record = self._webhook_record(m.group(1), m.group(2))
        if record.callback_type is None:
            raise DiscordError(*UNKNOWN_WEBHOOK)  # a follow-up needs an acknowledged interaction
        original = self._messages.get(record.original_id or 0)
        if original is not None and original["flags"] & LOADING:
            # Discord: the first follow-up after a deferral replaces the "thinking" message,
            # keeping the deferral's ephemerality.
            data = {k: v for k, v in req.body().items() if k != "flags"}
            message = self._edit_message(int(original["id"]), data, req, record=record)
        else:
            message = self._create_message(record.channel_id, req.body(), req, record=record,
                                           flags_allowed=EPHEMERAL | SUPPRESS_EMBEDS
                                           | (1 << 12) | IS_COMPONENTS_V2)
            record.followup_ids.append(int(message["id"]))
            if not message["flags"] & EPHEMERAL:
                self._echo(message)
        wait = req.query.get("wait", "false").lower() in ("1", "true")
        return message if wait else None

    async def _get_webhook_msg(self, req: _Request, m: re.Match[str]) -> JSON:
        record = self._webhook_record(m.group(1), m.group(2))
        message_id = self._webhook_message_id(record, m.group(3))
        if message_id not in self._messages:
            raise DiscordError(*UNKNOWN_MESSAGE)
        return copy.deepcopy(self._messages[message_id])

    async def _edit_webhook_msg(self, req: _Request, m: re.Match[str]) -> JSON:
        record = self._webhook_record(m.group(1), m.group(2))
        message_id = self._webhook_message_id(record, m.group(3))
        return self._edit_message(message_id, req.body(), req, record=record)

    async def _delete_webhook_msg(self, req: _Request, m: re.Match[str]) -> None:
        record = self._webhook_record(m.group(1), m.group(2))
        message_id = self._webhook_message_id(record, m.group(3))
        if self._messages.pop(message_id, None) is None:
            raise DiscordError(*UNKNOWN_MESSAGE)
        return None

    # -- REST: channels, messages, guilds ------------------------------------------------------

    def _channel(self, channel_id: int) -> JSON:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise DiscordError(*UNKNOWN_CHANNEL)
        return channel

    async def _get_channel(self, req: _Request, m: re.Match[str]) -> JSON:
        return copy.deepcopy(self._channel(int(m.group(1))))

    async def _create_dm(self, req: _Request, m: re.Match[str]) -> JSON:
        recipient = int(req.body().get("recipient_id", 0))
        for channel in self._channels.values():
            if channel["type"] == 1 and int(channel["recipients"][0]["id"]) == recipient:
                return copy.deepcopy(channel)
        person = self._users.get(recipient)
        if person is None:
            raise DiscordError(400, 50007, "Cannot send messages to this user")
        return copy.deepcopy(self._add_channel(dm_channel(self._snowflake(), person), None))

    async def _post_channel_message(self, req: _Request, m: re.Match[str]) -> JSON:
        channel_id = int(m.group(1))
        self._channel(channel_id)
        message = self._create_message(channel_id, req.body(), req,
                                       flags_allowed=SUPPRESS_EMBEDS | (1 << 12)
                                       | IS_COMPONENTS_V2)
        self._echo(message)
        return message

    async def _get_history(self, req: _Request, m: re.Match[str]) -> list[JSON]:
        channel_id = int(m.group(1))
        self._channel(channel_id)
        limit = int(req.query.get("limit", 50))
        found = [copy.deepcopy(msg) for _, msg in sorted(self._messages.items(), reverse=True)
                 if int(msg["channel_id"]) == channel_id and not msg["flags"] & EPHEMERAL]
        return found[:limit]

    def _channel_message(self, m: re.Match[str]) -> JSON:
        message = self._messages.get(int(m.group(2)))
        if message is None or int(message["channel_id"]) != int(m.group(1)):
            raise DiscordError(*UNKNOWN_MESSAGE)
        return message

    async def _get_channel_message(self, req: _Request, m: re.Match[str]) -> JSON:
        return copy.deepcopy(self._channel_message(m))

    async def _edit_channel_message(self, req: _Request, m: re.Match[str]) -> JSON:
        message = self._channel_message(m)
        if int(message["author"]["id"]) != self.bot_id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        return self._edit_message(int(message["id"]), req.body(), req)

    async def _delete_channel_message(self, req: _Request, m: re.Match[str]) -> None:
        message = self._channel_message(m)
        del self._messages[int(message["id"])]
        return None

    async def _no_content(self, req: _Request, m: re.Match[str]) -> None:
        self._channel(int(m.group(1)))
        return None

    async def _react(self, req: _Request, m: re.Match[str]) -> None:
        self._channel_message(m)
        self.reactions.append((int(m.group(1)), int(m.group(2)), m.group(3)))
        return None

    async def _unreact(self, req: _Request, m: re.Match[str]) -> None:
        self._channel_message(m)
        key = (int(m.group(1)), int(m.group(2)), m.group(3))
        if key in self.reactions:
            self.reactions.remove(key)
        return None

    def _guild(self, guild_id: int) -> JSON:
        guild = self._guilds.get(guild_id)
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        return guild

    async def _get_guild(self, req: _Request, m: re.Match[str]) -> JSON:
        guild = self._guild(int(m.group(1)))
        return {k: copy.deepcopy(v) for k, v in guild.items()
                if k not in ("channels", "members", "threads", "presences", "voice_states")}

    async def _get_guild_channels(self, req: _Request, m: re.Match[str]) -> list[JSON]:
        return copy.deepcopy(self._guild(int(m.group(1)))["channels"])

    async def _get_member(self, req: _Request, m: re.Match[str]) -> JSON:
        guild = self._guild(int(m.group(1)))
        for person in guild["members"]:
            if person["user"]["id"] == m.group(2):
                return copy.deepcopy(person)
        raise DiscordError(404, 10007, "Unknown Member")

    # -- messages ----------------------------------------------------------------------------

    def _interaction_author(self) -> JSON:
        return copy.deepcopy(self.bot_user)

    def _new_message(self, channel_id: int, author: JSON, message_id: int, *,
                     record: InteractionRecord | None = None) -> JSON:
        message: JSON = {
            "id": str(message_id), "type": 0, "channel_id": str(channel_id), "author": author,
            "content": "", "timestamp": _now_iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [],
            "mention_channels": [], "attachments": [], "embeds": [], "reactions": [],
            "pinned": False, "flags": 0, "components": [],
        }
        guild_id = self._channel_guild.get(channel_id)
        if guild_id is not None:
            message["guild_id"] = str(guild_id)
        if record is not None:
            payload = record.payload
            data = payload.get("data", {})
            message["webhook_id"] = str(self.application_id)
            message["application_id"] = str(self.application_id)
            if payload["type"] == APPLICATION_COMMAND:
                message["type"] = 20 if data.get("type", 1) == 1 else 23
            person = (payload.get("member") or {}).get("user") or payload.get("user")
            message["interaction_metadata"] = {
                "id": payload["id"], "type": payload["type"], "user": copy.deepcopy(person),
                "authorizing_integration_owners": copy.deepcopy(
                    payload.get("authorizing_integration_owners", {})),
            }
            if payload["type"] == MESSAGE_COMPONENT:
                message["interaction_metadata"]["interacted_message_id"] = (
                    payload["message"]["id"])
        return message

    def _create_message(self, channel_id: int, data: JSON, req: _Request, *,
                        flags_allowed: int, record: InteractionRecord | None = None) -> JSON:
        uploads = req.uploads()
        self._validate(data, uploads, record)
        if not (data.get("content") or data.get("embeds") or uploads or data.get("components")
                or data.get("sticker_ids") or data.get("poll")):
            raise DiscordError(400, 50006, "Cannot send an empty message")
        message = self._new_message(channel_id, self._interaction_author(), self._snowflake(),
                                    record=record)
        message["content"] = data.get("content") or ""
        message["flags"] = int(data.get("flags") or 0) & flags_allowed
        message["tts"] = bool(data.get("tts", False))
        message["attachments"] = self._attachments(channel_id, [], data, uploads)
        message["embeds"] = self._embeds(data.get("embeds") or [], message["attachments"])
        message["components"] = copy.deepcopy(data.get("components") or [])
        reference = data.get("message_reference")
        if reference and record is None:
            referenced = self._messages.get(int(reference["message_id"]))
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise _invalid_form({"message_reference": _field_error(
                    "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")})
            message["type"] = 19
            message["message_reference"] = {"type": 0, "message_id": reference["message_id"],
                                            "channel_id": str(channel_id)}
            if referenced is not None:
                message["referenced_message"] = copy.deepcopy(referenced)
        self._messages[int(message["id"])] = message
        return copy.deepcopy(message)

    def _edit_message(self, message_id: int, data: JSON, req: _Request, *,
                      record: InteractionRecord | None = None) -> JSON:
        message = self._messages.get(message_id)
        if message is None:
            raise DiscordError(*UNKNOWN_MESSAGE)
        uploads = req.uploads()
        self._validate(data, uploads, record)
        was_loading = bool(message["flags"] & LOADING)
        if "content" in data:
            message["content"] = data["content"] or ""
        if "attachments" in data or uploads:
            message["attachments"] = self._attachments(
                int(message["channel_id"]), message["attachments"], data, uploads)
        if "embeds" in data:
            message["embeds"] = self._embeds(data["embeds"] or [], message["attachments"])
        if "components" in data:
            message["components"] = copy.deepcopy(data["components"] or [])
        if data.get("flags") is not None:
            keep = message["flags"] & ~(SUPPRESS_EMBEDS | IS_COMPONENTS_V2)
            message["flags"] = keep | (int(data["flags"]) & (SUPPRESS_EMBEDS | IS_COMPONENTS_V2))
        message["flags"] &= ~LOADING
        if not was_loading:
            message["edited_timestamp"] = _now_iso()
        return copy.deepcopy(message)

    def _attachments(self, channel_id: int, existing: list[JSON], data: JSON,
                     uploads: list[tuple[int, str, bytes]]) -> list[JSON]:
        """Discord's rule: `attachments` lists what stays (old ids) and names uploads (index)."""
        by_index = {index: (name, blob) for index, name, blob in uploads}
        old = {a["id"]: a for a in existing}
        result: list[JSON] = []
        if "attachments" in data and data["attachments"] is not None:
            for item in data["attachments"]:
                key = str(item.get("id"))
                if key in old:
                    result.append(old[key])
                    continue
                index = int(item["id"])
                if index not in by_index:
                    raise _invalid_form({"attachments": _field_error(
                        "ATTACHMENT_NOT_FOUND", f"Attachment {index} was not uploaded.")})
                name, blob = by_index.pop(index)
                attachment = self.add_attachment(blob, item.get("filename") or name,
                                                 channel_id=channel_id)
                if item.get("description"):
                    attachment["description"] = item["description"]
                result.append(attachment)
        else:
            result = list(existing)
        result.extend(self.add_attachment(blob, name, channel_id=channel_id)
                      for name, blob in by_index.values())
        return result

    @staticmethod
    def _embeds(embeds: list[JSON], attachments: list[JSON]) -> list[JSON]:
        """Embeds as Discord stores them: type "rich", attachment:// images resolved."""
        by_name = {a["filename"]: a for a in attachments}
        stored = []
        for embed in embeds:
            item = copy.deepcopy(embed)
            item.setdefault("type", "rich")
            for key in ("image", "thumbnail"):
                media = item.get(key)
                if isinstance(media, dict) and str(media.get("url", "")).startswith(
                        "attachment://"):
                    found = by_name.get(media["url"].removeprefix("attachment://"))
                    if found is not None:
                        media.update(url=found["url"], proxy_url=found["proxy_url"])
                        if "width" in found:
                            media.update(width=found["width"], height=found["height"])
            stored.append(item)
        return stored

    def _validate(self, data: JSON, uploads: list[tuple[int, str, bytes]],
                  record: InteractionRecord | None) -> None:
        errors: JSON = {}
        content = data.get("content")
        if isinstance(content, str) and len(content) > MAX_CONTENT_CHARS:
            errors["content"] = _field_error(
                "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT_CHARS} or fewer in length.")
        embeds = data.get("embeds") or []
        if len(embeds) > MAX_EMBEDS:
            errors["embeds"] = _field_error(
                "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
        total = 0
        for index, embed in enumerate(embeds):
            found, chars = self._embed_errors(embed)
            total += chars
            if found:
                errors.setdefault("embeds", {})[str(index)] = found
        if total > MAX_EMBED_TOTAL_CHARS:
            errors.setdefault("embeds", {}).update(_field_error(
                "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of "
                f"{MAX_EMBED_TOTAL_CHARS}"))
        if not int(data.get("flags") or 0) & IS_COMPONENTS_V2:
            found_components = self._component_errors(data.get("components") or [])
            if found_components:
                errors["components"] = found_components
        if errors:
            raise _invalid_form(errors)
        limit = int(record.payload["attachment_size_limit"]) if record else ATTACHMENT_SIZE_LIMIT
        if any(len(blob) > limit for _, _, blob in uploads):
            raise DiscordError(413, 40005, "Request entity too large")
        if record is not None:
            # Stricter than Discord on purpose: a test should see a bot ignore app_permissions.
            if uploads and not self._has(record, Permission.ATTACH_FILES):
                raise DiscordError(*MISSING_PERMISSIONS)
            if embeds and not self._has(record, Permission.EMBED_LINKS):
                raise DiscordError(*MISSING_PERMISSIONS)

    @staticmethod
    def _has(record: InteractionRecord, bit: int) -> bool:
        permissions = record.app_permissions
        return bool(permissions & Permission.ADMINISTRATOR or permissions & bit)

    @staticmethod
    def _embed_errors(embed: JSON) -> tuple[JSON, int]:
        errors: JSON = {}
        chars = 0

        def check(where: JSON, key: str, limit: int, name: str, required: bool = False) -> None:
            nonlocal chars
            value = where.get(key)
            if value is None or value == "":
                if required:
                    where_errors[name] = _field_error("BASE_TYPE_REQUIRED",
                                                      "This field is required")
                return
            chars += len(str(value))
            if len(str(value)) > limit:
                where_errors[name] = _field_error("BASE_TYPE_MAX_LENGTH",
                                                  f"Must be {limit} or fewer in length.")

        where_errors = errors
        check(embed, "title", 256, "title")
        check(embed, "description", 4096, "description")
        check(embed.get("footer") or {}, "text", 2048, "footer")
        check(embed.get("author") or {}, "name", 256, "author")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors["fields"] = _field_error("BASE_TYPE_MAX_LENGTH",
                                            "Must be 25 or fewer in length.")
        for index, item in enumerate(fields):
            where_errors = {}
            check(item, "name", 256, "name", required=True)
            check(item, "value", 1024, "value", required=True)
            if where_errors:
                errors.setdefault("fields", {})[str(index)] = where_errors
        return errors, chars

    @staticmethod
    def _component_errors(rows: list[JSON]) -> JSON:
        errors: JSON = {}
        if len(rows) > MAX_ACTION_ROWS:
            return _field_error("BASE_TYPE_MAX_LENGTH",
                                f"Must be {MAX_ACTION_ROWS} or fewer in length.")
        seen: set[str] = set()
        for r, row in enumerate(rows):
            children = row.get("components") or []
            if row.get("type") != 1 or not 1 <= len(children) <= MAX_ROW_COMPONENTS:
                errors[str(r)] = {"components": _field_error(
                    "BASE_TYPE_BAD_LENGTH",
                    f"Must be between 1 and {MAX_ROW_COMPONENTS} in length.")}
                continue
            for c, child in enumerate(children):
                problem = None
                custom_id = child.get("custom_id")
                if child.get("type") == 2 and child.get("style") == 5:
                    if not child.get("url") or custom_id:
                        problem = ("BUTTON_COMPONENT_URL_REQUIRED", "A link button needs a url "
                                   "and no custom_id.")
                elif child.get("type") == 2 and child.get("style") == 6:
                    pass  # premium buttons carry a sku_id instead
                elif not custom_id:
                    problem = ("BUTTON_COMPONENT_CUSTOM_ID_REQUIRED", "A custom id is required")
                if custom_id and len(custom_id) > MAX_CUSTOM_ID_CHARS:
                    problem = ("BASE_TYPE_MAX_LENGTH",
                               f"Must be {MAX_CUSTOM_ID_CHARS} or fewer in length.")
                elif custom_id in seen:
                    problem = ("COMPONENT_CUSTOM_ID_DUPLICATED",
                               "Component custom id cannot be duplicated")
                label = child.get("label")
                if label and len(label) > MAX_BUTTON_LABEL_CHARS:
                    problem = ("BASE_TYPE_MAX_LENGTH",
                               f"Must be {MAX_BUTTON_LABEL_CHARS} or fewer in length.")
                if custom_id:
                    seen.add(custom_id)
                if problem:
                    errors.setdefault(str(r), {}).setdefault("components", {})[str(c)] = (
                        _field_error(*problem))
        return errors

    def _echo(self, message: JSON) -> None:
        """MESSAGE_CREATE for a new message, like Discord, when a session is live."""
        if not self.echo_messages:
            return
        channel_id = int(message["channel_id"])
        guild_id = self._channel_guild.get(channel_id)
        session = self._session_for(guild_id)
        if session is None:
            return
        event = copy.deepcopy(message)
        author_id = int(event["author"]["id"])
        is_dm = guild_id is None
        mentioned = any(int(u["id"]) == self.bot_id for u in event.get("mentions", []))
        if (not session.intents & INTENT_MESSAGE_CONTENT and author_id != self.bot_id
                and not is_dm and not mentioned):
            # Without the Message Content intent Discord blanks what other people wrote.
            event.update(content="", embeds=[], attachments=[], components=[])
        self._dispatch_to(session, "MESSAGE_CREATE", event)

    # -- interactions ------------------------------------------------------------------------

    def _option(self, key: str, value: Any, spec: list[JSON], resolved: JSON,
                guild_id: int | None) -> JSON:
        declared = next((o.get("type") for o in spec if o["name"] == key), None)
        if isinstance(value, dict) and "filename" in value:
            resolved.setdefault("attachments", {})[value["id"]] = copy.deepcopy(value)
            return {"name": key, "type": 11, "value": value["id"]}
        if isinstance(value, dict) and ("user" in value or "username" in value):
            return {"name": key, "type": 6,
                    "value": self._resolve_user(value, resolved, guild_id)}
        if isinstance(value, dict) and "permissions" in value and "hoist" in value:
            resolved.setdefault("roles", {})[value["id"]] = copy.deepcopy(value)
            return {"name": key, "type": 8, "value": value["id"]}
        if isinstance(value, dict) and "type" in value:
            channel = {k: v for k, v in value.items() if k in (
                "id", "type", "name", "parent_id", "flags", "guild_id")}
            channel["permissions"] = str(Permission.ALL)
            resolved.setdefault("channels", {})[value["id"]] = channel
            return {"name": key, "type": 7, "value": value["id"]}
        if isinstance(value, bool):
            kind = 5
        elif isinstance(value, int):
            kind = declared if declared in (4, 10) else 4
        elif isinstance(value, float):
            kind = 10
        else:
            kind = declared or 3
            if kind == 3:
                value = str(value)
        return {"name": key, "type": kind, "value": value}

    def _resolve_user(self, target: JSON, resolved: JSON, guild_id: int | None) -> str:
        person = target.get("user", target)
        resolved.setdefault("users", {})[person["id"]] = copy.deepcopy(person)
        if "user" in target and guild_id is not None:
            partial = {k: copy.deepcopy(v) for k, v in target.items() if k != "user"}
            partial["permissions"] = str(self._member_permissions(guild_id, target))
            resolved.setdefault("members", {})[person["id"]] = partial
        return str(person["id"])

    def _inject_command(self, data: JSON, command: JSON | None, guild_id: int | None,
                        channel: int | JSON, member: JSON, app_permissions: int | None,
                        locale: str) -> JSON:
        if command is not None and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]  # tells the tree which guild copy to run
        channel_id = _id(channel)
        payload = self._interaction_base(APPLICATION_COMMAND, guild_id, channel_id, member,
                                         app_permissions, locale)
        payload["data"] = data
        return self._register(payload, channel_id, guild_id)

    def _inject_component(self, data: JSON, guild: int | JSON | None, channel: int | JSON,
                          member: JSON, message: JSON, app_permissions: int | None,
                          locale: str) -> JSON:
        guild_id = None if guild is None else _id(guild)
        channel_id = _id(channel)
        payload = self._interaction_base(MESSAGE_COMPONENT, guild_id, channel_id, member,
                                         app_permissions, locale)
        payload["data"] = data
        payload["message"] = copy.deepcopy(self._messages.get(int(message["id"]), message))
        return self._register(payload, channel_id, guild_id)

    def _interaction_base(self, kind: int, guild_id: int | None, channel_id: int,
                          member: JSON, app_permissions: int | None, locale: str) -> JSON:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise ValueError(f"unknown channel {channel_id}: add it with add_guild/add_channel")
        if app_permissions is None:
            app_permissions = (self._bot_permissions(guild_id) if guild_id is not None
                               else DEFAULT_BOT_PERMISSIONS)
        partial_channel = {k: copy.deepcopy(v) for k, v in channel.items()}
        partial_channel["permissions"] = str(app_permissions)
        payload: JSON = {
            "id": str(self._snowflake()), "application_id": str(self.application_id),
            "type": kind, "token": "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48),
            "version": 1, "channel_id": str(channel_id), "channel": partial_channel,
            "app_permissions": str(app_permissions), "locale": locale, "entitlements": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if guild_id is not None:
            if "user" not in member:
                raise ValueError("in a guild the actor must be a member(...), not a user(...)")
            payload["guild_id"] = str(guild_id)
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["member"] = copy.deepcopy(member)
            payload["member"]["permissions"] = str(self._member_permissions(guild_id, member))
            payload["authorizing_integration_owners"] = {"0": str(guild_id)}
            payload["context"] = 0
        else:
            payload["user"] = copy.deepcopy(member.get("user", member))
            payload["authorizing_integration_owners"] = {"0": str(OWNER_ID)}
            payload["context"] = 1
        return payload

    def _register(self, payload: JSON, channel_id: int, guild_id: int | None) -> JSON:
        record = InteractionRecord(payload=copy.deepcopy(payload), created_at=time.monotonic(),
                                   channel_id=channel_id)
        self.interactions[record.id] = record
        self._by_token[record.token] = record
        self.dispatch("INTERACTION_CREATE", payload, guild_id=guild_id)
        return copy.deepcopy(payload)

    def _bot_permissions(self, guild_id: int) -> int:
        guild = self._guild(guild_id)
        bot_member = next(p for p in guild["members"] if int(p["user"]["id"]) == self.bot_id)
        return self._member_permissions(guild_id, bot_member)

    def _member_permissions(self, guild_id: int, person: JSON) -> int:
        guild = self._guild(guild_id)
        if guild["owner_id"] == person["user"]["id"]:
            return Permission.ALL
        wanted = {str(guild_id), *person.get("roles", [])}
        bits = 0
        for item in guild["roles"]:
            if item["id"] in wanted:
                bits |= int(item["permissions"])
        return Permission.ALL if bits & Permission.ADMINISTRATOR else bits

    # -- gateway -----------------------------------------------------------------------------

    async def _handle_gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.gateway_connects.append(dict(request.query))
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=4002, message=b"Only JSON encoding is supported by the fake")
            return ws
        connection = _Connection(ws, zlib_stream=request.query.get("compress") == "zlib-stream")
        self._connections.add(connection)
        writer = asyncio.create_task(self._write_loop(connection))
        connection.queue.put_nowait(({"op": 10, "s": None, "t": None, "d": {
            "heartbeat_interval": self.heartbeat_interval_ms,
            "_trace": ['["gateway-fake",{"micros":0}]']}}, None))
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                self.gateway_received.append(message)
                await self._on_frame(connection, message)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._connections.discard(connection)
            if connection.session is not None and connection.session.connection is connection:
                connection.session.connection = None
        return ws

    async def _write_loop(self, connection: _Connection) -> None:
        while True:
            frame, done = await connection.queue.get()
            if frame.get("op") == -1:  # a marker, not a frame: everything before it is sent
                if done is not None:
                    done.set()
                continue
            text = json.dumps(frame)
            try:
                if connection.zlib_stream:
                    packed = connection.compressor.compress(text.encode())
                    packed += connection.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await connection.ws.send_bytes(packed)
                else:
                    await connection.ws.send_str(text)
            except ConnectionError:
                return
            if frame.get("op") == 7:
                await connection.ws.close(code=4000, message=b"reconnect requested")
            if done is not None:
                done.set()

    async def _on_frame(self, connection: _Connection, message: JSON) -> None:
        op = message.get("op")
        data = message.get("d")
        if op == 1:
            connection.queue.put_nowait(({"op": 11, "s": None, "t": None, "d": None}, None))
        elif op == 2:
            await self._identify(connection, data or {})
        elif op == 6:
            self._resume(connection, data or {})
        elif op == 8:
            self._request_members(connection, data or {})
        elif op in (3, 4):
            pass  # presence and voice updates are recorded in gateway_received only
        else:
            await connection.ws.close(code=4001, message=b"Unknown opcode")

    async def _identify(self, connection: _Connection, data: JSON) -> None:
        self.identifies += 1
        if data.get("token") != self.token:
            await connection.ws.close(code=4004, message=b"Authentication failed.")
            return
        if "intents" not in data:
            await connection.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        intents = int(data["intents"])
        privileged = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT
        if self.allowed_intents is not None and intents & privileged & ~self.allowed_intents:
            await connection.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard_id, shard_count = data.get("shard") or (0, 1)
        session = _Session(secrets.token_hex(16), (int(shard_id), int(shard_count)), intents)
        session.connection = connection
        connection.session = session
        self._sessions[session.session_id] = session
        mine = [gid for gid in self._guilds if (gid >> 22) % session.shard[1] == session.shard[0]]
        self._dispatch_to(session, "READY", {
            "v": 10, "user": {**copy.deepcopy(self.bot_user), "verified": True,
                              "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(gid), "unavailable": True} for gid in mine],
            "session_id": session.session_id, "session_type": "normal",
            "resume_gateway_url": self.gateway_url, "shard": list(session.shard),
            "application": {"id": str(self.application_id), "flags": 1 << 19 | 1 << 23},
            "private_channels": [], "relationships": [], "presences": [],
            "user_settings": {}, "guild_join_requests": [], "geo_ordered_rtc_regions": [],
            "auth_session_id_hash": "", "_trace": ['["gateway-fake",{"micros":0}]'],
        })
        for gid in mine:
            self._dispatch_to(session, "GUILD_CREATE", self._guild_create(gid, session.intents))
        connection.queue.put_nowait(({"op": -1}, self._ready))  # marks "all sent"

    def _resume(self, connection: _Connection, data: JSON) -> None:
        self.resumes += 1
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.token:
            connection.queue.put_nowait(({"op": 9, "s": None, "t": None, "d": False}, None))
            return
        session.connection = connection
        connection.session = session
        after = int(data.get("seq") or 0)
        for frame in session.history:
            if frame["s"] > after:
                connection.queue.put_nowait((frame, None))
        self._dispatch_to(session, "RESUMED", {"_trace": ['["gateway-fake",{"micros":0}]']})

    def _request_members(self, connection: _Connection, data: JSON) -> None:
        session = connection.session
        guild = self._guilds.get(int(data.get("guild_id", 0)))
        if session is None or guild is None:
            return
        wanted = {str(u) for u in data.get("user_ids") or []}
        query = str(data.get("query") or "").lower()
        limit = int(data.get("limit") or 0) or len(guild["members"])
        found = [p for p in guild["members"]
                 if (not wanted or p["user"]["id"] in wanted)
                 and p["user"]["username"].lower().startswith(query)][:limit]
        event: JSON = {"guild_id": guild["id"], "members": copy.deepcopy(found),
                       "chunk_index": 0, "chunk_count": 1, "not_found": []}
        if data.get("nonce") is not None:
            event["nonce"] = data["nonce"]
        self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", event)

    def _guild_create(self, guild_id: int, intents: int) -> JSON:
        guild = copy.deepcopy(self._guilds[guild_id])
        guild["member_count"] = len(guild["members"])
        if not intents & INTENT_GUILD_MEMBERS:
            # Like Discord: without the members intent only the bot itself is sent.
            guild["members"] = [p for p in guild["members"]
                                if int(p["user"]["id"]) == self.bot_id]
        return guild

    def _session_for(self, guild_id: int | None) -> _Session | None:
        """The newest session whose shard carries this guild (shard 0 for DMs)."""
        for session in reversed(list(self._sessions.values())):
            shard_id, count = session.shard
            wanted = 0 if guild_id is None else (guild_id >> 22) % count
            if shard_id == wanted:
                return session
        return None

    def _dispatch_to(self, session: _Session, event: str, data: JSON) -> None:
        session.seq += 1
        frame = {"op": 0, "s": session.seq, "t": event, "d": data}
        session.history.append(frame)
        if session.connection is not None:
            session.connection.queue.put_nowait((frame, None))

    def _snowflake(self) -> int:
        """Fresh ids that sort by creation time, like Discord's."""
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_snowflake = max(now, self._last_snowflake + 1)
        return self._last_snowflake
