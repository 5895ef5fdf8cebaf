"""Two-view geometry shared by the verifiers: which tentative matches fit one scene."""

from __future__ import annotations

import cv2
import numpy as np

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
