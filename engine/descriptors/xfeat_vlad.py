"""`xfeat-vlad`: VLAD over XFeat's learned local descriptors, vocabulary learned at build time.

The same aggregation as `vlad` (k-means vocabulary, signed sqrt, intra-normalisation,
PCA-whitening, all in [engine.vlad]), over the 64-d XFeat descriptors of [engine.xfeat]
instead of RootSIFT: they were trained to survive changes of light and viewpoint, which is
what a photo from another capture brings. With the `xfeat` verifier and the same [engine.xfeat]
settings, one XFeat run per photo serves both. Needs no download: the published XFeat weights
come with requirements-learned.txt.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np

from engine.config import EngineConfig
from engine.descriptors.vlad import VladDescriptor
from engine.neural.runtime import create_runtime
from engine.neural.xfeat_extractor import DESCRIPTOR_DIM
from engine.verifiers.xfeat import create_xfeat_extractor


class XfeatVladDescriptor(VladDescriptor):
    name: ClassVar[str] = "xfeat-vlad"
    local_dim: ClassVar[int] = DESCRIPTOR_DIM

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config.vlad)
        runtime = create_runtime(config.neural, self.name)
        self._extractor = create_xfeat_extractor(config.xfeat, config.neural, runtime)

    def fingerprint(self) -> str:
        """vlad's fingerprint (vocabulary, projection, settings) and the features it read."""
        extractor = self._extractor
        digest = hashlib.sha256(super().fingerprint().encode())
        digest.update(f"{extractor.weights_sha256}:{extractor.max_keypoints}:"
                      f"{extractor.max_side}".encode())
        return digest.hexdigest()[:16]

    def _local_descriptors(self, rgb: np.ndarray) -> np.ndarray:
        return self._extractor.extract(rgb).descriptors

    @staticmethod
    def _compact(descriptors: np.ndarray) -> np.ndarray:
        """Signed unit vectors: half precision keeps the PCA sample at half the bytes."""
        return descriptors.astype(np.float16)

    @staticmethod
    def _expand(compact: np.ndarray) -> np.ndarray:
        return compact.astype(np.float32)
