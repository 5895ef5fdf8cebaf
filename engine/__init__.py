"""GeoSleuth's engine: where was this street-level photo taken? (Never imports `bot`.)"""

from engine.async_engine import AsyncEngine
from engine.config import EngineConfig
from engine.cover import CoverJob, CoverPlan, CoverRequest
from engine.decode import DecodedImage, decode_image, read_exif_gps
from engine.errors import (
    ConfigError,
    CoverRefused,
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
    VideoError,
)
from engine.evidence_picture import render_evidence, render_result_evidence
from engine.geo import SearchArea
from engine.ingest.area import BBox
from engine.locator import Locator
from engine.results import (
    Alternative,
    CatalogEntry,
    LatLon,
    LocateResult,
    Match,
    Progress,
    Stage,
    Status,
    result_from_json,
)
from engine.video import Keyframe, keyframes

__all__ = [
    "Alternative",
    "AsyncEngine",
    "BBox",
    "CatalogEntry",
    "ConfigError",
    "CoverJob",
    "CoverPlan",
    "CoverRefused",
    "CoverRequest",
    "DecodedImage",
    "DescriptorMismatch",
    "EngineBusy",
    "EngineConfig",
    "EngineFailed",
    "EngineStopped",
    "EngineTimeout",
    "GeoSleuthError",
    "ImageError",
    "IndexMissing",
    "Keyframe",
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
    "VideoError",
    "decode_image",
    "keyframes",
    "read_exif_gps",
    "render_evidence",
    "render_result_evidence",
    "result_from_json",
]
