"""Panoramax: the federated, token-free platform, read through its STAC API.

Items are pictures (collections are sequences). Position from the geometry, heading from
`view:azimuth`, capture time from `datetime`, 360° panoramas from
`pers:interior_orientation.field_of_view`, licence from `license`, creator from the producer
in `providers`. The meta-catalogue (api.panoramax.xyz) federates every instance; `--instance`
reads one instance's own API. Paging is pystac-client's, over our polite session.
"""

from __future__ import annotations

from typing import Any

from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO

from engine.errors import SourceAuthFailed, SourceUnavailable
from engine.ingest.area import BBox
from engine.ingest.http import PoliteClient
from engine.ingest.listing import Listing, compass
from engine.ingest.platform import CellListing

NAME = "panoramax"
PAGE_SIZE = 100
FLAT_ASSET = "sd"  # about 2,048 px wide: more than the index keeps
PANORAMA_ASSET = "hd"  # the views cut from a 360° picture need its full width


class Panoramax:
    name = NAME

    def __init__(self, client: PoliteClient, api_url: str) -> None:
        self.client = client
        self.api_url = api_url.rstrip("/")
        self._stac: Client | None = None

    def order_cells(self, cells: list[BBox]) -> list[BBox]:
        return cells

    def list_cell(self, cell: BBox, since: str | None) -> CellListing:
        result = CellListing()
        search = self._open().search(bbox=cell.as_list(), limit=PAGE_SIZE, method="GET",
                                     datetime=f"{since}/.." if since else None)
        for page in _pages(search, self.name):
            for feature in page.get("features", []):
                result.take(self._listing(feature), cell)
        return result

    def _open(self) -> Client:
        if self._stac is None:
            io = StacApiIO(timeout=self.client.config.timeout_s, max_retries=None)
            io.session = self.client.session  # our rate limit, retries and user agent
            try:
                self._stac = Client.open(self.api_url, stac_io=io)
            except APIError as exc:
                raise _unavailable(exc, self.name) from None
        return self._stac

    def _listing(self, feature: dict[str, Any]) -> Listing | str:
        """A Listing, or why the record cannot be used."""
        picture_id = feature.get("id")
        try:
            lon, lat = (float(v) for v in feature["geometry"]["coordinates"][:2])
        except (KeyError, TypeError, ValueError):
            return f"{picture_id or 'a record'} has no point geometry"
        props = feature.get("properties") or {}
        orientation = props.get("pers:interior_orientation") or {}
        panorama = orientation.get("field_of_view") == 360
        assets = feature.get("assets") or {}
        asset = assets.get(PANORAMA_ASSET if panorama else FLAT_ASSET) or assets.get("hd")
        if not picture_id or not isinstance(asset, dict) or not asset.get("href"):
            return f"{picture_id or 'a record'} has no id or no picture asset"
        return Listing(
            source=self.name,
            source_id=str(picture_id),
            lat=lat,
            lon=lon,
            image_url=str(asset["href"]),
            heading_deg=compass(props.get("view:azimuth")),
            captured_at=props.get("datetime"),
            panorama=panorama,
            licence=props.get("license"),
            creator=_producer(feature.get("providers") or props.get("providers") or []),
            link=f"{self.api_url.removesuffix('/api')}/#focus=pic&pic={picture_id}",
        )


def _producer(providers: list[Any]) -> str | None:
    for provider in providers:
        if isinstance(provider, dict) and "producer" in (provider.get("roles") or []):
            return provider.get("name")
    first = providers[0] if providers else None
    return first.get("name") if isinstance(first, dict) else None


def _pages(search: Any, source: str):
    try:
        yield from search.pages_as_dicts()
    except APIError as exc:
        raise _unavailable(exc, source) from None


def _unavailable(exc: APIError, source: str) -> SourceUnavailable | SourceAuthFailed:
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return SourceAuthFailed(source, status)
    if status is None:
        return SourceUnavailable(source, "cannot reach the STAC API (offline, the host is down,"
                                 " or it kept failing)")
    return SourceUnavailable(source, f"the STAC API answered HTTP {status}")
