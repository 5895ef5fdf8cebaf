"""The `xfeat` verifier: XFeat keypoints, mutual nearest neighbour or LighterGlue, then MAGSAC.

XFeat is a small network made for CPUs (tens of milliseconds per photo here); its features
come from `engine/neural/xfeat_extractor.py`, shared with the `xfeat-vlad` descriptor.
LighterGlue is a six-layer LightGlue for XFeat's 64-d descriptors: kornia's LightGlue with
that configuration and the published matcher weights.

On real photos by strangers mutual nearest neighbour cannot tell the right place from a wrong
one (bench/bench_crosscapture.py), while LighterGlue costs too much on a CPU to check every
candidate. The `cascade` matcher ranks every candidate by mnn and lets LighterGlue decide among
the best few; on a GPU it checks them all.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from engine.config import NeuralConfig, XfeatConfig
from engine.errors import ConfigError
from engine.neural.runtime import Runtime, create_runtime
from engine.neural.weights import fit_state_dict, read_state_dict, weights_path
from engine.neural.xfeat_extractor import DESCRIPTOR_DIM, XfeatExtractor
from engine.verifiers.base import LocalFeatures, Verification, pack_float16, unpack_float16
from engine.verifiers.geometry import verify_pairs
from engine.verifiers.lightglue import (
    DERIVED_LIGHTGLUE_KEYS,
    build_lightglue,
    kornia_layer_names,
    lightglue_matches,
)

MATCHERS = ("mnn", "lighterglue", "cascade")
# On a CPU LighterGlue at 1,024 keypoints costs ~0.1-0.2 s a pair: three fit the 1.5 s budget.
CPU_CASCADE_DEPTH = 3
MIN_SIDE = 32  # XFeat works in blocks of 32 pixels
WARM_UP_SIDE = 256
# The published LighterGlue file holds the whole pipeline: `extractor.…` (a copy of XFeat's own
# weights, which the `xfeat` file supplies) and `matcher.…`, the LightGlue this backend loads.
LIGHTERGLUE_PREFIX = "matcher."
LIGHTERGLUE_CONF = {"input_dim": DESCRIPTOR_DIM, "descriptor_dim": 96, "n_layers": 6,
                    "num_heads": 1}


class XfeatVerifier:
    """Fast learned keypoints; the same two-view geometry as `sift` decides the inliers."""

    name: ClassVar[str] = "xfeat"

    def __init__(self, config: XfeatConfig, neural: NeuralConfig) -> None:
        self.config = config
        self.runtime: Runtime = create_runtime(neural, self.name)
        self._extractor = create_xfeat_extractor(config, neural, self.runtime)
        self._matcher = None
        if config.matcher in ("lighterglue", "cascade"):
            path = weights_path(config.matcher_weights, "lighterglue-xfeat", neural.models_dir)
            self._matcher = load_lighterglue(config, path, self.runtime)
        self._lock = threading.Lock()

    @property
    def calibration_key(self) -> str:
        return f"{self.name}-{self.config.matcher}"

    def fingerprint(self) -> str:
        """The matcher is left out: it reads stored features but does not change them."""
        c = self.config
        settings = {"name": self.name, "weights": self._extractor.weights_sha256,
                    "max_keypoints": c.max_keypoints, "max_side": c.max_side,
                    "detection_threshold": c.detection_threshold}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def pack(self, features: LocalFeatures) -> dict[str, np.ndarray]:
        return pack_float16(features)

    def unpack(self, arrays: dict[str, np.ndarray]) -> LocalFeatures:
        return unpack_float16(arrays)

    def warm_up(self) -> None:
        noise = np.random.default_rng(0).integers(0, 256, (WARM_UP_SIDE, WARM_UP_SIDE, 3))
        features = self.extract(noise.astype(np.uint8))
        self._match(features, features)
        if self.config.matcher == "cascade":
            self._lighterglue(features, features)

    def extract(self, rgb: np.ndarray) -> LocalFeatures:
        """Extract at `max_side` (the RANSAC threshold's pixel scale); keypoints in `rgb` pixels."""
        return self._extractor.extract(rgb)

    def verify(self, query: LocalFeatures, reference: LocalFeatures) -> Verification:
        """mnn for `mnn` and the cascade's first pass; LighterGlue for `lighterglue`."""
        return self._geometry(query, reference, self._match(query, reference))

    def decide_depth(self, candidates: int) -> int:
        if self.config.matcher != "cascade":
            return 0
        depth = self.config.cascade_depth
        if depth is None:
            depth = candidates if self.runtime.device.type == "cuda" else CPU_CASCADE_DEPTH
        return min(depth, candidates)

    def decide(self, query: LocalFeatures, reference: LocalFeatures) -> Verification:
        """LighterGlue over the strongest `cascade_keypoints` of each side (XFeat sorts them)."""
        keep = self.config.cascade_keypoints
        strongest_q, strongest_r = _strongest(query, keep), _strongest(reference, keep)
        return self._geometry(strongest_q, strongest_r,
                              self._lighterglue(strongest_q, strongest_r))

    def _geometry(self, query: LocalFeatures, reference: LocalFeatures,
                  pairs: np.ndarray) -> Verification:
        c = self.config
        return verify_pairs(query, reference, pairs, c.ransac_px, c.ransac_confidence,
                            c.ransac_max_iters)

    def _match(self, query: LocalFeatures, reference: LocalFeatures) -> np.ndarray:
        if self.config.matcher == "lighterglue":
            return self._lighterglue(query, reference)
        if query.count == 0 or reference.count == 0:
            return np.zeros((0, 2), dtype=np.intp)
        return mutual_nearest(query.descriptors, reference.descriptors, self.config.min_cosine)

    def _lighterglue(self, query: LocalFeatures, reference: LocalFeatures) -> np.ndarray:
        if query.count == 0 or reference.count == 0:
            return np.zeros((0, 2), dtype=np.intp)
        with self._lock:
            return lightglue_matches(self._matcher, query, reference, self.runtime)


def _strongest(features: LocalFeatures, count: int) -> LocalFeatures:
    """The first `count` keypoints: XFeat returns them strongest first."""
    if features.count <= count:
        return features
    return LocalFeatures(features.keypoints[:count], features.descriptors[:count],
                         features.image_size, features.scale)


def mutual_nearest(query: np.ndarray, reference: np.ndarray, min_cosine: float) -> np.ndarray:
    """(m, 2) index pairs of unit descriptors that are each other's nearest and this similar."""
    similarity = query @ reference.T
    forward = similarity.argmax(axis=1)
    backward = similarity.argmax(axis=0)
    rows = np.arange(len(query))
    keep = (backward[forward] == rows) & (similarity[rows, forward] >= min_cosine)
    return np.stack([rows[keep], forward[keep]], axis=1).astype(np.intp)


def _check_config(config: XfeatConfig) -> None:
    if config.matcher not in MATCHERS:
        raise ConfigError(
            f"'xfeat.matcher' is '{config.matcher}'; choose one of: {', '.join(MATCHERS)}"
        )
    if config.max_keypoints < 1:
        raise ConfigError(f"'xfeat.max_keypoints' is {config.max_keypoints}; use 1 or more")
    if config.max_side < MIN_SIDE:
        raise ConfigError(f"'xfeat.max_side' is {config.max_side}; use {MIN_SIDE} or more")
    if config.cascade_depth is not None and config.cascade_depth < 0:
        raise ConfigError(f"'xfeat.cascade_depth' is {config.cascade_depth}; use 0 or more")
    if config.cascade_keypoints < 1:
        raise ConfigError(
            f"'xfeat.cascade_keypoints' is {config.cascade_keypoints}; use 1 or more")


def create_xfeat_extractor(
    config: XfeatConfig, neural: NeuralConfig, runtime: Runtime
) -> XfeatExtractor:
    """The extractor [engine.xfeat] describes (the `xfeat-vlad` descriptor uses it too)."""
    _check_config(config)
    path = weights_path(config.extractor_weights, "xfeat", neural.models_dir)
    return XfeatExtractor(path, runtime, max_keypoints=config.max_keypoints,
                          max_side=config.max_side,
                          detection_threshold=config.detection_threshold)


def load_lighterglue(config: XfeatConfig, path: Path, runtime: Runtime) -> torch.nn.Module:
    """LightGlue in LighterGlue's shape with the matcher half of the published file."""
    matcher = build_lightglue(runtime, **LIGHTERGLUE_CONF,
                              depth_confidence=config.depth_confidence,
                              width_confidence=config.width_confidence,
                              filter_threshold=config.filter_threshold)
    published = read_state_dict(path)
    state = {key.removeprefix(LIGHTERGLUE_PREFIX): tensor for key, tensor in published.items()
             if key.startswith(LIGHTERGLUE_PREFIX)}
    fit_state_dict(matcher, kornia_layer_names(state), path, "LighterGlue for XFeat",
                   optional=DERIVED_LIGHTGLUE_KEYS)
    return matcher.eval().to(runtime.device)
