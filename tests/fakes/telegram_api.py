"""A fake Telegram Bot API server on 127.0.0.1, so tests drive the real python-telegram-bot.

It answers like api.telegram.org: the same envelopes, object shapes and error texts for the
mistakes bots commonly make (unknown chat, edit that changes nothing, callback data over
64 bytes, HTML that does not parse). It records every call and lets a test inject updates.
Everything runs on the test's event loop; call the injection helpers from that loop.

    async with FakeTelegram() as tg:
        app = (ApplicationBuilder().token("123:TEST")
               .base_url(tg.base_url).base_file_url(tg.base_file_url).build())
        ...
        tg.send_photo(private_chat(alice), alice, jpeg)
        [call] = await tg.wait_for("sendPhoto")
"""

from __future__ import annotations

import asyncio
import copy
import html
import io
import itertools
import json
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image, ImageOps

from tests.fakes.polling import wait_for_calls

JSON = dict[str, Any]

BOT_USERNAME = "geosleuth_test_bot"
BOT_FIRST_NAME = "GeoSleuth Test"
DEFAULT_TOKEN = "123:TEST"

MAX_TEXT_CHARS = 4096
MAX_CAPTION_CHARS = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # the cloud Bot API refuses getFile above this
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
PHOTO_SIDES = (90, 320, 800, 1280)  # Telegram's thumbnail ladder (s, m, x, y)

CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
})
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
HTML_TAGS = frozenset({
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "code", "pre", "blockquote", "tg-emoji", "tg-time",
})
MARKDOWN_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
BUTTON_ACTIONS = (
    "callback_data", "url", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)
MEDIA_KEYS = ("photo", "document", "video", "animation", "audio", "voice")

# Free text and opaque ids stay strings, so a caption "42" is not decoded into an int.
_STRING_FIELDS = frozenset({
    "text", "caption", "parse_mode", "callback_query_id", "inline_message_id", "url",
    "file_id", "action", "title", "description", "short_description", "name", "query",
    "secret_token", "ip_address", "emoji", "language_code", "business_connection_id",
    "message_effect_id", "first_name", "last_name", "phone_number", "vcard", "address",
    "foursquare_id", "foursquare_type", "google_place_id", "google_place_type", "question",
    "explanation", "custom_title", "performer", "file_name", "photo", "document", "video",
    "animation", "audio", "voice", "video_note", "sticker", "thumbnail", "certificate",
    "custom_emoji_id", "data", "command",
})
_TOKEN_RE = re.compile(r"^\d+:[\w-]+$")
_ENTITY_RE = re.compile(
    r"(?P<bot_command>(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?)"
    r"|(?P<url>https?://\S+)"
    r"|(?P<mention>(?<![\w@])@[A-Za-z0-9_]{5,32})"
    r"|(?P<hashtag>(?<![\w#])#\w+)"
)
_FILE_ID_PREFIX = {
    "photos": "AgACAgIAAxkBAAI", "documents": "BQACAgIAAxkBAAI", "videos": "BAACAgIAAxkBAAI",
    "animations": "CgACAgIAAxkBAAI", "stickers": "CAACAgIAAxkBAAI",
    "thumbnails": "AAMCAgADGQEAAg",
}


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Call:
    """One Bot API request as the server understood it (JSON-string fields decoded)."""

    method: str
    params: JSON
    files: dict[str, bytes] = field(default_factory=dict)
    file_names: dict[str, str] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    error_code: int | None = None
    received_at: float = field(default_factory=time.monotonic)  # for latency benchmarks

    @property
    def ok(self) -> bool:
        return self.error is None

    def brief(self) -> str:
        """One line for failure messages: the method, the telling params, the outcome."""
        shown = []
        for key in ("chat_id", "message_id", "text", "caption", "callback_query_id", "offset"):
            if key in self.params:
                value = self.params[key]
                if isinstance(value, str) and len(value) > 40:
                    value = value[:37] + "..."
                shown.append(f"{key}={value!r}")
        shown.extend(f"<{name}: {len(data)} B>" for name, data in self.files.items())
        outcome = f" -> {self.error_code} {self.error}" if self.error else ""
        return f"{self.method}({', '.join(shown)}){outcome}"


@dataclass(frozen=True)
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes


class ApiError(Exception):
    """An error answer: HTTP status and error_code are the same number, like the real API."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def _bad(text: str) -> ApiError:
    return ApiError(400, f"Bad Request: {text}")


@dataclass
class _Request:
    token: str
    params: JSON
    files: dict[str, bytes]
    file_names: dict[str, str]

    def get(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name)
        return default if value is None else value

    def need(self, name: str, empty: str | None = None) -> Any:
        value = self.params.get(name)
        if value is None or value == "":
            raise _bad(empty or f"{name} is empty")
        return value

    def need_int(self, name: str) -> int:
        value = self.need(name)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad(f"invalid {name} specified") from None

    def need_float(self, name: str) -> float:
        value = self.need(name)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad(f"invalid {name} specified") from None


# ----------------------------------------------------------------------------- factories


def user(user_id: int, first_name: str, username: str | None = None, *,
         last_name: str | None = None, language_code: str = "en") -> JSON:
    """A human Telegram user as it appears in `from`."""
    person: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name:
        person["last_name"] = last_name
    if username:
        person["username"] = username
    person["language_code"] = language_code
    return person


def private_chat(person: JSON) -> JSON:
    """The private chat between the bot and `person` (same id as the user, like Telegram)."""
    chat: JSON = {"id": person["id"], "first_name": person["first_name"]}
    for key in ("last_name", "username"):
        if key in person:
            chat[key] = person[key]
    chat["type"] = "private"
    return chat


def group_chat(chat_id: int, title: str, chat_type: str = "supergroup") -> JSON:
    """A group chat; supergroup ids look like -100…, basic group ids are small negatives."""
    if chat_type not in ("group", "supergroup"):
        raise ValueError(f"chat_type must be 'group' or 'supergroup', not {chat_type!r}")
    if chat_id >= 0:
        raise ValueError("group chat ids are negative in the Bot API")
    return {"id": chat_id, "title": title, "type": chat_type}


def text_entities(text: str) -> list[JSON]:
    """Entities Telegram detects itself: commands, mentions, URLs, hashtags (UTF-16 offsets)."""
    return [
        {"offset": _utf16_len(text[: m.start()]), "length": _utf16_len(m.group()),
         "type": m.lastgroup}
        for m in _ENTITY_RE.finditer(text)
    ]


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _now() -> int:
    return int(time.time())


def _probe_image(data: bytes) -> tuple[int, int] | None:
    """(width, height) as displayed (EXIF rotation applied), or None if not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except Exception:  # every decoder failure means the same thing here: not a photo
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _thumbnail(data: bytes, side: int) -> tuple[bytes, int, int]:
    with Image.open(io.BytesIO(data)) as image:
        picture = ImageOps.exif_transpose(image).convert("RGB")
    picture.thumbnail((side, side))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=80)
    return out.getvalue(), picture.width, picture.height


