"""The engine's typed settings, built from a mapping (a TOML table) and validated by key."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from engine.errors import ConfigError
from engine.ingest.config import IngestConfig

T = TypeVar("T")
# A field so marked is not read from the engine's own TOML table: the application fills it in
# from a section of its own (the ingest settings come from [ingest], as for `geosleuth ingest`).
NOT_IN_TOML = {"toml": False}


@dataclass(frozen=True)
class DecodeConfig:
    max_bytes: int = 40_000_000
    max_pixels: int = 50_000_000
    # A query smaller than this on its short side holds no street detail to match.
    min_side: int = 64


@dataclass(frozen=True)
class VideoConfig:
    """How a video becomes a few photos: limits, sampling, scene change, usable-frame tests."""

    max_bytes: int = 50_000_000
    max_seconds: float = 120.0  # checked from the container first, then while decoding
    max_pixels: int = 9_000_000  # per frame: 4096 x 2160 (4K) and smaller
    max_frames: int = 8  # keyframes located per video; each costs one locate
    sample_fps: float = 2.0  # frames looked at per second of video; the rest are only decoded
    # Mean absolute difference (0-1) of 32 x 32 grey thumbnails from the last keyframe that
    # makes a new one: consecutive Lund photos (5-15 m apart) differ by 0.09-0.21, a 10 px pan
    # by 0.03, JPEG noise by 0.001 (engine/video.py).
    scene_change: float = 0.08
    # Where scene changes give fewer keyframes than one per this many seconds (a slow walk
    # changes gradually), usable frames farthest in time from every keyframe are added.
    fill_every_s: float = 2.5
    # A frame whose grey levels (0-255) vary less than this is black, white or a fade: Lund
    # photos have 48-72, a fade to 10 % brightness 4.8.
    min_contrast: float = 6.0
    # Variance of the Laplacian at 320 px on the long side below which a frame is too blurred:
    # Lund photos have 825-2047; blurred with a Gaussian of sigma 4 px at 1024 px, 23-52, 6 px 7-14.
    min_sharpness: float = 20.0
    keyframe_max_side: int = 1280  # keyframes are shrunk to this; the locator uses 1024 at most
    # The decoding budget, against hostile files: frames decoded (or packets read), and seconds.
    max_decoded_frames: int = 7_200  # 120 s at 60 fps
    max_decode_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_seconds", "max_pixels", "max_frames", "sample_fps",
                     "fill_every_s", "keyframe_max_side", "max_decoded_frames", "max_decode_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"'engine.video.{name}' must be positive")


@dataclass(frozen=True)
class VladConfig:
    clusters: int = 64
    dim: int = 512
    # The same as [sift]: the verifier then reuses the descriptor's SIFT run on each photo.
    max_side: int = 1024
    max_features: int = 2048
    vocabulary_sample_images: int = 2000
    vocabulary_max_descriptors: int = 200_000
    # PCA-whitening needs clearly more images than dimensions; below this a fixed random
    # orthogonal projection is used instead.
    pca_min_images: int = 1024
    seed: int = 7


@dataclass(frozen=True)
class SiftConfig:
    max_features: int = 2048
    max_side: int = 1024
    ratio: float = 0.8
    ransac_px: float = 1.0
    ransac_confidence: float = 0.999
    ransac_max_iters: int = 10_000
    cache_size: int = 256


@dataclass(frozen=True)
class NeuralConfig:
    """Where the neural backends run and where their weight files live."""

    device: str = "auto"  # auto (cuda, then mps, then cpu), or a name: cuda, cuda:1, mps, cpu
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 elsewhere), fp32, fp16, bf16
    models_dir: Path = Path("models")
    # Threads one native operation (torch, numpy's BLAS, OpenCV) may use on the CPU. The engine
    # already keeps every core busy (candidates verified in parallel, photos prepared in
    # parallel) and more threads per op oversubscribe them (engine/threads.py has the
    # measurement). Raise it where little runs in parallel.
    cpu_threads: int = 1


@dataclass(frozen=True)
class CosplaceConfig:
    """CosPlace/EigenPlaces: a torchvision ResNet trunk, GeM, a linear layer to `dim`."""

    backbone: str = "resnet50"
    dim: int = 2048
    weights: Path = Path("models/cosplace-resnet50-2048.pth")
    # The shorter side after resizing (the aspect ratio is kept); images of one size share a batch.
    short_side: int = 480
    batch_size: int = 32


@dataclass(frozen=True)
class LightglueConfig:
    """DISK or ALIKED keypoints matched by LightGlue, then the same RANSAC geometry as `sift`."""

    # disk, aliked (ALIKED-N16), aliked-n32 or aliked-n16rot; SuperPoint's weights are not
    # licensed commercially.
    features: str = "aliked"
    # None: the published files for `features`, from the models directory or an installed
    # package, verified against their pinned SHA-256. A path: that file, as it is.
    extractor_weights: Path | None = None
    matcher_weights: Path | None = None
    max_keypoints: int = 1024
    max_side: int = 512
    detection_threshold: float = 0.0
    depth_confidence: float = 0.95  # adaptive depth (early stop); -1 turns it off
    width_confidence: float = 0.99  # point pruning; -1 turns it off
    filter_threshold: float = 0.1
    ransac_px: float = 1.0
    ransac_confidence: float = 0.999
    ransac_max_iters: int = 10_000


@dataclass(frozen=True)
class XfeatConfig:
    """XFeat keypoints and descriptors, matched by mutual nearest neighbour or LighterGlue."""

    # mnn (mutual nearest neighbour), lighterglue, or cascade: mnn ranks every candidate, then
    # LighterGlue decides among the best `cascade_depth` of them (bench/bench_crosscapture.py).
    matcher: str = "cascade"
    extractor_weights: Path | None = None  # None: the published `xfeat`, as for [lightglue]
    matcher_weights: Path | None = None  # None: the published `lighterglue-xfeat`
    max_keypoints: int = 2048
    max_side: int = 640
    detection_threshold: float = 0.05
    min_cosine: float = 0.82  # mnn: a mutual pair less similar than this is no match
    filter_threshold: float = 0.1  # lighterglue: match score floor
    depth_confidence: float = 0.95  # lighterglue's adaptive depth; -1 turns it off
    width_confidence: float = 0.95  # lighterglue's point pruning; -1 turns it off
    # cascade: how many candidates LighterGlue checks again, the best by mnn inliers. None: every
    # candidate on a GPU (milliseconds each there), CPU_CASCADE_DEPTH on a CPU.
    cascade_depth: int | None = None
    # cascade: LighterGlue matches the strongest this many keypoints of each side (its attention
    # costs grow with the square: 1,024 take a quarter of 2,048's time on a CPU).
    cascade_keypoints: int = 1024
    ransac_px: float = 1.0
    ransac_confidence: float = 0.999
    ransac_max_iters: int = 10_000


@dataclass(frozen=True)
class QueryConfig:
    """Query-side options; each is kept on only where `geosleuth eval` shows a gain."""

    # Average the query's descriptor with that of its mirror image.
    flip: bool = False
    # Centre crops (fraction of width and height) searched beside the whole photo; hits merge by
    # their best similarity. (1.0,) searches the photo alone.
    crops: tuple[float, ...] = (1.0,)


@dataclass(frozen=True)
class SearchConfig:
    top_n: int = 100
    # xfeat-vlad ranks a view of the right place among its top 10 for every sf_xs_west query
    # (bench/bench_crosscapture.py); with `vlad`, 20 recover places it ranks 11th-20th.
    top_k: int = 10
    # The smallest ef that puts the exact top 10 among the top_n candidates for 999 of 1,000
    # queries on both graphs an engine may open (bench/bench_index_scale.py, 1,000,000
    # vectors): M 32, new indexes (1.000 from ef 150; 1.9 ms at 200, one thread), and M 16,
    # older ones (0.989 at ef 150, 0.9997 at 200).
    ef: int = 200
    similarity_floor: float = 0.0
    cluster_radius_m: float = 40.0


@dataclass(frozen=True)
class EstimateConfig:
    # The inlier curve (confidence from inlier counts, and the floor below which nothing is
    # presented as a location) differs by verifier: `sift` leaves 0-9 chance inliers between
    # unrelated photos, learned matchers more. None: the curve `geosleuth eval --fit-calibration`
    # wrote into the index, else the one shipped for the verifier (engine/calibration.py).
    min_inliers: int | None = None
    inliers_midpoint: float | None = None
    inliers_scale: float | None = None
    # The radius of an answer from one place (the spread of agreeing references widens it).
    # A photo by a stranger is taken across the street or down it from the reference, and pins
    # are placed by hand: 50 m keeps the confidence calibrated for "within the stated radius"
    # on sf_night_west and sf_xs_west together (the curve refitted at each radius on the
    # evidence bench/bench_crosscapture.py's sets give: ECE 0.015 at 50 m, 0.04-0.05 at 25 m,
    # where fewer real photos were answered).
    base_radius_m: float = 50.0
    # How far a reference camera typically stands from what it shows (a street's width): a
    # query seeing the matched scene s times smaller adds (s - 1) of these to the radius.
    scene_distance_m: float = 25.0
    # Verified places closer than this are one answer seen from neighbouring spots, not rivals;
    # it is also the distance the confidence is calibrated for (the answer within 50 m).
    agreement_radius_m: float = 50.0
    located_confidence: float = 0.5
    max_alternatives: int = 4
    alternative_min_confidence: float = 0.05  # weaker places are noise, not alternatives or leads
    # Re-rank places by spatial consensus: verified references of other places within
    # `agreement_radius_m` add to a place's evidence, as its own agreeing members do.
    spatial_consensus: bool = False
    # In an album (or a video's frames), what another photo's strongest count at a place adds
    # to that place's evidence (its own agreeing references add a quarter). bench/bench_album.py
    # on 105 albums of cropped, recompressed sf_xs_west photos: 0.25 placed 68, 0.5 70 and 1.0
    # 72 right, but 1.0 also 3 wrong (0.25 and 0.5 none); the most confident single photo 63.
    album_photo_weight: float = 0.5


@dataclass(frozen=True)
class EngineLimits:
    queue_size: int = 32
    job_timeout_s: float = 120.0
    batch_size: int = 8
    # How often the index's manifest is looked at (one stat) for references appended by a
    # cover or by `geosleuth ingest` beside the engine; they are then served without a
    # restart. 0 turns the check off (covers still refresh the index themselves).
    index_check_s: float = 3.0


@dataclass(frozen=True)
class RemoteConfig:
    """An engine served by `geosleuth serve` elsewhere: a bot then loads no index or model."""

    url: str = ""  # e.g. "http://gpu-host:8470"; empty = run the engine in this process
    token: str = field(default="", repr=False)  # prefer $GEOSLEUTH_ENGINE_TOKEN
    timeout_s: float = 180.0  # per request, queueing included
    connect_retries: int = 3  # connect errors are retried (nothing was sent)
    busy_retries: int = 2  # a 503 is retried after its Retry-After
    index_check_s: float = 30.0  # how old the server's answer key may be before it is asked again


@dataclass(frozen=True)
class CoverConfig:
    """Areas crawled on request (`/cover`, POST /v1/cover) into the served index."""

    enabled: bool = True
    max_area_km2: float = 25.0  # a larger area is refused: a cover is a town, not a country
    # Crawled when a request names none; mapillary only where it has a token (else skipped,
    # and the plan says so).
    sources: tuple[str, ...] = ("panoramax", "mapillary")

    def __post_init__(self) -> None:
        if self.max_area_km2 <= 0:
            raise ConfigError("'engine.cover.max_area_km2' must be positive")


VECTOR_BACKENDS = ("hnswlib", "milvus")


@dataclass(frozen=True)
class IndexConfig:
    """Where a new index keeps its vectors; an existing index's manifest records its own."""

    backend: str = "hnswlib"  # or "milvus": the vectors in a Milvus collection
    # Milvus: "http://host:19530", or a local "path/file.db" for the embedded Milvus Lite.
    uri: str = ""
    token: str = field(default="", repr=False)  # prefer $GEOSLEUTH_MILVUS_TOKEN
    collection: str = "geosleuth"  # for a new index; an existing one names its own
    # Set from bench/bench_milvus.py (recall@1 against exact search, ms per query).
    index_type: str = "HNSW"
    index_params: dict[str, int | float | str] = field(
        default_factory=lambda: {"M": 16, "efConstruction": 200})
    # Search parameters for the index type; HNSW's "ef" defaults to [engine.search] ef.
    search_params: dict[str, int | float | str] = field(default_factory=dict)
    timeout_s: float = 10.0  # per Milvus call: a slow Milvus is an unavailable one

    def __post_init__(self) -> None:
        if self.backend not in VECTOR_BACKENDS:
            raise ConfigError(f"'engine.index.backend' must be one of {', '.join(VECTOR_BACKENDS)},"
                              f" not '{self.backend}'")
        if self.timeout_s <= 0:
            raise ConfigError("'engine.index.timeout_s' must be positive")


