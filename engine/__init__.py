"""GeoSleuth's engine: where was this street-level photo taken? (Never imports `bot`.)"""

from engine.async_engine import AsyncEngine
from engine.config import EngineConfig
from engine.errors import (
    ConfigError,
    DescriptorMismatch,
    EngineBusy,
    EngineFailed,
    EngineStopped,
    EngineTimeout,
    GeoSleuthError,
    ImageError,
    IndexMissing,
    ReferenceIndexError,
    SearchAreaError,
)
from engine.geo import SearchArea
from engine.locator import Locator
from engine.results import Alternative, LatLon, LocateResult, Match, Progress, Stage, Status

__all__ = [
    "Alternative",
    "AsyncEngine",
    "ConfigError",
    "DescriptorMismatch",
    "EngineBusy",
    "EngineConfig",
    "EngineFailed",
    "EngineStopped",
    "EngineTimeout",
    "GeoSleuthError",
    "ImageError",
    "IndexMissing",
    "LatLon",
    "LocateResult",
    "Locator",
    "Match",
    "Progress",
    "ReferenceIndexError",
    "SearchArea",
    "SearchAreaError",
    "Stage",
    "Status",
]
