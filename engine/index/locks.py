"""The index's build lock: one build at a time, and a served engine opening a new view reads
only between builds (never a half-written batch).

A reader holds the build lock only while it opens the index. It takes a reader lock first and
drops it last, so a build that finds the build lock taken can tell a reader (wait for it) from
another build (refused at once, as before).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from engine.errors import IndexBusy

LOCK_NAME = "build.lock"
READER_LOCK_NAME = "reader.lock"
# How long a build waits for an engine opening the index: loading a graph of millions of
# references takes tens of seconds.
READER_WAIT_S = 300.0
POLL_S = 0.05


@contextmanager
def building(directory: Path) -> Iterator[None]:
    """Hold the build lock for a build; IndexBusy when another build holds it."""
    lock = FileLock(directory / LOCK_NAME)
    deadline = time.monotonic() + READER_WAIT_S
    while not _try(lock):
        reader = _held(directory / READER_LOCK_NAME)
        if _try(lock):  # the reader finished meanwhile
            break
        if not reader or time.monotonic() > deadline:
            raise IndexBusy(str(directory))
        time.sleep(POLL_S)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def reading(directory: Path, wait_s: float) -> Iterator[bool]:
    """Hold the build lock to open the index: yields False when a build kept it past
    `wait_s` (the reader then tries again later)."""
    reader, lock = FileLock(directory / READER_LOCK_NAME), FileLock(directory / LOCK_NAME)
    deadline = time.monotonic() + wait_s
    while True:
        # The reader lock only while trying: a reader waiting out a long build must not make
        # a second build wait too, instead of being refused.
        reader.acquire()
        if _try(lock):
            break
        reader.release()
        if time.monotonic() >= deadline:
            yield False
            return
        time.sleep(POLL_S * 4)
    try:
        yield True
    finally:
        lock.release()
        reader.release()


def _try(lock: FileLock) -> bool:
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    return True


def _held(path: Path) -> bool:
    if not path.exists():  # no reader has ever opened this index: none to wait for
        return False
    probe = FileLock(path)
    if _try(probe):
        probe.release()
        return False
    return True
