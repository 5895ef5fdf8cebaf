"""The platform-neutral bot service: access, limits, cache, engine, records, replies.

Adapters (Telegram, Discord) turn an update into a `Requester` and photo bytes, await the
service, and turn its `Answer` or `Refusal` back into platform calls. Nothing here knows a
chat platform.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.chat.covers import CoverDesk, SecondLook
from bot.chat.metrics import BotMetrics
from bot.chat.places import AreaHint, gazetteer, parse_area_hint, place_name
from bot.chat.ratelimit import RateLimiter
from bot.chat.recent_photos import RecentPhotos
from bot.chat.requests import Refusal, RefusalReason, Requester
from bot.chat.store import (
    CoverWatch,
    RecordedAnswer,
    RequestRecord,
    Store,
    StoreError,
    Tally,
)
from bot.chat.waiting import area_json, cover_argument, stored_area, waits_in
from bot.config import AppConfig
from bot.render.export import FORMATS, Case, export_filename, read_case, render
from bot.render.map import render_album_map, render_map
from bot.render.text import (
    AnswerSummary,
    clock,
    reference_name,
    summarise_album,
    summarise_answer,
)
from engine import (
    AsyncEngine,
    EngineBusy,
    EngineTimeout,
    GeoSleuthError,
    ImageError,
    LocateResult,
    Progress,
    SearchArea,
    SearchAreaError,
    Status,
    read_exif_gps,
    render_result_evidence,
    result_from_json,
)
from engine.album import AlbumPhoto, AlbumResult, album_from_json, is_album_json
from engine.cover import CoverJob
from engine.remote import RemoteEngine
from engine.video import keyframes

log = logging.getLogger(__name__)

SECOND_LOOK_MAX = 20  # a finished cover looks again at this many of a chat's waiting photos



@dataclass(frozen=True, slots=True)
class PartProgress:
    """Progress of one photo of an album, or one frame of a video."""

    label: str
    index: int  # from 1
    count: int
    event: Progress


# A stage of the engine, one photo's of an album, or a step of the service's own in words.
ProgressEvent = Progress | PartProgress | str
ProgressHandler = Callable[[ProgressEvent], Awaitable[None] | None]


# What a follow-up on an unknown, forgotten or another chat's request gets: the same words.
_GONE = Refusal(RefusalReason.ENGINE, "That answer is no longer available.")


@dataclass(frozen=True, slots=True)
class CaseExport:
    """A chat's case file(s) for map tools, and a line saying what they hold."""

    files: tuple[tuple[str, bytes], ...]  # (file name, contents)
    summary: str


@dataclass(frozen=True, slots=True)
class Answer:
    request_id: int
    result: LocateResult | AlbumResult  # both say status, lat, lon, radius_m, confidence
    summary: AnswerSummary
    map_png: bytes
    cached: bool
    # No confident match in an area the index holds no references for: what `/cover` would
    # take to fetch it (the adapter offers it to admins, and tells others to ask one).
    cover_offer: str | None = None


@dataclass(frozen=True, slots=True)
class Upload:
    """One photo of an album as the adapter received it; `label` names it to the user."""

    label: str
    data: bytes


