"""Covers from the chat: `/cover` asked, planned and started, its progress followed into one
message, its end reported, and `/coverage` drawn.

The engine runs the crawl (queued, resumable); this desk decides who may ask, reads the area,
and follows each job a chat watches by polling the engine. A watch is kept in the store, so a
restarted bot goes on editing the same message, or reports the summary of a cover that ended
while it was down. Adapters supply a `CoverSink` that edits and sends on their platform.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.chat.cover_area import CoverArea, PlaceChoice, read_cover_area, town_area
from bot.chat.places import gazetteer
from bot.chat.requests import Refusal, RefusalReason, Requester
from bot.chat.store import CoverWatch, RequestRecord, Store
from bot.config import AppConfig
from bot.render.cover_text import coverage_caption, plan_text, progress_text
from bot.render.map import render_coverage_map
from engine.cover import CoverJob, CoverRequest
from engine.errors import GeoSleuthError, SearchAreaError

if TYPE_CHECKING:
    from bot.chat.service import Answer  # the service builds the desk

log = logging.getLogger(__name__)

COVERAGE_CELL_KM = 1.0
MAX_NAMED_AREAS = 8  # /coverage's caption names the largest areas, then counts the rest


@dataclass(frozen=True, slots=True)
class CoverStarted:
    """A cover the engine took: the adapter posts `text` (with a Cancel button), then calls
    `CoverDesk.follow` with the message it posted."""

    job: CoverJob
    label: str
    text: str


@dataclass(frozen=True, slots=True)
class SecondLook:
    """What a finished cover did for the chat's unplaced photos in its area."""

    placed: tuple[tuple[RequestRecord, Answer], ...]  # (the earlier request, its new answer)
    looked: int  # photos located again
    not_kept: int  # photos in the area that the bot no longer has


class CoverSink(Protocol):
    """An adapter's side of a watched cover."""

    async def show(self, watch: CoverWatch, text: str, *, running: bool) -> None:
        """Edit the progress message (a Cancel button while `running`)."""

    async def placed(self, watch: CoverWatch, earlier: RequestRecord, answer: Answer) -> None:
        """Tell the chat that an earlier photo is now placed, with its new answer."""


Relook = Callable[[CoverWatch, CoverJob], Awaitable[SecondLook]]


MAX_OFFERS_KEPT = 1024  # chats whose namesake question is remembered (the oldest forgotten)


