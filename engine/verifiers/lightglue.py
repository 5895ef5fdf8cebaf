"""The `lightglue` verifier: DISK or ALIKED keypoints matched by LightGlue, then MAGSAC.

The networks are kornia's, built without its downloads; the weights are the published files
(from the models directory or an installed package, SHA-256 verified) or the files the
configuration names, in the layouts their authors published them: DISK's checkpoint keeps its
state dict under `extractor`, ALIKED's is flat, and LightGlue's uses the original layer names
(`self_attn.N…`, `cross_attn.N…`) that kornia renames to `transformers.N.self_attn…`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from kornia.feature import ALIKED, DISK, LightGlue
from torch import nn

from engine.config import LightglueConfig, NeuralConfig
from engine.errors import ConfigError
from engine.features import resize_max_side
from engine.neural.runtime import Runtime, create_runtime
from engine.neural.weights import file_sha256, fit_state_dict, read_state_dict, weights_path
from engine.verifiers.base import (
    LocalFeatures,
    SinglePass,
    Verification,
    pack_float16,
    unpack_float16,
)
from engine.verifiers.geometry import verify_pairs

# features -> (published extractor, published matcher); all describe with 128 dimensions.
# ALIKED-T16's 64-d descriptors fit no published LightGlue, so it is not offered here.
FEATURES: dict[str, tuple[str, str]] = {
    "disk": ("disk-depth", "lightglue-disk"),
    "aliked": ("aliked-n16", "lightglue-aliked"),
    "aliked-n32": ("aliked-n32", "lightglue-aliked"),
    "aliked-n16rot": ("aliked-n16rot", "lightglue-aliked"),
}
DESCRIPTOR_DIM = 128
DISK_CHECKPOINT_KEY = "extractor"
MIN_SIDE = 32  # ALIKED works in blocks of 32 pixels; a smaller setting is surely a mistake
WARM_UP_SIDE = 256
LIGHTGLUE_LAYERS = 9
# The published LightGlue files predate kornia's `transformers.N` container.
_ORIGINAL_LAYER = re.compile(r"^(self_attn|cross_attn)\.(\d+)\.")
# The published DISK LightGlue keeps one scalar per layer's match assignment that no
# inference code reads (kornia's and the authors' alike); it is dropped by name.
UNUSED_LIGHTGLUE_KEYS = frozenset(f"log_assignment.{i}.r" for i in range(LIGHTGLUE_LAYERS))
# Buffers kornia derives in its constructor; the published files predate them.
DERIVED_LIGHTGLUE_KEYS = frozenset({"confidence_thresholds"})
DERIVED_ALIKED_KEYS = frozenset({"dkd.hw_grid"})


class LightglueVerifier(SinglePass):
    """Learned keypoints and matcher; the same two-view geometry as `sift` decides the inliers."""

    name: ClassVar[str] = "lightglue"

    @property
    def calibration_key(self) -> str:
        """Each feature set leaves its own number of chance inliers: its own confidence curve."""
        return f"{self.name}-{self.config.features}"

    def __init__(self, config: LightglueConfig, neural: NeuralConfig) -> None:
        _check_config(config)
        self.config = config
        self.runtime: Runtime = create_runtime(neural, self.name)
        extractor_name, matcher_name = FEATURES[config.features]
        extractor_path = weights_path(config.extractor_weights, extractor_name, neural.models_dir)
        matcher_path = weights_path(config.matcher_weights, matcher_name, neural.models_dir)
        self._extractor = self._place(load_extractor(config, extractor_path))
        self._extractor_sha256 = file_sha256(extractor_path)
        self._matcher = self._place(load_matcher(config, matcher_path, self.runtime))
        self._lock = threading.Lock()

    def _place(self, module: nn.Module) -> nn.Module:
        """Eval mode on the runtime's device; channels-last for DISK's all-convolution U-Net.

        ALIKED's deformable convolutions reshape their input, so channels-last would only add
        copies there.
        """
        module = module.eval().to(self.runtime.device)
        if self.runtime.device.type == "cuda" and isinstance(module, DISK):
            module = module.to(memory_format=torch.channels_last)
        return module

    def fingerprint(self) -> str:
        """The matcher's weights are left out: they read stored features but do not change them."""
        c = self.config
        settings = {"name": self.name, "features": c.features, "weights": self._extractor_sha256,
                    "max_keypoints": c.max_keypoints, "max_side": c.max_side,
                    "detection_threshold": c.detection_threshold}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def pack(self, features: LocalFeatures) -> dict[str, np.ndarray]:
        return pack_float16(features)

    def unpack(self, arrays: dict[str, np.ndarray]) -> LocalFeatures:
        return unpack_float16(arrays)

    def warm_up(self) -> None:
        """One extraction and one match, so the first query does not pay for lazy CUDA set-up.

        RANSAC is left out: it initialises nothing, and a picture matched with itself is a
        degenerate two-view geometry.
        """
        noise = np.random.default_rng(0).integers(0, 256, (WARM_UP_SIDE, WARM_UP_SIDE, 3))
        features = self.extract(noise.astype(np.uint8))
        self._match(features, features)

    def extract(self, rgb: np.ndarray) -> LocalFeatures:
        """Extract at `max_side` (the RANSAC threshold's pixel scale); keypoints in `rgb` pixels."""
        small, scale = resize_max_side(rgb, self.config.max_side)
        with self._lock, torch.inference_mode():
            image = self._image_tensor(small)
            with self.runtime.autocast():
                keypoints, descriptors = self._detect(image)
            points = keypoints.float().cpu().numpy()
            descriptors_np = descriptors.float().cpu().numpy()
        height, width = rgb.shape[:2]
        return LocalFeatures(
            keypoints=points / np.float32(scale),
            descriptors=descriptors_np,
            image_size=(width, height),
            scale=scale,
        )

    def _image_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1]; bytes travel, arithmetic on device.

        Decoded pictures may be read-only arrays, which torch warns about sharing: those copy.
        """
        owned = np.require(rgb, requirements=["C_CONTIGUOUS", "WRITEABLE"])
        pixels = torch.from_numpy(owned).to(self.runtime.device)
        image = pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        if self.runtime.device.type == "cuda" and isinstance(self._extractor, DISK):
            image = image.contiguous(memory_format=torch.channels_last)
        return image

    def _detect(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self._extractor, DISK):
            (found,) = self._extractor(
                image,
                n=self.config.max_keypoints,
                score_threshold=self.config.detection_threshold,
                pad_if_not_divisible=True,
            )
        else:
            (found,) = self._extractor(image)
        return found.keypoints, found.descriptors

    def verify(self, query: LocalFeatures, reference: LocalFeatures) -> Verification:
        """LightGlue's matches, then the inliers of a fundamental matrix."""
        pairs = self._match(query, reference)
        c = self.config
        return verify_pairs(query, reference, pairs, c.ransac_px, c.ransac_confidence,
                            c.ransac_max_iters)

    def _match(self, query: LocalFeatures, reference: LocalFeatures) -> np.ndarray:
        """(m, 2) index pairs into the two keypoint arrays."""
        if query.count == 0 or reference.count == 0:
            return np.zeros((0, 2), dtype=np.intp)
        with self._lock:
            return lightglue_matches(self._matcher, query, reference, self.runtime)


