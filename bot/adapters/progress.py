"""Progress words for the chat adapters, and the pacing of the message edits that show them."""

from __future__ import annotations

import time

from bot.chat.service import PartProgress, ProgressEvent
from engine import Progress, Stage

STAGE_TEXT = {
    Stage.DECODING: "🔎 Reading the photo…",
    Stage.DESCRIBING: "🔎 Describing the photo…",
    Stage.SEARCHING: "🔎 Searching the reference photos…",
}
# Chat platforms rate-limit message edits; one a second keeps well within both.
MIN_EDIT_INTERVAL_S = 1.0


def progress_text(event: ProgressEvent) -> str | None:
    """What the progress message says for `event`; None at "done" (the answer replaces it)."""
    if isinstance(event, str):
        return event
    if isinstance(event, PartProgress):
        text = progress_text(event.event)
        return None if text is None else f"{event.label} ({event.index}/{event.count}): {text}"
    return _stage_text(event)


def _stage_text(event: Progress) -> str | None:
    if event.stage is Stage.QUEUED:
        return f"⏳ Queued, position {event.position}…"
    if event.stage is Stage.VERIFYING:
        return f"🔎 Verifying candidates {event.step or 0}/{event.total}…"
    return STAGE_TEXT.get(event.stage)


class EditPacer:
    """Says whether a new text is worth an edit: it changed, and the last edit is old enough."""

    def __init__(self, first_text: str = "") -> None:
        self._text = first_text
        self._last = 0.0

    def ready(self, text: str) -> bool:
        now = time.monotonic()
        if text == self._text or now - self._last < MIN_EDIT_INTERVAL_S:
            return False
        self._text, self._last = text, now
        return True
