"""Photos that wait for a cover: the search area kept with a request, whether a cover of a
box may place the request, and what to write after /cover for the area it was searched in."""

from __future__ import annotations

import json
import math

from bot.chat.cover_area import CAP_MARGIN, read_cover_area
from bot.chat.places import AreaHint
from bot.chat.store import RequestRecord
from engine.errors import SearchAreaError
from engine.geo import SearchArea
from engine.ingest.area import BBox


def cover_argument(text: str, hint: AreaHint, max_area_km2: float) -> str:
    """What to write after /cover for the area a photo was searched in: the place as the
    user named it where /cover reads it so, else the circle's centre and radius (capped)."""
    words = " ".join(w for w in text.split() if not w.startswith(("/", "@")))
    try:
        if words:
            read_cover_area(words, max_area_km2)  # a place, or namesakes asked back then
            return words
    except SearchAreaError:
        pass
    area = hint.area
    if area.centre is None or area.radius_m is None:
        return f"{area.west:.5f},{area.south:.5f},{area.east:.5f},{area.north:.5f}"
    radius_km = min(area.radius_m / 1000, math.sqrt(max_area_km2) / 2 * CAP_MARGIN)
    return f"{area.centre[0]:.5f},{area.centre[1]:.5f} {radius_km:.1f}"


def area_json(hint: AreaHint | None) -> str | None:
    """A search area as kept with its request (for a cover's second look)."""
    if hint is None:
        return None
    area = hint.area
    return json.dumps({"label": hint.label, "west": area.west, "south": area.south,
                       "east": area.east, "north": area.north, "centre": area.centre,
                       "radius_m": area.radius_m})


def stored_area(text: str | None) -> SearchArea | None:
    if not text:
        return None
    data = json.loads(text)
    centre = tuple(data["centre"]) if data.get("centre") else None
    return SearchArea(data["west"], data["south"], data["east"], data["north"],
                      centre, data.get("radius_m"))  # type: ignore[arg-type]


def waits_in(record: RequestRecord, area: SearchArea | None, box: BBox) -> bool:
    """Whether a cover of `box` may place the request: its search area overlaps the box, or
    one of its leads lies in it."""
    if area is not None and (area.west <= box.east and box.west <= area.east
                             and area.south <= box.north and box.south <= area.north):
        return True
    data = json.loads(record.result_json or "{}")
    leads = [*data.get("alternatives", ()), data]
    return any(lead.get("lat") is not None and lead.get("lon") is not None
               and box.contains(lead["lat"], lead["lon"]) for lead in leads)
