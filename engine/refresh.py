"""Serving appended references without a restart: a newer view of the index, opened between
builds (one committed checkpoint: catalogue, vectors and manifest together), over the models
the engine has already loaded."""

from __future__ import annotations

from pathlib import Path

from engine.index.locks import reading
from engine.index.manifest import MANIFEST_NAME, Manifest
from engine.index.reference_index import ReferenceIndex
from engine.locator import Locator

Stamp = tuple[int, int] | None  # the manifest's (mtime in ns, size); None if it is missing


def manifest_stamp(directory: Path) -> Stamp:
    """One stat: what tells, cheaply, that a build has committed something since."""
    try:
        stat = (directory / MANIFEST_NAME).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def open_newer(locator: Locator, wait_s: float) -> tuple[Locator | None, bool]:
    """(a locator over the index as last committed, or None when `locator` serves that
    already; whether the index could be read: False while a build kept it past `wait_s`)."""
    directory = locator.index.directory
    with reading(directory, wait_s) as free:
        if not free:
            return None, False
        if Manifest.load(directory).version == locator.index.version:
            return None, True
        index = ReferenceIndex.open(directory, locator.config.index)
    try:
        return locator.with_index(index), True
    except BaseException:
        index.close()
        raise
