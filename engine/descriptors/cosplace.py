"""The `cosplace` descriptor: CosPlace or EigenPlaces weights on a torchvision ResNet trunk.

Architecture as published (both projects share it): the ResNet without its pooling and
classifier, then L2-normalisation of the feature map over channels, GeM pooling, a linear
layer to the output dimension and L2-normalisation. The state dict keys are those of that
`nn.Sequential` layout (`backbone.N…`, `aggregation.1.p`, `aggregation.3.weight`), so the
published files load unchanged. Preprocessing is their evaluation's: RGB in [0, 1], ImageNet
mean and standard deviation, the whole image (no crop), here resized to a fixed shorter side.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import torchvision
from torch import nn

from engine.config import CosplaceConfig, NeuralConfig
from engine.errors import ConfigError, IndexWeightsMismatch
from engine.neural.runtime import Runtime, create_runtime
from engine.neural.weights import file_sha256, fit_state_dict, read_state_dict

# The trunk's output channels, which the linear layer reads.
BACKBONE_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048,
                     "resnet152": 2048}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GEM_P = 3.0
GEM_EPS = 1e-6


class L2Norm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, p=2.0, dim=1)


class GeM(nn.Module):
    """Generalised-mean pooling with a learned exponent (`p` is in the state dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * GEM_P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=GEM_EPS).pow(self.p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / self.p)


class CosPlaceNetwork(nn.Module):
    """The published architecture with untrained weights (the caller loads a state dict)."""

    def __init__(self, backbone: str, dim: int) -> None:
        super().__init__()
        if backbone not in BACKBONE_CHANNELS:
            choices = ", ".join(BACKBONE_CHANNELS)
            raise ConfigError(f"'cosplace.backbone' is '{backbone}'; choose one of: {choices}")
        if dim < 1:
            raise ConfigError(f"'cosplace.dim' is {dim}; it must be positive")
        trunk = getattr(torchvision.models, backbone)(weights=None)
        # Without the average pooling and the classifier, as CosPlace's code builds it.
        self.backbone = nn.Sequential(*list(trunk.children())[:-2])
        self.aggregation = nn.Sequential(
            L2Norm(), GeM(), nn.Flatten(), nn.Linear(BACKBONE_CHANNELS[backbone], dim), L2Norm()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregation(self.backbone(x))


class CosplaceDescriptor:
    """Batched inference on the configured device; rows are L2-normalised float32."""

    name: ClassVar[str] = "cosplace"

    def __init__(self, config: CosplaceConfig, neural: NeuralConfig) -> None:
        if config.short_side < 32:
            raise ConfigError(f"'cosplace.short_side' is {config.short_side}; use 32 or more")
        if config.batch_size < 1:
            raise ConfigError(f"'cosplace.batch_size' is {config.batch_size}; use 1 or more")
        self.config = config
        self.dim = config.dim
        self.batch_size = config.batch_size
        self.runtime: Runtime = create_runtime(neural, self.name)
        network = CosPlaceNetwork(config.backbone, config.dim)
        counters = frozenset(k for k in network.state_dict() if k.endswith("num_batches_tracked"))
        fit_state_dict(network, read_state_dict(config.weights), config.weights,
                       f"CosPlace {config.backbone} to {config.dim}", optional=counters)
        self.weights_sha256 = file_sha256(config.weights)  # the file exists: it loaded
        self._network = self._place(network)
        self._lock = threading.Lock()
        device = self.runtime.device
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255.0

    def _place(self, network: CosPlaceNetwork) -> CosPlaceNetwork:
        network = network.eval().to(self.runtime.device)
        if self.runtime.device.type == "cuda":
            network = network.to(memory_format=torch.channels_last)
        return network

    @property
    def needs_fit(self) -> bool:
        return False

    def fit(self, images: Iterable[np.ndarray], image_count: int) -> None:
        """Pretrained: nothing to learn from the references."""

    def warm_up(self) -> None:
        """One batch through the network, so the first query does not pay for CUDA's set-up."""
        self.describe([np.zeros((self.config.short_side, self.config.short_side, 3), np.uint8)])

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Images of one size after resizing share a batch; others go in batches of their own."""
        resized = [self._resize(rgb) for rgb in images]
        rows = np.zeros((len(images), self.dim), np.float32)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, picture in enumerate(resized):
            by_shape.setdefault(picture.shape, []).append(i)
        with self._lock:
            for indices in by_shape.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start:start + self.batch_size]
                    rows[chunk] = self._forward(np.stack([resized[i] for i in chunk]))
        return rows

    def _resize(self, rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        scale = self.config.short_side / min(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        return cv2.resize(rgb, size, interpolation=interpolation)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, 3) -> (n, dim); bytes travel to the device, arithmetic happens there."""
        with torch.inference_mode():
            pixels = torch.from_numpy(batch).to(self.runtime.device, non_blocking=True)
            pixels = pixels.permute(0, 3, 1, 2).float()
            pixels = (pixels - self._mean) / self._std
            if self.runtime.device.type == "cuda":
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            with self.runtime.autocast():
                vectors = self._network(pixels)
            # Half-precision outputs are renormalised in float32 so inner products stay cosines.
            vectors = torch.nn.functional.normalize(vectors.float(), p=2.0, dim=1)
            return vectors.cpu().numpy()

    def save_state(self, directory: Path) -> dict[str, Any]:
        return {
            "backbone": self.config.backbone,
            "dim": self.dim,
            "short_side": self.config.short_side,
            "weights_sha256": self.weights_sha256,
            "weights_file": self.config.weights.name,
        }

    def load_state(self, directory: Path, recorded: dict[str, Any]) -> None:
        """Refuse other weights or settings: the index's vectors would not be comparable."""
        for key in ("backbone", "dim", "short_side"):
            if recorded.get(key) != getattr(self.config, key):
                raise ConfigError(
                    f"the index was built with 'cosplace.{key}' = {recorded.get(key)!r} but the "
                    f"configuration says {getattr(self.config, key)!r}; use the index's value"
                )
        if recorded.get("weights_sha256") != self.weights_sha256:
            raise IndexWeightsMismatch(self.name, str(recorded.get("weights_sha256")),
                                       self.weights_sha256, str(self.config.weights))

    def fingerprint(self) -> str:
        settings = {"name": self.name, "backbone": self.config.backbone, "dim": self.dim,
                    "short_side": self.config.short_side, "weights": self.weights_sha256}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
