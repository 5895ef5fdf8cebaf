"""Test-time views of a query: centre crops at other fields of view, and mirror images.

A chat photo is often cropped or zoomed differently from the references: searching a crop
beside the whole photo lets either framing find the place. Averaging a view's descriptor with
that of its mirror image removes handedness the descriptor should not care about. Both are off
by default and kept on only where `geosleuth eval` shows a gain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.config import QueryConfig
from engine.errors import ConfigError

_TINY = np.finfo(np.float32).tiny


def check_query_config(config: QueryConfig) -> None:
    if not config.crops:
        raise ConfigError("'query.crops' is empty; use [1.0] to search the whole photo")
    bad = [c for c in config.crops if not 0.2 <= c <= 1.0]
    if bad:
        raise ConfigError(f"'query.crops' has {bad[0]}; each crop is a fraction from 0.2 to 1.0")


def views_per_query(config: QueryConfig) -> int:
    return len(config.crops) * (2 if config.flip else 1)


def query_views(picture: np.ndarray, config: QueryConfig) -> list[np.ndarray]:
    """Crop by crop, each followed by its mirror image when `flip` is on."""
    height, width = picture.shape[:2]
    views = []
    for fraction in config.crops:
        crop_h, crop_w = max(1, round(height * fraction)), max(1, round(width * fraction))
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        # The whole photo is the photo itself, not a slice of it: the feature caches keyed on the
        # picture (SIFT or XFeat shared by descriptor and verifier) then find it again.
        view = picture if fraction == 1.0 else picture[top:top + crop_h, left:left + crop_w]
        views.append(view)
        if config.flip:
            views.append(np.ascontiguousarray(view[:, ::-1]))
    return views


def combine_views(rows: np.ndarray, queries: int, config: QueryConfig) -> np.ndarray:
    """(queries x views, dim) descriptor rows -> (queries, crops, dim), mirror pairs averaged."""
    flips = 2 if config.flip else 1
    grouped = rows.reshape(queries, len(config.crops), flips, rows.shape[-1]).sum(axis=2)
    norms = np.linalg.norm(grouped, axis=-1, keepdims=True)
    # An all-zero row (a photo without features) stays zero rather than becoming noise.
    return (grouped / np.maximum(norms, _TINY)).astype(np.float32)


def merge_hits(hit_lists: Sequence[list[tuple[int, float]]], top_n: int) -> list[tuple[int, float]]:
    """One ranking from several searches: each reference keeps its best similarity."""
    best: dict[int, float] = {}
    for hits in hit_lists:
        for ref_id, similarity in hits:
            if similarity > best.get(ref_id, -np.inf):
                best[ref_id] = similarity
    return sorted(best.items(), key=lambda item: item[1], reverse=True)[:top_n]
