"""The weight-free verifier: RootSIFT, mutual ratio-test matching, MAGSAC fundamental matrix."""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np

from engine.config import SiftConfig
from engine.features import image_rootsift
from engine.verifiers.base import LocalFeatures, SinglePass, Verification
from engine.verifiers.geometry import verify_pairs

QUANT_STEPS = 255.0


class SiftVerifier(SinglePass):
    """Counts the matches between two photos that one rigid scene explains."""

    name: ClassVar[str] = "sift"
    calibration_key: ClassVar[str] = "sift"

    def __init__(self, config: SiftConfig) -> None:
        self.config = config

    def warm_up(self) -> None:
        """OpenCV's SIFT has no lazy set-up worth paying for in advance."""

    def extract(self, rgb: np.ndarray) -> LocalFeatures:
        """Extract at `max_side` (the RANSAC threshold's pixel scale); keypoints in `rgb` pixels."""
        points, descriptors, scale = image_rootsift(
            rgb, self.config.max_side, self.config.max_features
        )
        height, width = rgb.shape[:2]
        return LocalFeatures(
            keypoints=points,
            descriptors=descriptors,
            image_size=(width, height),
            scale=scale,
        )

    def fingerprint(self) -> str:
        c = self.config
        settings = f"sift:{c.max_features}:{c.max_side}"
        return hashlib.sha256(settings.encode()).hexdigest()[:16]

    def pack(self, features: LocalFeatures) -> dict[str, np.ndarray]:
        """RootSIFT components lie in [0, 1]: 8 bits each keep matching intact at 1/4 the size."""
        return {
            "keypoints": features.keypoints.astype(np.float32),
            "descriptors": np.round(features.descriptors * QUANT_STEPS).astype(np.uint8),
            "image_size": np.array(features.image_size, dtype=np.int32),
            "scale": np.array(features.scale, dtype=np.float64),
        }

    def unpack(self, arrays: dict[str, np.ndarray]) -> LocalFeatures:
        descriptors = arrays["descriptors"].astype(np.float32) / QUANT_STEPS
        norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
        width, height = (int(v) for v in arrays["image_size"])
        return LocalFeatures(
            keypoints=arrays["keypoints"],
            descriptors=descriptors / np.maximum(norms, np.finfo(np.float32).tiny),
            image_size=(width, height),
            scale=float(arrays["scale"]),
        )

    def verify(self, query: LocalFeatures, reference: LocalFeatures) -> Verification:
        """Tentative matches by mutual ratio test, then the inliers of a fundamental matrix."""
        pairs = mutual_ratio_matches(query.descriptors, reference.descriptors, self.config.ratio)
        c = self.config
        return verify_pairs(query, reference, pairs, c.ransac_px, c.ransac_confidence,
                            c.ransac_max_iters)


def mutual_ratio_matches(query: np.ndarray, reference: np.ndarray, ratio: float) -> np.ndarray:
    """(m, 2) index pairs that are each other's nearest neighbour and pass the ratio test both ways.

    Exact brute force on unit-norm RootSIFT as two float32 matrix products: at 2048 x 2048
    this took 25 ms here against 118 ms for cv2.BFMatcher and 95 ms for FLANN (both ways).
    """
    if len(query) < 2 or len(reference) < 2:
        return np.zeros((0, 2), dtype=np.intp)
    forward, forward_ok = _nearest_passing_ratio(query @ reference.T, ratio)
    backward, backward_ok = _nearest_passing_ratio(reference @ query.T, ratio)
    rows = np.arange(len(query))
    keep = forward_ok & backward_ok[forward] & (backward[forward] == rows)
    return np.stack([rows[keep], forward[keep]], axis=1)


def _nearest_passing_ratio(similarity: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the most similar column, and whether it beats the runner-up (overwrites input)."""
    rows = np.arange(similarity.shape[0])
    best = similarity.argmax(axis=1)
    first = similarity[rows, best].copy()
    similarity[rows, best] = -np.inf
    second = similarity.max(axis=1)
    # For unit vectors the squared distance is 2 - 2 * cosine similarity.
    first_dist = np.sqrt(np.maximum(2.0 - 2.0 * first, 0.0))
    second_dist = np.sqrt(np.maximum(2.0 - 2.0 * second, 0.0))
    return best, first_dist < ratio * second_dist
