"""Mapillary: Graph API v4 for the images, its coverage vector tiles to find where they are.

An image search takes a bbox under 0.01 square degrees and returns at most `limit` images,
without paging: the crawl asks cell by cell and splits a cell whose answer is full. Before
that, the coverage tiles (zoom 14, layer "image") say which cells hold images at all and
how many, so empty cells cost no search and dense ones come first. The token goes in the
Authorization header of Graph requests; the tile server takes it as `access_token`.
All Mapillary imagery is CC BY-SA 4.0.

A 403 from the coverage tile server is a tile it has no object for, not a refused token:
Mapillary's staff on the tiles behind their CDN, "403/404 errors on vector tiles should only
happen when there is an actual tile missing" (github.com/mapillary/mapillary_issues #1401,
2016), and the same 403 for a z14 tile of `mly1_public/2` over an area without imagery in
github.com/mapillary/mapillary-python-sdk #131 (2021). Mapillary publishes no statement of
its own on today's tile server that says otherwise (none found). So a 403 tile is an empty
one; a refused token is told by the Graph API's 401/403, and by a 401 from the tiles.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.ingest.area import BBox
from engine.ingest.http import BadAnswer, PoliteClient
from engine.ingest.listing import Listing, compass, text
from engine.ingest.platform import CellListing
from engine.ingest.tiles import Point, densest_first, tile_points, tiles_over

NAME = "mapillary"
LICENCE = "CC-BY-SA-4.0"
SEARCH_LIMIT = 2000  # the most one image search returns
MAX_BBOX_SQ_DEG = 0.01
COVERAGE_ZOOM = 14
COVERAGE_LAYER = "image"
FIELDS = ("id,geometry,computed_geometry,compass_angle,computed_compass_angle,captured_at,"
          "is_pano,thumb_1024_url,thumb_2048_url,creator")


class Mapillary:
    name = NAME

    def __init__(self, client: PoliteClient, graph_url: str, tiles_url: str, token: str,
                 *, search_limit: int = SEARCH_LIMIT) -> None:
        self.client = client
        self.search_limit = search_limit
        self.graph_url = graph_url.rstrip("/")
        self.tiles_url = tiles_url.rstrip("/")
        self._token = token

    def order_cells(self, cells: list[BBox]) -> list[BBox]:
        return densest_first(cells, self._coverage(cells))

    def list_cell(self, cell: BBox, since: str | None) -> CellListing:
        if (cell.east - cell.west) * (cell.north - cell.south) >= MAX_BBOX_SQ_DEG:
            return CellListing(complete=False)  # over the API's bbox limit: ask for quarters
        params: dict[str, Any] = {"bbox": ",".join(f"{v:.7f}" for v in cell.as_list()),
                                  "fields": FIELDS, "limit": self.search_limit}
        if since:
            params["start_captured_at"] = since
        answer = self.client.get_json(f"{self.graph_url}/images", params)
        records = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(records, list):
            raise BadAnswer("an image search without a data list")
        result = CellListing(complete=len(records) < self.search_limit)
        result.take_each(records, _listing, cell)
        return result

    def _coverage(self, cells: list[BBox]) -> list[Point]:
        """The image points of the coverage tiles over all the cells."""
        points: list[Point] = []
        for tile in tiles_over(cells, COVERAGE_ZOOM):
            data = self.client.get_bytes(f"{self.tiles_url}/{tile.z}/{tile.x}/{tile.y}",
                                         {"access_token": self._token},
                                         empty_statuses=(403, 404))
            points += tile_points(data, tile, COVERAGE_LAYER, self.name)
        return points


def _listing(record: Any) -> Listing | str:
    if not isinstance(record, dict) or not record.get("id"):
        return "a record without an id"
    image_id = str(record["id"])
    geometry = record.get("computed_geometry") or record.get("geometry") or {}
    try:
        lon, lat = (float(v) for v in geometry["coordinates"][:2])
    except (KeyError, TypeError, ValueError):
        return f"{image_id} has no point geometry"
    panorama = bool(record.get("is_pano"))
    url = record.get("thumb_2048_url") if panorama else record.get("thumb_1024_url")
    url = text(url or record.get("thumb_1024_url") or record.get("thumb_2048_url"))
    if url is None:
        return f"{image_id} has no image URL"
    heading = record.get("computed_compass_angle", record.get("compass_angle"))
    creator = record.get("creator")
    return Listing(
        source=NAME,
        source_id=image_id,
        lat=lat,
        lon=lon,
        image_url=url,
        heading_deg=compass(heading),
        captured_at=_iso(record.get("captured_at")),
        panorama=panorama,
        licence=LICENCE,
        creator=text(creator.get("username")) if isinstance(creator, dict) else None,
        link=f"https://www.mapillary.com/app/?pKey={image_id}",
    )


def _iso(captured_at: Any) -> str | None:
    """Mapillary gives capture time in milliseconds since the epoch."""
    if not isinstance(captured_at, int | float):
        return None
    moment = datetime.fromtimestamp(captured_at / 1000, tz=UTC)
    return moment.isoformat().replace("+00:00", "Z")