class CoverDesk:
    def __init__(self, config: AppConfig, engine: Any, store: Store, relook: Relook) -> None:
        """`engine` is an AsyncEngine or RemoteEngine (or None, not running); `relook` locates
        a chat's waiting photos again (the service's)."""
        self._config = config
        self._engine = engine
        self._store = store
        self._relook = relook
        self._following: dict[int, asyncio.Task[None]] = {}
        # The namesakes last offered in each chat: a button may pick only one of them.
        self._offered: OrderedDict[tuple[str, str], frozenset[int]] = OrderedDict()

    def may_cover(self, who: Requester, *, chat_admin: bool) -> bool:
        """The bot's admins anywhere; a group's admins in their group. A cover fetches
        platform data and grows the index everyone shares."""
        return who.user_id in self._config.access.admins or (
            chat_admin and who.chat_type != "private")

    async def ask(self, who: Requester, text: str, *,
                  chat_admin: bool) -> CoverStarted | PlaceChoice | Refusal:
        """/cover TEXT: refused, asked back (namesakes), or planned and started."""
        refusal = self._refusal(who, chat_admin)
        if refusal is not None:
            return refusal
        try:
            area = read_cover_area(text, self._config.engine.cover.max_area_km2)
        except SearchAreaError as exc:
            return _refused("bad_area", str(exc))
        if isinstance(area, PlaceChoice):
            self._offer(who, area)
            return area
        return await self._start(who, area)

    def _offer(self, who: Requester, choice: PlaceChoice) -> None:
        key = (who.platform, who.chat_id)
        self._offered.pop(key, None)
        self._offered[key] = frozenset(place.index for place in choice.places)
        while len(self._offered) > MAX_OFFERS_KEPT:
            self._offered.popitem(last=False)

    async def ask_place(self, who: Requester, index: int, *,
                        chat_admin: bool) -> CoverStarted | Refusal:
        """A namesake picked by its button: `index` is the gazetteer's (button data, so
        anything: it is checked before use)."""
        refusal = self._refusal(who, chat_admin)
        if refusal is not None:
            return refusal
        key = (who.platform, who.chat_id)
        if index not in self._offered.get(key, frozenset()):
            return _refused("bad_command", "That choice has expired; ask with /cover again.")
        del self._offered[key]  # picked: a second press starts no second cover
        place = gazetteer().place(index)
        return await self._start(who, town_area(place, self._config.engine.cover.max_area_km2))

    async def cancel(self, who: Requester, job_id: int, *, chat_admin: bool) -> str:
        """A Cancel button: only a cover this chat watches, only by those who may cover."""
        if not self.may_cover(who, chat_admin=chat_admin):
            return "Only this chat's admins can cancel a cover."
        watch = await self._store.cover_watch(who.platform, who.chat_id, job_id)
        if watch is None or self._engine is None:
            return "That cover is no longer followed here."
        try:
            job = await self._engine.cancel_cover(job_id)
        except GeoSleuthError as exc:
            return str(exc)
        if job is None or job.state in ("done", "failed"):
            return "That cover has already ended."
        return "Cancelled." if job.state == "cancelled" else "Cancelling: it stops shortly."

    async def follow(self, job: CoverJob, label: str, who: Requester,
                     message_ref: str, sink: CoverSink) -> None:
        """Keep the message `message_ref` up to date until the cover ends (across restarts)."""
        watch = await self._store.watch_cover(job.id, who.platform, who.chat_id, who.chat_type,  # type: ignore[arg-type]
                                              who.user_id, message_ref, label)
        self._spawn(watch, sink)

    async def resume(self, platform: str, sink: CoverSink) -> int:
        """After a restart: follow again every cover a chat of `platform` still waits on."""
        watches = await self._store.open_cover_watches(platform)  # type: ignore[arg-type]
        for watch in watches:
            self._spawn(watch, sink)
        return len(watches)

    async def close(self) -> None:
        tasks = list(self._following.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def coverage(self) -> tuple[str, bytes] | Refusal:
        """/coverage: a map of the cells that hold references, and a caption naming where."""
        if self._engine is None:
            return _refused("engine", "The engine is not running.")
        try:
            cells = await self._engine.coverage(COVERAGE_CELL_KM)
        except GeoSleuthError as exc:
            return _refused("engine", str(exc))
        areas = await asyncio.to_thread(_named_areas, cells)
        caption = coverage_caption(areas[:MAX_NAMED_AREAS], len(cells))
        if len(areas) > MAX_NAMED_AREAS:
            caption = caption[:-1] + f"; and {len(areas) - MAX_NAMED_AREAS} more areas."
        references = sum(int(c["references"]) for c in cells)
        png = await asyncio.to_thread(
            render_coverage_map, cells, self._config.map, "Where the index has references",
            f"{references:,} reference photos · {len(cells)} cells of about"
            f" {COVERAGE_CELL_KM:g} km")
        return caption, png

    async def covers_area(self, west: float, south: float, east: float, north: float) -> bool:
        """Whether any reference lies in the box (True when it cannot be told)."""
        if self._engine is None:
            return True
        try:
            cells = await self._engine.coverage(COVERAGE_CELL_KM)
        except (GeoSleuthError, AttributeError):
            return True
        return any(c["west"] <= east and west <= c["east"] and c["south"] <= north
                   and south <= c["north"] for c in cells)

    # --- the work ------------------------------------------------------------------------

    def _refusal(self, who: Requester, chat_admin: bool) -> Refusal | None:
        if not self.may_cover(who, chat_admin=chat_admin):
            who_may = ("this group's admins and the bot's admins" if who.chat_type != "private"
                       else "the bot's admins")
            return _refused("access", f"Only {who_may} can fetch a new area's imagery (a cover"
                            " grows the index everyone shares); ask one of them.")
        if self._engine is None:
            return _refused("engine", "The engine is not running, so nothing can be covered.")
        return None

    async def _start(self, who: Requester, area: CoverArea) -> CoverStarted | Refusal:
        request = CoverRequest(area.bbox, (), area.label, f"{who.platform}:{who.chat_id}")
        try:
            plan = await self._engine.plan_cover(request)
            job = await self._engine.start_cover(request)
        except GeoSleuthError as exc:  # over the cap, a platform down, a token refused
            return _refused("bad_area", str(exc))
        return CoverStarted(job, area.label, plan_text(area.label, plan, job, area.note))

    def _spawn(self, watch: CoverWatch, sink: CoverSink) -> None:
        if watch.id in self._following and not self._following[watch.id].done():
            return
        task = asyncio.create_task(self._follow(watch, sink), name=f"cover-{watch.job_id}")
        self._following[watch.id] = task
        task.add_done_callback(lambda _: self._following.pop(watch.id, None))

    async def _follow(self, watch: CoverWatch, sink: CoverSink) -> None:
        try:
            job = await self._until_finished(watch, sink)
            if job is not None:
                await self._report(watch, job, sink)
        except asyncio.CancelledError:
            raise
        except Exception:  # one cover's report failing must not end the others
            log.exception("following cover %d failed", watch.job_id)

    async def _until_finished(self, watch: CoverWatch, sink: CoverSink) -> CoverJob | None:
        shown = ""
        while True:
            try:
                job = await self._engine.cover_job(watch.job_id)
            except GeoSleuthError as exc:  # a remote engine away for a moment: ask again
                log.warning("cover %d: %s", watch.job_id, exc)
                job = None
            else:
                if job is None:
                    await sink.show(watch, f"The cover of {watch.label} is no longer known to"
                                           " the engine.", running=False)
                    await self._store.cover_reported(watch.id)
                    return None
                text = progress_text(watch.label, job)
                if text != shown:
                    await sink.show(watch, text, running=not job.finished)
                    shown = text
                if job.finished:
                    return job
            await asyncio.sleep(self._config.service.cover_poll_s)

    async def _report(self, watch: CoverWatch, job: CoverJob, sink: CoverSink) -> None:
        """The summary is shown; then the chat's waiting photos in the area get a second look."""
        if await self._store.cover_watch(watch.platform, watch.chat_id, watch.job_id) is None:
            return  # the chat's history was forgotten meanwhile
        if job.state != "failed" and any(int(s.get("added", 0)) for s in job.summary):
            second = await self._relook(watch, job)
            for earlier, answer in second.placed:
                await sink.placed(watch, earlier, answer)
            if second.looked or second.not_kept:
                text = progress_text(watch.label, job) + "\n" + _second_look_line(second)
                await sink.show(watch, text, running=False)
        await self._store.cover_reported(watch.id)


def _second_look_line(second: SecondLook) -> str:
    placed = len(second.placed)
    line = (f"Looked again at {second.looked} earlier unplaced photo"
            f"{'s' * (second.looked != 1)} from this area: {placed} now placed"
            f"{' (answers below)' if placed else ''}.")
    if second.not_kept:
        line += (f" {second.not_kept} more could not be looked at: the bot no longer has"
                 f" {'them' if second.not_kept > 1 else 'it'} (send again).")
    return line


def _named_areas(cells: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """Touching cells grouped, each group named by the town nearest its references' middle;
    groups of one name merged; the most references first."""
    groups: list[list[dict[str, Any]]] = []
    for cell in sorted(cells, key=lambda c: (c["south"], c["west"])):
        touching = [g for g in groups if any(_touch(cell, other) for other in g)]
        merged = [cell] + [c for g in touching for c in g]
        groups = [g for g in groups if g not in touching] + [merged]
    named: dict[str, int] = {}
    places = gazetteer()
    for group in groups:
        weight = sum(int(c["references"]) for c in group)
        lat = sum((c["south"] + c["north"]) / 2 * c["references"] for c in group) / weight
        lon = sum((c["west"] + c["east"]) / 2 * c["references"] for c in group) / weight
        nearby = places.nearest_place(lat, lon)
        name = nearby.label() if nearby else f"around {lat:.3f}, {lon:.3f}"
        named[name] = named.get(name, 0) + weight
    return sorted(named.items(), key=lambda kv: -kv[1])


def _touch(a: dict[str, Any], b: dict[str, Any]) -> bool:
    slack = 1e-6
    return (a["west"] <= b["east"] + slack and b["west"] <= a["east"] + slack
            and a["south"] <= b["north"] + slack and b["south"] <= a["north"] + slack)


def _refused(reason: str, text: str) -> Refusal:
    return Refusal(RefusalReason(reason), text)