class BotService:
    def __init__(self, config: AppConfig, engine: AsyncEngine | RemoteEngine | None, store: Store,
                 engine_error: str | None = None) -> None:
        """`engine` is None when it could not start; every photo is then answered with
        `engine_error` instead of silence."""
        self._config = config
        self._engine = engine
        self._engine_error = engine_error
        self._store = store
        limits = config.rate_limit
        self._per_user = RateLimiter(limits.user_requests, limits.user_window_s)
        self._per_chat = RateLimiter(limits.chat_requests, limits.chat_window_s)
        self._recent = RecentPhotos(config.service.recent_photos_bytes)
        self._video_slot = asyncio.Semaphore(1)
        self.metrics = BotMetrics()
        self.covers = CoverDesk(config, engine, store, self._second_look)

    # --- access and limits ---------------------------------------------------------------

    @property
    def max_file_bytes(self) -> int:
        return self._config.service.max_file_bytes

    def is_admin(self, who: Requester) -> bool:
        return who.user_id in self._config.access.admins

    def check_access(self, who: Requester) -> Refusal | None:
        access = self._config.access
        if self.is_admin(who):
            return None
        if access.allowed_users and who.user_id not in access.allowed_users:
            return Refusal(RefusalReason.ACCESS,
                           "Sorry, this GeoSleuth bot is private. Ask its admins for access.")
        if (access.allowed_chats and who.chat_type != "private"
                and who.place not in access.allowed_chats):
            return Refusal(RefusalReason.ACCESS,
                           "This GeoSleuth bot is not enabled for this chat. Ask its admins.")
        return None

    def admit(self, who: Requester, file_size: int | None) -> Refusal | None:
        """Before downloading a photo: access, size and rate limits (a try is counted)."""
        refusal = self._admission(who, file_size)
        if refusal is not None:
            self.metrics.refusals.labels(refusal.reason.value).inc()
        return refusal

    def admit_video(self, who: Requester, file_size: int | None,
                    duration_s: float | None) -> Refusal | None:
        """Before downloading a video: its size and length against [engine.video] (as the
        platform reports them; the file itself is checked again), then as a photo."""
        video = self._config.engine.video
        refusal = None
        if file_size is not None and file_size > video.max_bytes:
            refusal = Refusal(RefusalReason.TOO_LARGE,
                              f"That video is {file_size / 1e6:.1f} MB; the limit is"
                              f" {video.max_bytes / 1e6:.0f} MB. Send a shorter clip, or a"
                              " screenshot of its clearest frame.")
        elif duration_s is not None and duration_s > video.max_seconds:
            refusal = Refusal(RefusalReason.TOO_LARGE,
                              f"That video is {clock(duration_s, tenths=False)} long; the limit"
                              f" is {clock(video.max_seconds, tenths=False)}. Send a shorter"
                              " clip, or a screenshot of its clearest frame.")
        if refusal is not None:
            self.metrics.refusals.labels(refusal.reason.value).inc()
            return refusal
        return self.admit(who, None)

    @property
    def max_video_bytes(self) -> int:
        return self._config.engine.video.max_bytes

    def _admission(self, who: Requester, file_size: int | None) -> Refusal | None:
        refusal = self.check_access(who)
        if refusal is not None:
            return refusal
        limit = self.max_file_bytes
        if file_size is not None and file_size > limit:
            return Refusal(RefusalReason.TOO_LARGE,
                           f"That file is {file_size / 1e6:.1f} MB; the limit is"
                           f" {limit / 1e6:.0f} MB. Send a smaller or compressed copy.")
        user_key = f"{who.platform}:{who.user_id}"
        wait = self._per_user.retry_after(user_key)
        if wait == 0:
            wait = self._per_chat.retry_after(f"{who.platform}:{who.place}")
            if wait:
                self._per_user.refund(user_key)
        if wait:
            return Refusal(RefusalReason.RATE_LIMIT,
                           f"Too many photos at once. Try again in {max(1, round(wait))} s.",
                           retry_after_s=wait)
        return None

    # --- locating ----------------------------------------------------------------------

    async def locate(
        self,
        who: Requester,
        image: bytes,
        area_hint: str | None = None,
        on_progress: ProgressHandler | None = None,
        *,
        hint_is_explicit: bool = True,
    ) -> Answer | Refusal:
        """Locate an admitted photo; every outcome is an answer or a reason, never silence.

        An explicit hint (/locate Amsterdam) that cannot be understood is refused with the
        reason; free text beside a mention ("@bot where is this?") is used only if it reads
        as an area.
        """
        started = time.perf_counter()
        outcome = await self._locate(who, image, area_hint, on_progress, hint_is_explicit)
        return self._counted(outcome, started)

    async def locate_album(
        self,
        who: Requester,
        photos: Sequence[Upload],
        area_hint: str | None = None,
        on_progress: ProgressHandler | None = None,
        *,
        hint_is_explicit: bool = True,
        skipped: Sequence[str] = (),
    ) -> Answer | Refusal:
        """Several admitted photos of one place as one request (one history line, one try
        against the rate limits): each is located, then their evidence is fused into one
        answer. A photo that cannot be read is named in the answer; all of them, a refusal.
        `skipped`: lines for parts the adapter did not fetch ("photo 3 (notes.txt): ..."),
        named in the answer the same way."""
        started = time.perf_counter()
        digest = _joint_digest("album", [p.data for p in photos])
        outcome = await self._locate_album(who, photos, [None] * len(photos), digest,
                                           area_hint, on_progress, hint_is_explicit,
                                           tuple(skipped))
        return self._counted(outcome, started)

    async def locate_video(
        self,
        who: Requester,
        video: bytes,
        area_hint: str | None = None,
        on_progress: ProgressHandler | None = None,
        *,
        hint_is_explicit: bool = True,
    ) -> Answer | Refusal:
        """An admitted video: a few keyframes chosen by scene change, located as an album
        whose photos carry their times (frames that move in order answer with a track)."""
        started = time.perf_counter()
        outcome = await self._locate_video(who, video, area_hint, on_progress, hint_is_explicit)
        return self._counted(outcome, started)

    def _counted(self, outcome: Answer | Refusal, started: float) -> Answer | Refusal:
        if isinstance(outcome, Refusal):
            self.metrics.refusals.labels(outcome.reason.value).inc()
        else:
            label = outcome.result.status.value + (" (cached)" if outcome.cached else "")
            self.metrics.answers.labels(label).inc()
        self.metrics.answer_seconds.observe(time.perf_counter() - started)  # a refusal answers too
        return outcome

    def _search_area(self, area_hint: str | None,
                     hint_is_explicit: bool) -> AreaHint | Refusal | None:
        try:
            return parse_area_hint(area_hint or "")
        except SearchAreaError as exc:
            return Refusal(RefusalReason.BAD_AREA, str(exc)) if hint_is_explicit else None

    async def _locate(self, who: Requester, image: bytes, area_hint: str | None,
                      on_progress: ProgressHandler | None,
                      hint_is_explicit: bool) -> Answer | Refusal:
        hint = self._search_area(area_hint, hint_is_explicit)
        if isinstance(hint, Refusal):
            return hint
        if self._engine is None:
            return Refusal(RefusalReason.ENGINE, self._engine_error or "The engine is not running.")
        digest = hashlib.sha256(image).hexdigest()
        stored = image if self._config.store.keep_images else None
        request_id = await self._store.start_request(
            who.platform, who.chat_id, who.user_id, who.user_name, who.chat_type, digest, stored,
            area_json(hint),
        )
        area = hint.area if hint else None
        area_label = f"Searched {hint.label}" if hint else None
        answer_key = _answer_key(await self._engine.current_answer_key(), area)
        try:
            cached = await self._cached(digest, answer_key, image)
            result = cached or await self._engine.locate(image, area=area,
                                                         on_progress=on_progress)
        except SearchAreaError as exc:  # an area the index holds nothing of: no match there
            cached, nothing = None, await self._nothing_in(hint, image)
            if nothing is None:
                await self._store.fail_request(request_id, type(exc).__name__)
                return Refusal(_reason_for(exc), str(exc))
            result = nothing
        except GeoSleuthError as exc:
            await self._store.fail_request(request_id, type(exc).__name__)
            return Refusal(_reason_for(exc), str(exc))
        except Exception as exc:  # the user still hears back; the log keeps the trace
            log.exception("locating failed")
            await self._store.fail_request(request_id, type(exc).__name__)
            return Refusal(RefusalReason.ENGINE,
                           "Something went wrong while locating this photo. It has been logged;"
                           " please try again later.")
        summary, map_png = await self._answered(request_id, result, image, answer_key,
                                                area_label, keep_photo=cached is None)
        offer = None
        if hint is not None and not result.located and not await self.covers.covers_area(
                hint.area.west, hint.area.south, hint.area.east, hint.area.north):
            offer = cover_argument(area_hint or "", hint, self._config.engine.cover.max_area_km2)
        return Answer(request_id, result, summary, map_png, cached is not None, offer)

    async def _nothing_in(self, hint: AreaHint | None, image: bytes) -> LocateResult | None:
        """"No confident match" for a photo searched where the index has no reference at all
        (a /cover away from an answer); None when the area does hold some."""
        if hint is None or await self.covers.covers_area(
                hint.area.west, hint.area.south, hint.area.east, hint.area.north):
            return None
        try:
            exif_gps = read_exif_gps(image)
        except ImageError:
            exif_gps = None
        assert self._engine is not None
        return LocateResult(Status.NO_MATCH, None, None, 0.0, None, (), (), exif_gps, {}, "",
                            "", self._engine.index_version)

    def cover_offer_text(self, offer: str, *, may_cover: bool) -> str:
        """Said under a "no confident match" whose area the index does not cover."""
        what = "The index has no reference photos in that area yet, so nothing there to match."
        if may_cover:
            return f"{what} /cover {offer} fetches its open street-level imagery."
        return f"{what} Ask an admin to /cover {offer}."

    async def _second_look(self, watch: CoverWatch, job: CoverJob) -> SecondLook:
        """After a cover: the chat's recent unplaced photos whose search area or leads lie in
        the covered box are located again, where the photo is still at hand (recent photos in
        memory, or the store's with keep_images)."""
        box = job.request.bbox
        records = await self._store.unplaced_requests(
            watch.platform, watch.chat_id, self._config.service.relook_days,  # type: ignore[arg-type]
            SECOND_LOOK_MAX)
        placed, looked, not_kept = [], 0, 0
        for record in records:
            area = stored_area(record.area_json)
            if not waits_in(record, area, box):
                continue
            recent = self._recent.get(record.id)
            image = recent[0] if recent is not None else record.image
            if image is None:
                not_kept += 1
                continue
            looked += 1
            answer = await self._placed_again(record, image, area)
            if answer is not None:
                placed.append((record, answer))
        return SecondLook(tuple(placed), looked, not_kept)

    async def _placed_again(self, earlier: RequestRecord, image: bytes,
                            area: SearchArea | None) -> Answer | None:
        """A new answer, recorded as a new request of the same asker, if it now places the
        photo; nothing is recorded when it still does not."""
        assert self._engine is not None
        try:
            result = await self._engine.locate(image, area=area)
        except GeoSleuthError as exc:
            log.warning("a second look at request %d failed: %s", earlier.id, exc)
            return None
        if not result.located:
            return None
        request_id = await self._store.start_request(
            earlier.platform, earlier.chat_id, earlier.user_id, earlier.user_name,
            earlier.chat_type, earlier.image_sha256, image, earlier.area_json)
        answer_key = _answer_key(await self._engine.current_answer_key(), area)
        label = json.loads(earlier.area_json)["label"] if earlier.area_json else None
        summary, map_png = await self._answered(request_id, result, image, answer_key,
                                                f"Searched {label}" if label else None,
                                                keep_photo=True)
        return Answer(request_id, result, summary, map_png, cached=False)

    async def _answered(self, request_id: int, result: LocateResult, image: bytes,
                        answer_key: str, area_label: str | None, *,
                        keep_photo: bool) -> tuple[AnswerSummary, bytes]:
        """Record one photo's answer, keep the photo for its evidence (unless the answer came
        from the cache, where it is not new), and put the answer in words and on a map."""
        # The photo's own EXIF position is not kept: it is read again when the answer is reused.
        stored = dataclasses.replace(result, exif_gps=None)
        await self._store.finish_request(request_id, json.dumps(stored.to_json()),
                                         result.index_version, answer_key)
        if keep_photo:
            self._recent.put(request_id, image, result)
        map_png = await asyncio.to_thread(render_map, result, self._config.map)
        return _summary(result, area_label), map_png

    async def _locate_video(self, who: Requester, video: bytes, area_hint: str | None,
                            on_progress: ProgressHandler | None,
                            hint_is_explicit: bool) -> Answer | Refusal:
        if on_progress is not None:
            await _emit(on_progress, "🎞 Choosing frames from the video…")
        try:
            async with self._video_slot:  # decoding is CPU work: one video at a time
                frames = await asyncio.to_thread(keyframes, video, self._config.engine.video)
        except GeoSleuthError as exc:
            return Refusal(_reason_for(exc), str(exc))
        uploads = [Upload(clock(f.time_s), f.image) for f in frames]
        return await self._locate_album(who, uploads, [f.time_s for f in frames],
                                        _joint_digest("video", [video]), area_hint,
                                        on_progress, hint_is_explicit)

    async def _locate_album(self, who: Requester, uploads: Sequence[Upload],
                            times: Sequence[float | None], digest: str,
                            area_hint: str | None, on_progress: ProgressHandler | None,
                            hint_is_explicit: bool,
                            skipped: tuple[str, ...] = ()) -> Answer | Refusal:
        hint = self._search_area(area_hint, hint_is_explicit)
        if isinstance(hint, Refusal):
            return hint
        if self._engine is None:
            return Refusal(RefusalReason.ENGINE, self._engine_error or "The engine is not running.")
        request_id = await self._store.start_request(
            who.platform, who.chat_id, who.user_id, who.user_name, who.chat_type, digest, None)
        area = hint.area if hint else None
        answer_key = _answer_key(await self._engine.current_answer_key(), area)
        outcomes = await asyncio.gather(*(
            self._locate_part(upload, i, len(uploads), area, answer_key, on_progress)
            for i, upload in enumerate(uploads, 1)), return_exceptions=True)
        located = [(upload, AlbumPhoto(upload.label, outcome, time_s))
                   for upload, time_s, outcome in zip(uploads, times, outcomes, strict=True)
                   if isinstance(outcome, LocateResult)]
        unread = skipped + tuple(f"{upload.label}: {_part_failure(outcome)}"
                                 for upload, outcome in zip(uploads, outcomes, strict=True)
                                 if not isinstance(outcome, LocateResult))
        if not located:
            first = outcomes[0]
            await self._store.fail_request(request_id, type(first).__name__)
            reason = _reason_for(first) if isinstance(first, Exception) else RefusalReason.ENGINE
            return Refusal(reason, "None of them could be located. " + "; ".join(unread))
        try:
            album = await self._engine.fuse([photo for _, photo in located])
        except GeoSleuthError as exc:
            await self._store.fail_request(request_id, type(exc).__name__)
            return Refusal(_reason_for(exc), str(exc))
        # As for one photo, the photos' own EXIF positions are not kept.
        stored = dataclasses.replace(album, photos=tuple(
            dataclasses.replace(p, result=dataclasses.replace(p.result, exif_gps=None))
            for p in album.photos))
        record = stored.to_json()
        if unread:  # so the caption redrawn after a vote still names them
            record["unread"] = list(unread)
        await self._store.finish_request(request_id, json.dumps(record),
                                         located[0][1].result.index_version, answer_key)
        if album.best_photo is not None:
            upload, photo = located[album.best_photo]
            self._recent.put(request_id, upload.data, photo.result)
        summary = _album_summary(album, f"Searched {hint.label}" if hint else None, unread)
        map_png = await asyncio.to_thread(render_album_map, album, self._config.map)
        return Answer(request_id, album, summary, map_png, cached=False)

    async def _locate_part(self, upload: Upload, index: int, count: int,
                           area: SearchArea | None, answer_key: str,
                           on_progress: ProgressHandler | None) -> LocateResult:
        """One photo of an album: a cached answer to the same photo, else the engine's."""
        cached = await self._cached(hashlib.sha256(upload.data).hexdigest(), answer_key,
                                    upload.data)
        if cached is not None:
            return cached

        def forward(event: Progress) -> Awaitable[None] | None:
            assert on_progress is not None
            return on_progress(PartProgress(upload.label, index, count, event))

        return await self._engine.locate(upload.data, area=area,  # type: ignore[union-attr]
                                         on_progress=None if on_progress is None else forward)

    async def _cached(self, digest: str, answer_key: str, image: bytes) -> LocateResult | None:
        text = await self._store.cached_result(digest, answer_key)
        if text is None:
            return None
        try:
            exif_gps = read_exif_gps(image)
        except ImageError:
            exif_gps = None
        return dataclasses.replace(result_from_json(json.loads(text)), exif_gps=exif_gps)

    async def answer_summary(self, request_id: int, who: Requester) -> AnswerSummary | None:
        """The answer's words again (to redraw a caption with the vote tally)."""
        data = await self._stored(request_id, who)
        if data is None:
            return None
        if is_album_json(data):
            return _album_summary(album_from_json(data), None, tuple(data.get("unread", ())))
        return _summary(self._single(request_id, data), None)

    async def set_reply_ref(self, request_id: int, reply_ref: str) -> None:
        await self._store.set_reply_ref(request_id, reply_ref)

    # --- follow-ups (buttons) -----------------------------------------------------------
    # Button data comes from the client: a request id is honoured only in the chat that made
    # the request, and a press is admitted and rate-limited (`admit`) like a photo.

    async def alternatives(self, request_id: int, who: Requester) -> tuple[str, bytes] | Refusal:
        """Other candidate places on their own map, with where the top candidates fall."""
        result = await self._result(request_id, who)
        if result is None:
            return _GONE
        if isinstance(result, AlbumResult):
            return await self._album_alternatives(result)
        if not result.alternatives and not result.matches:
            return Refusal(RefusalReason.ENGINE, "There are no other candidate places.")
        lines = ["Other candidate places:"] if result.alternatives else []
        lines += [f"{i}. {a.lat:.6f}, {a.lon:.6f} - {a.confidence:.0%}"
                  f" ({a.best_inliers} correspondences)"
                  for i, a in enumerate(result.alternatives, 1)]
        if not result.alternatives:
            lines.append("No other place was verified; the map shows where the closest"
                         " candidates are.")
        png = await asyncio.to_thread(render_map, result, self._config.map, heat=True)
        return "\n".join(lines), png

    async def _album_alternatives(self, album: AlbumResult) -> tuple[str, bytes] | Refusal:
        """An album's other places, and where each photo alone placed itself."""
        lines = [f"{i}. {a.lat:.6f}, {a.lon:.6f} - {a.confidence:.0%}"
                 f" ({a.best_inliers} correspondences)"
                 for i, a in enumerate(album.alternatives, 1)]
        own = [f"{p.label}: {p.result.lat:.6f}, {p.result.lon:.6f} ({p.result.confidence:.0%})"
               for p in album.photos if p.result.located]
        if not lines and not own:
            return Refusal(RefusalReason.ENGINE, "There are no other candidate places.")
        text = "\n".join((["Other candidate places:", *lines] if lines else [])
                         + (["Each photo on its own:", *own] if own else []))
        png = await asyncio.to_thread(render_album_map, album, self._config.map)
        return text, png

    async def evidence(self, request_id: int, who: Requester) -> tuple[str, bytes] | Refusal:
        """The photo beside its best reference, verified correspondences drawn."""
        if await self._owned(request_id, who) is None:
            return _GONE
        recent = self._recent.get(request_id)
        if recent is None or self._engine is None:
            return Refusal(RefusalReason.ENGINE,
                           "The evidence picture is no longer available: photos are not kept."
                           " Send the photo again to see it.")
        image, result = recent
        if result.best_reference is None or not result.correspondences:
            return Refusal(RefusalReason.ENGINE,
                           "No reference photo was verified, so there is no evidence to show.")
        reference = await self._engine.reference_picture(result.best_reference)
        best = result.best_match
        name = reference_name(result.best_reference.source, result.best_reference.source_id)
        caption = (f"Your photo (left) and {name} (right):"
                   f" {best.inliers if best else 0} verified correspondences")
        png = await asyncio.to_thread(render_result_evidence, image, self._config.engine.decode,
                                      reference, result, caption)
        return caption, png

    async def vote(self, request_id: int, who: Requester, vote: str) -> Tally | Refusal:
        if vote not in ("confirm", "dispute"):
            return Refusal(RefusalReason.ENGINE, "Unknown vote.")
        if await self._owned(request_id, who) is None:
            return _GONE
        try:
            return await self._store.vote(request_id, who.user_id, who.user_name, vote)
        except StoreError:  # unknown, unanswered, or forgotten meanwhile
            return _GONE

    async def _owned(self, request_id: int, who: Requester) -> RequestRecord | None:
        """The request, if it was made in `who`'s chat; another chat's is as good as absent."""
        record = await self._store.get_request(request_id)
        if record is None or (record.platform, record.chat_id) != (who.platform, who.chat_id):
            return None
        return record

    async def _result(self, request_id: int,
                      who: Requester) -> LocateResult | AlbumResult | None:
        data = await self._stored(request_id, who)
        if data is None:
            return None
        return album_from_json(data) if is_album_json(data) else self._single(request_id, data)

    async def _stored(self, request_id: int, who: Requester) -> dict[str, Any] | None:
        """The request's answer as the store keeps it, if it was made in `who`'s chat."""
        record = await self._owned(request_id, who)
        if record is None or not record.result_json:
            return None
        return json.loads(record.result_json)

    def _single(self, request_id: int, data: dict[str, Any]) -> LocateResult:
        """One photo's answer: the one in memory (with its evidence), else the stored one."""
        recent = self._recent.get(request_id)
        return recent[1] if recent is not None else result_from_json(data)

    # --- chat commands -------------------------------------------------------------------

    async def history_text(self, who: Requester, limit: int = 10) -> str:
        records = await self._store.history(who.platform, who.chat_id, limit)
        if not records:
            return "No photos have been located in this chat yet."
        lines = ["Recent results in this chat:"]
        for record in records:
            data = json.loads(record.result_json or "{}")
            when = record.created_at[:16].replace("T", " ")
            if is_album_json(data):
                when += f" ({len(data.get('photos', []))} photos)"
            if data.get("status") == "located":
                lat, lon = data["lat"], data["lon"]
                lines.append(f"{when} {record.user_name}: {lat:.5f}, {lon:.5f}"
                             f" ({data['confidence']:.0%}) https://www.openstreetmap.org/"
                             f"?mlat={lat:.6f}&mlon={lon:.6f}")
            else:
                lines.append(f"{when} {record.user_name}: no confident match")
        return "\n".join(lines)

    async def forget(self, who: Requester) -> int:
        records = await self._store.history(who.platform, who.chat_id, limit=1_000_000)
        self._recent.drop({r.id for r in records})
        return await self._store.forget_chat(who.platform, who.chat_id)

    async def export(self, who: Requester, fmt: str | None, *,
                     chat_admin: bool) -> CaseExport | Refusal:
        """The chat's case file for map tools: GeoJSON and KML, or only the format named.

        A group's file holds every member's questions and names, so there only its admins
        (`chat_admin`, as the platform knows them) and the bot's admins may; in a private chat
        anyone. Admitted and rate-limited like a photo: it reads the chat's whole history.
        """
        outcome = await self._export(who, fmt, chat_admin)
        if isinstance(outcome, Refusal):
            self.metrics.refusals.labels(outcome.reason.value).inc()
        return outcome

    async def _export(self, who: Requester, fmt: str | None,
                      chat_admin: bool) -> CaseExport | Refusal:
        formats = (fmt.lower(),) if fmt else ("geojson", "kml")
        if formats[0] not in FORMATS:
            return Refusal(RefusalReason.BAD_COMMAND,
                           f"Unknown format '{fmt[:20]}': choose {', '.join(FORMATS[:-1])} or"
                           f" {FORMATS[-1]} (or none, for GeoJSON and KML).")
        if who.chat_type != "private" and not (chat_admin or self.is_admin(who)):
            return Refusal(RefusalReason.ACCESS, "Only this chat's admins can export its history.")
        refusal = self._admission(who, None)
        if refusal is not None:
            return refusal
        records = await self._store.answers_for_export(who.platform, who.chat_id)
        if not records:
            return Refusal(RefusalReason.NOTHING,
                           "No photos have been located in this chat yet: there is nothing to"
                           " export.")
        case, files = await asyncio.to_thread(_case_files, who, records, formats)
        located = len(case.located)
        summary = f"This chat's case: {located} located answer{'s' * (located != 1)}"
        if unplaced := len(case.answers) - located:
            summary += f", {unplaced} without a place (listed in the CSV only)"
        if case.skipped:
            summary += f"; {case.skipped} kept answers could not be read and are left out"
        return CaseExport(files, summary + ".")

    async def stats_text(self, who: Requester) -> str:
        if not self.is_admin(who):
            return "Only the bot's admins can see its statistics."
        stats = await self._store.stats()
        engine = "not running" if self._engine is None else (
            f"queue {self._engine.queue_length}, index {self._engine.index_version}")
        return (f"Requests: {stats.requests_total} ({stats.requests_last_24h} in 24 h);"
                f" done {stats.done}, failed {stats.failed}, interrupted {stats.interrupted}.\n"
                f"Users {stats.distinct_users}, chats {stats.distinct_chats}."
                f" Feedback: {stats.confirms} confirmed, {stats.disputes} disputed.\n"
                f"Engine: {engine}.")

    def privacy_text(self) -> str:
        kept = ("the photo itself is kept" if self._config.store.keep_images
                else "the photo itself is not stored")
        return (
            "What GeoSleuth keeps: for each photo, a fingerprint (SHA-256 hash), who sent it in"
            f" which chat, when, and the answer (without the photo's own GPS); {kept}."
            " Recent photos stay in memory only"
            " while the evidence button may need them, and while they wait for a second look:"
            " when an admin's /cover fetches the imagery of an area, this chat's recent"
            " unplaced photos of that area are located again if the bot still has them (in"
            " memory, or kept). Confirm/dispute votes are kept with the"
            f" voter's name. Records are deleted after {self._config.store.retention_days} days;"
            " /forget deletes this chat's history now."
        )

    async def interrupted_requests(self) -> list:
        """Requests a previous run left unanswered (the adapters tell their users)."""
        return await self._store.interrupted_requests()

    async def purge_old_records(self) -> int:
        return await self._store.purge_older_than(self._config.store.retention_days)


