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


@dataclass(frozen=True, slots=True, eq=False)
class Verification:
    """The geometric evidence that a query and a reference show the same place."""

    inliers: int
    inlier_ratio: float  # inliers / tentative matches
    tentative_matches: int
    query_points: np.ndarray  # (inliers, 2) in query image pixels
    reference_points: np.ndarray  # (inliers, 2) in reference image pixels


class Verifier(Protocol):
    name: ClassVar[str]

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