def _blank_image(fmt: str, width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, fmt)
    return out.getvalue()


def _strip_markup(text: str, parse_mode: str | None) -> str:
    """The text users see; refuses markup Telegram refuses, with its error text."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        for tag in re.finditer(r"<[^>]*>", text):
            match = re.match(r"</?\s*([A-Za-z][\w-]*)", tag.group())
            name = match.group(1).lower() if match else tag.group()
            if name not in HTML_TAGS:
                offset = len(text[: tag.start()].encode())
                raise _bad(f'can\'t parse entities: Unsupported start tag "{name}" '
                           f"at byte offset {offset}")
        plain = re.sub(r"<[^>]*>", "", text)
        if "<" in plain:
            offset = len(text[: text.index("<")].encode()) if "<" in text else 0
            raise _bad(f"can't parse entities: Unclosed start tag at byte offset {offset}")
        return html.unescape(plain)
    if mode == "markdownv2":
        chars = []
        escaped = False
        for char in text:
            if escaped:
                chars.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char in "*_~|`[]()":
                continue  # formatting; good enough for tests, which read the plain text
            elif char in MARKDOWN_V2_RESERVED:
                raise _bad(f"can't parse entities: Character '{char}' is reserved and must "
                           "be escaped with the preceding '\\'")
            else:
                chars.append(char)
        return "".join(chars)
    return text


def _decode(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def _read_params(request: web.Request) -> tuple[JSON, dict[str, bytes], dict[str, str]]:
    """Query string, form, multipart or JSON body, decoded the way the Bot API decodes them."""
    raw: JSON = dict(request.query)
    files: dict[str, bytes] = {}
    names: dict[str, str] = {}
    if request.content_type == "application/json":
        text = await request.text()
        body = json.loads(text) if text.strip() else {}
        if not isinstance(body, dict):
            raise ValueError("JSON body must be an object")
        raw.update(body)
    elif request.can_read_body:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
                names[key] = value.filename
            else:
                raw[key] = value
    return {key: _decode(key, value) for key, value in raw.items()}, files, names


def _error_response(error: ApiError) -> web.Response:
    body: JSON = {"ok": False, "error_code": error.code, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return web.json_response(body, status=error.code)


# ----------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class AlbumItem:
    """An album's document (any file) or video, for `FakeTelegram.send_album`."""

    kind: str  # "document" or "video"
    data: bytes
    file_name: str
    mime_type: str
    duration: int = 5