def lightglue_matches(
    matcher: LightGlue, query: LocalFeatures, reference: LocalFeatures, runtime: Runtime
) -> np.ndarray:
    """(m, 2) index pairs from a LightGlue over two images' features (the caller serialises)."""
    data = {"image0": _matcher_input(query, runtime.device),
            "image1": _matcher_input(reference, runtime.device)}
    with torch.inference_mode(), runtime.autocast():
        matches = matcher(data)["matches"][0]
        return matches.cpu().numpy().astype(np.intp)


def _matcher_input(features: LocalFeatures, device: torch.device) -> dict[str, torch.Tensor]:
    """Keypoints in extraction pixels: LightGlue saw that image size during training."""
    keypoints = features.keypoints * np.float32(features.scale)
    return {
        "keypoints": torch.from_numpy(keypoints).to(device)[None],
        "descriptors": torch.from_numpy(features.descriptors).to(device)[None],
        "image_size": torch.tensor([features.extraction_size], device=device),
    }


def _check_config(config: LightglueConfig) -> None:
    if config.features not in FEATURES:
        raise ConfigError(
            f"'lightglue.features' is '{config.features}'; choose one of: {', '.join(FEATURES)} "
            "(SuperPoint is not offered: its weights are not licensed for commercial use; "
            "ALIKED-T16's 64-d descriptors fit no published LightGlue)"
        )
    if config.max_keypoints < 1:
        raise ConfigError(f"'lightglue.max_keypoints' is {config.max_keypoints}; use 1 or more")
    if config.max_side < MIN_SIDE:
        raise ConfigError(f"'lightglue.max_side' is {config.max_side}; use {MIN_SIDE} or more")


def load_extractor(config: LightglueConfig, path: Path) -> nn.Module:
    """DISK or an ALIKED variant with the weights in `path` (no download)."""
    if config.features == "disk":
        disk = DISK(desc_dim=DESCRIPTOR_DIM)
        fit_state_dict(disk, read_state_dict(path, nested_under=DISK_CHECKPOINT_KEY), path, "DISK")
        return disk
    variant = FEATURES[config.features][0]
    # ALIKED's `detection_threshold` > 0 keeps the scores above it; 0 keeps the top keypoints.
    aliked = ALIKED(
        model_name=variant,
        max_num_keypoints=config.max_keypoints,
        detection_threshold=config.detection_threshold,
    )
    # Batch-norm counters only matter in training; a state dict saved without them still fits.
    counters = frozenset(k for k in aliked.state_dict() if k.endswith("num_batches_tracked"))
    fit_state_dict(aliked, read_state_dict(path), path, variant.upper(),
                   optional=counters | DERIVED_ALIKED_KEYS)
    return aliked


def load_matcher(config: LightglueConfig, path: Path, runtime: Runtime) -> LightGlue:
    """LightGlue for 128-dimensional descriptors with the weights in `path`."""
    matcher = build_lightglue(runtime, input_dim=DESCRIPTOR_DIM,
                              depth_confidence=config.depth_confidence,
                              width_confidence=config.width_confidence,
                              filter_threshold=config.filter_threshold)
    state = kornia_layer_names(read_state_dict(path))
    fit_state_dict(matcher, state, path, f"LightGlue for {config.features}",
                   optional=DERIVED_LIGHTGLUE_KEYS, unused=UNUSED_LIGHTGLUE_KEYS)
    return matcher


def build_lightglue(runtime: Runtime, **conf: Any) -> LightGlue:
    """kornia's LightGlue with `conf`, without its own configuration table or download."""
    mixed = runtime.autocast_dtype is not None
    return LightGlue(
        features=None,  # None: kornia's own configuration and download are skipped
        # kornia's flash attention computes in float16: only on CUDA, only when autocast is on.
        flash=mixed and runtime.device.type == "cuda",
        mp=mixed,  # kornia turns an outer autocast off unless `mp` is set
        **conf,
    )


def kornia_layer_names(state: dict[str, Any]) -> dict[str, Any]:
    """`self_attn.3.…` -> `transformers.3.self_attn.…` (and `cross_attn` alike)."""
    return {_ORIGINAL_LAYER.sub(r"transformers.\2.\1.", key): value for key, value in state.items()}

