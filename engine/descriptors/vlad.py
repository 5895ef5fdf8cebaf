"""The weight-free global descriptor: VLAD over a RootSIFT vocabulary learned from references."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from engine.config import VladConfig
from engine.errors import ConfigError, GeoSleuthError, IndexCorrupt
from engine.features import DESCRIPTOR_SIZE, image_rootsift

VOCABULARY_FILE = "vlad_vocabulary.npy"
PROJECTION_FILE = "vlad_projection.npz"
PCA_WHITEN = "pca-whiten"
RANDOM_ORTHOGONAL = "random-orthogonal"

# Whitening divides by sqrt(eigenvalue); adding this fraction of the mean kept eigenvalue keeps
# the weakest components (mostly noise) from being blown up to the strength of the strongest.
WHITEN_REGULARISER = 0.1
KMEANS_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-4)
_TINY = np.finfo(np.float32).tiny


class VladDescriptor:
    """RootSIFT -> VLAD (hard assignment) -> signed sqrt, intra- and L2-normalisation -> `dim`.

    The reduction is PCA-whitening learned from the references when there are enough of them
    (`pca_min_images`), else a fixed random orthogonal projection, which keeps inner products
    roughly unchanged without learning anything. A photo without any features (a blank wall)
    has no evidence to offer: its row is all zeros, so its inner product with every reference is
    0 (hnswlib handles that) instead of a made-up similarity to whatever a fixed vector resembles.
    """

    name: ClassVar[str] = "vlad"
    local_dim: ClassVar[int] = DESCRIPTOR_SIZE  # RootSIFT; subclasses aggregate other features
    batch_size = 1

    def __init__(self, config: VladConfig) -> None:
        full_dim = config.clusters * self.local_dim
        if not 1 <= config.dim <= full_dim:
            raise ConfigError(
                f"'{self.name}.dim' is {config.dim}; it must be between 1 and {self.name}."
                f"clusters x {self.local_dim} = {full_dim}"
            )
        self.config = config
        self.dim = config.dim
        self._vocabulary: np.ndarray | None = None  # (clusters, 128)
        self._mean = np.zeros(full_dim, np.float32)
        self._matrix = np.zeros((full_dim, config.dim), np.float32)
        self._projection = RANDOM_ORTHOGONAL

    @property
    def needs_fit(self) -> bool:
        return self._vocabulary is None

    def fit(self, images: Iterable[np.ndarray], image_count: int) -> None:
        """Learn vocabulary and projection in one pass over the references.

        Features are extracted only from a random sample of at most `vocabulary_sample_images`
        photos. When PCA is due, those photos' descriptors are kept (as uint8, at most
        sample images x max_features x 128 bytes: 384 MB at the defaults) so that, once the
        vocabulary exists, their VLADs are the PCA sample: no second pass over the images.
        """
        config = self.config
        rng = np.random.default_rng(config.seed)
        sampled = None
        if image_count > config.vocabulary_sample_images:
            chosen = rng.choice(image_count, config.vocabulary_sample_images, replace=False)
            sampled = set(chosen.tolist())
        sample_size = min(image_count, config.vocabulary_sample_images)
        quota = math.ceil(config.vocabulary_max_descriptors / max(sample_size, 1))
        wants_pca = image_count >= config.pca_min_images
        kmeans_parts: list[np.ndarray] = []
        pca_parts: list[np.ndarray] = []
        for index, rgb in enumerate(images):
            if sampled is not None and index not in sampled:
                continue
            descriptors = self._local_descriptors(rgb)
            if len(descriptors) > quota:
                kmeans_parts.append(descriptors[rng.choice(len(descriptors), quota, replace=False)])
            else:
                kmeans_parts.append(descriptors)
            if wants_pca and len(descriptors):
                pca_parts.append(self._compact(descriptors))

        vocabulary = self._learn_vocabulary(kmeans_parts, rng)
        full_dim = vocabulary.size
        # Centred data of n samples has rank n - 1 at most; whitening needs `dim` real components.
        if wants_pca and len(pca_parts) > self.dim:
            vlads = np.stack([_aggregate(self._expand(part), vocabulary) for part in pca_parts])
            self._mean, self._matrix = _pca_whitening(vlads, self.dim)
            self._projection = PCA_WHITEN
        else:
            self._mean = np.zeros(full_dim, np.float32)
            self._matrix = _random_orthogonal(full_dim, self.dim, config.seed)
            self._projection = RANDOM_ORTHOGONAL
        self._vocabulary = vocabulary

    def warm_up(self) -> None:
        """Nothing is loaded lazily: the vocabulary is read with the index."""

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        vocabulary = self._fitted_vocabulary()
        rows = np.zeros((len(images), self.dim), np.float32)
        for row, rgb in enumerate(images):
            vlad = _aggregate(self._local_descriptors(rgb), vocabulary)
            if not vlad.any():
                continue
            reduced = (vlad - self._mean) @ self._matrix
            rows[row] = reduced / max(float(np.linalg.norm(reduced)), _TINY)
        return rows

    def save_state(self, directory: Path) -> dict[str, Any]:
        vocabulary = self._fitted_vocabulary()
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / VOCABULARY_FILE, vocabulary)
        np.savez(directory / PROJECTION_FILE, mean=self._mean, matrix=self._matrix)
        return {
            "clusters": int(vocabulary.shape[0]),
            "dim": self.dim,
            "projection": self._projection,
            "files": [VOCABULARY_FILE, PROJECTION_FILE],
        }

    def load_state(self, directory: Path, recorded: dict[str, Any]) -> None:
        for key in ("clusters", "dim"):
            if recorded.get(key) != getattr(self.config, key):
                raise ConfigError(
                    f"the index was built with '{self.name}.{key}' = {recorded.get(key)} but the "
                    f"configuration says {getattr(self.config, key)}; use the index's value"
                )
        projection_kind = recorded.get("projection")
        if projection_kind not in (PCA_WHITEN, RANDOM_ORTHOGONAL):
            raise IndexCorrupt(str(directory), f"unknown VLAD projection {projection_kind!r}")
        try:
            vocabulary = np.load(directory / VOCABULARY_FILE, allow_pickle=False)
            with np.load(directory / PROJECTION_FILE, allow_pickle=False) as projection:
                mean, matrix = projection["mean"], projection["matrix"]
        except (OSError, ValueError, KeyError) as error:
            raise IndexCorrupt(str(directory), f"cannot read the VLAD state: {error}") from error
        full_dim = self.config.clusters * self.local_dim
        expected = {
            "vocabulary": (vocabulary.shape, (self.config.clusters, self.local_dim)),
            "mean": (mean.shape, (full_dim,)),
            "matrix": (matrix.shape, (full_dim, self.dim)),
        }
        for what, (shape, wanted) in expected.items():
            if shape != wanted:
                raise IndexCorrupt(str(directory), f"VLAD {what} has shape {shape}, not {wanted}")
        self._vocabulary = vocabulary.astype(np.float32)
        self._mean = mean.astype(np.float32)
        self._matrix = matrix.astype(np.float32)
        self._projection = projection_kind

    def fingerprint(self) -> str:
        vocabulary = self._fitted_vocabulary()
        settings = {
            "name": self.name,
            "clusters": self.config.clusters,
            "dim": self.dim,
            "max_side": self.config.max_side,
            "max_features": self.config.max_features,
            "projection": self._projection,
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        for array in (vocabulary, self._mean, self._matrix):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def _fitted_vocabulary(self) -> np.ndarray:
        if self._vocabulary is None:
            raise RuntimeError(
                "the vlad descriptor has no vocabulary yet: fit it on the reference photos "
                "or load the state saved with the index"
            )
        return self._vocabulary

    def _local_descriptors(self, rgb: np.ndarray) -> np.ndarray:
        return image_rootsift(rgb, self.config.max_side, self.config.max_features)[1]

    @staticmethod
    def _compact(descriptors: np.ndarray) -> np.ndarray:
        """How the PCA sample is kept until the vocabulary exists: RootSIFT lies in [0, 1]."""
        return np.rint(descriptors * 255).astype(np.uint8)

    @staticmethod
    def _expand(compact: np.ndarray) -> np.ndarray:
        return compact.astype(np.float32) / 255

    def _learn_vocabulary(self, parts: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        clusters = self.config.clusters
        cap = self.config.vocabulary_max_descriptors
        data = np.concatenate(parts) if parts else np.zeros((0, self.local_dim), np.float32)
        if len(data) > cap:
            data = data[rng.choice(len(data), cap, replace=False)]
        if not parts:
            raise GeoSleuthError(
                f"no reference photos could be read to learn the {self.name} vocabulary from; "
                "add readable photos and build again"
            )
        if len(data) < clusters:
            raise GeoSleuthError(
                f"the {len(parts)} reference photos hold {len(data)} local features; the"
                f" {self.name} descriptor needs at least {clusters} to learn its vocabulary. "
                "Add more (textured) photos."
            )
        # cv2.kmeans draws its k-means++ seeds from OpenCV's per-thread RNG.
        cv2.setRNGSeed(self.config.seed)
        _, _, centres = cv2.kmeans(
            np.ascontiguousarray(data), clusters, None, KMEANS_CRITERIA, 1, cv2.KMEANS_PP_CENTERS
        )
        return centres.astype(np.float32)


def _aggregate(descriptors: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Normalised VLAD (clusters x 128,) of one image; all zeros when it has no descriptors."""
    clusters = len(vocabulary)
    if not len(descriptors):
        return np.zeros(vocabulary.size, np.float32)
    # argmin |x - c|^2 == argmax (x.c - |c|^2 / 2)
    nearest = (descriptors @ vocabulary.T - 0.5 * (vocabulary**2).sum(axis=1)).argmax(axis=1)
    membership = np.zeros((clusters, len(descriptors)), np.float32)
    membership[nearest, np.arange(len(descriptors))] = 1.0
    residuals = membership @ descriptors - membership.sum(axis=1, keepdims=True) * vocabulary
    # Signed sqrt damps bursts (repeated texture: windows, cobbles) dominating their cluster;
    # intra-normalisation then gives every visited cluster the same say.
    residuals = np.sign(residuals) * np.sqrt(np.abs(residuals))
    residuals /= np.maximum(np.linalg.norm(residuals, axis=1, keepdims=True), _TINY)
    flat = residuals.ravel()
    return flat / max(float(np.linalg.norm(flat)), _TINY)


def _pca_whitening(vlads: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, matrix) projecting onto the top `dim` principal components, regularised-whitened."""
    mean = vlads.mean(axis=0)
    _, singular, components = np.linalg.svd(vlads - mean, full_matrices=False)
    eigenvalues = singular[:dim] ** 2 / (len(vlads) - 1)
    scale = 1.0 / np.sqrt(eigenvalues + WHITEN_REGULARISER * eigenvalues.mean())
    return mean.astype(np.float32), (components[:dim].T * scale).astype(np.float32)


def _random_orthogonal(rows: int, columns: int, seed: int) -> np.ndarray:
    """(rows, columns) with orthonormal columns, the same for the same seed."""
    gaussian = np.random.default_rng(seed).standard_normal((rows, columns))
    q, r = np.linalg.qr(gaussian)
    # Fixing the signs makes the result uniformly distributed and independent of the QR routine.
    return (q * np.sign(np.diag(r))).astype(np.float32)
