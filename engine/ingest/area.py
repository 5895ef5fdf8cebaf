"""The bounding box a crawl covers, and the grid of cells it is asked for in."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import SourceError

_KM_PER_DEGREE_LAT = 111.32


@dataclass(frozen=True, slots=True)
class BBox:
    """West, south, east, north in degrees (the order of STAC's and Mapillary's bbox)."""

    west: float
    south: float
    east: float
    north: float

    @classmethod
    def parse(cls, text: str) -> BBox:
        """"W,S,E,N" as a user types it; anything else is refused with what was expected."""
        try:
            west, south, east, north = (float(part) for part in text.split(","))
        except ValueError:
            raise SourceError(f"--bbox {text!r} is not W,S,E,N (four numbers in degrees,"
                              " e.g. 4.85,52.35,4.95,52.40)") from None
        box = cls(west, south, east, north)
        if not all(math.isfinite(v) for v in (west, south, east, north)):
            raise SourceError(f"--bbox {text!r} holds a value that is not a number")
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise SourceError(f"--bbox {text!r}: need -180 <= W < E <= 180 and"
                              " -90 <= S < N <= 90")
        return box

    @property
    def key(self) -> str:
        """Names the area in the crawl state, stable across runs of the same command."""
        return ",".join(f"{v:.6f}" for v in (self.west, self.south, self.east, self.north))

    def as_list(self) -> list[float]:
        return [self.west, self.south, self.east, self.north]

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east

    def quarters(self) -> list[BBox]:
        """Four cells, for an answer that was cut off at the platform's page limit."""
        mid_lon, mid_lat = (self.west + self.east) / 2, (self.south + self.north) / 2
        return [BBox(self.west, self.south, mid_lon, mid_lat),
                BBox(mid_lon, self.south, self.east, mid_lat),
                BBox(self.west, mid_lat, mid_lon, self.north),
                BBox(mid_lon, mid_lat, self.east, self.north)]

    def grid(self, cell_km: float) -> list[BBox]:
        """Cells of about `cell_km` on a side, covering the box row by row."""
        mid_lat = math.radians((self.south + self.north) / 2)
        lat_step = cell_km / _KM_PER_DEGREE_LAT
        lon_step = cell_km / (_KM_PER_DEGREE_LAT * max(math.cos(mid_lat), 0.01))
        rows = max(1, math.ceil((self.north - self.south) / lat_step - 1e-9))
        cols = max(1, math.ceil((self.east - self.west) / lon_step - 1e-9))
        height, width = (self.north - self.south) / rows, (self.east - self.west) / cols
        return [
            BBox(self.west + c * width, self.south + r * height,
                 self.west + (c + 1) * width, self.south + (r + 1) * height)
            for r in range(rows)
            for c in range(cols)
        ]
