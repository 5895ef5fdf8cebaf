"""Small geodesy helpers: distances, local metric frames, search areas."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.errors import SearchAreaError

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def to_local_xy_m(
    lats: np.ndarray, lons: np.ndarray, lat0: float, lon0: float
) -> np.ndarray:
    """Equirectangular east/north metres around (lat0, lon0): exact enough within a few km."""
    x = np.radians(np.asarray(lons) - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = np.radians(np.asarray(lats) - lat0) * EARTH_RADIUS_M
    return np.stack([x, y], axis=-1)


def offset_latlon(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point `east_m`, `north_m` metres away from (lat, lon)."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


@dataclass(frozen=True, slots=True)
class SearchArea:
    """A box (degrees) the candidates must fall in; a centre+radius also keeps the circle."""

    west: float
    south: float
    east: float
    north: float
    centre: tuple[float, float] | None = None
    radius_m: float | None = None

    @classmethod
    def from_bbox(cls, west: float, south: float, east: float, north: float) -> SearchArea:
        if not (-180 <= west <= 180 and -180 <= east <= 180):
            raise SearchAreaError("bbox longitudes must lie in [-180, 180]")
        if not (-90 <= south < north <= 90):
            raise SearchAreaError("bbox must be W,S,E,N with S < N, latitudes in [-90, 90]")
        if west >= east:
            raise SearchAreaError(
                "bbox must be W,S,E,N with W < E (boxes across 180° are not supported)"
            )
        return cls(west, south, east, north)

    @classmethod
    def around(cls, lat: float, lon: float, radius_m: float) -> SearchArea:
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise SearchAreaError(f"{lat},{lon} is not a valid latitude,longitude")
        if radius_m <= 0:
            raise SearchAreaError("the search radius must be positive")
        dlat = math.degrees(radius_m / EARTH_RADIUS_M)
        dlon = math.degrees(radius_m / (EARTH_RADIUS_M * max(0.01, math.cos(math.radians(lat)))))
        return cls(
            max(-180.0, lon - dlon),
            max(-90.0, lat - dlat),
            min(180.0, lon + dlon),
            min(90.0, lat + dlat),
            centre=(lat, lon),
            radius_m=radius_m,
        )

    def contains(self, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
        """Boolean mask of the points inside the area."""
        lats, lons = np.asarray(lats), np.asarray(lons)
        inside = (lats >= self.south) & (lats <= self.north)
        inside &= (lons >= self.west) & (lons <= self.east)
        if self.centre is not None and self.radius_m is not None:
            xy = to_local_xy_m(lats, lons, *self.centre)
            inside &= np.hypot(xy[..., 0], xy[..., 1]) <= self.radius_m
        return inside


def parse_bbox(text: str) -> SearchArea:
    """Parse 'W,S,E,N' in degrees."""
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise SearchAreaError(f"bbox '{text}' must be four numbers W,S,E,N")
    return SearchArea.from_bbox(*values)


def parse_latlon(text: str) -> tuple[float, float]:
    """Parse 'LAT,LON' in degrees."""
    parts = text.split(",")
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        raise SearchAreaError(f"'{text}' must be LAT,LON in degrees") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise SearchAreaError(f"'{text}' is not a valid latitude,longitude")
    return lat, lon
