"""`geosleuth models fetch/list` against a real HTTP server on 127.0.0.1 that can misbehave."""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.cli.main import main
from engine.errors import ChecksumMismatch, ConfigError, DownloadFailed
from engine.neural.fetch import fetch_model, model_statuses, resolve_models
from engine.neural.published import PUBLISHED, PublishedModel

PAYLOAD = random.Random(7).randbytes(3_000_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Seen:
    """One request as the server saw it."""

    range: str | None
    user_agent: str | None
    sent: int = 0


@dataclass
class Behaviour:
    """How the server answers the next requests; tests change it between calls."""

    cut_after: int | None = None  # close the connection after this many body bytes
    ignore_range: bool = False  # answer 200 with everything, as servers without ranges do
    status: int | None = None  # answer this error status instead of the file
    corrupt: bool = False  # serve the right length with one byte changed
    seen: list[Seen] = field(default_factory=list)


class _FileServer(ThreadingHTTPServer):
    behaviour: Behaviour


class _Handler(BaseHTTPRequestHandler):
    server: _FileServer

    def do_GET(self) -> None:
        how = self.server.behaviour
        seen = Seen(self.headers.get("Range"), self.headers.get("User-Agent"))
        how.seen.append(seen)
        if how.status is not None:
            self.send_error(how.status)
            return
        body = bytearray(PAYLOAD)
        if how.corrupt:
            body[len(body) // 2] ^= 0xFF
        start = _range_start(seen.range) if not how.ignore_range else None
        if start is not None and start >= len(body):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if start is None:
            self.send_response(200)
        else:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        part = bytes(body[start or 0 :])
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if how.cut_after is not None:
            part = part[: how.cut_after]
        for offset in range(0, len(part), 1 << 16):
            self.wfile.write(part[offset : offset + (1 << 16)])
            seen.sent += len(part[offset : offset + (1 << 16)])

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


def _range_start(header: str | None) -> int | None:
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match.group(1)) if match else None


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    """(URL of the test file, the server's behaviour) on a random local port."""
    httpd = _FileServer(("127.0.0.1", 0), _Handler)
    httpd.behaviour = Behaviour()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/disk-depth.pth", httpd.behaviour
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def model(server) -> PublishedModel:
    url, _ = server
    return replace(PUBLISHED["disk-depth"], url=url, sha256=PAYLOAD_SHA, size=len(PAYLOAD))


def _part(directory: Path, model: PublishedModel) -> Path:
    return directory / f"{model.filename}.part"


def test_download_completes_and_is_verified(tmp_path, server, model):
    _, how = server
    path = fetch_model(model, tmp_path, progress=False)
    assert path == tmp_path / "disk-depth.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PAYLOAD_SHA
    assert not _part(tmp_path, model).exists()
    assert how.seen[0].range is None
    assert how.seen[0].user_agent.startswith("GeoSleuth/")


def test_broken_download_keeps_the_part_and_the_next_run_resumes(tmp_path, server, model):
    _, how = server
    how.cut_after = 1_000_000
    with pytest.raises(DownloadFailed, match="broke mid-download"):
        fetch_model(model, tmp_path, progress=False)
    part = _part(tmp_path, model)
    kept = part.stat().st_size
    assert 0 < kept <= 1_000_000 and not (tmp_path / model.filename).exists()

    how.cut_after = None
    path = fetch_model(model, tmp_path, progress=False)
    resumed = how.seen[-1]
    assert resumed.range == f"bytes={kept}-"
    assert resumed.sent == len(PAYLOAD) - kept < len(PAYLOAD)
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_server_without_ranges_starts_over(tmp_path, server, model):
    _, how = server
    _part(tmp_path, model).write_bytes(PAYLOAD[:500_000])
    how.ignore_range = True
    path = fetch_model(model, tmp_path, progress=False)
    assert how.seen[-1].range == "bytes=500000-" and how.seen[-1].sent == len(PAYLOAD)
    assert path.read_bytes() == PAYLOAD


def test_complete_part_of_unknown_size_is_verified_after_416(tmp_path, server, model):
    _, how = server
    unsized = replace(model, size=None)
    _part(tmp_path, unsized).write_bytes(PAYLOAD)
    path = fetch_model(unsized, tmp_path, progress=False)
    assert [s.range for s in how.seen] == [f"bytes={len(PAYLOAD)}-"]
    assert path.read_bytes() == PAYLOAD


def test_overlong_part_of_unknown_size_is_restarted(tmp_path, server, model):
    _, how = server
    unsized = replace(model, size=None)
    _part(tmp_path, unsized).write_bytes(PAYLOAD + b"junk")
    path = fetch_model(unsized, tmp_path, progress=False)
    assert [s.range for s in how.seen] == [f"bytes={len(PAYLOAD) + 4}-", None]
    assert path.read_bytes() == PAYLOAD


def test_corrupted_bytes_are_discarded(tmp_path, server, model):
    _, how = server
    how.corrupt = True
    with pytest.raises(ChecksumMismatch, match=PAYLOAD_SHA[:16]):
        fetch_model(model, tmp_path, progress=False)
    assert not (tmp_path / model.filename).exists()
    assert not _part(tmp_path, model).exists()


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_fails_with_the_status(tmp_path, server, model, status):
    _, how = server
    how.status = status
    with pytest.raises(DownloadFailed, match=f"HTTP {status}"):
        fetch_model(model, tmp_path, progress=False)
    assert not (tmp_path / model.filename).exists()


def test_unreachable_server_fails_with_a_short_reason(tmp_path, model):
    with pytest.raises(DownloadFailed, match=r"connection to 127\.0\.0\.1:9 failed"):
        fetch_model(model, tmp_path, progress=False, url="http://127.0.0.1:9/x.pth")


def test_offline_host_is_told_how_to_copy_the_files_in_and_no_part_file_is_claimed(tmp_path,
                                                                                     model):
    with pytest.raises(DownloadFailed) as refused:
        fetch_model(model, tmp_path, progress=False, url="http://127.0.0.1:9/x.pth")
    message = str(refused.value)
    assert "offline" in message and f"copy {model.filename} into {tmp_path}" in message
    assert "requirements-learned.txt" in message  # DISK is packaged: no download needed
    assert ".part" not in message and not any(tmp_path.iterdir())


def test_cli_fetch_into_an_unwritable_folder_is_one_line(capsys, tmp_path, monkeypatch, model):
    monkeypatch.setitem(PUBLISHED, "disk-depth", model)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out, err = _run(capsys, "models", "fetch", "disk-depth", "--dir", str(blocker / "m"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"geosleuth: error: Cannot write weight files into {blocker / 'm'}")


def test_verified_file_needs_no_request(tmp_path, server, model):
    _, how = server
    (tmp_path / model.filename).write_bytes(PAYLOAD)
    assert fetch_model(model, tmp_path, progress=False) == tmp_path / model.filename
    assert how.seen == []


def test_differing_file_is_downloaded_again(tmp_path, server, model, caplog):
    _, how = server
    (tmp_path / model.filename).write_bytes(b"not the weights")
    with caplog.at_level(logging.WARNING, logger="engine.neural.fetch"):
        path = fetch_model(model, tmp_path, progress=False)
    assert "SHA-256 differs" in caplog.text
    assert len(how.seen) == 1 and path.read_bytes() == PAYLOAD


def test_unknown_name_lists_the_known_ones():
    assert [m.name for m in resolve_models(["disk-depth", "disk-depth"])] == ["disk-depth"]
    with pytest.raises(ConfigError, match=r"unknown model 'nope'.*lightglue-disk"):
        resolve_models(["disk-depth", "nope"])


def test_statuses_report_what_is_on_disk(tmp_path, monkeypatch):
    verified = replace(PUBLISHED["disk-depth"], sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    monkeypatch.setitem(PUBLISHED, "disk-depth", verified)
    _not_packaged(monkeypatch, "lightglue-disk")
    (tmp_path / "disk-depth.pth").write_bytes(PAYLOAD)
    (tmp_path / "aliked-n16.pth").write_bytes(b"something else")
    (tmp_path / "lightglue-disk.pth.part").write_bytes(b"x" * 2_000_000)
    (tmp_path / "mine.pth").write_bytes(b"own weights")
    states = {s.name: s for s in model_statuses(tmp_path)}
    assert states["disk-depth"].verified
    assert states["disk-depth"].state == "verified (models directory)"
    assert states["disk-depth"].size == len(PAYLOAD)
    assert states["aliked-n16"].present and not states["aliked-n16"].verified
    assert states["aliked-n16"].state == "present but SHA-256 differs"
    assert states["lightglue-disk"].partial_bytes == 2_000_000
    assert states["lightglue-disk"].state == "partial 2.0 MB"
    assert states["cosplace-resnet50-2048"].state == "missing"
    assert states["mine"].state == "not a published file" and states["mine"].kind == ""
    assert list(states)[-1] == "mine"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _not_packaged(monkeypatch, name: str) -> None:
    """As on a host without requirements-learned.txt installed, for this model."""
    monkeypatch.setitem(PUBLISHED, name, replace(PUBLISHED[name], packaged=None))


def test_cli_fetch_then_list(capsys, tmp_path, monkeypatch, model):
    monkeypatch.setitem(PUBLISHED, "disk-depth", model)
    _not_packaged(monkeypatch, "lightglue-disk")
    code, out, _ = _run(capsys, "models", "fetch", "disk-depth", "--dir", str(tmp_path))
    assert code == 0
    assert f"disk-depth: {tmp_path / 'disk-depth.pth'}" in out
    assert f"SHA-256 {PAYLOAD_SHA[:16]}… verified" in out

    code, out, _ = _run(capsys, "models", "list", "--dir", str(tmp_path))
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "verified" in rows["disk-depth"] and "3.0 MB" in rows["disk-depth"]
    assert "missing" in rows["lightglue-disk"]
    assert "geosleuth models fetch cosplace-resnet50-2048 lightglue-disk" in out


def test_cli_fetch_reports_a_checksum_failure(capsys, tmp_path, monkeypatch, server, model):
    _, how = server
    how.corrupt = True
    monkeypatch.setitem(PUBLISHED, "disk-depth", model)
    for name in set(PUBLISHED) - {"disk-depth"}:  # --all must reach only the local server
        monkeypatch.delitem(PUBLISHED, name)
    code, out, err = _run(capsys, "models", "fetch", "--all", "--dir", str(tmp_path))
    assert code == 2 and out == ""
    assert "geosleuth: error: 'disk-depth' downloaded with SHA-256" in err
    assert not any(tmp_path.iterdir())


def test_cli_fetch_refuses_an_unknown_name(capsys, tmp_path):
    code, _, err = _run(capsys, "models", "fetch", "nope", "--dir", str(tmp_path))
    assert code == 2 and "disk-depth" in err
