"""Settings of `geosleuth ingest`: politeness, batching, and how panoramas are cut."""

from __future__ import annotations

from dataclasses import dataclass, field

MAPILLARY_TOKEN_ENV = "GEOSLEUTH_MAPILLARY_TOKEN"

SOURCE_DESCRIPTIONS = {
    "panoramax": "Panoramax, the federated open platform (STAC API, no token); the"
                 " meta-catalogue, or one instance with --instance URL",
    "mapillary": f"Mapillary (Graph API v4); needs a client token in ${MAPILLARY_TOKEN_ENV} or"
                 " [ingest] mapillary_token",
    "kartaview": "KartaView (photo API 2.0, no token)",
    "mapilio": "Mapilio (vector tiles and sequence details, no token)",
    "amsterdam": "Amsterdam Open Panorama, the city's 360-degree imagery of Amsterdam, Weesp,"
                 " Almere and Amstelveen (no token)",
}


@dataclass(frozen=True)
class PanoramaConfig:
    views: int = 8  # perspective views per 360° panorama, headings 360/views apart
    fov_deg: float = 90.0  # horizontal field of view of each view
    width: int = 640
    height: int = 480


@dataclass(frozen=True)
class IngestConfig:
    cell_km: float = 2.0  # the crawl grid; a cell the platform cuts off is split in four
    max_splits: int = 6  # a cell is split at most this many times (2 km / 64 = 31 m)
    batch_size: int = 256  # images added to the index per builder run
    # Images staged before a new index is created: its descriptor learns its vocabulary from
    # them, so a first batch of a few images would serve the whole crawl badly.
    first_batch: int = 1000
    requests_per_s: float = 10.0  # per source, to its API (listings, tiles)
    downloads_per_s: float = 40.0  # per source, image files (mostly from a CDN)
    concurrency: int = 4  # downloads in flight per source
    timeout_s: float = 30.0  # to connect, and for each read
    # A download (or API answer) still arriving this long after it was asked for is cut off:
    # a host that trickles one byte at a time cannot hold a download slot for longer. (The
    # wait for an answer to begin is bounded by timeout_s on each of the retries.)
    deadline_s: float = 120.0
    retries: int = 5  # on 429, 5xx and timeouts, with exponential backoff and jitter
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0  # a longer Retry-After is waited on for this long only
    max_image_bytes: int = 30_000_000
    max_json_bytes: int = 20_000_000  # one API answer (a listing page, a sequence's detail)
    # Another build writing into the index (`geosleuth ingest` beside a cover): the crawl's
    # last batch waits this long for it before the run fails; earlier batches just wait.
    index_busy_wait_s: float = 600.0
    # Only the public internet is fetched: loopback, private, link-local and other non-public
    # addresses are refused, after each redirect too. Allow them for a test or a private
    # instance on your own network.
    allow_private_hosts: bool = False
    user_agent: str = "GeoSleuth/0.1 (photo geolocation; reference ingest)"
    panoramax_url: str = "https://api.panoramax.xyz/api"  # the meta-catalogue
    mapillary_url: str = "https://graph.mapillary.com"
    mapillary_tiles_url: str = "https://tiles.mapillary.com/maps/vtp/mly1_public/2"
    # Prefer $GEOSLEUTH_MAPILLARY_TOKEN; kept out of repr so it never reaches a log line.
    mapillary_token: str = field(default="", repr=False)
    kartaview_url: str = "https://api.openstreetcam.org"
    mapilio_url: str = "https://end.mapilio.com"
    mapilio_tiles_url: str = (
        "https://geo.mapilio.com/geoserver/gwc/service/wmts?REQUEST=GetTile&SERVICE=WMTS"
        "&VERSION=1.0.0&LAYER=mapilio:map_points&STYLE=&TILEMATRIX=EPSG:900913:{z}"
        "&TILEMATRIXSET=EPSG:900913&FORMAT=application/vnd.mapbox-vector-tile&TILECOL={x}"
        "&TILEROW={y}")
    mapilio_cdn_url: str = "https://cdn.mapilio.com/im"
    amsterdam_url: str = "https://api.data.amsterdam.nl/panorama"
    panorama: PanoramaConfig = field(default_factory=PanoramaConfig)
