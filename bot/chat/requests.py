"""Who asks and how a request is refused: the words the service, the cover desk and the
adapters share."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, from where: ids are strings whatever the platform uses."""

    platform: str
    chat_id: str  # whose history a request joins: a chat, a Discord channel, a user's own
    chat_type: str  # "private", "group", "supergroup", "guild", ...
    user_id: str
    user_name: str
    # The community a chat belongs to (a Discord server): access lists and the per-chat rate
    # limit count it whole. Empty where the chat is the whole group (Telegram).
    group_id: str = ""

    @property
    def place(self) -> str:
        """Where access lists and the per-chat rate limit apply."""
        return self.group_id or self.chat_id


class RefusalReason(StrEnum):
    ACCESS = "access"
    RATE_LIMIT = "rate_limit"
    TOO_LARGE = "too_large"
    BAD_IMAGE = "bad_image"
    BAD_AREA = "bad_area"
    BUSY = "busy"
    TIMEOUT = "timeout"
    ENGINE = "engine"
    BAD_COMMAND = "bad_command"
    NOTHING = "nothing"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: RefusalReason
    text: str
    retry_after_s: float | None = None