class FakeTelegram:
    """The Bot API on loopback: `async with FakeTelegram() as tg:` then point PTB at it."""

    def __init__(self, *, token: str | None = None, bot_username: str = BOT_USERNAME,
                 bot_first_name: str = BOT_FIRST_NAME, long_poll_s: float = 1.0) -> None:
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.long_poll_s = long_poll_s
        self.calls: list[Call] = []
        self.polls: list[Call] = []  # getUpdates, kept apart so `calls` reads like a story
        self.unknown_methods: list[str] = []
        self.downloads: list[str] = []
        self.deleted: list[tuple[int, int]] = []
        self.webhook_url = ""
        self.commands: dict[str, list[JSON]] = {}
        self.port = 0
        self._token = token
        self._seen_token = token or DEFAULT_TOKEN
        self._updates: list[JSON] = []
        self._update_ids = itertools.count(100_000_001)
        self._allowed_updates: list[str] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._poll_generation = 0
        self._closing = False
        self._users: dict[int, JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._members: dict[int, dict[int, JSON]] = {}
        self._admins: dict[int, dict[int, str]] = {}
        self._messages: dict[tuple[int, int], JSON] = {}
        self._next_message_id: dict[int, int] = {}
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._file_numbers = itertools.count()
        self._callbacks: dict[str, bool] = {}
        self._failures: dict[str, list[ApiError]] = {}
        self._runner: web.AppRunner | None = None
        handlers: dict[str, Callable[[_Request], Awaitable[Any]]] = {
            "getMe": self._get_me, "logOut": self._true, "close": self._true,
            "getUpdates": self._get_updates, "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook, "getWebhookInfo": self._get_webhook_info,
            "getFile": self._get_file, "sendMessage": self._send_message,
            "sendPhoto": self._send_photo, "sendDocument": self._send_document,
            "sendLocation": self._send_location, "sendMediaGroup": self._send_media_group,
            "sendChatAction": self._send_chat_action,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "editMessageMedia": self._edit_message_media,
            "deleteMessage": self._delete_message, "answerCallbackQuery": self._answer_callback,
            "setMyCommands": self._set_my_commands, "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setMyDescription": self._true, "setMyShortDescription": self._true,
            "setMyName": self._true, "setChatMenuButton": self._true,
            "pinChatMessage": self._true, "unpinChatMessage": self._true,
            "leaveChat": self._true, "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators,
            "getChatMemberCount": self._get_chat_member_count,
        }
        self._handlers = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{file_path:.+}", self._handle_file)
        # Cancelling handlers on disconnect ends held long polls when PTB gives up on them.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        self._closing = True
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    @property
    def bot_user(self) -> JSON:
        """The bot as it appears in `from` (its id is the token's prefix, as on Telegram)."""
        return self._bot(self._seen_token)

    # -- inspecting what the bot did ---------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    @property
    def errors(self) -> list[Call]:
        """Calls answered with an error, unknown methods included."""
        return [call for call in self.calls if not call.ok]

    async def wait_for(self, what: str | Callable[[Call], bool], count: int = 1,
                       timeout: float = 10.0) -> list[Call]:
        """All calls matching `what` once there are `count`; TimeoutError says what was seen."""
        if isinstance(what, str):
            wanted = what.lower()
            label = what

            def matches(call: Call) -> bool:
                return call.method.lower() == wanted
        else:
            matches = what
            label = getattr(what, "__name__", "predicate")
        return await wait_for_calls(self.calls, matches, count, timeout, label, self.summary)

    def summary(self, last: int = 30) -> str:
        """What happened so far, for failure messages."""
        lines = [f"{len(self.calls)} call(s), {len(self.polls)} getUpdates, "
                 f"{len(self.pending_updates)} unconfirmed update(s)"]
        if len(self.calls) > last:
            lines.append(f"  ... {len(self.calls) - last} earlier call(s)")
        lines.extend(f"  {call.brief()}" for call in self.calls[-last:])
        if self.unknown_methods:
            lines.append(f"unknown methods: {', '.join(self.unknown_methods)}")
        return "\n".join(lines)

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates queued and not yet confirmed by a later getUpdates offset."""
        return copy.deepcopy(self._updates)

    def message(self, chat_id: int, message_id: int) -> JSON | None:
        """The current state of a message (after edits), or None if unknown or deleted."""
        stored = self._messages.get((chat_id, message_id))
        return copy.deepcopy(stored)

    def messages_in(self, chat_id: int, *, from_bot: bool | None = None) -> list[JSON]:
        """Live messages of a chat in order; from_bot filters by sender."""
        bot_ids = {self._bot(self._seen_token)["id"]}
        found = [
            copy.deepcopy(message) for (chat, _), message in sorted(self._messages.items())
            if chat == chat_id
            and (from_bot is None or (message["from"]["id"] in bot_ids) == from_bot)
        ]
        return found

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

    # -- steering the server ---------------------------------------------------------------

    def add_chat(self, chat: JSON, members: Iterable[JSON] = ()) -> None:
        """Make a chat known before anyone writes in it (sending to an unknown chat fails)."""
        self._chats[chat["id"]] = copy.deepcopy(chat)
        for person in members:
            self._remember(chat, person)

    def set_admins(self, chat: JSON, admins: Iterable[JSON], *,
                   creator: JSON | None = None) -> None:
        """Who getChatMember/getChatAdministrators report as admins (pass tg.bot_user too)."""
        self.add_chat(chat)
        table: dict[int, str] = {}
        if creator is not None:
            self._remember(chat, creator)
            table[creator["id"]] = "creator"
        for person in admins:
            if not person.get("is_bot"):
                self._remember(chat, person)
            table.setdefault(person["id"], "administrator")
        self._admins[chat["id"]] = table

    def fail_next(self, method: str, code: int = 400, description: str = "Bad Request: test",
                  *, retry_after: int | None = None) -> None:
        """Answer the next call to `method` with this error (429 gets retry_after)."""
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        if code == 429 and description == "Bad Request: test":
            description = f"Too Many Requests: retry after {retry_after or 1}"
            parameters = {"retry_after": retry_after or 1}
        self._failures.setdefault(method.lower(), []).append(
            ApiError(code, description, parameters))

    def add_file(self, data: bytes, kind: str = "documents", ext: str = "bin") -> str:
        """Store bytes the bot may fetch with getFile; returns the file_id."""
        return self._store_file(data, kind, ext).file_id

    # -- injecting updates -------------------------------------------------------------------

    def inject(self, payload: JSON) -> JSON:
        """Queue any update (`{"message": ...}`, …); update_id is added here."""
        update = {"update_id": next(self._update_ids), **copy.deepcopy(payload)}
        self._updates.append(update)
        self._wake()
        return copy.deepcopy(update)

    def send_text(self, chat: JSON, person: JSON, text: str,
                  reply_to_message: JSON | int | None = None,
                  message_id: int | None = None) -> JSON:
        content: JSON = {"text": text}
        entities = text_entities(text)
        if entities:
            content["entities"] = entities
        return self._inject_message(chat, person, content, reply_to_message, message_id)

    def send_photo(self, chat: JSON, person: JSON, image_bytes: bytes,
                   caption: str | None = None, reply_to: JSON | int | None = None,
                   message_id: int | None = None, *, width: int | None = None,
                   height: int | None = None) -> JSON:
        """A compressed photo: PhotoSize ladder, the largest one serving the original bytes.

        Bytes that are not an image still arrive (as one PhotoSize of width x height, default
        1280x960), so a test can exercise the bot's handling of corrupt input.
        """
        content: JSON = {"photo": self._photo_sizes(image_bytes, width, height)}
        content.update(self._caption_content(caption))
        return self._inject_message(chat, person, content, reply_to, message_id)

    def send_album(self, chat: JSON, person: JSON, items: list[bytes | AlbumItem],
                   caption: str | None = None) -> list[JSON]:
        """An album as a user's client sends it: one message (one update) per item, all with
        the same `media_group_id`, the album's caption on the first only. Bot API, Message:
        "media_group_id: The unique identifier of a media message group this message belongs
        to" (https://core.telegram.org/bots/api#message); sendMediaGroup: 2-10 items, photos
        and videos together, or documents only. Bytes are a photo; an `AlbumItem` a document
        or a video."""
        if not 2 <= len(items) <= 10:
            raise ValueError("an album holds 2 to 10 items")
        group_id = str(secrets.randbelow(9 * 10**17) + 10**17)
        sent = []
        for index, item in enumerate(items):
            content = (self._album_item(item) if isinstance(item, AlbumItem)
                       else {"photo": self._photo_sizes(item, None, None)})
            content["media_group_id"] = group_id
            if index == 0:
                content.update(self._caption_content(caption))
            sent.append(self._inject_message(chat, person, content, None, None))
        return sent

    def _album_item(self, item: AlbumItem) -> JSON:
        ext = item.file_name.rsplit(".", 1)[-1] if "." in item.file_name else "bin"
        kind = "videos" if item.kind == "video" else "documents"
        media: JSON = {"file_name": item.file_name, "mime_type": item.mime_type}
        if item.kind == "video":
            media.update({"duration": item.duration, "width": 1024, "height": 768})
        media.update(self._file_fields(self._store_file(item.data, kind, ext)))
        return {item.kind: media}

    def send_document(self, chat: JSON, person: JSON, data: bytes, file_name: str,
                      mime_type: str, caption: str | None = None,
                      reply_to: JSON | int | None = None,
                      message_id: int | None = None) -> JSON:
        """A file sent uncompressed (how users keep EXIF); images get a thumbnail."""
        ext = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self._store_file(data, "documents", ext)
        document: JSON = {"file_name": file_name, "mime_type": mime_type}
        if mime_type.startswith("image/") and _probe_image(data) is not None:
            thumbnail = self._thumb_size(data, 320)
            if thumbnail is not None:
                document["thumbnail"] = thumbnail
        document.update(self._file_fields(stored))
        content: JSON = {"document": document}
        content.update(self._caption_content(caption))
        return self._inject_message(chat, person, content, reply_to, message_id)

    def send_sticker(self, chat: JSON, person: JSON, emoji: str = "🗺", *,
                     data: bytes | None = None, set_name: str = "GeoSleuthTestPack",
                     is_animated: bool = False, is_video: bool = False) -> JSON:
        ext = "tgs" if is_animated else "webm" if is_video else "webp"
        payload = data if data is not None else _blank_image("WEBP", 512, 512)
        stored = self._store_file(payload, "stickers", ext)
        sticker: JSON = {
            "width": 512, "height": 512, "emoji": emoji, "set_name": set_name,
            "is_animated": is_animated, "is_video": is_video, "type": "regular",
            "thumbnail": self._thumb_size(_blank_image("WEBP", 128, 128), 128),
        }
        sticker.update(self._file_fields(stored))
        return self._inject_message(chat, person, {"sticker": sticker}, None, None)

    def send_video(self, chat: JSON, person: JSON, data: bytes | None = None, *,
                   duration: int = 5, width: int = 1280, height: int = 720,
                   file_name: str = "video.mp4", mime_type: str = "video/mp4",
                   caption: str | None = None) -> JSON:
        stored = self._store_file(data or _FAKE_MP4, "videos", "mp4")
        video: JSON = {
            "duration": duration, "width": width, "height": height, "file_name": file_name,
            "mime_type": mime_type,
            "thumbnail": self._thumb_size(_blank_image("JPEG", 320, 180), 320),
        }
        video.update(self._file_fields(stored))
        content: JSON = {"video": video}
        content.update(self._caption_content(caption))
        return self._inject_message(chat, person, content, None, None)

    def send_animation(self, chat: JSON, person: JSON, data: bytes | None = None, *,
                       duration: int = 2, width: int = 480, height: int = 270,
                       file_name: str = "animation.gif.mp4",
                       caption: str | None = None) -> JSON:
        """A GIF as Telegram delivers it: converted to MP4, as both `animation` and `document`."""
        stored = self._store_file(data or _FAKE_MP4, "animations", "mp4")
        thumb = self._thumb_size(_blank_image("JPEG", 320, 180), 320)
        common: JSON = {"file_name": file_name, "mime_type": "video/mp4", "thumbnail": thumb}
        common.update(self._file_fields(stored))
        animation = {"duration": duration, "width": width, "height": height, **common}
        content: JSON = {"animation": animation, "document": dict(common)}
        content.update(self._caption_content(caption))
        return self._inject_message(chat, person, content, None, None)

    def press_button(self, chat: JSON, person: JSON, message: JSON | int,
                     callback_data: str) -> JSON:
        """A callback_query for a button under `message` (its current state is embedded)."""
        message_id = message if isinstance(message, int) else message["message_id"]
        stored = self._messages.get((chat["id"], message_id))
        if stored is None:
            raise ValueError(f"no message {message_id} in chat {chat['id']} to press a button on")
        self._remember(chat, person)
        query_id = str(secrets.randbelow(9 * 10**18) + 10**18)
        self._callbacks[query_id] = False
        return self.inject({"callback_query": {
            "id": query_id, "from": copy.deepcopy(person), "message": copy.deepcopy(stored),
            "chat_instance": str((chat["id"] * 7_919 + 104_729) % 2**62 - 2**61),
            "data": callback_data,
        }})

    def add_bot_to_group(self, chat: JSON, by: JSON) -> JSON:
        """The my_chat_member update a bot gets when someone adds it to a group."""
        self.add_chat(chat)
        self._remember(chat, by)
        bot = self.bot_user
        return self.inject({"my_chat_member": {
            "chat": copy.deepcopy(self._chats[chat["id"]]), "from": copy.deepcopy(by),
            "date": _now(), "old_chat_member": {"status": "left", "user": bot},
            "new_chat_member": {"status": "member", "user": bot},
        }})

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        if not self._token_ok(token):
            return _error_response(ApiError(401, "Unauthorized"))
        self._seen_token = token
        try:
            params, files, names = await _read_params(request)
        except ValueError as exc:
            return _error_response(_bad(f"can't parse request: {exc}"))
        known = self._handlers.get(method.lower())
        if known is None:
            error = ApiError(404, "Not Found")
            self.unknown_methods.append(method)
            self.calls.append(Call(method, params, files, names, error=error.description,
                                   error_code=error.code))
            return _error_response(error)
        name, handler = known
        record = self.polls if name == "getUpdates" else self.calls
        try:
            planned = self._failures.get(name.lower())
            if planned:
                raise planned.pop(0)
            result = await handler(_Request(token, params, files, names))
        except ApiError as error:
            record.append(Call(name, params, files, names, error=error.description,
                               error_code=error.code))
            return _error_response(error)
        record.append(Call(name, params, files, names, result=copy.deepcopy(result)))
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.Response:
        stored = self._files_by_path.get(request.match_info["file_path"])
        if stored is None or not self._token_ok(request.match_info["token"]):
            return _error_response(ApiError(404, "Not Found"))
        self.downloads.append(stored.file_path)
        content_type = mimetypes.guess_type(stored.file_path)[0] or "application/octet-stream"
        return web.Response(body=stored.data, content_type=content_type)

    def _token_ok(self, token: str) -> bool:
        return token == self._token if self._token else bool(_TOKEN_RE.match(token))

    # -- methods: bot & updates -------------------------------------------------------------

    def _bot(self, token: str) -> JSON:
        prefix = token.split(":", 1)[0]
        return {"id": int(prefix) if prefix.isdigit() else 123, "is_bot": True,
                "first_name": self.bot_first_name, "username": self.bot_username}

    async def _true(self, req: _Request) -> bool:
        return True

    async def _get_me(self, req: _Request) -> JSON:
        return {**self._bot(req.token), "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False,
                "can_connect_to_business": False, "has_main_web_app": False}

    async def _set_webhook(self, req: _Request) -> bool:
        url = req.get("url", "")
        if url and not str(url).startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        if req.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _delete_webhook(self, req: _Request) -> bool:
        self.webhook_url = ""
        if req.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, req: _Request) -> JSON:
        return {"url": self.webhook_url, "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    async def _get_updates(self, req: _Request) -> list[JSON]:
        """Long poll: answer as soon as an update is queued, else after the (capped) timeout."""
        if self.webhook_url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = req.get("offset")
        if offset is not None:
            self._confirm(int(offset))
        limit = min(max(int(req.get("limit", 100)), 1), 100)
        allowed = req.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake()  # a poll still held answers 409, as when two bot instances run
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(float(req.get("timeout", 0)), self.long_poll_s)
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make "
                                    "sure that only one bot instance is running")
            ready = [u for u in self._updates if self._allowed(u)][:limit]
            remaining = deadline - loop.time()
            if ready or self._closing or remaining <= 0:
                return copy.deepcopy(ready)
            await self._sleep_until_woken(remaining)

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            del self._updates[: max(len(self._updates) + offset, 0)]
        else:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]

    def _allowed(self, update: JSON) -> bool:
        if not self._allowed_updates:
            return True
        return any(kind in update for kind in self._allowed_updates)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def _sleep_until_woken(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    async def _get_file(self, req: _Request) -> JSON:
        stored = self._files.get(str(req.need("file_id")))
        if stored is None:
            raise _bad("wrong file_id or the file is temporarily unavailable")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise _bad("file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data), "file_path": stored.file_path}

    # -- methods: sending ------------------------------------------------------------------------

    async def _send_message(self, req: _Request) -> JSON:
        chat = self._chat(req.need("chat_id"))
        text = req.need("text", empty="message text is empty")
        content = self._text_content(str(text), req.get("parse_mode"), req.get("entities"))
        if _utf16_len(content["text"]) > MAX_TEXT_CHARS:
            raise _bad("message is too long")
        return self._bot_message(req, chat, content)

    async def _send_photo(self, req: _Request) -> JSON:
        chat = self._chat(req.need("chat_id"))
        data = self._upload(req, "photo")
        content: JSON = {"photo": self._bot_photo_sizes(data)}
        content.update(self._caption_from(req))
        return self._bot_message(req, chat, content)

    async def _send_document(self, req: _Request) -> JSON:
        chat = self._chat(req.need("chat_id"))
        data = self._upload(req, "document")
        file_name = req.file_names.get("document") or "document"
        content: JSON = {"document": self._document(data, file_name)}
        content.update(self._caption_from(req))
        return self._bot_message(req, chat, content)

    async def _send_location(self, req: _Request) -> JSON:
        chat = self._chat(req.need("chat_id"))
        location: JSON = {"latitude": req.need_float("latitude"),
                          "longitude": req.need_float("longitude")}
        for key in ("horizontal_accuracy", "live_period", "heading", "proximity_alert_radius"):
            if req.get(key) is not None:
                location[key] = req.get(key)
        return self._bot_message(req, chat, {"location": location})

    async def _send_media_group(self, req: _Request) -> list[JSON]:
        chat = self._chat(req.need("chat_id"))
        media = req.need("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad("wrong number of messages to send")
        group_id = str(secrets.randbelow(9 * 10**17) + 10**17)
        contents = [self._media_content(req, item) for item in media]
        sent = []
        for index, content in enumerate(contents):
            content["media_group_id"] = group_id
            sent.append(self._bot_message(req, chat, content, with_markup=False,
                                          with_reply=index == 0))
        return sent

    async def _send_chat_action(self, req: _Request) -> bool:
        self._chat(req.need("chat_id"))
        if req.get("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    # -- methods: editing ------------------------------------------------------------------------

    async def _edit_message_text(self, req: _Request) -> JSON | bool:
        text = req.need("text", empty="message text is empty")
        content = self._text_content(str(text), req.get("parse_mode"), req.get("entities"))
        markup = self._markup(req)
        message = self._editable(req)
        if message is None:
            return True
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        if message["text"] == content["text"] and message.get("reply_markup") == markup:
            raise _bad(NOT_MODIFIED)
        message.pop("entities", None)
        message.update(content)
        return self._finish_edit(message, markup)

    async def _edit_message_caption(self, req: _Request) -> JSON | bool:
        content = self._caption_from(req)
        markup = self._markup(req)
        message = self._editable(req)
        if message is None:
            return True
        if not any(key in message for key in MEDIA_KEYS):
            raise _bad("there is no caption in the message to edit")
        if (message.get("caption") == content.get("caption")
                and message.get("reply_markup") == markup):
            raise _bad(NOT_MODIFIED)
        message.pop("caption", None)
        message.pop("caption_entities", None)
        message.update(content)
        return self._finish_edit(message, markup)

    async def _edit_message_reply_markup(self, req: _Request) -> JSON | bool:
        markup = self._markup(req)
        message = self._editable(req)
        if message is None:
            return True
        if message.get("reply_markup") == markup:
            raise _bad(NOT_MODIFIED)
        return self._finish_edit(message, markup)

    async def _edit_message_media(self, req: _Request) -> JSON | bool:
        media = req.need("media")
        if not isinstance(media, dict):
            raise _bad("can't parse InputMedia JSON object")
        content = self._media_content(req, media)
        markup = self._markup(req)
        message = self._editable(req)
        if message is None:
            return True
        for key in (*MEDIA_KEYS, "caption", "caption_entities"):
            message.pop(key, None)
        message.update(content)
        return self._finish_edit(message, markup)

    async def _delete_message(self, req: _Request) -> bool:
        chat = self._chat(req.need("chat_id"))
        key = (chat["id"], req.need_int("message_id"))
        message = self._messages.get(key)
        if message is None:
            raise _bad("message to delete not found")
        bot_id = self._bot(req.token)["id"]
        if (chat["type"] != "private" and message["from"]["id"] != bot_id
                and bot_id not in self._admins.get(chat["id"], {})):
            raise _bad("message can't be deleted")
        del self._messages[key]
        self.deleted.append(key)
        return True

    async def _answer_callback(self, req: _Request) -> bool:
        query_id = str(req.need("callback_query_id"))
        if self._callbacks.get(query_id, True):
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        self._callbacks[query_id] = True
        return True

    # -- methods: commands & chats ---------------------------------------------------------------

    async def _set_my_commands(self, req: _Request) -> bool:
        commands = req.need("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad("command description must be non-empty")
        self.commands[self._commands_key(req)] = copy.deepcopy(commands)
        return True

    async def _get_my_commands(self, req: _Request) -> list[JSON]:
        return copy.deepcopy(self.commands.get(self._commands_key(req), []))

    async def _delete_my_commands(self, req: _Request) -> bool:
        self.commands.pop(self._commands_key(req), None)
        return True

    @staticmethod
    def _commands_key(req: _Request) -> str:
        scope = req.get("scope") or {"type": "default"}
        return f"{json.dumps(scope, sort_keys=True)}|{req.get('language_code', '')}"

    async def _get_chat(self, req: _Request) -> JSON:
        chat = self._chat(req.need("chat_id"))
        gifts = {"unlimited_gifts": True, "limited_gifts": True, "unique_gifts": True,
                 "premium_subscription": True, "gifts_from_channels": True}
        return {**chat, "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": gifts}

    async def _get_chat_member(self, req: _Request) -> JSON:
        chat = self._chat(req.need("chat_id"))
        user_id = req.need_int("user_id")
        bot = self._bot(req.token)
        person = bot if user_id == bot["id"] else self._users.get(user_id)
        if person is None:
            raise _bad("user not found")
        status = self._admins.get(chat["id"], {}).get(user_id)
        if status is None:
            present = (chat["type"] == "private" and user_id in (chat["id"], bot["id"])) or (
                user_id == bot["id"] or user_id in self._members.get(chat["id"], {}))
            status = "member" if present else "left"
        return self._member(status, person)

    async def _get_chat_administrators(self, req: _Request) -> list[JSON]:
        chat = self._chat(req.need("chat_id"))
        if chat["type"] == "private":
            raise _bad("there are no administrators in the private chat")
        bot = self._bot(req.token)
        table = self._admins.get(chat["id"], {})
        ordered = sorted(table.items(), key=lambda item: item[1] != "creator")
        return [self._member(status, bot if uid == bot["id"] else self._users[uid])
                for uid, status in ordered]

    async def _get_chat_member_count(self, req: _Request) -> int:
        chat = self._chat(req.need("chat_id"))
        if chat["type"] == "private":
            return 2
        return len(self._members.get(chat["id"], {})) + 1

    @staticmethod
    def _member(status: str, person: JSON) -> JSON:
        member: JSON = {"status": status, "user": copy.deepcopy(person)}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update({
                "can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                "can_delete_messages": True, "can_manage_video_chats": True,
                "can_restrict_members": True, "can_promote_members": False,
                "can_change_info": True, "can_invite_users": True, "can_post_stories": False,
                "can_edit_stories": False, "can_delete_stories": False,
                "can_pin_messages": True,
            })
        return member

    # -- building blocks -------------------------------------------------------------------------

    def _remember(self, chat: JSON, person: JSON) -> None:
        self._chats.setdefault(chat["id"], copy.deepcopy(chat))
        self._users[person["id"]] = copy.deepcopy(person)
        self._members.setdefault(chat["id"], {})[person["id"]] = copy.deepcopy(person)

    def _chat(self, chat_id: Any) -> JSON:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self._chats.values():
                if chat.get("username", "").lower() == chat_id[1:].lower():
                    return chat
            raise _bad("chat not found")
        try:
            chat = self._chats.get(int(chat_id))
        except (TypeError, ValueError):
            chat = None
        if chat is None:
            raise _bad("chat not found")
        return chat

    def _allocate_message_id(self, chat_id: int, wanted: int | None = None) -> int:
        following = self._next_message_id.get(chat_id, 1)
        if wanted is not None and (chat_id, wanted) in self._messages:
            raise ValueError(f"message {wanted} already exists in chat {chat_id}")
        message_id = following if wanted is None else wanted
        self._next_message_id[chat_id] = max(following, message_id + 1)
        return message_id

    def _quoted(self, chat_id: int, ref: JSON | int) -> JSON:
        """The replied-to message as embedded in a reply: one level, no nested reply."""
        message_id = ref if isinstance(ref, int) else ref["message_id"]
        stored = self._messages.get((chat_id, message_id))
        if stored is None:
            if isinstance(ref, int):
                raise ValueError(f"no message {message_id} in chat {chat_id} to reply to")
            stored = ref
        quoted = copy.deepcopy(stored)
        quoted.pop("reply_to_message", None)
        return quoted

    def _inject_message(self, chat: JSON, person: JSON, content: JSON,
                        reply_to: JSON | int | None, message_id: int | None) -> JSON:
        self._remember(chat, person)
        chat_id = chat["id"]
        message: JSON = {
            "message_id": self._allocate_message_id(chat_id, message_id),
            "from": copy.deepcopy(person), "chat": copy.deepcopy(self._chats[chat_id]),
            "date": _now(),
        }
        if reply_to is not None:
            message["reply_to_message"] = self._quoted(chat_id, reply_to)
        message.update(content)
        self._messages[(chat_id, message["message_id"])] = copy.deepcopy(message)
        return self.inject({"message": message})

    def _bot_message(self, req: _Request, chat: JSON, content: JSON, *,
                     with_markup: bool = True, with_reply: bool = True) -> JSON:
        reply = self._reply_for(req, chat) if with_reply else None
        markup = self._markup(req) if with_markup else None
        message: JSON = {
            "message_id": self._allocate_message_id(chat["id"]),
            "from": self._bot(req.token), "chat": copy.deepcopy(chat), "date": _now(),
        }
        if reply is not None:
            message["reply_to_message"] = reply
        message.update(content)
        if markup is not None:
            message["reply_markup"] = markup
        self._messages[(chat["id"], message["message_id"])] = message
        return copy.deepcopy(message)

    def _editable(self, req: _Request) -> JSON | None:
        """The stored bot message an edit targets; None for inline messages (answer True)."""
        if req.get("inline_message_id") is not None:
            return None
        chat = self._chat(req.need("chat_id"))
        message = self._messages.get((chat["id"], req.need_int("message_id")))
        if message is None:
            raise _bad("message to edit not found")
        if message["from"]["id"] != self._bot(req.token)["id"]:
            raise _bad("message can't be edited")
        return message

    @staticmethod
    def _finish_edit(message: JSON, markup: JSON | None) -> JSON:
        # Like Telegram: an edit without reply_markup removes the inline keyboard.
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = _now()
        return copy.deepcopy(message)

    def _reply_for(self, req: _Request, chat: JSON) -> JSON | None:
        params = req.get("reply_parameters")
        if params is None and req.get("reply_to_message_id") is not None:
            params = {"message_id": req.get("reply_to_message_id")}
        if params is None:
            return None
        if not isinstance(params, dict) or "message_id" not in params:
            raise _bad("can't parse reply parameters JSON object")
        target = self._chat(params["chat_id"]) if "chat_id" in params else chat
        stored = self._messages.get((target["id"], int(params["message_id"])))
        if stored is None:
            if params.get("allow_sending_without_reply") or req.get(
                    "allow_sending_without_reply"):
                return None
            raise _bad("message to be replied not found")
        return self._quoted(target["id"], stored)

    @staticmethod
    def _markup(req: _Request) -> JSON | None:
        """The inline keyboard to attach (other keyboards are not part of the Message)."""
        markup = req.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        keyboard = markup.get("inline_keyboard")
        if keyboard is None:
            return None
        if not isinstance(keyboard, list) or not all(isinstance(row, list) for row in keyboard):
            raise _bad("can't parse inline keyboard button: InlineKeyboardMarkup must be an "
                       "Array of Arrays")
        for row in keyboard:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise _bad("can't parse inline keyboard button: Text buttons are "
                               "unallowed in the inline keyboard")
                if not any(key in button for key in BUTTON_ACTIONS):
                    raise _bad("can't parse inline keyboard button: Text buttons are "
                               "unallowed in the inline keyboard")
                data = button.get("callback_data")
                if data is not None and not (
                        1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES):
                    raise _bad("BUTTON_DATA_INVALID")
                url = button.get("url")
                if url is not None and not re.match(r"(https?|tg)://", str(url)):
                    raise _bad("BUTTON_URL_INVALID")
        return {"inline_keyboard": copy.deepcopy(keyboard)}

    @staticmethod
    def _text_content(text: str, parse_mode: str | None, entities: Any,
                      key: str = "text") -> JSON:
        plain = _strip_markup(text, parse_mode)
        content: JSON = {key: plain}
        found = entities if isinstance(entities, list) else text_entities(plain)
        if found:
            content["entities" if key == "text" else "caption_entities"] = found
        return content

    def _caption_from(self, req: _Request) -> JSON:
        caption = req.get("caption")
        if caption is None or caption == "":
            return {}
        content = self._text_content(str(caption), req.get("parse_mode"),
                                     req.get("caption_entities"), key="caption")
        if _utf16_len(content["caption"]) > MAX_CAPTION_CHARS:
            raise _bad("message caption is too long")
        return content

    @staticmethod
    def _caption_content(caption: str | None) -> JSON:
        if caption is None:
            return {}
        content: JSON = {"caption": caption}
        entities = text_entities(caption)
        if entities:
            content["caption_entities"] = entities
        return content

    def _upload(self, req: _Request, name: str) -> bytes:
        """The bytes behind a file parameter: an upload, attach://, or a known file_id."""
        if name in req.files:
            return req.files[name]
        value = req.get(name)
        if value is None:
            raise _bad(f"there is no {name} in the request")
        return self._file_value(req, str(value))

    def _file_value(self, req: _Request, value: str) -> bytes:
        if value.startswith("attach://"):
            data = req.files.get(value.removeprefix("attach://"))
            if data is None:
                raise _bad(f"can't find attached file \"{value.removeprefix('attach://')}\"")
            return data
        if value in self._files:
            return self._files[value].data
        if value.startswith(("http://", "https://")):
            raise _bad("failed to get HTTP URL content")  # nothing leaves loopback
        raise _bad("wrong file identifier/HTTP URL specified")

    def _media_content(self, req: _Request, item: Any) -> JSON:
        if not isinstance(item, dict) or "media" not in item:
            raise _bad("can't parse InputMedia JSON object")
        data = self._file_value(req, str(item["media"]))
        kind = item.get("type")
        if kind == "photo":
            content: JSON = {"photo": self._bot_photo_sizes(data)}
        elif kind == "document":
            attach = str(item["media"]).removeprefix("attach://")
            content = {"document": self._document(data, req.file_names.get(attach, "document"))}
        else:
            raise _bad(f"unsupported media type {kind!r} in this fake")
        if item.get("caption"):
            caption = self._text_content(str(item["caption"]), item.get("parse_mode"),
                                         item.get("caption_entities"), key="caption")
            content.update(caption)
        return content

    def _bot_photo_sizes(self, data: bytes) -> list[JSON]:
        size = _probe_image(data)
        if size is None:
            raise _bad("IMAGE_PROCESS_FAILED")
        if sum(size) > 10_000 or max(size) > 20 * min(size):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        return self._photo_sizes(data, None, None)

    def _photo_sizes(self, data: bytes, width: int | None, height: int | None) -> list[JSON]:
        size = _probe_image(data)
        if size is None:
            return [self._photo_size(data, width or 1280, height or 960)]
        sizes = []
        for side in PHOTO_SIDES:
            if side >= max(size):
                break
            thumb, thumb_width, thumb_height = _thumbnail(data, side)
            sizes.append(self._photo_size(thumb, thumb_width, thumb_height))
        sizes.append(self._photo_size(data, width or size[0], height or size[1]))
        return sizes

    def _photo_size(self, data: bytes, width: int, height: int) -> JSON:
        stored = self._store_file(data, "photos", "jpg")
        return {**self._file_fields(stored), "width": width, "height": height}

    def _thumb_size(self, data: bytes, side: int) -> JSON | None:
        """None when the picture cannot be decoded (Telegram sends no thumbnail then)."""
        try:
            thumb, width, height = _thumbnail(data, side)
        except OSError:
            return None
        stored = self._store_file(thumb, "thumbnails", "jpg")
        return {**self._file_fields(stored), "width": width, "height": height}

    def _document(self, data: bytes, file_name: str) -> JSON:
        ext = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self._store_file(data, "documents", ext)
        document: JSON = {"file_name": file_name,
                          "mime_type": mimetypes.guess_type(file_name)[0]
                          or "application/octet-stream"}
        thumbnail = self._thumb_size(data, 320) if _probe_image(data) is not None else None
        if thumbnail is not None:
            document["thumbnail"] = thumbnail
        document.update(self._file_fields(stored))
        return document

    def _store_file(self, data: bytes, kind: str, ext: str) -> _StoredFile:
        number = next(self._file_numbers)
        prefix = _FILE_ID_PREFIX.get(kind, "BQACAgIAAxkBAAI")
        stored = _StoredFile(
            file_id=prefix + secrets.token_urlsafe(48)[:56],
            file_unique_id="AgAD" + secrets.token_urlsafe(12)[:12],
            file_path=f"{kind}/file_{number}.{ext}",
            data=bytes(data),
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    @staticmethod
    def _file_fields(stored: _StoredFile) -> JSON:
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data)}


# An ISO-BMFF header followed by padding: enough to look like an MP4 to a sniffer.
_FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(1000)
