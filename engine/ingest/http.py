"""The one HTTP client every source uses: rate-limited, retrying, capped, timed, named, and
kept to the public internet.

Politeness is the platforms' condition for open access: a request rate per source
(requests-ratelimiter), retries with exponential backoff and jitter on 429, 5xx and
timeouts that honour Retry-After up to `retry_after_max_s` (urllib3's Retry), and a user agent
naming the project. Safety is ours: only http(s) is fetched, every connection's peer address
must be public (checked on the connected socket, so after DNS and after each redirect), each
answer has a byte cap and a deadline from when it is asked for, and what a listing names is
never trusted to be fetchable: a download that cannot be had is that image's failure, not the
source's.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests_ratelimiter import LimiterSession
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError
from urllib3.util import Retry

from engine.errors import SourceAuthFailed, SourceUnavailable
from engine.ingest.config import IngestConfig

RETRY_STATUSES = (429, 500, 502, 503, 504)
CONNECT_RETRIES = 2
CHUNK_BYTES = 1 << 16
WEB_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
UNREACHABLE_AFTER = 3  # failed connections in a row before an image host is given up on
_TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&\s'\"]+", re.IGNORECASE)


class _RedactTokens(logging.Filter):
    """urllib3 logs requests and retries with their URL; a tile server's token is in its query."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _TOKEN_IN_QUERY.sub(r"\1[redacted]", record.getMessage())
        record.args = ()
        return True


for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_RedactTokens())


class ImageMissing(Exception):
    """One image could not be had (404, too big, cut off, a host refused or down): the crawl
    counts it and goes on."""


class BadAnswer(Exception):
    """One API answer could not be used (not JSON, too large, a redirect loop, an HTTP error):
    the cell that asked for it fails, the crawl goes on."""


class AddressRefused(Exception):
    """A connection reached a loopback, private, link-local or otherwise non-public address."""


