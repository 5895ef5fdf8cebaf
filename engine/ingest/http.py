"""The one HTTP client every source uses: rate-limited, retrying, capped, and named.

Politeness is the platforms' condition for open access: a request rate per source
(requests-ratelimiter), retries with exponential backoff and jitter on 429, 5xx and
timeouts that honour Retry-After (urllib3's Retry), a user agent naming the project, and a
byte cap on every download so a wrong URL cannot fill the disk.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests_ratelimiter import LimiterSession
from urllib3.util import Retry

from engine.errors import SourceAuthFailed, SourceUnavailable
from engine.ingest.config import IngestConfig

RETRY_STATUSES = (429, 500, 502, 503, 504)
CONNECT_RETRIES = 2
CHUNK_BYTES = 1 << 16
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
    """One image could not be had (404, too big, cut off): the crawl skips it and goes on."""


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

    def close(self) -> None:
        self.session.close()
        self._files.close()

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        response = self._get(self.session, url, params)
        try:
            return response.json()
        except ValueError:
            raise SourceUnavailable(self.source, f"{_where(url)} answered with something that"
                                    " is not JSON") from None

    def get_bytes(self, url: str, params: dict[str, Any] | None = None,
                  *, missing_ok: bool = False) -> bytes:
        """An API resource that is not JSON (a vector tile). With `missing_ok`, a 404/410
        raises ImageMissing rather than stopping the source."""
        return self._read_capped(self._get(self.session, url, params, stream=True,
                                           missing_ok=missing_ok))

    def download(self, url: str) -> bytes:
        """One image file, streamed and cut off at max_image_bytes; ImageMissing when it
        cannot be had (404/410, over the cap, cut off, failing after the retries)."""
        return self._read_capped(self._get(self._files, url, None, stream=True,
                                           missing_ok=True))

    def _read_capped(self, response: requests.Response) -> bytes:
        cap = self.config.max_image_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            response.close()
            raise ImageMissing(f"{int(declared) / 1e6:.1f} MB, over the {cap / 1e6:.0f} MB cap")
        body = bytearray()
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                body += chunk
                if len(body) > cap:
                    raise ImageMissing(f"over the {cap / 1e6:.0f} MB cap")
        except requests.RequestException as exc:
            raise ImageMissing(f"download cut off ({type(exc).__name__})") from None
        finally:
            response.close()
        return bytes(body)

    def _get(self, session: requests.Session, url: str, params: dict[str, Any] | None, *,
             stream: bool = False, missing_ok: bool = False) -> requests.Response:
        try:
            response = session.get(url, params=params, timeout=self.config.timeout_s,
                                   stream=stream)
        except requests.exceptions.RetryError:
            if missing_ok:
                raise ImageMissing(f"kept failing after {self.config.retries} retries") from None
            raise SourceUnavailable(self.source, f"{_where(url)} kept refusing after"
                                    f" {self.config.retries} retries") from None
        except requests.ConnectionError:
            raise SourceUnavailable(self.source, f"cannot reach {_where(url)}"
                                    " (offline, or the host is down)") from None
        except requests.Timeout:
            raise SourceUnavailable(self.source, f"{_where(url)} did not answer within"
                                    f" {self.config.timeout_s:.0f} s") from None
        if response.status_code in (401, 403):
            response.close()
            raise SourceAuthFailed(self.source, response.status_code)
        if missing_ok and response.status_code in (404, 410):
            response.close()
            raise ImageMissing(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            response.close()
            raise SourceUnavailable(self.source, f"{_where(url)} answered HTTP"
                                    f" {response.status_code}")
        return response


def _session(config: IngestConfig, per_second: float) -> requests.Session:
    session = LimiterSession(per_second=per_second, per_host=False)
    retry = Retry(
        total=config.retries,
        connect=min(CONNECT_RETRIES, config.retries),  # offline is told in seconds, not a minute
        status_forcelist=RETRY_STATUSES,
        backoff_factor=config.backoff_s,
        backoff_max=config.backoff_max_s,
        backoff_jitter=config.backoff_s,
        respect_retry_after_header=True,
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=True,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=max(10, config.concurrency))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = config.user_agent
    return session


def _where(url: str) -> str:
    """Scheme and host only: a URL's query may carry a token."""
    parts = requests.utils.urlparse(url)
    return f"{parts.scheme}://{parts.netloc}"
