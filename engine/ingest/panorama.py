"""A 360° equirectangular panorama cut into perspective views, each with its own heading.

A query is an ordinary photo of one side of a street: it matches the view that faces its
scene, never the whole sphere. The panorama's centre column looks along `heading`; view k
looks `k * 360 / views` degrees clockwise of it, level with the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import py360convert

from engine.ingest.config import PanoramaConfig


@dataclass(frozen=True, slots=True)
class View:
    rgb: np.ndarray
    heading_deg: float | None  # None where the panorama's own heading is unknown
    offset_deg: float  # clockwise of the panorama's centre


def cut_views(equirect: np.ndarray, heading_deg: float | None,
              config: PanoramaConfig) -> list[View]:
    step = 360.0 / config.views
    views = []
    for k in range(config.views):
        offset = k * step
        # py360convert's u angle is positive to the right, in [-180, 180].
        u = (offset + 180.0) % 360.0 - 180.0
        rgb = py360convert.e2p(equirect, fov_deg=(config.fov_deg, _vertical_fov(config)),
                               u_deg=u, v_deg=0.0, out_hw=(config.height, config.width))
        heading = None if heading_deg is None else (heading_deg + offset) % 360.0
        views.append(View(np.ascontiguousarray(rgb.astype(np.uint8)), heading, offset))
    return views


def _vertical_fov(config: PanoramaConfig) -> float:
    """The vertical field of view that keeps square pixels at the configured size."""
    half = np.radians(config.fov_deg) / 2
    return float(np.degrees(2 * np.arctan(np.tan(half) * config.height / config.width)))