def is_web_url(url: Any) -> bool:
    """True for an absolute http(s) URL with a host: the only kind the crawler fetches or links."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in WEB_SCHEMES and bool(parts.hostname) and (
            parts.port is None or parts.port > 0)
    except ValueError:  # an unbalanced [ in the host, a port that is not one
        return False


def same_host(url: str, other: str) -> bool:
    """Whether two URLs name the same scheme, host and port (a paging link stays on its API)."""
    if not (is_web_url(url) and is_web_url(other)):
        return False
    return _origin(url) == _origin(other)


def _origin(url: str) -> tuple[str, str | None, int]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]


class PoliteClient:
    """GET JSON, tiles and image files for one source.

    Two sessions, each with its own rate limit: the platform's API (`requests_per_s`, and
    the token headers where the platform takes one) and the image files, which mostly come
    from a CDN (`downloads_per_s`, and no token: it is not theirs to see). Messages name the
    host only, never a URL's query.
    """

    def __init__(self, source: str, config: IngestConfig,
                 secret_headers: dict[str, str] | None = None) -> None:
        self.source = source
        self.config = config
        self.session = _session(config, config.requests_per_s)
        self.session.headers.update(secret_headers or {})
        self._files = _session(config, config.downloads_per_s)
        self._unreachable: Counter[str] = Counter()  # image hosts: connections failed in a row
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()
        self._files.close()

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """An API answer, parsed; BadAnswer when it is no JSON or over `max_json_bytes`."""
        started = time.monotonic()
        response = self._api(url, params)
        body = self._read(response, self.config.max_json_bytes, started, BadAnswer)
        try:
            return json.loads(body)
        except ValueError:
            raise BadAnswer(f"{_where(url)} answered with something that is not JSON") from None

    def get_bytes(self, url: str, params: dict[str, Any] | None = None,
                  *, empty_statuses: tuple[int, ...] = ()) -> bytes:
        """An API resource that is not JSON (a vector tile); b"" where the server answers one
        of `empty_statuses`, its way of saying there is nothing there."""
        started = time.monotonic()
        response = self._api(url, params, empty_statuses=empty_statuses)
        if response.status_code in empty_statuses:
            response.close()
            return b""
        return self._read(response, self.config.max_json_bytes, started, BadAnswer)

    def download(self, url: str) -> bytes:
        """One image file, streamed, capped at `max_image_bytes` and `deadline_s`; ImageMissing
        whenever it cannot be had, whatever the reason. A host that could not be reached
        `UNREACHABLE_AFTER` times in a row is not tried again in this run: one instance down
        costs its own images seconds, not each image its retries."""
        started = time.monotonic()
        if not is_web_url(url):
            raise ImageMissing(f"not an http(s) URL ({str(url)[:40]!r})")
        host = _where(url)
        with self._lock:
            if self._unreachable[host] >= UNREACHABLE_AFTER:
                raise ImageMissing(f"cannot reach {host}")
        try:
            response = self._files.get(url, timeout=self.config.timeout_s, stream=True)
        except AddressRefused as exc:
            raise ImageMissing(f"refused: {exc}") from None
        except requests.exceptions.RetryError:
            raise ImageMissing(f"kept failing after {self.config.retries} retries") from None
        except requests.TooManyRedirects:
            raise ImageMissing(f"{host} redirects in a loop") from None
        except (requests.ConnectionError, requests.Timeout):
            with self._lock:
                self._unreachable[host] += 1
            raise ImageMissing(f"cannot reach {host}") from None
        except requests.RequestException as exc:  # a redirect to file:, a malformed URL...
            raise ImageMissing(f"{host}: {type(exc).__name__}") from None
        with self._lock:
            self._unreachable[host] = 0
        if response.status_code >= 400:
            response.close()
            raise ImageMissing(f"HTTP {response.status_code}")
        return self._read(response, self.config.max_image_bytes, started, ImageMissing)

    def _api(self, url: str, params: dict[str, Any] | None, *,
             empty_statuses: tuple[int, ...] = ()) -> requests.Response:
        """One API request: SourceUnavailable when the API cannot be reached or keeps failing,
        SourceAuthFailed on 401/403, BadAnswer for what one answer got wrong."""
        if not is_web_url(url):
            raise BadAnswer(f"not an http(s) URL ({str(url)[:40]!r})")
        try:
            response = self.session.get(url, params=params, timeout=self.config.timeout_s,
                                        stream=True)
        except AddressRefused as exc:
            raise SourceUnavailable(self.source, f"refused to fetch {_where(url)}: {exc} (set"
                                    " [ingest] allow_private_hosts for a private instance)"
                                    ) from None
        except requests.exceptions.RetryError:
            raise SourceUnavailable(self.source, f"{_where(url)} kept refusing after"
                                    f" {self.config.retries} retries") from None
        except requests.TooManyRedirects:
            raise BadAnswer(f"{_where(url)} redirects in a loop") from None
        except requests.ConnectionError:
            raise SourceUnavailable(self.source, f"cannot reach {_where(url)}"
                                    " (offline, or the host is down)") from None
        except requests.Timeout:
            raise SourceUnavailable(self.source, f"{_where(url)} did not answer within"
                                    f" {self.config.timeout_s:.0f} s") from None
        except requests.RequestException as exc:
            raise BadAnswer(f"{_where(url)}: {type(exc).__name__}") from None
        status = response.status_code
        if status in empty_statuses:
            return response
        if status in (401, 403):
            response.close()
            raise SourceAuthFailed(self.source, status)
        if status >= 400:
            response.close()
            raise BadAnswer(f"{_where(url)} answered HTTP {status}")
        return response

    def _read(self, response: requests.Response, cap: int, started: float,
              failure: type[Exception]) -> bytes:
        """The body, refused past `cap` bytes or `deadline_s` after `started`.

        read1 returns after one read from the socket, so a body that trickles in is checked
        against the deadline between reads, never waited on for its whole length."""
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            response.close()
            raise failure(f"{int(declared) / 1e6:.1f} MB, over the {cap / 1e6:.0f} MB cap")
        body = bytearray()
        deadline = started + self.config.deadline_s
        try:
            while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
                body += chunk
                if len(body) > cap:
                    raise failure(f"over the {cap / 1e6:.0f} MB cap")
                if time.monotonic() > deadline:
                    raise failure(f"not done within the {self.config.deadline_s:.0f} s"
                                  " deadline")
        except (HTTPError, OSError) as exc:  # a read timeout, a reset, a broken encoding
            raise failure(f"cut off ({type(exc).__name__})") from None
        finally:
            response.close()
        return bytes(body)


class _PublicPeerOnly:
    """Refuses a connection whose peer is not a public address, once it is connected: what
    DNS answered, and wherever a redirect led, is what is checked."""

    host: str

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
            peer = peer.ipv4_mapped
        if not _is_public(peer):
            sock.close()
            raise AddressRefused(f"{self.host} is {peer}, not a public address")
        return sock


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


class _PublicHTTPConnection(_PublicPeerOnly, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicPeerOnly, HTTPSConnection):
    pass


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class _PublicOnlyAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool,
                                                   "https": _PublicHTTPSPool}


class _BoundedRetry(Retry):
    """Retry-After honoured up to `retry_after_max`: a server asking for a day is not waited
    on for a day."""

    def __init__(self, *args: Any, retry_after_max: float = 300.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_max = retry_after_max

    def new(self, **kwargs: Any) -> _BoundedRetry:
        retry = super().new(**kwargs)
        retry.retry_after_max = self.retry_after_max
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, self.retry_after_max)


def _session(config: IngestConfig, per_second: float) -> requests.Session:
    session = LimiterSession(per_second=per_second, per_host=False)
    # A proxy from the environment would be the peer checked, not the host it fetches.
    session.trust_env = config.allow_private_hosts
    retry = _BoundedRetry(
        total=config.retries,
        connect=min(CONNECT_RETRIES, config.retries),  # offline is told in seconds, not a minute
        status_forcelist=RETRY_STATUSES,
        backoff_factor=config.backoff_s,
        backoff_max=config.backoff_max_s,
        backoff_jitter=config.backoff_s,
        respect_retry_after_header=True,
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=True,
        retry_after_max=config.retry_after_max_s,
    )
    adapter_type = HTTPAdapter if config.allow_private_hosts else _PublicOnlyAdapter
    adapter = adapter_type(max_retries=retry, pool_maxsize=max(10, config.concurrency))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = config.user_agent
    return session


def _where(url: str) -> str:
    """Scheme and host only: a URL's query may carry a token."""
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}"
