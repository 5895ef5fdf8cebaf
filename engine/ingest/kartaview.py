"""KartaView (formerly OpenStreetCam): its public photo API, paged, no token.

`GET /2.0/photo/?nwLat&nwLng&seLat&seLng&page&itemsPerPage` answers `result.data` (photos
with string-valued lat/lng/heading, shotDate, sequenceId/Index, processed image URLs and a
projection, SPHERE for 360°) and `result.hasMoreData`. Neither KartaView's server source nor
an OpenAPI file of API 2.0 could be found. The answer's shape is taken from KartaView's own
clients: github.com/kartaview/mcp-karta-view at 80e37902 (src/mcp_karta_view/
karta_view_client.py, models.py: `/2.0/photo/`, `result.data` of string-valued fields, and a
`status` of apiCode/apiMessage/httpCode/httpMessage) and the `/2.0/photo/` service of the
kartaview/openstreetcam.org web client; the bounding-box and paging parameters are as our
client found them, unchecked. KartaView tells some refusals inside an HTTP 200, in
`status.apiCode` (600 is success; 401 asks for a login), so that code is read too. The API
takes no capture-time filter, so `--since` is applied to shotDate here. Imagery is CC BY-SA
4.0, credited to "Grab and KartaView contributors".
"""

from __future__ import annotations

from typing import Any

from engine.errors import SourceAuthFailed
from engine.ingest.area import BBox
from engine.ingest.http import BadAnswer, PoliteClient
from engine.ingest.listing import Listing, compass
from engine.ingest.platform import CellListing

NAME = "kartaview"
LICENCE = "CC-BY-SA-4.0"
CREDIT = "Grab and KartaView contributors"
PAGE_SIZE = 100
MAX_PAGES = 500  # a runaway hasMoreData cannot keep a cell forever
IMAGE_FIELDS = ("imageProcUrl", "fileurlProc", "imageLthUrl", "fileurlLTh")
API_SUCCESS = 600  # status.apiCode of an answer that worked


class KartaView:
    name = NAME

    def __init__(self, client: PoliteClient, api_url: str) -> None:
        self.client = client
        self.api_url = api_url.rstrip("/")

    def order_cells(self, cells: list[BBox]) -> list[BBox]:
        return cells

    def list_cell(self, cell: BBox, since: str | None) -> CellListing:
        result = CellListing()
        for page in range(1, MAX_PAGES + 1):
            answer = self.client.get_json(f"{self.api_url}/2.0/photo/", {
                "nwLat": cell.north, "nwLng": cell.west, "seLat": cell.south,
                "seLng": cell.east, "page": page, "itemsPerPage": PAGE_SIZE,
                "orderBy": "id", "orderDirection": "asc"})
            self._check_status(answer)
            body = answer.get("result") if isinstance(answer, dict) else None
            photos = body.get("data") if isinstance(body, dict) else None
            if not isinstance(photos, list):
                raise BadAnswer("a photo page without result.data")
            result.take_each(photos, _listing, cell, since)
            if body.get("hasMoreData") is not True or not photos:
                return result
        result.complete = False
        return result

    def _check_status(self, answer: Any) -> None:
        """KartaView's refusals inside a 200: a login asked for, or another apiCode."""
        status = answer.get("status") if isinstance(answer, dict) else None
        code = status.get("apiCode") if isinstance(status, dict) else None
        if code is None or str(code) == str(API_SUCCESS):
            return
        if str(code) in ("401", "403"):
            raise SourceAuthFailed(self.name, int(code))
        raise BadAnswer(f"the photo API answered apiCode {code}")


def _listing(photo: Any) -> Listing | str:
    if not isinstance(photo, dict) or not photo.get("id"):
        return "a photo without an id"
    photo_id = str(photo["id"])
    try:
        lat, lon = float(photo["lat"]), float(photo["lng"])
    except (KeyError, TypeError, ValueError):
        return f"{photo_id} has no position"
    url = next((photo[k] for k in IMAGE_FIELDS if isinstance(photo.get(k), str)
                and photo[k].startswith(("https://", "http://"))), None)
    if url is None:
        return f"{photo_id} has no image URL"
    try:
        heading = compass(float(photo["heading"]))
    except (KeyError, TypeError, ValueError):
        heading = None
    sequence, index = photo.get("sequenceId"), photo.get("sequenceIndex", 0)
    return Listing(
        source=NAME,
        source_id=photo_id,
        lat=lat,
        lon=lon,
        image_url=url,
        heading_deg=heading,
        captured_at=_iso(photo.get("shotDate")),
        panorama=str(photo.get("projection", "")).upper() == "SPHERE",
        licence=LICENCE,
        creator=photo.get("username") or CREDIT,
        link=f"https://kartaview.org/details/{sequence}/{index}" if sequence else None,
    )


def _iso(shot_date: Any) -> str | None:
    """"2016-03-23 09:33:51.000" (UTC) as "2016-03-23T09:33:51Z"."""
    if not isinstance(shot_date, str) or len(shot_date) < 19:
        return None
    return shot_date[:10] + "T" + shot_date[11:19] + "Z"
