"""Mapilio: its image points come as vector tiles (zoom 14, layer `map_points`), and each
image's file from its sequence's detail; no token.

A point carries id, capture_time, heading, sequence_uuid and resolution ("WxH"; a 2:1 image
is an equirectangular panorama). `GET /api/sequence-detail?sequence_uuid=` gives each image's
filename and uploaded_hash, and the CDN serves `{hash}/{filename}/{size}`. The tiles are
read once for the whole area, so cells without images cost nothing and dense ones come
first. The API takes no capture-time filter, so `--since` is applied here.
"""

from __future__ import annotations

from typing import Any

from engine.errors import SourceUnavailable
from engine.ingest.area import BBox
from engine.ingest.http import ImageMissing, PoliteClient
from engine.ingest.listing import Listing, compass
from engine.ingest.platform import CellListing
from engine.ingest.tiles import Point, densest_first, tile_points, tiles_over

NAME = "mapilio"
LICENCE = "CC-BY-SA-4.0"
TILE_ZOOM = 14
POINT_LAYER = "map_points"
IMAGE_SIZE = "2080"  # the larger of the CDN's two sizes (1080, 2080)


class Mapilio:
    name = NAME

    def __init__(self, client: PoliteClient, api_url: str, tiles_url: str,
                 cdn_url: str) -> None:
        self.client = client
        self.api_url = api_url.rstrip("/")
        self.tiles_url = tiles_url
        self.cdn_url = cdn_url.rstrip("/")
        self._points: list[Point] = []
        self._sequences: dict[str, dict[str, dict[str, Any]]] = {}

    def order_cells(self, cells: list[BBox]) -> list[BBox]:
        for tile in tiles_over(cells, TILE_ZOOM):
            url = self.tiles_url.format(z=tile.z, x=tile.x, y=tile.y)
            try:
                data = self.client.get_bytes(url, missing_ok=True)
            except ImageMissing:
                continue  # a tile with nothing in it
            self._points += tile_points(data, tile, POINT_LAYER, self.name)
        return densest_first(cells, self._points)

    def list_cell(self, cell: BBox, since: str | None) -> CellListing:
        result = CellListing()
        for lon, lat, props in self._points:
            if not cell.contains(lat, lon):
                continue
            result.take(self._listing(lon, lat, props), cell, since)
        return result

    def _listing(self, lon: float, lat: float, props: dict[str, Any]) -> Listing | str:
        image_id, sequence = props.get("id"), props.get("sequence_uuid")
        if image_id is None or not sequence:
            return "a point without an id or a sequence"
        detail = self._sequence(str(sequence)).get(str(image_id))
        if not detail or not detail.get("filename") or not detail.get("uploaded_hash"):
            return f"{image_id} is not in its sequence's detail"
        return Listing(
            source=NAME,
            source_id=str(image_id),
            lat=lat,
            lon=lon,
            image_url=f"{self.cdn_url}/{detail['uploaded_hash']}/{detail['filename']}"
                      f"/{IMAGE_SIZE}",
            heading_deg=compass(props.get("heading")),
            captured_at=_iso(props.get("capture_time")),
            panorama=_is_panorama(props.get("resolution")),
            licence=LICENCE,
            creator=detail.get("username"),
            link=f"https://mapilio.com/app?lat={lat:.6f}&lng={lon:.6f}&zoom=17&pId={image_id}",
        )

    def _sequence(self, sequence: str) -> dict[str, dict[str, Any]]:
        if sequence not in self._sequences:
            answer = self.client.get_json(f"{self.api_url}/api/sequence-detail",
                                          {"sequence_uuid": sequence})
            items = answer.get("data") if isinstance(answer, dict) else None
            if isinstance(items, dict):  # some answers nest the list one level deeper
                items = items.get("data")
            if not isinstance(items, list):
                raise SourceUnavailable(self.name, "a sequence detail came without data")
            self._sequences[sequence] = {str(i.get("id")): i for i in items
                                         if isinstance(i, dict)}
        return self._sequences[sequence]


def _is_panorama(resolution: Any) -> bool:
    try:
        width, height = (int(v) for v in str(resolution).lower().split("x"))
    except ValueError:
        return False
    return width == 2 * height


def _iso(capture_time: Any) -> str | None:
    if not isinstance(capture_time, str) or len(capture_time) < 10:
        return None
    return capture_time.replace(" ", "T")