@dataclass(frozen=True)
class EngineConfig:
    index_path: Path = Path("index")
    # The CPU default funnel chosen by bench/bench_crosscapture.py: VLAD over XFeat's learned
    # descriptors, verified by XFeat. "vlad" + "sift" need no weights and no PyTorch at all.
    descriptor: str = "xfeat-vlad"
    verifier: str = "xfeat"
    # Extract reference features at build time and keep them in the index (about 280 KB per
    # photo with `sift`): a CPU query then verifies in a few hundred ms instead of seconds.
    store_reference_features: bool = True
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    vlad: VladConfig = field(default_factory=VladConfig)
    sift: SiftConfig = field(default_factory=SiftConfig)
    neural: NeuralConfig = field(default_factory=NeuralConfig)
    cosplace: CosplaceConfig = field(default_factory=CosplaceConfig)
    lightglue: LightglueConfig = field(default_factory=LightglueConfig)
    xfeat: XfeatConfig = field(default_factory=XfeatConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    limits: EngineLimits = field(default_factory=EngineLimits)
    remote: RemoteConfig = field(default_factory=RemoteConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    cover: CoverConfig = field(default_factory=CoverConfig)
    # The [ingest] settings, which covers crawl with (the application copies them in).
    ingest: IngestConfig = field(default_factory=IngestConfig, metadata=NOT_IN_TOML)


def build_config(cls: type[T], values: dict[str, Any], key_prefix: str = "") -> T:
    """Build dataclass `cls` from `values`, refusing unknown keys and wrong types by name."""
    if not isinstance(values, dict):
        raise ConfigError(f"'{key_prefix.rstrip('.') or 'config'}' must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
             if f.metadata.get("toml", True)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting '{key_prefix}{unknown[0]}'")
    kwargs: dict[str, Any] = {}
    for name, raw in values.items():
        kwargs[name] = _coerce(hints[name], raw, f"{key_prefix}{name}")
    return cls(**kwargs)


def _coerce(hint: Any, raw: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build_config(hint, raw, key + ".")
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None:
            return None
        return _coerce(options[0], raw, key)
    if origin is dict:
        return _table_of_scalars(raw, key)
    if origin in (tuple, list):
        if not isinstance(raw, list | tuple):
            raise ConfigError(f"'{key}' must be a list")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(item, v, key) for v in raw)
    if hint is Path:
        if not isinstance(raw, str | Path):
            raise ConfigError(f"'{key}' must be a path string")
        return Path(raw).expanduser()
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"'{key}' must be true or false")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(f"'{key}' must be a number")
        return float(raw)
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"'{key}' must be an integer")
        return raw
    if hint is str:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return str(raw)  # chat and user ids are numbers in TOML, strings to us
        if not isinstance(raw, str):
            raise ConfigError(f"'{key}' must be a string")
        return raw
    return raw


def _table_of_scalars(raw: Any, key: str) -> dict[str, int | float | str]:
    """A table of plain values, such as a vector index's parameters."""
    if not isinstance(raw, dict):
        raise ConfigError(f"'{key}' must be a table")
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"'{key}.{name}' must be a number or a string")
    return dict(raw)
