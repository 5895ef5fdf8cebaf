"""The platforms `geosleuth ingest` can crawl, by name, each with its one-line description."""

from __future__ import annotations

from engine.errors import ConfigError
from engine.ingest.amsterdam import Amsterdam
from engine.ingest.config import MAPILLARY_TOKEN_ENV, SOURCE_DESCRIPTIONS, IngestConfig
from engine.ingest.http import PoliteClient
from engine.ingest.kartaview import KartaView
from engine.ingest.mapilio import Mapilio
from engine.ingest.mapillary import Mapillary
from engine.ingest.panoramax import Panoramax
from engine.ingest.platform import Platform


def create_platform(name: str, config: IngestConfig, *, instance: str | None = None
                    ) -> Platform:
    if name == "panoramax":
        return Panoramax(PoliteClient(name, config), instance or config.panoramax_url)
    if name == "mapillary":
        token = config.mapillary_token
        if not token:
            raise ConfigError(f"mapillary needs a client access token: set ${MAPILLARY_TOKEN_ENV}"
                              " or [ingest] mapillary_token (mapillary.com/dashboard/developers)")
        client = PoliteClient(name, config, secret_headers={"Authorization": f"OAuth {token}"})
        return Mapillary(client, config.mapillary_url, config.mapillary_tiles_url, token)
    if name == "kartaview":
        return KartaView(PoliteClient(name, config), config.kartaview_url)
    if name == "mapilio":
        return Mapilio(PoliteClient(name, config), config.mapilio_url, config.mapilio_tiles_url,
                       config.mapilio_cdn_url)
    if name == "amsterdam":
        return Amsterdam(PoliteClient(name, config), config.amsterdam_url)
    known = ", ".join(SOURCE_DESCRIPTIONS)
    raise ConfigError(f"unknown source {name!r}; known: {known}")
