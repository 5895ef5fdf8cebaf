"""Points out of Mapbox vector tiles (Mapillary's coverage, Mapilio's image layer), and the
crawl order they give: the tiles over all cells are read once, cells ranked by their points."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import mapbox_vector_tile
import mercantile

from engine.errors import SourceUnavailable
from engine.ingest.area import BBox

Point = tuple[float, float, dict[str, Any]]  # lon, lat, the feature's properties


def tiles_over(cells: Sequence[BBox], zoom: int) -> Iterator[mercantile.Tile]:
    """The tiles at `zoom` that cover every cell."""
    return mercantile.tiles(min(c.west for c in cells), min(c.south for c in cells),
                            max(c.east for c in cells), max(c.north for c in cells), zoom)


def densest_first(cells: Sequence[BBox], points: Sequence[Point]) -> list[BBox]:
    """The cells holding points, the most first: empty cells cost no search at all."""
    counts = [sum(cell.contains(lat, lon) for lon, lat, _ in points) for cell in cells]
    ranked = sorted(range(len(cells)), key=lambda i: -counts[i])
    return [cells[i] for i in ranked if counts[i] > 0]


def tile_points(data: bytes, tile: mercantile.Tile, layer_name: str,
                source: str) -> list[Point]:
    """(lon, lat, properties) of every point feature in one layer of one tile."""
    if not data:
        return []  # tile servers answer an empty body where there is nothing
    try:
        layers = mapbox_vector_tile.decode(data)
    except Exception as exc:  # the decoder raises protobuf's and its own errors alike
        raise SourceUnavailable(source, f"a vector tile could not be decoded ({exc})") from None
    layer = layers.get(layer_name) or {}
    extent = layer.get("extent", 4096)
    bounds = mercantile.xy_bounds(tile)
    points = []
    for feature in layer.get("features", []):
        geometry = feature.get("geometry") or {}
        if geometry.get("type") != "Point":
            continue
        x, y = geometry["coordinates"]
        # Decoded with y pointing up, in tile units: scale into the tile's web-mercator box.
        mx = bounds.left + (bounds.right - bounds.left) * x / extent
        my = bounds.bottom + (bounds.top - bounds.bottom) * y / extent
        lon, lat = mercantile.lnglat(mx, my)
        points.append((lon, lat, feature.get("properties") or {}))
    return points
