"""Two-view geometry shared by the verifiers: which tentative matches fit one scene."""

from __future__ import annotations

import cv2
import numpy as np

from engine.verifiers.base import LocalFeatures, Verification

# Seven points fix a fundamental matrix exactly; the eighth is the first that can disagree.
MIN_POINTS = 8
# The share of inliers trimmed at each end when measuring how much of a photo they cover.
EXTENT_TRIM_PERCENT = 10


def fundamental_inliers(
    points_q: np.ndarray,
    points_r: np.ndarray,
    ransac_px: float,
    confidence: float,
    max_iters: int,
) -> np.ndarray:
    """Bool mask over the (n, 2) point pairs that agree with one fundamental matrix (MAGSAC).

    A fundamental matrix rather than a homography: street scenes are not planar and the two
    cameras may stand metres apart. Too few points or no model found gives an all-False mask.
    """
    count = len(points_q)
    none = np.zeros(count, dtype=bool)
    if count < MIN_POINTS:
        return none
    try:
        matrix, mask = cv2.findFundamentalMat(
            np.ascontiguousarray(points_q, dtype=np.float64),
            np.ascontiguousarray(points_r, dtype=np.float64),
            cv2.USAC_MAGSAC,
            ransac_px,
            confidence,
            max_iters,
        )
    except cv2.error:
        # OpenCV 5's USAC asserts on some degenerate samples instead of returning no model.
        return none
    if matrix is None or mask is None:
        return none
    return mask.ravel().astype(bool)


def verify_pairs(
    query: LocalFeatures,
    reference: LocalFeatures,
    pairs: np.ndarray,
    ransac_px: float,
    confidence: float,
    max_iters: int,
) -> Verification:
    """The evidence from (m, 2) tentative index pairs: the inliers of a fundamental matrix.

    RANSAC runs at each image's extraction size, where `ransac_px` was chosen; the points
    reported are in the pixels of the images given to `extract`.
    """
    tentative = len(pairs)
    query_points = query.keypoints[pairs[:, 0]]
    reference_points = reference.keypoints[pairs[:, 1]]
    mask = fundamental_inliers(
        query_points * np.float32(query.scale),
        reference_points * np.float32(reference.scale),
        ransac_px,
        confidence,
        max_iters,
    )
    inliers = int(mask.sum())
    return Verification(
        inliers=inliers,
        inlier_ratio=inliers / tentative if tentative else 0.0,
        tentative_matches=tentative,
        query_points=query_points[mask],
        reference_points=reference_points[mask],
        view_scale=view_scale(query_points[mask], query.image_size,
                              reference_points[mask], reference.image_size),
    )


def view_scale(query_points: np.ndarray, query_size: tuple[int, int],
               reference_points: np.ndarray, reference_size: tuple[int, int]) -> float:
    """How many times smaller the matched scene appears in the query than in the reference,
    each as a share of its photo's diagonal (1.0 below MIN_POINTS inliers).

    A landmark shot from afar fills little of the frame where the reference, taken close,
    fills much: the camera stood about that many times farther from it.
    """
    if len(query_points) < MIN_POINTS:
        return 1.0
    query_extent = _extent(query_points) / float(np.hypot(*query_size))
    reference_extent = _extent(reference_points) / float(np.hypot(*reference_size))
    if query_extent <= 0.0:
        return 1.0
    return reference_extent / query_extent


def _extent(points: np.ndarray) -> float:
    """The diagonal of the box holding the inliers, their outermost tenth at each side left out."""
    low = np.percentile(points, EXTENT_TRIM_PERCENT, axis=0)
    high = np.percentile(points, 100 - EXTENT_TRIM_PERCENT, axis=0)
    return float(np.hypot(*(high - low)))
