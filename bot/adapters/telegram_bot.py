"""The Telegram adapter (python-telegram-bot): updates in, service calls, Telegram calls out.

Every command and message the bot answers is registered in `build_application`; each handler
turns the update into a `Requester`, awaits the service, and turns the reply into calls.
"""

from __future__ import annotations

import html
import logging
from dataclasses import replace

from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.adapters.errors import StartupFailed
from bot.adapters.media_groups import Joined, MediaGroups
from bot.adapters.progress import EditPacer, progress_text
from bot.chat.cover_area import PlaceChoice
from bot.chat.service import Answer, BotService, ProgressEvent, Refusal, Requester, Upload
from bot.chat.store import CoverWatch, RequestRecord, Tally
from bot.config import TelegramConfig
from bot.render.text import AnswerSummary

log = logging.getLogger(__name__)

PLATFORM = "telegram"
CAPTION_LIMIT = 1024
# The Bot API's getFile serves files up to 20 MB: a larger video cannot be fetched at all.
DOWNLOAD_LIMIT = 20 * 1024 * 1024
MAX_ID_DIGITS = 12  # a button's number: a request id, a cover job, a gazetteer entry
BUTTON_LABEL_CHARS = 60
COMMANDS = [
    BotCommand("locate", "where was this photo taken? (reply to a photo; optional area)"),
    BotCommand("history", "recent results in this chat"),
    BotCommand("privacy", "what is stored, and for how long"),
    BotCommand("forget", "delete this chat's history"),
    BotCommand("export", "this chat's results as GeoJSON and KML (or: /export csv)"),
    BotCommand("cover", "fetch an area's street-level imagery into the index (admins)"),
    BotCommand("coverage", "a map of the areas the index covers"),
    BotCommand("help", "how to use GeoSleuth"),
]
HELP = (
    "Send me a street-level photo and I will find where it was taken, by comparing it with"
    " geotagged reference photos.\n\n"
    "• Private chat: just send the photo. Sending it as a file keeps its metadata.\n"
    "• Groups: reply to a photo with /locate, or mention me in the photo's caption.\n"
    "• Know the area? Add it: /locate Amsterdam, /locate 52.37,4.89 5km\n"
    "• Several photos of one place? Send them as one album: I answer once, from all of them.\n"
    "• A video (or a GIF): I locate its clearest frames and say which placed it; a walk gets"
    " a track.\n\n"
    "I answer with a map, the coordinates, how sure I am, and the evidence."
    " /privacy says what I keep; /forget deletes this chat's history.\n\n"
    "/export sends this chat's results as GeoJSON and KML files for map tools (QGIS, Google"
    " Earth); /export csv for a table. In groups, for its admins.\n\n"
    "I can only place photos where I have reference photos: /coverage shows where. Admins can"
    " fetch an area's open street-level imagery (Panoramax, Mapillary) with /cover Lund,"
    " /cover 55.70,13.19 2 (a radius in km) or /cover W,S,E,N; I say what it takes, show its"
    " progress, and look again at this chat's unplaced photos from there when it is done."
)
MIXED_ALBUM = ("That album mixes photos and a video (or holds several videos): I locate a"
               " video on its own, since its frames are an album already. Send the video"
               " separately from the photos.")
UNSUPPORTED = {
    "sticker": "Stickers can't be located. Send a photo of the place.",
    "document": "That file is not an image or a video. Send a JPEG, PNG, WebP or HEIC photo, or"
                " an MP4, MOV or WebM video.",
}


