"""The fake Bot API server, proven against the real python-telegram-bot Application."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from PIL import Image
from telegram import (
    ChatMemberAdministrator,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, EndPointNotFound
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram_api import (
    BOT_USERNAME,
    FakeTelegram,
    group_chat,
    private_chat,
    user,
)

TOKEN = "123:TEST"
ALICE = user(1001, "Alice", "alice_osint")
BOB = user(1002, "Bob", "bob_maps")
TEAM = group_chat(-1001234567890, "OSINT team")


def _jpeg(width: int = 640, height: int = 480) -> bytes:
    image = Image.new("RGB", (width, height))
    image.putdata([(x % 256, y % 256, (x * y) % 256) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=12))


@asynccontextmanager
async def _running(tg: FakeTelegram, app: Application) -> AsyncIterator[list[BaseException]]:
    """Start the real Application polling the fake; yield the handler errors; stop cleanly."""
    errors: list[BaseException] = []

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if context.error is not None:
            errors.append(context.error)

    app.add_error_handler(on_error)
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0.0)
        try:
            yield errors
        finally:
            await app.updater.stop()
            await app.stop()


def _app(tg: FakeTelegram) -> Application:
    return (ApplicationBuilder().token(TOKEN).base_url(tg.base_url)
            .base_file_url(tg.base_file_url).build())


async def _echo_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    data = await (await message.photo[-1].get_file()).download_as_bytearray()
    keyboard = InlineKeyboardMarkup([[
        InlineKeyboardButton("Confirm", callback_data="confirm:1"),
        InlineKeyboardButton("Dispute", callback_data="dispute:1"),
    ]])
    await context.bot.send_photo(message.chat_id, bytes(data), caption="Near Lund",
                                 reply_markup=keyboard,
                                 reply_parameters=ReplyParameters(message.message_id))
    await context.bot.send_location(message.chat_id, latitude=55.7047, longitude=13.191)


async def _on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    await query.answer("Thanks")
    await query.edit_message_caption(f"Near Lund ({query.data.split(':')[0]}ed)")


async def _on_locate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    target = update.effective_message.reply_to_message
    if target is None or not target.photo:
        await update.effective_message.reply_text("Reply to a photo with /locate")
        return
    data = await (await target.photo[-1].get_file()).download_as_bytearray()
    await update.effective_message.reply_text(f"Got {len(data)} bytes")


def test_photo_round_trip_downloads_original_and_records_upload_and_keyboard() -> None:
    photo = _jpeg()

    async def scenario() -> None:
        async with FakeTelegram() as tg:
            app = _app(tg)
            app.add_handler(MessageHandler(filters.PHOTO & filters.ChatType.PRIVATE, _echo_photo))
            async with _running(tg, app) as errors:
                assert app.bot.username == BOT_USERNAME
                sent = tg.send_photo(private_chat(ALICE), ALICE, photo, caption="where?")
                await tg.wait_for("sendLocation")
                assert errors == []

            assert [c.method for c in tg.calls[:2]] == ["getMe", "deleteWebhook"]
            assert [c.method for c in tg.calls[2:]] == ["getFile", "sendPhoto", "sendLocation"]
            [upload] = tg.calls_to("sendPhoto")
            assert upload.params["chat_id"] == ALICE["id"]
            assert upload.files["photo"] == photo
            assert upload.params["reply_markup"] == {"inline_keyboard": [[
                {"text": "Confirm", "callback_data": "confirm:1"},
                {"text": "Dispute", "callback_data": "dispute:1"},
            ]]}
            assert upload.params["reply_parameters"]["message_id"] == (
                sent["message"]["message_id"])
            result = upload.result
            assert result["from"]["is_bot"] and result["chat"]["type"] == "private"
            assert result["reply_to_message"]["message_id"] == sent["message"]["message_id"]
            assert [s["width"] for s in result["photo"]] == [90, 320, 640]
            assert tg.file_bytes(result["photo"][-1]["file_id"]) == photo
            [pin] = tg.calls_to("sendLocation")
            assert pin.result["location"] == {"latitude": 55.7047, "longitude": 13.191}
            assert pin.result["message_id"] == result["message_id"] + 1
            assert tg.pending_updates == []  # the shutdown poll confirmed the update
            assert tg.errors == []

    _run(scenario)


def test_button_press_is_answered_and_the_caption_edited() -> None:
    async def scenario() -> None:
        async with FakeTelegram() as tg:
            app = _app(tg)
            app.add_handler(MessageHandler(filters.PHOTO, _echo_photo))
            app.add_handler(CallbackQueryHandler(_on_button))
            chat = private_chat(ALICE)
            async with _running(tg, app) as errors:
                tg.send_photo(chat, ALICE, _jpeg(320, 240))
                [upload] = await tg.wait_for("sendPhoto")
                tg.press_button(chat, ALICE, upload.result["message_id"], "confirm:1")
                [answer] = await tg.wait_for("answerCallbackQuery")
                [edit] = await tg.wait_for("editMessageCaption")
                assert errors == []

            assert answer.ok and answer.params["text"] == "Thanks"
            assert edit.result["caption"] == "Near Lund (confirmed)"
            assert "reply_markup" not in edit.result  # an edit without markup drops it
            assert tg.message(chat["id"], upload.result["message_id"])["caption"] == (
                "Near Lund (confirmed)")

    _run(scenario)


def test_group_command_replying_to_a_photo_sees_the_photo() -> None:
    photo = _jpeg(400, 300)

    async def scenario() -> None:
        async with FakeTelegram() as tg:
            app = _app(tg)
            app.add_handler(CommandHandler("locate", _on_locate))
            async with _running(tg, app) as errors:
                posted = tg.send_photo(TEAM, BOB, photo)
                command = tg.send_text(TEAM, ALICE, f"/locate@{BOT_USERNAME}",
                                       reply_to_message=posted["message"])
                [reply] = await tg.wait_for("sendMessage")
                assert errors == []

            assert command["message"]["entities"] == [
                {"offset": 0, "length": len(f"/locate@{BOT_USERNAME}"), "type": "bot_command"}]
            assert command["message"]["reply_to_message"]["photo"] == posted["message"]["photo"]
            assert reply.params["chat_id"] == TEAM["id"]
            assert reply.params["text"] == f"Got {len(photo)} bytes"
            assert reply.result["chat"]["type"] == "supergroup"
            assert reply.result["reply_to_message"]["message_id"] == (
                command["message"]["message_id"])
            assert tg.downloads == [tg.calls_to("getFile")[0].result["file_path"]]

    _run(scenario)


def test_mistakes_get_telegrams_errors_and_unknown_methods_are_recorded() -> None:
    async def scenario() -> None:
        async with FakeTelegram() as tg:
            app = _app(tg)
            async with _running(tg, app):
                tg.send_text(private_chat(ALICE), ALICE, "hello")
                with pytest.raises(BadRequest, match="Chat not found"):
                    await app.bot.send_message(999, "who?")
                with pytest.raises(BadRequest, match="Button_data_invalid"):
                    await app.bot.send_message(ALICE["id"], "x", reply_markup=InlineKeyboardMarkup(
                        [[InlineKeyboardButton("x", callback_data="x" * 65)]]))
                with pytest.raises(BadRequest, match="unsupported start tag"):
                    await app.bot.send_message(ALICE["id"], "<div>x</div>", parse_mode="HTML")
                sent = await app.bot.send_message(ALICE["id"], "<b>50 m</b>", parse_mode="HTML")
                assert sent.text == "50 m"
                with pytest.raises(BadRequest, match="Message is not modified"):
                    await sent.edit_text("50 m")
                with pytest.raises(EndPointNotFound):
                    await app.bot.do_api_request("frobnicate")

            assert tg.unknown_methods == ["frobnicate"]
            assert {c.error for c in tg.errors} >= {"Bad Request: chat not found",
                                                    "Not Found"}

    _run(scenario)


def test_admins_are_reported_as_configured() -> None:
    async def scenario() -> None:
        async with FakeTelegram() as tg:
            tg.set_admins(TEAM, [BOB], creator=ALICE)
            app = _app(tg)
            async with _running(tg, app):
                admins = await app.bot.get_chat_administrators(TEAM["id"])
                bob = await app.bot.get_chat_member(TEAM["id"], BOB["id"])

            assert [type(a) for a in admins] == [ChatMemberOwner, ChatMemberAdministrator]
            assert admins[0].user.id == ALICE["id"]
            assert isinstance(bob, ChatMemberAdministrator)

    _run(scenario)


def test_idle_long_poll_is_held_not_spun() -> None:
    async def scenario() -> None:
        async with FakeTelegram(long_poll_s=0.5) as tg:
            app = _app(tg)
            async with _running(tg, app):
                await asyncio.sleep(1.2)
            assert 2 <= len(tg.polls) <= 5

    _run(scenario)


def test_injected_updates_parse_into_ptb_objects_with_no_unknown_fields() -> None:
    async def scenario() -> None:
        async with FakeTelegram() as tg:
            chat = private_chat(ALICE)
            updates = [
                tg.send_document(chat, ALICE, _jpeg(200, 100), "street.jpg", "image/jpeg",
                                 caption="#lund"),
                tg.send_sticker(chat, ALICE),
                tg.send_video(chat, ALICE, caption="clip"),
                tg.send_animation(chat, ALICE),
                tg.send_text(TEAM, BOB, "@alice_osint see https://example.org /locate"),
                tg.add_bot_to_group(TEAM, BOB),
            ]
            parsed = [Update.de_json(update, None) for update in updates]

            message = parsed[0].message
            assert message.document.thumbnail.width == 200 and message.caption == "#lund"
            assert message.caption_entities[0].type == "hashtag"
            assert parsed[1].message.sticker.emoji == "🗺"
            assert parsed[2].message.video.width == 1280
            assert parsed[3].message.animation.file_id == parsed[3].message.document.file_id
            assert [e.type for e in parsed[4].message.entities] == [
                "mention", "url", "bot_command"]
            assert parsed[5].my_chat_member.new_chat_member.status == "member"
            assert [u.update_id for u in parsed] == sorted({u.update_id for u in parsed})
            for update in parsed:
                for obj in (update, update.effective_message, update.effective_chat,
                            update.effective_user):
                    assert obj is None or not obj.api_kwargs, obj

    _run(scenario)
