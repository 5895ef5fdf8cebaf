"""One image as a platform lists it, before anything is downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Listing:
    source: str
    source_id: str
    lat: float
    lon: float
    image_url: str
    heading_deg: float | None = None  # compass bearing of the image centre; None if unknown
    captured_at: str | None = None  # ISO 8601
    panorama: bool = False  # equirectangular 360°: cut into perspective views before indexing
    licence: str | None = None
    creator: str | None = None
    link: str | None = None  # the image's page on the platform

    @property
    def credit(self) -> str:
        """The attribution line an answer shows, e.g. "© jane, CC-BY-SA-4.0 (Mapillary)"."""
        parts = [f"© {self.creator}" if self.creator else None, self.licence]
        named = ", ".join(p for p in parts if p)
        return f"{named} ({self.source})" if named else self.source


def compass(value: Any) -> float | None:
    """A platform's heading as a bearing in [0, 360), or None when it gives no number."""
    return float(value) % 360 if isinstance(value, int | float) else None


def text(value: Any) -> str | None:
    """A platform's optional text field, or None when it gives anything else (an object)."""
    return value if isinstance(value, str) and value else None


def utc_iso(value: Any) -> str | None:
    """An ISO 8601 time as "YYYY-MM-DDTHH:MM:SSZ" in UTC (a time without zone taken as UTC),
    so that capture times compare as text; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
