"""The interface every geometric-verification backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class LocalFeatures:
    """Keypoints in the coordinates of the image given to `extract` (not the resized copy)."""

    keypoints: np.ndarray  # (n, 2) float32, x/y pixels
    descriptors: np.ndarray  # (n, d)
    image_size: tuple[int, int]  # (width, height) of the image given to `extract`
    scale: float  # extraction size / given size; RANSAC thresholds apply at extraction size

    @property
    def count(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def extraction_size(self) -> tuple[int, int]:
        """(width, height) of the resized copy, rounded as `resize_max_side` rounds it."""
        width, height = self.image_size
        if self.scale == 1.0:
            return width, height
        return max(1, round(width * self.scale)), max(1, round(height * self.scale))


def pack_float16(features: LocalFeatures) -> dict[str, np.ndarray]:
    """Learned unit descriptors in float16: half the bytes, three significant digits."""
    return {
        "keypoints": features.keypoints.astype(np.float32),
        "descriptors": features.descriptors.astype(np.float16),
        "image_size": np.array(features.image_size, dtype=np.int32),
        "scale": np.array(features.scale, dtype=np.float64),
    }


def unpack_float16(arrays: dict[str, np.ndarray]) -> LocalFeatures:
    """The inverse of `pack_float16`, descriptors back in float32."""
    width, height = (int(v) for v in arrays["image_size"])
    return LocalFeatures(
        keypoints=arrays["keypoints"].astype(np.float32),
        descriptors=arrays["descriptors"].astype(np.float32),
        image_size=(width, height),
        scale=float(arrays["scale"]),
    )


@dataclass(frozen=True, slots=True, eq=False)
class Verification:
    """The geometric evidence that a query and a reference show the same place."""

    inliers: int
    inlier_ratio: float  # inliers / tentative matches
    tentative_matches: int
    query_points: np.ndarray  # (inliers, 2) in query image pixels
    reference_points: np.ndarray  # (inliers, 2) in reference image pixels
    # How many times smaller the matched scene appears in the query (geometry.view_scale).
    view_scale: float = 1.0


class Verifier(Protocol):
    name: ClassVar[str]

    @property
    def calibration_key(self) -> str:
        """Names the confidence curve: verifiers leave different numbers of chance inliers."""

    def fingerprint(self) -> str:
        """A hash of the settings that change extracted features (stored features must match)."""

    def pack(self, features: LocalFeatures) -> dict[str, np.ndarray]:
        """Compact arrays to store a reference's features on disk."""

    def unpack(self, arrays: dict[str, np.ndarray]) -> LocalFeatures:
        """The inverse of `pack`."""

    def warm_up(self) -> None:
        """Run once at start-up so the first query does not pay for lazy initialisation."""

    def extract(self, rgb: np.ndarray) -> LocalFeatures:
        """RGB uint8 (H, W, 3) -> local features."""

    def verify(self, query: LocalFeatures, reference: LocalFeatures) -> Verification:
        """Match two images' features and fit the two-view geometry."""

    def decide_depth(self, candidates: int) -> int:
        """How many of the candidates `verify` ranked `decide` checks again (0: none)."""

    def decide(self, query: LocalFeatures, reference: LocalFeatures) -> Verification:
        """The deciding check of a cascade: slower, and better at telling right from wrong."""


class SinglePass:
    """For verifiers with one matcher: their first verification already decides."""

    def decide_depth(self, candidates: int) -> int:
        return 0

    def decide(self, query: LocalFeatures, reference: LocalFeatures) -> Verification:
        return self.verify(query, reference)  # type: ignore[attr-defined]
