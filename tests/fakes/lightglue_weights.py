"""Seeded random weights for DISK, ALIKED-N16 and LightGlue, saved in the published layouts.

No pretrained file can be downloaded in the tests; these have the published files' keys and
shapes, so the verifier loads them through the same path as the real ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from kornia.feature import ALIKED, DISK, LightGlue

_KORNIA_LAYER = re.compile(r"^transformers\.(\d+)\.(self_attn|cross_attn)\.")


def write_disk_weights(path: Path, seed: int = 0) -> Path:
    """DISK's checkpoint keeps the network's state dict under `extractor`."""
    torch.manual_seed(seed)
    torch.save({"extractor": DISK().state_dict()}, path)
    return path


def write_aliked_weights(path: Path, seed: int = 0) -> Path:
    """ALIKED's file is the network's flat state dict."""
    torch.manual_seed(seed)
    torch.save(ALIKED(model_name="aliked-n16").state_dict(), path)
    return path


def write_lightglue_weights(path: Path, seed: int = 0) -> Path:
    """LightGlue for 128-d descriptors, with the original layer names and no derived buffer."""
    torch.manual_seed(seed)
    state = LightGlue(features=None, input_dim=128, flash=False).state_dict()
    published = {
        _KORNIA_LAYER.sub(r"\2.\1.", key): tensor
        for key, tensor in state.items()
        if key != "confidence_thresholds"
    }
    torch.save(published, path)
    return path
