"""Random CosPlace weights saved as the published files are: `model.state_dict()` of the
`backbone`/`aggregation` layout, so they load through the same path as the real ones."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.descriptors.cosplace import CosPlaceNetwork


def write_cosplace_weights(path: Path, backbone: str = "resnet18", dim: int = 64,
                           seed: int = 0) -> Path:
    torch.manual_seed(seed)
    network = CosPlaceNetwork(backbone, dim)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                # Trained statistics are never the initial 0/1; make them vary like real ones.
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return path
