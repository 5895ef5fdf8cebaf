"""Fakes of the platforms' APIs on 127.0.0.1, each written from the platform's own source of
truth, named here and at each handler (the modules in engine/ingest/ cite the same):

- Panoramax, as an instance's server answers: geovisio (gitlab.com/panoramax/server/api),
  `geovisio/web/items.py` of the 2.x series, read through the code search index (which does
  not name the repository or commit of its copy): `/api/search` answers the `limit` (1 to
  10,000, else 400) pictures nearest the centre of `bbox`, with no `next` link; pictures are
  served from `/api/pictures/{id}/{sd,hd}.jpg`, which may redirect to their storage. With
  `paged=True` it answers as a paging STAC server (the meta-catalogue) does instead, with
  `rel="next"` links.
- Mapillary: Graph API v4 image search (no paging, `limit` up to 2,000), and coverage tiles
  that answer 403 where there is no tile (github.com/mapillary/mapillary_issues #1401,
  github.com/mapillary/mapillary-python-sdk #131) and 401 for a wrong token.
- KartaView: photo API 2.0 as KartaView's own client reads it (github.com/kartaview/
  mcp-karta-view at 80e37902, models.py): string-valued fields, `status.apiCode` 600, and a
  refusal inside a 200 (apiCode 401). No server source or OpenAPI file of it was found.
- Mapilio: `/api/sequence-detail` as github.com/mapilio/backend at e98750fa answers it
  (SequenceDetailController, SequenceDetailQuery: `data` null when empty, 400 without the
  uuid); the point tiles (GeoServer, not in that repository) as our client found them.
- Amsterdam Open Panorama: github.com/Amsterdam/panorama-api at daa361b0
  (web/panorama/panorama/views.py and the HAL pagination of datapunt_api): `bbox` as
  "<northwest>,<southeast>" points, `timestamp_after` as yyyy-mm-dd, `page`/`page_size`,
  `_links.next.href` absolute and null on the last page, 400 for a bad parameter. The server
  itself builds its envelope with ST_MakeEnvelope, which takes either diagonal; the fake holds
  to the documented order, so a client that sends another one is caught.

Each can be told to fail as the real service does (a 429 with Retry-After, a 500, a missing
image) and to answer as a hostile one would (`Hostile`): records naming file:, another
address or port, a redirect to one, a redirect loop, a body that trickles, a JSON answer of
hundreds of MB, a next link to another host, a licence given as an object. Every request is
counted by path so a test can check what was fetched and how often.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import ParseResult, parse_qs, urlencode, urlparse

import mapbox_vector_tile
import mercantile
import numpy as np
from PIL import Image

MAPILLARY_TOKEN = "MLY|fake|token"
GEOVISIO_MAX_LIMIT = 10_000
TRICKLE_INTERVAL_S = 0.2
HUGE_BYTES = 300_000_000  # "hundreds of MB", sent lazily: the client is expected to stop early


@dataclass
class FakeImage:
    image_id: str
    lat: float
    lon: float
    rgb: np.ndarray
    captured_at: str = "2024-05-01T10:00:00Z"
    heading: float | None = 90.0
    panorama: bool = False
    creator: str = "jane"

    def jpeg(self) -> bytes:
        out = io.BytesIO()
        Image.fromarray(self.rgb).save(out, "JPEG", quality=90)
        return out.getvalue()


@dataclass
class Faults:
    """What to get wrong, each once: the first search page, an image, a record."""

    throttle_first_search: bool = False  # 429 with Retry-After: 1
    fail_image_once: str | None = None  # 500 the first time this image is asked for
    missing_image: str | None = None  # 404 always
    malformed_record: bool = False  # one listing without geometry
    image_delay_s: float = 0.0
    search_delay_s: float = 0.0  # a slow API: each search answers this late


@dataclass
class Hostile:
    """A hostile or broken platform's answers, each beside the good records.

    `internal_url` is a server the crawler must never reach (another address or port)."""

    internal_url: str = ""
    file_href: bool = False  # an asset at file:///etc/passwd
    internal_href: bool = False  # an asset on `internal_url`
    redirect_to_internal: bool = False  # an asset that redirects to `internal_url`
    redirect_loop: bool = False  # an asset that redirects to itself
    relative_href: bool = False  # every asset href relative to its item (legal STAC)
    licence_object: bool = False  # "license": {"id": ...} instead of a string
    slow_image: bool = False  # an asset that trickles one byte every 0.2 s
    down_host: str = ""  # assets on this host, which is down or hangs up
    down_records: int = 1  # how many
    huge_page: bool = False  # every search answer is hundreds of MB of JSON
    throttle_forever: bool = False  # every search is a 429 asking for a day
    next_elsewhere: bool = False  # a next link to `internal_url` (paged mode)


@dataclass
class FakePlatform:
    images: list[FakeImage] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    hostile: Hostile = field(default_factory=Hostile)
    requests: Counter = field(default_factory=Counter)
    images_asked: Counter = field(default_factory=Counter)
    image_auth_headers: list = field(default_factory=list)  # Authorization sent with a file
    user_agents: set = field(default_factory=set)
    page_size: int = 4  # a paging server's page; Mapillary's cap on one search
    paged: bool = False  # Panoramax: answer as a paging STAC server (the meta-catalogue)
    kartaview_login_required: bool = False  # apiCode 401 inside an HTTP 200
    search_status: int | None = None  # Panoramax: every search answers this status
    mapilio_gone: str | None = None  # Mapilio: this image's sequence detail is `data: null`
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _throttled: bool = False
    throttled: tuple = ()
    request_times: list = field(default_factory=list)
    _failed: set = field(default_factory=set)

    def count(self, path: str, user_agent: str | None = None) -> int:
        with self._lock:
            self.user_agents.add(user_agent)
            self.request_times.append((path, time.monotonic()))
            self.requests[path] += 1
            return self.requests[path]

    def requests_total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def image_downloads(self) -> Counter:
        """Requests for image files, by path (answered or not)."""
        with self._lock:
            return Counter(self.images_asked)

    def should_throttle(self, path: str) -> bool:
        """True once (the first listing request): answer 429 with Retry-After: 1."""
        with self._lock:
            if self.faults.throttle_first_search and not self._throttled:
                self._throttled = True
                self.throttled = (path, time.monotonic())
                return True
            return False

    def retry_wait_s(self) -> float:
        """How long after the 429 the same path was asked for again."""
        path, at = self.throttled
        return min(t for p, t in self.request_times if p == path and t > at) - at

    def should_fail(self, image_id: str) -> bool:
        with self._lock:
            if self.faults.fail_image_once == image_id and image_id not in self._failed:
                self._failed.add(image_id)
                return True
            return False

    def inside(self, bbox: list[float], since: str | None) -> list[FakeImage]:
        west, south, east, north = bbox
        return [i for i in self.images if west <= i.lon <= east and south <= i.lat <= north
                and (since is None or i.captured_at >= since)]

    def by_id(self, image_id: str) -> FakeImage | None:
        return next((i for i in self.images if i.image_id == image_id), None)


class _Handler(BaseHTTPRequestHandler):
    platform: FakePlatform
    base: str

    def log_message(self, *_: object) -> None:
        return None

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.platform.count(url.path, self.headers.get("User-Agent"))
        # The client may stop reading, as it should from a hostile answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.route(url, {k: v[0] for k, v in parse_qs(url.query).items()})

    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        """Each platform's paths."""
        raise NotImplementedError

    def _throttled(self, path: str) -> bool:
        """Answer the platform's one 429 (Retry-After: 1) if this is the request for it."""
        if not self.platform.should_throttle(path):
            return False
        self._send(429, b"{}", headers={"Retry-After": "1"})
        return True

    def _send(self, status: int, body: bytes, kind: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: object, status: int = 200,
              headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers=headers)

    def _redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", headers={"Location": location})

    def _image(self, image_id: str) -> None:
        with self.platform._lock:
            self.platform.images_asked[urlparse(self.path).path] += 1
            if self.headers.get("Authorization"):
                self.platform.image_auth_headers.append(self.headers["Authorization"])
        image = self.platform.by_id(image_id)
        if self.platform.faults.image_delay_s:
            time.sleep(self.platform.faults.image_delay_s)
        if image is None or image_id == self.platform.faults.missing_image:
            self._send(404, b"not found", "text/plain")
        elif self.platform.should_fail(image_id):
            self._send(500, b"oops", "text/plain")
        else:
            self._send(200, image.jpeg(), "image/jpeg")

    def _hostile(self, url: ParseResult) -> bool:
        """The hostile endpoints every fake serves: a redirect loop, a redirect inward, a body
        that trickles, a JSON answer without end."""
        if url.path.startswith("/loop/"):
            self._redirect(url.path)
        elif url.path.startswith("/inward/"):
            self._redirect(f"{self.platform.hostile.internal_url}/internal/redirected.jpg")
        elif url.path.startswith("/trickle/"):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100_000):
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(TRICKLE_INTERVAL_S)
        else:
            return False
        return True

    def _huge_json(self) -> None:
        """`{"features": [` and spaces, close-delimited, until the client hangs up."""
        self.send_response(200)
        self.send_header("Content-Type", "application/geo+json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b'{"type": "FeatureCollection", "features": [')
        chunk = b" " * (1 << 20)
        for _ in range(HUGE_BYTES // len(chunk)):
            self.wfile.write(chunk)
        self.close_connection = True


class _PanoramaxHandler(_Handler):
    """geovisio 2.x: geovisio/web/items.py (searchItems), geovisio/web/pictures.py."""

    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        if url.path == "/api":
            self._json(self._landing())
        elif url.path == "/api/search":
            if self._throttled(url.path):
                return
            time.sleep(self.platform.faults.search_delay_s)
            if self.platform.hostile.huge_page:
                self._huge_json()
            elif self.platform.hostile.throttle_forever:
                self._json({"message": "Too many requests"}, 429, {"Retry-After": "86400"})
            elif self.platform.search_status:
                self._json({"message": "refused", "status_code": self.platform.search_status},
                           self.platform.search_status)
            else:
                self._search(query)
        elif url.path.startswith("/api/pictures/"):
            self._image(url.path.split("/")[3])
        elif not self._hostile(url):
            self._json({"message": "Not found", "status_code": 404}, 404)

    def _landing(self) -> dict:
        return {
            "type": "Catalog", "id": "geovisio", "stac_version": "1.0.0",
            "description": "fake", "conformsTo": [
                "https://api.stacspec.org/v1.0.0/core",
                "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [
                {"rel": "self", "href": f"{self.base}/api", "type": "application/json"},
                {"rel": "root", "href": f"{self.base}/api", "type": "application/json"},
                {"rel": "search", "href": f"{self.base}/api/search",
                 "type": "application/geo+json", "method": "GET"},
            ],
        }

    def _search(self, query: dict[str, str]) -> None:
        try:
            limit = int(query.get("limit") or 10)
            if not 1 <= limit <= GEOVISIO_MAX_LIMIT:
                raise ValueError()
        except ValueError:
            self._json({"message": "Parameter limit must be either empty or a number between 1"
                        " and 10000", "status_code": 400}, 400)
            return
        bbox = [float(v) for v in query["bbox"].split(",")]
        since = query.get("datetime", "").split("/")[0] or None
        found = self.platform.inside(bbox, since)
        centre = ((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2)
        found.sort(key=lambda i: math.hypot(i.lon - centre[0], i.lat - centre[1]))
        if self.platform.paged:
            self._json(self._paged(found, query))
            return
        features = [self._item(i) for i in found[:limit]] + self._odd_records(found)
        self._json({"type": "FeatureCollection", "features": features, "links": [
            {"rel": "root", "href": f"{self.base}/api", "type": "application/json"}]})

    def _paged(self, found: list[FakeImage], query: dict[str, str]) -> dict:
        """As a paging STAC server answers: `page_size` items a page, then a next link."""
        page = int(query.get("page", "1"))
        size = min(int(query["limit"]), self.platform.page_size)
        features = [self._item(i) for i in found[(page - 1) * size:page * size]]
        if page == 1:
            features += self._odd_records(found)
        links = []
        if page * size < len(found):
            base = self.platform.hostile.internal_url if (
                self.platform.hostile.next_elsewhere) else self.base
            links.append({"rel": "next", "type": "application/geo+json", "href":
                          f"{base}/api/search?{urlencode({**query, 'page': page + 1})}"})
        return {"type": "FeatureCollection", "features": features, "links": links}

    def _odd_records(self, found: list[FakeImage]) -> list[dict]:
        """The malformed and hostile records this fake was told to add."""
        if not found:
            return []
        template, hostile, records = found[0], self.platform.hostile, []
        if self.platform.faults.malformed_record:
            records.append({"type": "Feature", "id": "broken", "properties": {}, "assets": {}})
        hrefs = {
            "file-href": "file:///etc/passwd" if hostile.file_href else None,
            "internal-href": f"{hostile.internal_url}/internal/secret.jpg"
            if hostile.internal_href else None,
            "inward": f"{self.base}/inward/x.jpg" if hostile.redirect_to_internal else None,
            "loop": f"{self.base}/loop/x.jpg" if hostile.redirect_loop else None,
            "slow": f"{self.base}/trickle/x.jpg" if hostile.slow_image else None,
        }
        hrefs |= {f"down-{k}": f"{hostile.down_host}/pictures/{k}.jpg"
                  for k in range(hostile.down_records if hostile.down_host else 0)}
        for name, href in hrefs.items():
            if href is not None:
                item = self._item(template, picture_id=f"hostile-{name}")
                item["assets"] = {"sd": {"href": href, "type": "image/jpeg", "roles": ["visual"]}}
                records.append(item)
        if hostile.licence_object:
            item = self._item(template, picture_id="hostile-licence")
            item["properties"]["license"] = {"id": "CC-BY-SA-4.0"}
            records.append(item)
        return records

    def _item(self, image: FakeImage, picture_id: str | None = None) -> dict:
        """dbPictureToStacItem's shape: absolute links, hd/sd/thumb assets."""
        picture_id = picture_id or image.image_id
        item_url = f"{self.base}/api/collections/sequence-1/items/{picture_id}"
        pictures = f"{self.base}/api/pictures/{picture_id}"
        if self.platform.hostile.relative_href:
            pictures = f"../../../pictures/{picture_id}"  # from the item's URL: /api/pictures/
        return {
            "type": "Feature", "stac_version": "1.0.0", "id": picture_id,
            "collection": "sequence-1", "bbox": [image.lon, image.lat, image.lon, image.lat],
            "geometry": {"type": "Point", "coordinates": [image.lon, image.lat]},
            "properties": {
                "datetime": image.captured_at, "view:azimuth": image.heading,
                "license": "CC-BY-SA-4.0",
                "pers:interior_orientation": {"field_of_view": 360 if image.panorama else 70},
            },
            "providers": [{"name": image.creator, "roles": ["producer"], "id": "acc-1"}],
            "assets": {
                "hd": {"href": f"{pictures}/hd.jpg", "type": "image/jpeg", "roles": ["data"]},
                "sd": {"href": f"{pictures}/sd.jpg", "type": "image/jpeg", "roles": ["visual"]},
            },
            "links": [
                {"rel": "self", "type": "application/geo+json", "href": item_url},
                {"rel": "collection", "type": "application/json",
                 "href": f"{self.base}/api/collections/sequence-1"},
            ],
        }


class _MapillaryHandler(_Handler):
    """Graph API v4 image search and the mly1_public/2 coverage tiles."""

    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        if url.path.startswith("/tiles/"):
            if query.get("access_token") != MAPILLARY_TOKEN:
                self._json({"error": {"message": "Invalid OAuth access token"}}, 401)
                return
            z, x, y = (int(v) for v in url.path.split("/")[2:5])
            tile = self._tile(mercantile.Tile(x, y, z))
            if tile:
                self._send(200, tile, "application/x-protobuf")
            else:  # no object behind the CDN for an empty tile
                self._send(403, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
        elif url.path == "/images":
            if self.headers.get("Authorization") != f"OAuth {MAPILLARY_TOKEN}":
                self._json({"error": {"message": "Invalid OAuth access token"}}, 401)
            elif not self._throttled(url.path):
                self._json(self._search(query))
        elif url.path.startswith("/img/"):
            self._image(url.path.split("/")[2].removesuffix(".jpg"))
        else:
            self._send(404, b"{}")

    def _tile(self, tile: mercantile.Tile) -> bytes:
        points = [(i.lon, i.lat, {"id": int(i.image_id)}) for i in self.platform.images]
        return _mvt_points(tile, "image", points)

    def _search(self, query: dict[str, str]) -> dict:
        bbox = [float(v) for v in query["bbox"].split(",")]
        since = query.get("start_captured_at")
        cap = min(int(query["limit"]), self.platform.page_size)
        data = [self._record(i) for i in self.platform.inside(bbox, since)[:cap]]
        if self.platform.faults.malformed_record and 0 < len(data) < cap:
            data.append({"id": "999", "captured_at": 1})
        return {"data": data}

    def _record(self, image: FakeImage) -> dict:
        captured = datetime.fromisoformat(image.captured_at.replace("Z", "+00:00"))
        url = f"{self.base}/img/{image.image_id}.jpg"
        return {
            "id": image.image_id,
            "geometry": {"type": "Point", "coordinates": [image.lon, image.lat]},
            "compass_angle": image.heading,
            "captured_at": int(captured.astimezone(UTC).timestamp() * 1000),
            "is_pano": image.panorama,
            "thumb_1024_url": url, "thumb_2048_url": url,
            "creator": {"username": image.creator, "id": "1"},
        }


def _mvt_points(tile: mercantile.Tile, layer: str,
                points: list[tuple[float, float, dict]]) -> bytes:
    """A vector tile with `points` (lon, lat, properties) inside `tile`, y pointing up."""
    bounds = mercantile.xy_bounds(tile)
    features = []
    for lon, lat, props in points:
        mx, my = mercantile.xy(lon, lat)
        if bounds.left <= mx < bounds.right and bounds.bottom <= my < bounds.top:
            x = (mx - bounds.left) / (bounds.right - bounds.left) * 4096
            y = (my - bounds.bottom) / (bounds.top - bounds.bottom) * 4096
            features.append({"geometry": f"POINT ({x:.0f} {y:.0f})", "properties": props})
    if not features:
        return b""
    return mapbox_vector_tile.encode([{"name": layer, "features": features}])


class _KartaViewHandler(_Handler):
    """Photo API 2.0 as kartaview/mcp-karta-view's models read it."""

    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        if url.path == "/2.0/photo/":
            if self._throttled(url.path):
                return
            if self.platform.kartaview_login_required:
                self._json({"status": {"apiCode": 401, "apiMessage": "You have to be"
                                       " authenticated to access this resource",
                                       "httpCode": 401, "httpMessage": "Unauthorized"}})
                return
            bbox = [float(query["nwLng"]), float(query["seLat"]), float(query["seLng"]),
                    float(query["nwLat"])]
            found = self.platform.inside(bbox, None)
            page, size = int(query["page"]), min(int(query["itemsPerPage"]),
                                                 self.platform.page_size)
            data = [self._photo(i) for i in found[(page - 1) * size:page * size]]
            if self.platform.faults.malformed_record and page == 1:
                data.append({"id": "777", "lat": None, "lng": "x"})
            self._json({"status": {"apiCode": 600, "apiMessage": "The request has been"
                                   " processed without incidents", "httpCode": 200,
                                   "httpMessage": "Success"},
                        "result": {"data": data, "hasMoreData": page * size < len(found)}})
        elif url.path.startswith("/files/"):
            self._image(url.path.split("/")[2].removesuffix(".jpg"))
        else:
            self._send(404, b"{}")

    def _photo(self, image: FakeImage) -> dict:
        return {
            "id": image.image_id, "lat": f"{image.lat:.7f}", "lng": f"{image.lon:.7f}",
            "heading": None if image.heading is None else f"{image.heading:.2f}",
            "shotDate": image.captured_at.replace("T", " ").replace("Z", ".000"),
            "sequenceId": "55", "sequenceIndex": image.image_id[-2:],
            "projection": "SPHERE" if image.panorama else "PLANE",
            "fileurlProc": f"{self.base}/files/{image.image_id}.jpg",
        }


class _AmsterdamHandler(_Handler):
    """Amsterdam/panorama-api: PanoramaViewSet, PanoramaFilter, HALPaginationEmbedded."""

    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        if url.path == "/panorama/panoramas/":
            if self._throttled(url.path):
                return
            bbox, problem = _northwest_southeast(query.get("bbox", ""))
            since = query.get("timestamp_after")
            if since is not None and not _is_date(since):
                problem = "timestamp_after: Enter a valid date."
            if problem:
                self._json({"detail": problem}, 400)
                return
            self._json(self._page(self.platform.inside(bbox, since), query))
        elif url.path.startswith("/images/"):
            self._image(url.path.split("/")[2])
        else:
            self._send(404, b"{}")

    def _page(self, found: list[FakeImage], query: dict[str, str]) -> dict:
        page, size = int(query.get("page", "1")), int(query.get("page_size", "25"))
        size = min(size, self.platform.page_size)
        panoramas = [self._panorama(i) for i in found[(page - 1) * size:page * size]]
        if self.platform.faults.malformed_record and page == 1:
            panoramas.append({"pano_id": "TMX-broken", "_links": {}})
        self_link = f"{self.base}{self.path}"
        following = (f"{self.base}/panorama/panoramas/?"
                     f"{urlencode({**query, 'page': page + 1})}"
                     if page * size < len(found) else None)
        previous = (f"{self.base}/panorama/panoramas/?{urlencode({**query, 'page': page - 1})}"
                    if page > 1 else None)
        return {"_links": {"self": {"href": self_link}, "next": {"href": following},
                           "previous": {"href": previous}},
                "count": len(found), "_embedded": {"panoramas": panoramas}}

    def _panorama(self, image: FakeImage) -> dict:
        images = f"{self.base}/images/{image.image_id}"
        return {
            "pano_id": image.image_id, "timestamp": image.captured_at,
            "geometry": {"type": "Point", "coordinates": [image.lon, image.lat, 42.0]},
            "heading": image.heading, "pitch": 0.1, "roll": -0.2, "mission_year": 2024,
            "_links": {
                "self": {"href": f"{self.base}/panorama/panoramas/{image.image_id}/"},
                "equirectangular_small": {"href": f"{images}/small.jpg"},
                "equirectangular_medium": {"href": f"{images}/medium.jpg"},
            },
        }


def _northwest_southeast(text: str) -> tuple[list[float], str | None]:
    """The documented bbox, "<lon_w>,<lat_n>,<lon_e>,<lat_s>", as W,S,E,N; or the problem."""
    try:
        west, north, east, south = (float(v) for v in text.split(","))
    except ValueError:
        return [], "bbox coordinates must consist of 4 numbers"
    if west > east or north < south:
        return [], "bbox must be <northwest>,<southeast>"
    return [west, south, east, north], None


def _is_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return False
    return True


class _MapilioHandler(_Handler):
    """mapilio/backend: SequenceDetailController; the CDN's /im/{hash}/{file}/{size}."""

    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        if url.path == "/wmts":
            z, x, y = (int(query[k]) for k in ("z", "x", "y"))
            points = [(i.lon, i.lat, self._point(i)) for i in self.platform.images]
            if self.platform.faults.malformed_record and self.platform.images:
                first = self.platform.images[0]
                points.append((first.lon, first.lat, {"id": 424242}))
            self._send(200, _mvt_points(mercantile.Tile(x, y, z), "map_points", points),
                       "application/vnd.mapbox-vector-tile")
        elif url.path == "/api/sequence-detail":
            if self._throttled(url.path):
                return
            self._sequence_detail(query.get("sequence_uuid"))
        elif url.path.startswith("/im/"):
            self._image(url.path.split("/")[3].removesuffix(".jpg"))  # /im/HASH/FILE/SIZE
        else:
            self._send(404, b"{}")

    def _sequence_detail(self, sequence: str | None) -> None:
        if not sequence:
            self._json({"success": False, "message": ["'sequence_uuid' is required!"],
                        "error_code": 400}, 400)
            return
        rows = [{"id": int(i.image_id), "heading": None if i.heading is None else int(i.heading),
                 "filename": f"{i.image_id}.jpg", "uploaded_hash": "h4sh", "fov": None,
                 "vfov": None, "pitch": None,
                 "capture_time": i.captured_at.replace("T", " ").removesuffix("Z"),
                 "created_by_id": 7, "resolution": self._resolution(i)}
                for i in self.platform.images if sequence == "seq-1"]
        self._json({"data": rows or None})

    def _point(self, image: FakeImage) -> dict:
        sequence = "seq-gone" if image.image_id == self.platform.mapilio_gone else "seq-1"
        return {"id": int(image.image_id), "sequence_uuid": sequence,
                "capture_time": image.captured_at.replace("T", " ").removesuffix("Z"),
                "heading": image.heading or 0.0, "resolution": self._resolution(image)}

    @staticmethod
    def _resolution(image: FakeImage) -> str:
        height, width = image.rgb.shape[:2]
        return f"{width}x{height}"


class HangUpHost:
    """A host that accepts each connection and closes it at once, counting them: an image
    host that is as good as down, whose connection attempts can be counted."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed: done
            while True:
                connection, _ = self._listener.accept()
                self.connections += 1
                connection.close()

    def __enter__(self) -> HangUpHost:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._listener.close()


class FakeServer:
    """One fake platform on a free loopback port (or the loopback `host` given), served from
    a thread."""

    def __init__(self, kind: str, platform: FakePlatform, host: str = "127.0.0.1") -> None:
        handler = {"panoramax": _PanoramaxHandler, "mapillary": _MapillaryHandler,
                   "kartaview": _KartaViewHandler, "amsterdam": _AmsterdamHandler,
                   "mapilio": _MapilioHandler}[kind]
        self.platform = platform
        self._server = ThreadingHTTPServer((host, 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._server.RequestHandlerClass = type("Bound", (handler,), {
            "platform": platform, "base": self.url})
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
