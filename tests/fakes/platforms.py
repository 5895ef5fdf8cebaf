"""Fakes of the platforms' APIs on 127.0.0.1: Panoramax (STAC), Mapillary (Graph API and
coverage tiles), KartaView (photo API 2.0), Mapilio (vector tiles and sequence details) and
Amsterdam Open Panorama (HAL).

Each answers in its API's documented format, pages where the API pages, and can be told to
fail: a 429 with Retry-After, a 500, a missing image, a malformed record. Every request is
counted by path so a test can check that nothing was fetched twice.
"""

from __future__ import annotations

import io
import json
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


@dataclass
class FakePlatform:
    images: list[FakeImage] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    requests: Counter = field(default_factory=Counter)
    images_asked: Counter = field(default_factory=Counter)
    image_auth_headers: list = field(default_factory=list)  # Authorization sent with a file
    user_agents: set = field(default_factory=set)
    page_size: int = 4  # Panoramax pages; Mapillary's cap on one search
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

    def _json(self, data: object, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode())

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


class _PanoramaxHandler(_Handler):
    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        if url.path == "/api":
            self._json(self._landing())
        elif url.path == "/api/search":
            if self._throttled(url.path):
                return
            self._json(self._search(query))
        elif url.path.startswith("/pictures/"):
            self._image(url.path.split("/")[2])
        else:
            self._send(404, b"{}")

    def _landing(self) -> dict:
        return {
            "type": "Catalog", "id": "fake-panoramax", "stac_version": "1.0.0",
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

    def _search(self, query: dict[str, str]) -> dict:
        bbox = [float(v) for v in query["bbox"].split(",")]
        since = query.get("datetime", "").split("/")[0] or None
        found = self.platform.inside(bbox, since)
        page = int(query.get("page", "1"))
        size = min(int(query.get("limit", "10")), self.platform.page_size)
        chunk = found[(page - 1) * size:page * size]
        features = [self._item(i) for i in chunk]
        if self.platform.faults.malformed_record and page == 1 and features:
            features.append({"type": "Feature", "id": "broken", "properties": {}, "assets": {}})
        links = []
        if page * size < len(found):
            links.append({"rel": "next", "type": "application/geo+json", "href":
                          f"{self.base}/api/search?{urlencode({**query, 'page': page + 1})}"})
        return {"type": "FeatureCollection", "features": features, "links": links}

    def _item(self, image: FakeImage) -> dict:
        asset = "hd" if image.panorama else "sd"
        return {
            "type": "Feature", "stac_version": "1.0.0", "id": image.image_id,
            "collection": "sequence-1", "bbox": [image.lon, image.lat, image.lon, image.lat],
            "geometry": {"type": "Point", "coordinates": [image.lon, image.lat]},
            "properties": {
                "datetime": image.captured_at, "view:azimuth": image.heading,
                "license": "CC-BY-SA-4.0",
                "pers:interior_orientation": {"field_of_view": 360 if image.panorama else 70},
            },
            "providers": [{"name": image.creator, "roles": ["producer"]}],
            "assets": {asset: {"href": f"{self.base}/pictures/{image.image_id}/{asset}.jpg",
                               "type": "image/jpeg", "roles": ["data"]}},
            "links": [],
        }


class _MapillaryHandler(_Handler):
    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        if url.path.startswith("/tiles/"):
            if query.get("access_token") != MAPILLARY_TOKEN:
                self._json({"error": {"message": "Invalid OAuth access token"}}, 401)
                return
            z, x, y = (int(v) for v in url.path.split("/")[2:5])
            self._send(200, self._tile(mercantile.Tile(x, y, z)), "application/x-protobuf")
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
    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        if url.path == "/2.0/photo/":
            if self._throttled(url.path):
                return
            bbox = [float(query["nwLng"]), float(query["seLat"]), float(query["seLng"]),
                    float(query["nwLat"])]
            found = self.platform.inside(bbox, None)
            page, size = int(query["page"]), min(int(query["itemsPerPage"]),
                                                 self.platform.page_size)
            data = [self._photo(i) for i in found[(page - 1) * size:page * size]]
            if self.platform.faults.malformed_record and page == 1:
                data.append({"id": "777", "lat": None, "lng": "x"})
            self._json({"status": {"httpCode": 200}, "result": {
                "data": data, "hasMoreData": page * size < len(found)}})
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
    def route(self, url: ParseResult, query: dict[str, str]) -> None:
        if url.path == "/panorama/panoramas/":
            if self._throttled(url.path):
                return
            found = self.platform.inside([float(v) for v in query["bbox"].split(",")],
                                         query.get("timestamp_after"))
            page, size = int(query.get("page", "1")), min(int(query["page_size"]),
                                                          self.platform.page_size)
            panoramas = [self._panorama(i) for i in found[(page - 1) * size:page * size]]
            if self.platform.faults.malformed_record and page == 1:
                panoramas.append({"pano_id": "TMX-broken", "_links": {}})
            following = None
            if page * size < len(found):
                following = {"href": f"{self.base}/panorama/panoramas/?"
                             f"{urlencode({**query, 'page': page + 1})}"}
            self._json({"_links": {"self": {"href": self.base + self.path},
                                   "next": following or {"href": None}},
                        "count": len(found), "_embedded": {"panoramas": panoramas}})
        elif url.path.startswith("/images/"):
            self._image(url.path.split("/")[2])
        else:
            self._send(404, b"{}")

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


class _MapilioHandler(_Handler):
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
            self._json({"data": [{"id": int(i.image_id), "filename": f"{i.image_id}.jpg",
                                  "uploaded_hash": "h4sh", "username": i.creator}
                                 for i in self.platform.images]})
        elif url.path.startswith("/im/"):
            self._image(url.path.split("/")[3].removesuffix(".jpg"))  # /im/HASH/FILE/SIZE
        else:
            self._send(404, b"{}")

    def _point(self, image: FakeImage) -> dict:
        height, width = image.rgb.shape[:2]
        return {"id": int(image.image_id), "sequence_uuid": "seq-1",
                "capture_time": image.captured_at.replace("T", " ").removesuffix("Z"),
                "heading": image.heading or 0.0, "resolution": f"{width}x{height}"}


class FakeServer:
    """One fake platform on a free loopback port, served from a thread."""

    def __init__(self, kind: str, platform: FakePlatform) -> None:
        handler = {"panoramax": _PanoramaxHandler, "mapillary": _MapillaryHandler,
                   "kartaview": _KartaViewHandler, "amsterdam": _AmsterdamHandler,
                   "mapilio": _MapilioHandler}[kind]
        self.platform = platform
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._server.RequestHandlerClass = type("Bound", (handler,), {
            "platform": platform, "base": self.url})
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
