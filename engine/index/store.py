"""The reference store: downscaled JPEGs of the reference photos, read back for verification."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from engine.errors import IndexCorrupt

STORE_DIR = "store"


class ReferenceStore:
    def __init__(self, index_dir: Path, *, max_side: int = 1024, quality: int = 90) -> None:
        self._index_dir = index_dir
        self._max_side = max_side
        self._quality = quality

    @property
    def max_side(self) -> int:
        """The long side of every stored picture, and of every query as the funnel sees it."""
        return self._max_side

    @staticmethod
    def relative_path(ref_id: int) -> str:
        # A thousand files per folder keeps directory listings fast at millions of photos.
        return f"{STORE_DIR}/{ref_id // 1000:06d}/{ref_id}.jpg"

    def downscale(self, rgb: np.ndarray) -> np.ndarray:
        """The copy that is stored, described and verified against (same pixels everywhere)."""
        h, w = rgb.shape[:2]
        scale = self._max_side / max(h, w)
        if scale >= 1:
            return rgb
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))

    def save(self, ref_id: int, rgb: np.ndarray) -> str:
        """Write the (already downscaled) picture atomically; return its relative path."""
        relative = self.relative_path(ref_id)
        path = self._index_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "JPEG", quality=self._quality)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
        return relative

    def load(self, relative: str) -> np.ndarray:
        path = self._index_dir / relative
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except OSError as exc:
            detail = f"reference picture {relative}: {exc}"
            raise IndexCorrupt(str(self._index_dir), detail) from exc
