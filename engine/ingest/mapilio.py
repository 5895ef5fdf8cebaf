"""Mapilio: its image points come as vector tiles (zoom 14, layer `map_points`), and each
image's file from its sequence's detail; no token.

The sequence detail and the CDN are taken from Mapilio's own server, github.com/mapilio/
backend at e98750fa (routes/api.php, app/Http/Controllers/Legacy/Imagery/
SequenceDetailController.php, app/Domain/ImagerySequences/Queries/SequenceDetailQuery.php,
docs/architecture/0005-image-upload-and-serving-contract.md): `GET /api/sequence-detail?
sequence_uuid=` answers `{"data": [...]}` ordered by capture time, each image's id, heading,
filename, uploaded_hash, fov, vfov, pitch, capture_time ("Y-m-d H:i:s"), created_by_id and
resolution ("WxH"), `{"data": null}` for a sequence with none, and 400 without the uuid; no
user name, so the creator is left out. The CDN serves `/im/{uploaded_hash}/{filename}/{size}`.
The point tiles come from Mapilio's GeoServer, which that repository does not hold: their
layer and properties (id, capture_time, heading, sequence_uuid, resolution; a 2:1 image is
an equirectangular panorama) are as our client found them, not checked against a source. A
tile with nothing in it is a 404 or an empty body. The tiles are read once for the whole
area, so cells without images cost nothing and dense ones come first. The API takes no
capture-time filter, so `--since` is applied here.
"""

from __future__ import annotations

from typing import Any

from engine.ingest.area import BBox
from engine.ingest.http import BadAnswer, PoliteClient
from engine.ingest.listing import Listing, compass, text, utc_iso
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
            data = self.client.get_bytes(url, empty_statuses=(404,))
            self._points += tile_points(data, tile, POINT_LAYER, self.name)
        return densest_first(cells, self._points)

    def list_cell(self, cell: BBox, since: str | None) -> CellListing:
        result = CellListing()
        inside = [(lon, lat, props) for lon, lat, props in self._points
                  if cell.contains(lat, lon)]
        result.take_each(inside, lambda point: self._listing(*point), cell, since)
        return result

    def _listing(self, lon: float, lat: float, props: dict[str, Any]) -> Listing | str:
        image_id, sequence = props.get("id"), props.get("sequence_uuid")
        if image_id is None or not sequence:
            return "a point without an id or a sequence"
        detail = self._sequence(str(sequence)).get(str(image_id)) or {}
        filename, uploaded = text(detail.get("filename")), text(detail.get("uploaded_hash"))
        if filename is None or uploaded is None:
            return f"{image_id} is not in its sequence's detail"
        return Listing(
            source=NAME,
            source_id=str(image_id),
            lat=lat,
            lon=lon,
            image_url=f"{self.cdn_url}/{uploaded}/{filename}/{IMAGE_SIZE}",
            heading_deg=compass(props.get("heading")),
            captured_at=utc_iso(props.get("capture_time")),
            panorama=_is_panorama(props.get("resolution")),
            licence=LICENCE,
            link=f"https://mapilio.com/app?lat={lat:.6f}&lng={lon:.6f}&zoom=17&pId={image_id}",
        )

    def _sequence(self, sequence: str) -> dict[str, dict[str, Any]]:
        if sequence not in self._sequences:
            answer = self.client.get_json(f"{self.api_url}/api/sequence-detail",
                                          {"sequence_uuid": sequence})
            if not isinstance(answer, dict) or "data" not in answer:
                raise BadAnswer("a sequence detail without data")
            items = answer["data"] or []  # null: a sequence with no images left
            if not isinstance(items, list):
                raise BadAnswer("a sequence detail whose data is not a list")
            self._sequences[sequence] = {str(i.get("id")): i for i in items
                                         if isinstance(i, dict)}
        return self._sequences[sequence]


def _is_panorama(resolution: Any) -> bool:
    try:
        width, height = (int(v) for v in str(resolution).lower().split("x"))
    except ValueError:
        return False
    return width == 2 * height