def _answer_key(engine_key: str, area: SearchArea | None) -> str:
    """What an answer depends on besides the photo: the engine (index, models, settings,
    calibration) and the search area. A change of either must not serve an old answer."""
    return hashlib.sha256(f"{engine_key}|{area!r}".encode()).hexdigest()


def _case_files(who: Requester, records: list[RecordedAnswer], formats: tuple[str, ...]
                ) -> tuple[Case, tuple[tuple[str, bytes], ...]]:
    """Off the event loop: a long history takes a while to read and write."""
    case = read_case(f"GeoSleuth: {who.platform} chat {who.chat_id}", records, place_name)
    now = datetime.now(UTC)
    return case, tuple((export_filename(who.platform, who.chat_id, fmt, now), render(case, fmt))
                       for fmt in formats)


def _album_summary(album: AlbumResult, area_label: str | None,
                   unread: tuple[str, ...]) -> AnswerSummary:
    place = None
    if album.located:
        nearby = gazetteer().nearest_place(album.lat, album.lon)  # type: ignore[arg-type]
        place = nearby.describe() if nearby else None
    return summarise_album(album, place=place, area=area_label, unread=unread)


def _joint_digest(kind: str, parts: Sequence[bytes]) -> str:
    """An album's or video's fingerprint, never equal to a single photo's (so a cached
    single answer is never read as an album's, or the other way round)."""
    joint = hashlib.sha256(kind.encode())
    for part in parts:
        joint.update(hashlib.sha256(part).digest())
    return f"{kind}:{joint.hexdigest()}"


def _part_failure(outcome: object) -> str:
    if isinstance(outcome, GeoSleuthError):
        return str(outcome)
    log.error("locating an album's photo failed", exc_info=outcome)  # type: ignore[arg-type]
    return "something went wrong on our side (logged)"


async def _emit(on_progress: ProgressHandler, event: ProgressEvent) -> None:
    outcome = on_progress(event)
    if inspect.isawaitable(outcome):
        await outcome


def _summary(result: LocateResult, area_label: str | None) -> AnswerSummary:
    place = None
    if result.located:
        nearby = gazetteer().nearest_place(result.lat, result.lon)  # type: ignore[arg-type]
        place = nearby.describe() if nearby else None
    return summarise_answer(result, place=place, area=area_label)


def _reason_for(exc: Exception) -> RefusalReason:
    if isinstance(exc, EngineBusy):
        return RefusalReason.BUSY
    if isinstance(exc, EngineTimeout):
        return RefusalReason.TIMEOUT
    if isinstance(exc, ImageError):
        return RefusalReason.BAD_IMAGE
    if isinstance(exc, SearchAreaError):
        return RefusalReason.BAD_AREA
    return RefusalReason.ENGINE