def build_application(
    config: TelegramConfig, service: BotService, bot: TelegramBot | None = None
) -> Application:
    app = (
        ApplicationBuilder()
        .token(config.token)
        .base_url(config.base_url)
        .base_file_url(config.base_file_url)
        .concurrent_updates(True)
        .connection_pool_size(64)
        .pool_timeout(30)
        .build()
    )
    bot = bot or TelegramBot(service)
    private = filters.ChatType.PRIVATE
    groups = filters.ChatType.GROUPS
    image = filters.PHOTO | filters.Document.IMAGE
    video = (filters.VIDEO | filters.VIDEO_NOTE | filters.ANIMATION
             | filters.Document.VIDEO | filters.Document.MimeType("image/gif"))
    mentioned = filters.CaptionEntity(MessageEntity.MENTION)
    app.add_handler(TypeHandler(Update, bot.on_any_update), group=-1)  # counted, then handled
    app.add_handler(CommandHandler(["start", "help"], bot.on_help))
    app.add_handler(CommandHandler("privacy", bot.on_privacy))
    app.add_handler(CommandHandler("forget", bot.on_forget))
    app.add_handler(CommandHandler("history", bot.on_history))
    app.add_handler(CommandHandler("export", bot.on_export))
    app.add_handler(CommandHandler("stats", bot.on_stats))
    app.add_handler(CommandHandler("cover", bot.on_cover))
    app.add_handler(CommandHandler("coverage", bot.on_coverage))
    app.add_handler(CommandHandler("locate", bot.on_locate_command))
    # An album's photos come as messages of one media group; in a group only the first part
    # carries the caption that mentions the bot, so every part is gathered, then judged.
    app.add_handler(MessageHandler((image | video | filters.Document.ALL) & _IN_ALBUM,
                                   bot.on_album_part))
    app.add_handler(MessageHandler(private & image, bot.on_photo))
    app.add_handler(MessageHandler(groups & image & mentioned, bot.on_group_photo))
    app.add_handler(MessageHandler(private & video, bot.on_video))
    app.add_handler(MessageHandler(groups & video & mentioned, bot.on_group_video))
    app.add_handler(MessageHandler(private & filters.Sticker.ALL, bot.on_sticker))
    app.add_handler(MessageHandler(private & filters.Document.ALL, bot.on_other_document))
    app.add_handler(MessageHandler(private & filters.TEXT & ~filters.COMMAND, bot.on_help))
    app.add_handler(CallbackQueryHandler(bot.on_button))
    app.add_error_handler(bot.on_error)
    return app


class _InAlbum(filters.MessageFilter):
    """A message that is one part of an album (a media group)."""

    def filter(self, message: Message) -> bool:
        return message.media_group_id is not None


_IN_ALBUM = _InAlbum()


