"""Reference local features precomputed at build time, so a query verifies without extracting.

On a CPU, extracting ten references' SIFT features costs more than the whole latency budget;
reading them back costs a few milliseconds. Features belong to one verifier and its settings:
the manifest records which, and a mismatch falls back to extraction at query time.
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from pathlib import Path

import numpy as np

from engine.verifiers.base import LocalFeatures, Verifier

FEATURES_DIR = "features"
# numpy parses .npy headers with ast.literal_eval, and CPython 3.11 before 3.11.8 can fail
# ("AST constructor recursion depth mismatch") when two threads parse at once: the verify
# pool loads features in parallel, so header parsing takes turns. Loading costs milliseconds.
_PARSE_LOCK = threading.Lock()


class FeatureStore:
    def __init__(self, index_dir: Path, verifier: Verifier) -> None:
        self._root = index_dir / FEATURES_DIR / verifier.name
        self.verifier = verifier

    def _path(self, ref_id: int) -> Path:
        return self._root / f"{ref_id // 1000:06d}" / f"{ref_id}.npz"

    def save(self, ref_id: int, features: LocalFeatures) -> None:
        path = self._path(ref_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **self.verifier.pack(features))
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)

    def load(self, ref_id: int) -> LocalFeatures | None:
        """The stored features, or None when absent or unreadable (then extract instead)."""
        try:
            with _PARSE_LOCK, np.load(self._path(ref_id)) as arrays:
                loaded = {k: arrays[k] for k in arrays.files}
            return self.verifier.unpack(loaded)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
