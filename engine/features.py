"""RootSIFT local features, shared by the `vlad` descriptor and the `sift` verifier."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import cv2
import numpy as np

DESCRIPTOR_SIZE = 128
# Per thread, the last few images' features: a batch of queries is described, then verified.
RECENT_PER_THREAD = 8
_recent = threading.local()


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) or gray (H, W) uint8 -> gray uint8; SIFT only looks at intensity."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def resize_max_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most `max_side`; returns (image, new size / old size).

    Never enlarges: upsampling adds no detail, only keypoints on interpolation artefacts.
    """
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def rootsift(gray: np.ndarray, max_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Gray uint8 -> keypoints (n, 2) float32 x/y and RootSIFT descriptors (n, 128) float32.

    RootSIFT (L1-normalise, then square root) makes the Euclidean distance behave like the
    Hellinger kernel, which matches and clusters SIFT histograms better. A SIFT object is
    created per call: it costs microseconds (measured), and cv2 objects are not thread-safe.
    """
    sift = cv2.SIFT_create(nfeatures=max_features)
    keypoints, descriptors = sift.detectAndCompute(gray, None)
    if descriptors is None or not keypoints:
        return np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_SIZE), np.float32)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32)
    l1 = descriptors.sum(axis=1, keepdims=True)
    root = np.sqrt(descriptors / np.maximum(l1, np.finfo(np.float32).tiny))
    return points, root.astype(np.float32)


def image_rootsift(
    image: np.ndarray, max_side: int, max_features: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """RootSIFT of `image` shrunk to `max_side`: keypoints in `image` pixels, descriptors, scale.

    The `vlad` descriptor and the `sift` verifier ask for the same photo's features one after
    the other; SIFT is half the cost of a query and of an index build, so the last few results
    per thread are remembered by the image object's identity (pictures are never modified in
    place) and SIFT runs once per photo.
    """
    recent: OrderedDict = getattr(_recent, "items", None) or OrderedDict()
    _recent.items = recent
    key = (id(image), max_side, max_features)
    hit = recent.get(key)
    if hit is not None and hit[0]() is image:
        recent.move_to_end(key)
        return hit[1]
    small, scale = resize_max_side(to_gray(image), max_side)
    points, descriptors = rootsift(small, max_features)
    result = (points / np.float32(scale), descriptors, scale)
    recent[key] = (weakref.ref(image), result)
    while len(recent) > RECENT_PER_THREAD:
        recent.popitem(last=False)
    return result