class TelegramBot:
    def __init__(self, service: BotService) -> None:
        self._service = service
        self._albums: MediaGroups[Message] = MediaGroups()

    async def on_any_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._service.metrics.updates.labels("telegram").inc()

    # --- commands ------------------------------------------------------------------------

    async def on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await _reply(update.effective_message, HELP)

    async def on_privacy(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await _reply(update.effective_message, self._service.privacy_text())

    async def on_forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        who = _requester(update)
        if who.chat_type != ChatType.PRIVATE and not await _is_chat_admin(update):
            await _reply(update.effective_message,
                         "Only this group's admins can delete its history.")
            return
        count = await self._service.forget(who)
        await _reply(update.effective_message,
                     f"Deleted this chat's history ({count} requests and their votes).")

    async def on_history(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        text = await self._service.history_text(_requester(update))
        await _reply(update.effective_message, text, disable_preview=True)

    async def on_export(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/export [geojson|kml|csv]: the chat's case file, one document per format."""
        who = _requester(update)
        message = update.effective_message
        chat_admin = who.chat_type != ChatType.PRIVATE and await _is_chat_admin(update)
        outcome = await self._service.export(who, " ".join(context.args or []) or None,
                                             chat_admin=chat_admin)
        if isinstance(outcome, Refusal):
            await _reply(message, outcome.text)
            return
        for i, (name, data) in enumerate(outcome.files):
            await message.reply_document(data, filename=name,
                                         caption=outcome.summary if i == 0 else None,
                                         do_quote=message.chat.type != ChatType.PRIVATE)

    async def on_stats(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await _reply(update.effective_message,
                     await self._service.stats_text(_requester(update)))

    async def on_cover(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/cover PLACE | LAT,LON RADIUS_KM | W,S,E,N: plan, start, and follow in one message."""
        who = _requester(update)
        message = update.effective_message
        chat_admin = who.chat_type != ChatType.PRIVATE and await _is_chat_admin(update)
        outcome = await self._service.covers.ask(who, " ".join(context.args or []),
                                                 chat_admin=chat_admin)
        if isinstance(outcome, Refusal):
            await _reply(message, outcome.text)
        elif isinstance(outcome, PlaceChoice):
            await message.reply_text(
                f"Which {outcome.name}? Several places have that name.",
                reply_markup=_place_buttons(outcome),
                do_quote=message.chat.type != ChatType.PRIVATE)
        else:
            sent = await message.reply_text(outcome.text,
                                            reply_markup=_cancel_button(outcome.job.id),
                                            do_quote=message.chat.type != ChatType.PRIVATE)
            await self._service.covers.follow(outcome.job, outcome.label, who,
                                              f"{sent.chat_id}:{sent.message_id}",
                                              CoverMessages(context.bot, self._service))

    async def on_coverage(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/coverage: the map of where the index has references, with the areas named."""
        message = update.effective_message
        refusal = self._service.admit(_requester(update), None)
        outcome = refusal or await self._service.covers.coverage()
        if isinstance(outcome, Refusal):
            await _reply(message, outcome.text)
            return
        caption, png = outcome
        await message.reply_photo(png, caption=caption[:CAPTION_LIMIT],
                                  do_quote=message.chat.type != ChatType.PRIVATE)

    async def on_locate_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/locate [area] as a reply to a photo (groups and private chats)."""
        message = update.effective_message
        target = message.reply_to_message
        if target is not None and _video_of(target) is not None:
            await self._locate_video(update, target, " ".join(context.args or []))
            return
        if target is None or not (target.photo or _is_image_document(target)):
            await _reply(message, "Reply to a photo or a video with /locate (optionally with an"
                                  " area, e.g. /locate Amsterdam), or send it to me directly.")
            return
        await self._locate(update, target, " ".join(context.args or []))

    # --- photos --------------------------------------------------------------------------

    async def on_photo(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        hint, explicit = _caption_hint(message, context.bot.username)
        await self._locate(update, message, hint, hint_is_explicit=explicit)

    async def on_group_photo(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A photo in a group is ours only if its caption mentions this bot (privacy mode)."""
        if _mentions(update.effective_message, context.bot.username):
            await self.on_photo(update, context)

    async def on_album_part(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One photo of an album: the first part's handler answers for the whole album."""
        message = update.effective_message
        joined = self._albums.join((message.chat_id, message.media_group_id), message)
        if joined is Joined.LATER:
            return
        if joined is Joined.FULL:
            parts = [message]
        else:
            parts = await self._albums.gather((message.chat_id, message.media_group_id))
        captioned = next((p for p in parts if p.caption), parts[0])
        if message.chat.type != ChatType.PRIVATE and not _mentions(captioned,
                                                                  context.bot.username):
            return  # a group's album not addressed to this bot
        hint, explicit = _caption_hint(captioned, context.bot.username)
        if any(_video_of(p) is not None for p in parts):
            if len(parts) == 1:
                await self._locate_video(update, parts[0], hint, hint_is_explicit=explicit)
            else:
                await _reply(parts[0], MIXED_ALBUM)
            return
        photos = [p for p in parts if p.photo or _is_image_document(p)]
        if not photos:
            await _reply(parts[0], UNSUPPORTED["document"])
        elif len(parts) == 1:
            await self._locate(update, parts[0], hint, hint_is_explicit=explicit)
        else:
            await self._locate_album(update, parts, hint, hint_is_explicit=explicit)

    async def on_video(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        hint, explicit = _caption_hint(message, context.bot.username)
        await self._locate_video(update, message, hint, hint_is_explicit=explicit)

    async def on_group_video(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A video in a group is ours only if its caption mentions this bot."""
        if _mentions(update.effective_message, context.bot.username):
            await self.on_video(update, context)

    async def on_sticker(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await _reply(update.effective_message, UNSUPPORTED["sticker"])

    async def on_other_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await _reply(update.effective_message, UNSUPPORTED["document"])

    async def _locate(
        self, update: Update, photo_message: Message, hint: str, *, hint_is_explicit: bool = True
    ) -> None:
        who = _requester(update)
        asked = update.effective_message
        attachment = (photo_message.photo[-1] if photo_message.photo
                      else photo_message.document)
        refusal = self._service.admit(who, attachment.file_size)
        if refusal is not None:
            await _reply(asked, refusal.text)
            return
        progress = _ProgressMessage(await _reply(photo_message, "⏳ Queued…"))
        data = await _fetch(attachment, progress, "that photo")
        if data is None:
            return
        outcome = await self._service.locate(who, data, hint, progress.update,
                                             hint_is_explicit=hint_is_explicit)
        await self._deliver(update, photo_message, progress, outcome)

    async def _locate_album(self, update: Update, parts: list[Message], hint: str, *,
                            hint_is_explicit: bool) -> None:
        """Several photos of one place, one answer (one try against the rate limits)."""
        who = _requester(update)
        numbered = list(enumerate(parts, 1))
        photos = [(i, p.photo[-1] if p.photo else p.document) for i, p in numbered
                  if p.photo or _is_image_document(p)]
        # A document album may hold other files: named in the answer, never fetched.
        skipped = [f"photo {i} ({_file_name(p)}): not an image or a video" for i, p in numbered
                   if not (p.photo or _is_image_document(p))]
        refusal = self._service.admit(who, max(a.file_size or 0 for _, a in photos))
        if refusal is not None:
            await _reply(parts[0], refusal.text)
            return
        progress = _ProgressMessage(await _reply(parts[0],
                                                 f"⏳ Queued ({len(parts)} photos)…"))
        uploads = []
        for i, attachment in photos:
            data = await _fetch(attachment, progress, f"photo {i} of the album")
            if data is None:
                return
            uploads.append(Upload(f"photo {i}", data))
        outcome = await self._service.locate_album(who, uploads, hint, progress.update,
                                                   hint_is_explicit=hint_is_explicit,
                                                   skipped=skipped)
        await self._deliver(update, parts[0], progress, outcome)

    async def _locate_video(self, update: Update, message: Message, hint: str, *,
                            hint_is_explicit: bool = True) -> None:
        who = _requester(update)
        video = _video_of(message)
        assert video is not None
        if (video.file_size or 0) > DOWNLOAD_LIMIT:
            await _reply(update.effective_message,
                         f"That video is {video.file_size / 1e6:.0f} MB; Telegram lets bots"
                         f" fetch files up to {DOWNLOAD_LIMIT / 1e6:.0f} MB. Send a shorter"
                         " clip, or a screenshot of its clearest frame.")
            return
        # Read from the raw object: PTB's `duration` property warns of a change of type.
        refusal = self._service.admit_video(who, video.file_size,
                                            video.to_dict().get("duration"))
        if refusal is not None:
            await _reply(update.effective_message, refusal.text)
            return
        progress = _ProgressMessage(await _reply(message, "⏳ Queued (a video)…"))
        data = await _fetch(video, progress, "that video")
        if data is None:
            return
        outcome = await self._service.locate_video(who, data, hint, progress.update,
                                                   hint_is_explicit=hint_is_explicit)
        await self._deliver(update, message, progress, outcome)

    async def _deliver(self, update: Update, message: Message, progress: _ProgressMessage,
                       outcome: Answer | Refusal) -> None:
        """The answer under `message`, with an offer to cover its area where the index does
        not; or the refusal, in the progress message."""
        if isinstance(outcome, Refusal):
            await progress.finish(outcome.text)
            return
        if outcome.cover_offer is not None:
            who = _requester(update)
            may_cover = self._service.covers.may_cover(
                who, chat_admin=who.chat_type != ChatType.PRIVATE
                and await _is_chat_admin(update))
            offer = self._service.cover_offer_text(outcome.cover_offer, may_cover=may_cover)
            outcome = replace(outcome, summary=replace(
                outcome.summary, advice=f"{outcome.summary.advice or ''}\n{offer}".strip()))
        await self._send_answer(message, outcome)
        await progress.delete()

    async def _send_answer(self, photo_message: Message, answer: Answer) -> None:
        caption = _caption(answer.summary, cached=answer.cached)
        sent = await photo_message.reply_photo(
            answer.map_png, caption=caption, parse_mode=ParseMode.HTML,
            reply_markup=_buttons(answer.request_id, Tally((), ())), do_quote=True,
        )
        await _answer_sent(self._service, sent, answer)

    # --- buttons -------------------------------------------------------------------------

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        action, _, raw_id = (query.data or "").partition(":")
        if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > MAX_ID_DIGITS:
            await query.answer("This button has expired.")
            return
        request_id = int(raw_id)
        who = _requester(update)
        refusal = self._service.admit(who, None)
        if refusal is not None:
            await query.answer(refusal.text, show_alert=True)
            return
        if action in ("cv", "cc"):
            await self._cover_button(update, context, action, request_id)
            return
        if action in ("ok", "no"):
            outcome = await self._service.vote(request_id, who,
                                               "confirm" if action == "ok" else "dispute")
            if isinstance(outcome, Refusal):
                await query.answer(outcome.text, show_alert=True)
                return
            await query.answer("Confirmed - thanks." if action == "ok" else "Disputed - thanks.")
            summary = await self._service.answer_summary(request_id, who)
            if summary is not None and query.message is not None:
                await query.message.edit_caption(
                    caption=_caption(summary, tally=outcome), parse_mode=ParseMode.HTML,
                    reply_markup=_buttons(request_id, outcome),
                )
            return
        if action not in ("alt", "ev"):
            await query.answer("This button has expired.")
            return
        picture = await (self._service.alternatives(request_id, who) if action == "alt"
                         else self._service.evidence(request_id, who))
        if isinstance(picture, Refusal):
            await query.answer(picture.text, show_alert=True)
            return
        await query.answer()
        text, png = picture
        await query.message.reply_photo(png, caption=text[:CAPTION_LIMIT], do_quote=True)

    async def _cover_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE,
                            action: str, value: int) -> None:
        """A namesake picked (the question becomes the cover's progress message), or Cancel."""
        query = update.callback_query
        who = _requester(update)
        chat_admin = who.chat_type != ChatType.PRIVATE and await _is_chat_admin(update)
        if action == "cc":
            await query.answer(await self._service.covers.cancel(who, value,
                                                                 chat_admin=chat_admin),
                               show_alert=True)
            return
        outcome = await self._service.covers.ask_place(who, value, chat_admin=chat_admin)
        if isinstance(outcome, Refusal):
            await query.answer(outcome.text, show_alert=True)
            return
        await query.answer()
        sent = await query.message.edit_text(outcome.text,
                                             reply_markup=_cancel_button(outcome.job.id))
        await self._service.covers.follow(outcome.job, outcome.label, who,
                                          f"{sent.chat_id}:{sent.message_id}",
                                          CoverMessages(context.bot, self._service))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log, and tell the user something went wrong: the bot never goes silent."""
        log.error("update failed", exc_info=context.error)
        if isinstance(update, Update) and update.effective_message is not None:
            try:
                await update.effective_message.reply_text(
                    "Something went wrong on my side. It has been logged; please try again.")
            except TelegramError:
                log.warning("could not tell the user about the failure")

    async def tell_interrupted(self, app: Application, records: list) -> None:
        """After a restart: each request a previous run left unanswered gets a word."""
        for record in records:
            if record.platform != PLATFORM:
                continue
            try:
                await app.bot.send_message(
                    int(record.chat_id),
                    "Sorry - your photo from earlier was interrupted by a restart. Please send"
                    " it again.")
            except TelegramError as exc:
                log.warning("could not tell chat about an interrupted request: %s", exc)


class TelegramAdapter:
    """The Telegram side's lifecycle: start (polling or webhook) and a clean stop."""

    def __init__(self, config: TelegramConfig, service: BotService) -> None:
        self._config = config
        self._service = service
        self._handlers = TelegramBot(service)
        self.app = build_application(config, service, self._handlers)

    async def start(self, interrupted: list) -> None:
        app = self.app
        try:
            await app.initialize()
            await app.bot.set_my_commands(COMMANDS)
        except InvalidToken:
            raise StartupFailed("Telegram refused the bot token: check GEOSLEUTH_TELEGRAM_TOKEN"
                                " (or telegram.token)") from None
        except NetworkError as exc:  # TimedOut too
            detail = str(exc).replace(self._config.token, "***") if self._config.token else exc
            raise StartupFailed(f"cannot reach Telegram at {self._config.base_url}: {detail}"
                                ) from None
        await app.start()
        if self._config.mode == "webhook":
            await app.updater.start_webhook(
                listen=self._config.webhook_listen, port=self._config.webhook_port,
                url_path="telegram", webhook_url=self._config.webhook_url,
                secret_token=self._config.webhook_secret or None,
            )
        else:
            await app.updater.start_polling(poll_interval=0.0, timeout=30)
        log.info("telegram bot @%s started (%s)", app.bot.username, self._config.mode)
        await self._handlers.tell_interrupted(app, interrupted)
        await self._service.covers.resume(PLATFORM, CoverMessages(app.bot, self._service))

    async def stop(self) -> None:
        app = self.app
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()


class CoverMessages:
    """A cover's one progress message, and the answers its second look placed (as replies to
    the earlier answers where they are known)."""

    def __init__(self, bot: Bot, service: BotService) -> None:
        self._bot = bot
        self._service = service

    async def show(self, watch: CoverWatch, text: str, *, running: bool) -> None:
        chat_id, _, message_id = watch.message_ref.partition(":")
        try:
            await self._bot.edit_message_text(
                text, chat_id=int(chat_id), message_id=int(message_id),
                reply_markup=_cancel_button(watch.job_id) if running else None)
        except TelegramError as exc:
            log.debug("cover progress edit failed: %s", exc)

    async def placed(self, watch: CoverWatch, earlier: RequestRecord, answer: Answer) -> None:
        when = earlier.created_at[:16].replace("T", " ")
        lead = (f"📌 Now placed, after the cover of {html.escape(watch.label)}: the photo"
                f" {html.escape(earlier.user_name)} sent on {when} UTC.")
        quoted = None
        if earlier.reply_ref and earlier.reply_ref.startswith(f"{watch.chat_id}:"):
            quoted = ReplyParameters(int(earlier.reply_ref.partition(":")[2]),
                                     allow_sending_without_reply=True)
        try:
            sent = await self._bot.send_photo(
                int(watch.chat_id), answer.map_png,
                caption=_caption(answer.summary, lead=lead), parse_mode=ParseMode.HTML,
                reply_markup=_buttons(answer.request_id, Tally((), ())),
                reply_parameters=quoted)
        except TelegramError as exc:
            log.warning("could not tell a chat that its photo is now placed: %s", exc)
            return
        await _answer_sent(self._service, sent, answer)


class _ProgressMessage:
    """One message edited as the stages pass, paced to Telegram's edit limits."""

    def __init__(self, message: Message) -> None:
        self._message = message
        self._pacer = EditPacer(message.text or "")

    async def update(self, event: ProgressEvent) -> None:
        text = progress_text(event)
        if text is not None and self._pacer.ready(text):
            await self._edit(text)

    async def finish(self, text: str) -> None:
        await self._edit(text)

    async def delete(self) -> None:
        try:
            await self._message.delete()
        except TelegramError:
            await self._edit("Done - the answer is below.")

    async def _edit(self, text: str) -> None:
        try:
            await self._message.edit_text(text)
        except TelegramError as exc:
            log.debug("progress edit failed: %s", exc)


async def _answer_sent(service: BotService, sent: Message, answer: Answer) -> None:
    """Remember which message carries the answer (its buttons find it), and pin the place."""
    await service.set_reply_ref(answer.request_id, f"{sent.chat_id}:{sent.message_id}")
    result = answer.result
    if result.located:
        await sent.reply_location(
            latitude=result.lat, longitude=result.lon,
            horizontal_accuracy=min(1500.0, result.radius_m or 1500.0), do_quote=True,
        )


def _cancel_button(job_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton("⏹ Cancel", callback_data=f"cc:{job_id}")]])


def _place_buttons(choice: PlaceChoice) -> InlineKeyboardMarkup:
    """One button a namesake, its data the gazetteer's index (well under 64 bytes)."""
    return InlineKeyboardMarkup([
        [InlineKeyboardButton(f"{p.label()} ({p.population:,})"[:BUTTON_LABEL_CHARS],
                              callback_data=f"cv:{p.index}")]
        for p in choice.places])


def _requester(update: Update) -> Requester:
    user = update.effective_user
    chat = update.effective_chat
    name = (user.full_name or user.username or str(user.id)) if user else "someone"
    return Requester(PLATFORM, str(chat.id), chat.type, str(user.id if user else chat.id), name)


async def _is_chat_admin(update: Update) -> bool:
    member = await update.get_bot().get_chat_member(update.effective_chat.id,
                                                     update.effective_user.id)
    return member.status in ("administrator", "creator")


async def _fetch(attachment, progress: _ProgressMessage, what: str) -> bytes | None:
    """The file's bytes from Telegram; None, the user told why, when they cannot be had."""
    try:
        file = await attachment.get_file()
        return bytes(await file.download_as_bytearray())
    except TelegramError as exc:
        await progress.finish(f"I couldn't download {what} from Telegram ({exc}). Please send"
                              " it again.")
        return None


def _file_name(message: Message) -> str:
    """A document's name as the sender gave it, made harmless to show: printable, short."""
    name = (message.document.file_name if message.document else None) or "a file"
    return "".join(c if c.isprintable() else "-" for c in name)[:40]


def _mentions(message: Message, bot_username: str | None) -> bool:
    """Whether the message's caption mentions this bot."""
    mention = f"@{bot_username}".lower()
    mentions = message.parse_caption_entities([MessageEntity.MENTION]).values()
    return mention in (m.lower() for m in mentions)


def _video_of(message: Message):  # -> Video | VideoNote | Animation | Document | None
    """The message's video, video note, animation (GIFs arrive as MP4), or video file."""
    document = message.document
    if document is not None and ((document.mime_type or "").startswith("video/")
                                 or document.mime_type == "image/gif"):
        return document
    return message.video or message.video_note or message.animation


def _is_image_document(message: Message) -> bool:
    document = message.document
    return document is not None and (document.mime_type or "").startswith("image/")


def _caption_hint(message: Message, bot_username: str | None) -> tuple[str, bool]:
    """The area hint in a caption (what follows /locate or the bot's mention) and whether it
    was given explicitly with /locate."""
    words = (message.caption or "").split()
    mention = f"@{bot_username}".lower() if bot_username else None
    explicit = any(w.lower() == "/locate" or w.lower().startswith("/locate@") for w in words)
    for i, word in enumerate(words):
        lowered = word.lower()
        if lowered == "/locate" or lowered.startswith("/locate@") or lowered == mention:
            rest = [w for w in words[i + 1:] if w.lower() != mention]
            return " ".join(w for w in rest if not w.lower().startswith("/locate")), explicit
    return "", False


async def _reply(message: Message, text: str, *, disable_preview: bool = False) -> Message:
    return await message.reply_text(
        text, do_quote=message.chat.type != ChatType.PRIVATE,
        disable_web_page_preview=disable_preview,
    )


def _buttons(request_id: int, tally: Tally) -> InlineKeyboardMarkup:
    confirm = f"✅ Confirm ({len(tally.confirm)})" if tally.confirm else "✅ Confirm"
    dispute = f"❌ Dispute ({len(tally.dispute)})" if tally.dispute else "❌ Dispute"
    return InlineKeyboardMarkup([
        [InlineKeyboardButton("🗺 Alternatives", callback_data=f"alt:{request_id}"),
         InlineKeyboardButton("🔬 Evidence", callback_data=f"ev:{request_id}")],
        [InlineKeyboardButton(confirm, callback_data=f"ok:{request_id}"),
         InlineKeyboardButton(dispute, callback_data=f"no:{request_id}")],
    ])


def _caption(summary: AnswerSummary, *, cached: bool = False, tally: Tally | None = None,
             lead: str | None = None) -> str:
    """The answer as an HTML caption, trimmed to Telegram's 1,024 characters; `lead` (HTML)
    comes first."""
    e = html.escape
    lines: list[str] = [lead] if lead else []
    if summary.located:
        lines.append(f"📍 <b>{e(summary.headline)}</b>:"
                     f" <code>{e(summary.coordinates or '')}</code>")
        lines.append(e(summary.dms or ""))
        lines.append(f"Confidence <b>{e(summary.confidence)}</b>, {e(summary.radius or '')}")
        if summary.place:
            lines.append(f"Near {e(summary.place)}")
        lines.append(f'<a href="{e(summary.osm_url or "")}">OpenStreetMap</a> · '
                     f'<a href="{e(summary.google_url or "")}">Google Maps</a>')
    else:
        lines.append(f"❔ <b>{e(summary.headline)}</b> (best {e(summary.confidence)})")
        lines.append(e(summary.advice or ""))
    details = [e(line) for line in summary.details]
    lines += details
    if summary.reference:
        reference = e(summary.reference)
        if summary.reference_url:
            reference = f'<a href="{e(summary.reference_url)}">{reference}</a>'
        lines.append(f"Best reference: {reference}")
    if summary.exif:
        lines.append(e(summary.exif))
    if summary.area:
        lines.append(e(summary.area))
    if cached:
        lines.append("(answered from the cache: this photo was located before)")
    if tally is not None and (tally.confirm or tally.dispute):
        if tally.confirm:
            lines.append(f"✅ {e(', '.join(tally.confirm))}")
        if tally.dispute:
            lines.append(f"❌ {e(', '.join(tally.dispute))}")
    if summary.attribution:
        lines.append(f"Imagery: {e(summary.attribution)}")
    lines = [line for line in lines if line]
    # Too long: an album's photo lines go first (the map shows each photo), last line first...
    while len("\n".join(lines)) > CAPTION_LIMIT and details:
        lines.remove(details.pop())
    # ... then (long names, many voters) whole lines from the end, never cut a tag.
    while len("\n".join(lines)) > CAPTION_LIMIT and len(lines) > 3 + bool(lead):
        lines.pop()
    return "\n".join(lines)
