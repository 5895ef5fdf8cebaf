"""Points out of Mapbox vector tiles: Mapillary's coverage and Mapilio's image layer."""

from __future__ import annotations

from typing import Any

import mapbox_vector_tile
import mercantile

from engine.errors import SourceUnavailable


def tile_points(data: bytes, tile: mercantile.Tile, layer_name: str,
                source: str) -> list[tuple[float, float, dict[str, Any]]]:
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
