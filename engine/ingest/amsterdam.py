"""Amsterdam Open Panorama: the city's own 360° imagery (Amsterdam, Weesp, Almere,
Amstelveen), through its panorama API, no token.

`GET /panorama/panoramas/?bbox=W,S,E,N&page_size&timestamp_after` answers HAL:
`_embedded.panoramas` (pano_id, geometry [lon, lat, height], heading, timestamp, and
`_links` to equirectangular images of three sizes) and `_links.next.href` until the last
page. Every image is an equirectangular panorama. The city's open-data terms allow any use
and ask that the City of Amsterdam be named as the source.
"""

from __future__ import annotations

from typing import Any

from engine.errors import SourceUnavailable
from engine.ingest.area import BBox
from engine.ingest.http import PoliteClient
from engine.ingest.listing import Listing, compass
from engine.ingest.platform import CellListing

NAME = "amsterdam"
LICENCE = "City of Amsterdam open data (name the source)"
CREATOR = "Gemeente Amsterdam"
PAGE_SIZE = 100
MAX_PAGES = 500
# 4,000 px wide: enough for 640 px views at 90°; "full" is 8,000 px.
IMAGE_LINK = "equirectangular_medium"


class Amsterdam:
    name = NAME

    def __init__(self, client: PoliteClient, api_url: str) -> None:
        self.client = client
        self.api_url = api_url.rstrip("/")

    def order_cells(self, cells: list[BBox]) -> list[BBox]:
        return cells

    def list_cell(self, cell: BBox, since: str | None) -> CellListing:
        result = CellListing()
        params: dict[str, Any] | None = {
            "bbox": ",".join(f"{v:.7f}" for v in cell.as_list()), "srid": 4326,
            "page_size": PAGE_SIZE, **({"timestamp_after": since} if since else {})}
        url: str | None = f"{self.api_url}/panoramas/"
        for _ in range(MAX_PAGES):
            if url is None:
                return result
            answer = self.client.get_json(url, params)
            panoramas = (answer.get("_embedded") or {}).get("panoramas") if isinstance(
                answer, dict) else None
            if not isinstance(panoramas, list):
                raise SourceUnavailable(self.name, "the panorama API answered without"
                                        " _embedded.panoramas")
            for panorama in panoramas:
                result.take(_listing(panorama), cell)
            following = (answer.get("_links") or {}).get("next") or {}
            url, params = following.get("href"), None  # the next link carries the query
        result.complete = False
        return result


def _listing(panorama: Any) -> Listing | str:
    if not isinstance(panorama, dict) or not panorama.get("pano_id"):
        return "a panorama without a pano_id"
    pano_id = str(panorama["pano_id"])
    try:
        lon, lat = (float(v) for v in panorama["geometry"]["coordinates"][:2])
    except (KeyError, TypeError, ValueError):
        return f"{pano_id} has no point geometry"
    links = panorama.get("_links") or {}
    image = (links.get(IMAGE_LINK) or links.get("equirectangular_small") or {}).get("href")
    if not image:
        return f"{pano_id} has no equirectangular image"
    return Listing(
        source=NAME,
        source_id=pano_id,
        lat=lat,
        lon=lon,
        image_url=str(image),
        heading_deg=compass(panorama.get("heading")),
        captured_at=panorama.get("timestamp"),
        panorama=True,
        licence=LICENCE,
        creator=CREATOR,
        link=(links.get("self") or {}).get("href"),
    )
