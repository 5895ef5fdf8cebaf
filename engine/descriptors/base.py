"""The interface every global-descriptor backend implements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np


class GlobalDescriptor(Protocol):
    """Turns photos into one L2-normalised float32 vector each.

    Backends that learn from the reference set (`vlad`) do it in `fit` at index build time and
    persist it with `save_state`; backends with pretrained weights have `needs_fit = False`.
    """

    name: ClassVar[str]
    dim: int
    # Photos per `describe` call the backend wants: 1 for CPU backends, which the index builder
    # runs per photo in parallel threads; more for a device that pays off only in batches.
    batch_size: int

    @property
    def needs_fit(self) -> bool: ...

    def fit(self, images: Iterable[np.ndarray], image_count: int) -> None:
        """Learn from RGB uint8 reference photos (called once, before the first `describe`)."""

    def warm_up(self) -> None:
        """Run once at start-up so the first query does not pay for lazy initialisation."""

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 images (H, W, 3) -> (n, dim) float32, rows L2-normalised."""

    def save_state(self, directory: Path) -> dict[str, Any]:
        """Write learned state under `directory`; return what the manifest records about it."""

    def load_state(self, directory: Path, recorded: dict[str, Any]) -> None:
        """Restore state written by `save_state` (`recorded` is what it returned)."""

    def fingerprint(self) -> str:
        """A hash of everything that changes the vectors (weights, vocabulary, settings)."""
