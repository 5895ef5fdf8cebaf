"""Two-view geometry shared by the verifiers: which tentative matches fit one scene."""

from __future__ import annotations

import cv2
import numpy as np

from engine.verifiers.base import LocalFeatures, Verification

# Seven points fix a fundamental matrix exactly; the eighth is the first that can disagree.
MIN_POINTS = 8


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
    )
