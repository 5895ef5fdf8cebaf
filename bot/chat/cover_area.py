"""What `/cover` asks for: a place name, LAT,LON RADIUS_KM or W,S,E,N, read as a box to crawl.

A name is resolved offline with the bot's gazetteer. Namesakes of comparable size
("Springfield") are asked back rather than guessed; a town's box grows with its population
and is cut down to what the engine may cover, and the cut is said.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bot.chat.places import Gazetteer, ResolvedPlace, gazetteer
from engine.errors import SearchAreaError
from engine.geo import SearchArea
from engine.ingest.area import BBox

# Namesakes within this factor of the most populous one are asked back: "Springfield" is
# three cities of 110-170 k, while "Lund" is one of 87 k and hamlets.
COMPARABLE_POPULATION = 3.0
MAX_CHOICES = 5
POINT_RADIUS_KM = 1.0  # /cover LAT,LON without a radius
MAX_RADIUS_KM = 50.0  # typed radii beyond this are a mistake, not a town
# A capped box is drawn a little inside the cap: the engine measures area its own way.
CAP_MARGIN = 0.98

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_BOX = re.compile(rf"^(?:bbox\s+)?({_NUMBER})\s*[,\s]\s*({_NUMBER})\s*[,\s]\s*({_NUMBER})"
                  rf"\s*[,\s]\s*({_NUMBER})$", re.IGNORECASE)
_POINT = re.compile(rf"^({_NUMBER})\s*[,\s]\s*({_NUMBER})(?:\s+({_NUMBER})\s*(km|m)?)?$",
                    re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CoverArea:
    """A box to cover, its name for people, and what was done to the request, if anything."""

    bbox: BBox
    label: str
    note: str = ""  # e.g. the town cut down to the cap


@dataclass(frozen=True, slots=True)
class PlaceChoice:
    """A name several places of comparable size answer to: the asker picks one."""

    name: str
    places: tuple[ResolvedPlace, ...]


def town_radius_km(population: int) -> float:
    """Half the side of a town's box: a village 1 km, 100 k people 4 km, a million 5.5 km."""
    return 1.0 + 1.5 * math.log10(max(population, 1000) / 1000)


def read_cover_area(text: str, max_area_km2: float,
                    places: Gazetteer | None = None) -> CoverArea | PlaceChoice:
    """The area `/cover TEXT` names; SearchAreaError, in one sentence, when it names none."""
    text = " ".join(text.split())
    if not text:
        raise SearchAreaError("Say which area: /cover Lund, /cover 55.70,13.19 2 (a radius in"
                              " km) or /cover 13.18,55.69,13.21,55.71 (W,S,E,N).")
    if box := _BOX.match(text):
        west, south, east, north = (float(v) for v in box.groups())
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise SearchAreaError("A box is W,S,E,N in degrees, with W < E and S < N.")
        return CoverArea(BBox(west, south, east, north),
                         f"the box {west:g},{south:g},{east:g},{north:g}")
    if point := _POINT.match(text):
        lat, lon = float(point[1]), float(point[2])
        radius_km = POINT_RADIUS_KM if point[3] is None else float(point[3])
        if (point[4] or "km").lower() == "m":
            radius_km /= 1000
        if not 0 < radius_km <= MAX_RADIUS_KM:
            raise SearchAreaError(f"The radius must be more than 0 and at most"
                                  f" {MAX_RADIUS_KM:g} km.")
        return CoverArea(_square(lat, lon, radius_km),
                         f"{radius_km:g} km around {lat:.5f}, {lon:.5f}")
    named = (places or gazetteer()).named(text, limit=50)
    if not named:
        raise SearchAreaError(f"I don't know a place called '{text[:60]}'. Try a town's name"
                              " (add its country after a comma), or LAT,LON RADIUS_KM.")
    comparable = [p for p in named
                  if p.population * COMPARABLE_POPULATION >= named[0].population]
    if len(comparable) > 1:
        return PlaceChoice(text, tuple(comparable[:MAX_CHOICES]))
    return town_area(named[0], max_area_km2)


def town_area(place: ResolvedPlace, max_area_km2: float) -> CoverArea:
    """The town's box by its population, cut down to the engine's cap (and saying so)."""
    radius_km = town_radius_km(place.population)
    largest_km = math.sqrt(max_area_km2) / 2 * CAP_MARGIN
    note = ""
    if radius_km > largest_km:
        radius_km = largest_km
        side = 2 * radius_km
        note = (f"{place.name} is larger than a cover may be ({max_area_km2:g} km²), so this"
                f" covers its centre, {side:.1f} by {side:.1f} km.")
    return CoverArea(_square(place.lat, place.lon, radius_km), place.label(), note)


def _square(lat: float, lon: float, radius_km: float) -> BBox:
    area = SearchArea.around(lat, lon, radius_km * 1000)
    return BBox(area.west, area.south, area.east, area.north)
