"""Fakes of the Panoramax STAC API and the Mapillary Graph API + coverage tiles on 127.0.0.1.

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
from urllib.parse import parse_qs, urlencode, urlparse

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
    page_size: int = 4  # Panoramax pages; Mapillary's cap on one search
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _throttled: bool = False
    _failed: set = field(default_factory=set)

    def count(self, path: str) -> int:
        with self._lock:
            self.requests[path] += 1
            return self.requests[path]

    def requests_total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def image_downloads(self) -> Counter:
        return Counter({p: n for p, n in self.requests.items() if p.endswith(".jpg")})

    def should_throttle(self) -> bool:
        with self._lock:
            if self.faults.throttle_first_search and not self._throttled:
                self._throttled = True
                return True
            return False

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
    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.platform.count(url.path)
        if url.path == "/api":
            self._json(self._landing())
        elif url.path == "/api/search":
            if self.platform.should_throttle():
                self._send(429, b"{}", headers={"Retry-After": "1"})
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
    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.platform.count(url.path)
        if url.path.startswith("/tiles/"):
            if query.get("access_token") != MAPILLARY_TOKEN:
                self._json({"error": {"message": "Invalid OAuth access token"}}, 401)
                return
            z, x, y = (int(v) for v in url.path.split("/")[2:5])
            self._send(200, self._tile(mercantile.Tile(x, y, z)), "application/x-protobuf")
        elif url.path == "/images":
            if self.headers.get("Authorization") != f"OAuth {MAPILLARY_TOKEN}":
                self._json({"error": {"message": "Invalid OAuth access token"}}, 401)
            elif self.platform.should_throttle():
                self._send(429, b"{}", headers={"Retry-After": "1"})
            else:
                self._json(self._search(query))
        elif url.path.startswith("/img/"):
            self._image(url.path.split("/")[2].removesuffix(".jpg"))
        else:
            self._send(404, b"{}")

    def _tile(self, tile: mercantile.Tile) -> bytes:
        bounds = mercantile.xy_bounds(tile)
        features = []
        for image in self.platform.images:
            mx, my = mercantile.xy(image.lon, image.lat)
            if bounds.left <= mx < bounds.right and bounds.bottom <= my < bounds.top:
                x = (mx - bounds.left) / (bounds.right - bounds.left) * 4096
                y = (my - bounds.bottom) / (bounds.top - bounds.bottom) * 4096
                features.append({"geometry": f"POINT ({x:.0f} {y:.0f})",
                                 "properties": {"id": int(image.image_id)}})
        if not features:
            return b""
        return mapbox_vector_tile.encode([{"name": "image", "features": features}])

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


class FakeServer:
    """One fake platform on a free loopback port, served from a thread."""

    def __init__(self, kind: str, platform: FakePlatform) -> None:
        handler = {"panoramax": _PanoramaxHandler, "mapillary": _MapillaryHandler}[kind]
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
