"""Amsterdam Open Panorama: the city's own 360° imagery (Amsterdam, Weesp, Almere,
Amstelveen), through its panorama API, no token.

The format is the API's own source, github.com/Amsterdam/panorama-api at daa361b0
(web/panorama/panorama/views.py, PanoramaViewSet's documented parameters, and
web/panorama/datasets/panoramas/serialize/): `GET /panorama/panoramas/` takes `bbox` as two
points "<northwest>,<southeast>", each "<lon>,<lat>" with `srid=4326` (so W,N,E,S), and
`timestamp_after` as an ISO date, yyyy-mm-dd. It answers HAL, `page_size` per page (no
maximum): `_embedded.panoramas` (pano_id, geometry [lon, lat, height], heading, timestamp,
and `_links` to equirectangular images of three sizes), `count`, and `_links.next.href`,
absolute, null on the last page. The date is the day the capture time falls on, so the
exact `--since` is applied here too. Next links are followed on the API's own host only.
Every image is an equirectangular panorama. The city's open-data terms allow any use and
ask that the City of Amsterdam be named as the source.
"""

from __future__ import annotations

from typing import Any

from engine.ingest.area import BBox
from engine.ingest.http import BadAnswer, PoliteClient, same_host
from engine.ingest.listing import Listing, compass, text, utc_iso
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
        corners = (cell.west, cell.north, cell.east, cell.south)  # northwest, southeast
        params: dict[str, Any] | None = {
            "bbox": ",".join(f"{v:.7f}" for v in corners), "srid": 4326,
            "page_size": PAGE_SIZE, **({"timestamp_after": since[:10]} if since else {})}
        url: str | None = f"{self.api_url}/panoramas/"
        for _ in range(MAX_PAGES):
            if url is None:
                return result
            answer = self.client.get_json(url, params)
            panoramas = (answer.get("_embedded") or {}).get("panoramas") if isinstance(
                answer, dict) else None
            if not isinstance(panoramas, list):
                raise BadAnswer("a page without _embedded.panoramas")
            result.take_each(panoramas, _listing, cell, since)
            url, params = self._next(answer), None  # the next link carries the query
        result.complete = False
        return result

    def _next(self, answer: dict[str, Any]) -> str | None:
        following = ((answer.get("_links") or {}).get("next") or {}).get("href")
        if following is None:
            return None
        if not isinstance(following, str) or not same_host(following, self.api_url):
            raise BadAnswer("a next link to another host")
        return following


def _listing(panorama: Any) -> Listing | str:
    if not isinstance(panorama, dict) or not panorama.get("pano_id"):
        return "a panorama without a pano_id"
    pano_id = str(panorama["pano_id"])
    try:
        lon, lat = (float(v) for v in panorama["geometry"]["coordinates"][:2])
    except (KeyError, TypeError, ValueError):
        return f"{pano_id} has no point geometry"
    links = panorama.get("_links") or {}
    image = text((links.get(IMAGE_LINK) or links.get("equirectangular_small") or {}).get("href"))
    if image is None:
        return f"{pano_id} has no equirectangular image"
    return Listing(
        source=NAME,
        source_id=pano_id,
        lat=lat,
        lon=lon,
        image_url=image,
        heading_deg=compass(panorama.get("heading")),
        captured_at=utc_iso(panorama.get("timestamp")),
        panorama=True,
        licence=LICENCE,
        creator=CREATOR,
        link=text((links.get("self") or {}).get("href")),
    )
