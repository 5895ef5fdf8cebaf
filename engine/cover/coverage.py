"""Where the index has references: grid cells holding at least one, from the catalogue."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.cover.jobs import KM_PER_DEGREE
from engine.errors import SearchAreaError

MIN_CELL_KM, MAX_CELL_KM = 0.05, 500.0


def coverage_cells(lats: np.ndarray, lons: np.ndarray, cell_km: float) -> list[dict[str, Any]]:
    """Cells of about `cell_km` a side on a grid fixed to the globe (rows of latitude, each
    cut in longitude at its own middle's scale), with how many references each holds."""
    if not MIN_CELL_KM <= cell_km <= MAX_CELL_KM:
        raise SearchAreaError(f"cell_km must be from {MIN_CELL_KM:g} to {MAX_CELL_KM:g}")
    if not len(lats):
        return []
    lat_step = cell_km / KM_PER_DEGREE
    rows = np.floor(lats / lat_step).astype(np.int64)
    middles = (rows + 0.5) * lat_step
    lon_steps = cell_km / (KM_PER_DEGREE * np.maximum(np.cos(np.radians(middles)), 0.01))
    columns = np.floor(lons / lon_steps).astype(np.int64)
    cells, counts = np.unique(np.stack([rows, columns], axis=1), axis=0, return_counts=True)
    out = []
    for (row, column), count in zip(cells.tolist(), counts.tolist(), strict=True):
        south = row * lat_step
        lon_step = cell_km / (KM_PER_DEGREE * max(math.cos(math.radians(south + lat_step / 2)),
                                                  0.01))
        out.append({"west": column * lon_step, "south": south,
                    "east": (column + 1) * lon_step, "north": south + lat_step,
                    "references": count})
    return out
