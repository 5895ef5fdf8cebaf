"""Panoramax: the federated, token-free platform, read through its STAC API.

Items are pictures (collections are sequences). Position from the geometry, heading from
`view:azimuth`, capture time from `datetime`, 360° panoramas from
`pers:interior_orientation.field_of_view`, licence from `license`, creator from the producer
in `providers`. The meta-catalogue (api.panoramax.xyz) federates every instance; `--instance`
reads one instance's own API.

How an instance answers a search is read from its server, geovisio (gitlab.com/panoramax/
server/api), `geovisio/web/items.py`, `searchItems()` of the 2.x series (read through the code
search index, which does not name the repository or commit of its copy): `GET /api/search`
takes `limit` from 1 to 10,000 (default 10; else 400), keeps the pictures whose point lies in
`bbox`, sorts them by distance to the box's centre, and answers the first `limit` with no
`next` link. A full answer there is therefore a cut-off one, and the cell is split (its paged
endpoint, `/api/collections/{id}/items` with `limit` and `startAfterRank`, pages one sequence,
not an area). Other
STAC servers (the meta-catalogue) may page with `rel="next"` links, which are followed, but
only on the API's own host (a cell whose next link leaves it fails, counted). Relative
`href`s (STAC allows them) are resolved against the item's `self` link, else the page's URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

from engine.errors import SourceUnavailable
from engine.ingest.area import BBox
from engine.ingest.http import BadAnswer, PoliteClient, same_host
from engine.ingest.listing import Listing, compass, text, utc_iso
from engine.ingest.platform import CellListing

NAME = "panoramax"
SEARCH_LIMIT = 500  # geovisio takes up to 10,000; 500 items are about 1.5 MB of JSON
MAX_PAGES = 100  # a server that pages for ever cannot keep a cell for ever
FLAT_ASSET = "sd"  # about 2,048 px wide: more than the index keeps
PANORAMA_ASSET = "hd"  # the views cut from a 360° picture need its full width


class Panoramax:
    name = NAME

    def __init__(self, client: PoliteClient, api_url: str, *,
                 search_limit: int = SEARCH_LIMIT) -> None:
        self.client = client
        self.api_url = api_url.rstrip("/")
        self.search_limit = search_limit
        self._search_url: str | None = None

    def order_cells(self, cells: list[BBox]) -> list[BBox]:
        return cells

    def list_cell(self, cell: BBox, since: str | None) -> CellListing:
        """Every page of the cell's search; incomplete when an answer is full and nothing
        leads on from it (the crawler then asks for the quarters)."""
        result = CellListing()
        url: str = self._search()
        params: dict[str, Any] | None = {
            "bbox": ",".join(f"{v:.7f}" for v in cell.as_list()), "limit": self.search_limit,
            **({"datetime": f"{since}/.."} if since else {})}
        for _ in range(MAX_PAGES):
            features, links = _feature_collection(self.client.get_json(url, params))
            result.take_each(features, lambda feature, page=url: self._listing(feature, page),
                             cell)
            following = self._next(links, url)
            if following is None:
                result.complete = len(features) < self.search_limit
                return result
            url, params = following, None  # a next link carries the whole query
        result.complete = False
        return result

    def _search(self) -> str:
        """The search endpoint the landing page names (on the API's own host)."""
        if self._search_url is None:
            try:
                landing = self.client.get_json(self.api_url)
            except BadAnswer as exc:
                raise SourceUnavailable(self.name, f"the STAC API's landing page: {exc}") from None
            links = landing.get("links") if isinstance(landing, dict) else None
            named = [urljoin(self.api_url + "/", link["href"]) for link in links or []
                     if isinstance(link, dict) and link.get("rel") == "search"
                     and isinstance(link.get("href"), str)]
            own = [href for href in named if same_host(href, self.api_url)]
            self._search_url = own[0] if own else f"{self.api_url}/search"
        return self._search_url

    def _next(self, links: list[Any], page: str) -> str | None:
        """The page's `next` link, absolute; BadAnswer for one that leaves the API's host or
        cannot be followed with GET."""
        for link in links:
            if not isinstance(link, dict) or link.get("rel") != "next":
                continue
            href = link.get("href")
            if not isinstance(href, str) or str(link.get("method", "GET")).upper() != "GET":
                raise BadAnswer("a next link that cannot be followed with GET")
            if not same_host(absolute := urljoin(page, href), self.api_url):
                raise BadAnswer("a next link to another host")
            return absolute
        return None

    def _listing(self, feature: Any, page: str) -> Listing | str:
        """A Listing, or why the record cannot be used."""
        picture_id = feature.get("id")
        if not isinstance(picture_id, str | int) or not str(picture_id):
            return "a record without an id"
        try:
            lon, lat = (float(v) for v in feature["geometry"]["coordinates"][:2])
        except (KeyError, TypeError, ValueError):
            return f"{picture_id} has no point geometry"
        props = feature.get("properties") or {}
        licence = props.get("license")
        if licence is not None and text(licence) is None:
            return f"{picture_id} has a licence that is not text"
        orientation = props.get("pers:interior_orientation") or {}
        panorama = orientation.get("field_of_view") == 360
        assets = feature.get("assets") or {}
        asset = assets.get(PANORAMA_ASSET if panorama else FLAT_ASSET) or assets.get("hd")
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            return f"{picture_id} has no picture asset"
        base = urljoin(page, _self_href(feature) or page)
        return Listing(
            source=self.name,
            source_id=str(picture_id),
            lat=lat,
            lon=lon,
            image_url=urljoin(base, asset["href"]),
            heading_deg=compass(props.get("view:azimuth")),
            captured_at=utc_iso(props.get("datetime")),
            panorama=panorama,
            licence=licence,
            creator=_producer(feature.get("providers") or props.get("providers") or []),
            link=f"{self.api_url.removesuffix('/api')}/#focus=pic&pic={picture_id}",
        )


def _feature_collection(answer: Any) -> tuple[list[Any], list[Any]]:
    """The features and links of a search page; BadAnswer for anything else."""
    features = answer.get("features") if isinstance(answer, dict) else None
    if not isinstance(features, list):
        raise BadAnswer("a search page that is not a FeatureCollection")
    links = answer.get("links")
    return features, links if isinstance(links, list) else []


def _self_href(feature: dict[str, Any]) -> str | None:
    links = feature.get("links")
    return next((link["href"] for link in links if isinstance(link, dict)
                 and link.get("rel") == "self" and isinstance(link.get("href"), str)),
                None) if isinstance(links, list) else None


def _producer(providers: Any) -> str | None:
    providers = [p for p in providers if isinstance(p, dict)] if isinstance(providers, list) else []
    for provider in providers:
        if "producer" in (provider.get("roles") or []):
            return text(provider.get("name"))
    return text(providers[0].get("name")) if providers else None
