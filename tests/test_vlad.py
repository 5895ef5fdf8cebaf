"""The `vlad` descriptor: unit vectors, reproducible, persisted exactly, useful on real photos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.config import EngineConfig, VladConfig
from engine.descriptors import DESCRIPTORS, VladDescriptor, create_descriptor
from engine.errors import ConfigError, GeoSleuthError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LUND = sorted((DATA / "lund").glob("*.jpg"))
HELD_OUT = (4, 13, 22)  # 0-based frames of the Lund walk kept out of the reference set

# Small enough that fitting and describing synthetic photos takes a fraction of a second.
SMALL = VladConfig(clusters=8, dim=16, max_side=192, max_features=300, pca_min_images=10_000)


def textured(seed: int, size: int = 192) -> np.ndarray:
    """A synthetic RGB photo with blobs and edges at random places, so SIFT finds features."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size), dtype=np.uint8), (0, 0), 2.0)
    for _ in range(25):
        centre = tuple(int(v) for v in rng.integers(10, size - 10, 2))
        colour = int(rng.integers(0, 256))
        if rng.random() < 0.5:
            cv2.circle(image, centre, int(rng.integers(3, 15)), colour, -1)
        else:
            corner = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.rectangle(image, centre, corner, colour, -1)
    return np.repeat(image[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [textured(seed) for seed in range(24)]


@pytest.fixture(scope="module")
def fitted(photos: list[np.ndarray]) -> VladDescriptor:
    descriptor = VladDescriptor(SMALL)
    descriptor.fit(iter(photos), len(photos))
    return descriptor


def test_vectors_are_unit_length_float32_rows(fitted: VladDescriptor, photos: list[np.ndarray]):
    vectors = fitted.describe(photos[:5])
    assert vectors.shape == (5, SMALL.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_describing_before_fitting_is_refused_with_reason(photos: list[np.ndarray]):
    descriptor = VladDescriptor(SMALL)
    assert descriptor.needs_fit
    with pytest.raises(RuntimeError, match="fit"):
        descriptor.describe(photos[:1])


def test_fitting_is_reproducible_for_a_seed(fitted: VladDescriptor, photos: list[np.ndarray]):
    again = VladDescriptor(SMALL)
    again.fit(iter(photos), len(photos))
    assert not again.needs_fit
    assert again.fingerprint() == fitted.fingerprint()
    np.testing.assert_array_equal(again.describe(photos[:3]), fitted.describe(photos[:3]))

    other_seed = VladDescriptor(replace(SMALL, seed=SMALL.seed + 1))
    other_seed.fit(iter(photos), len(photos))
    assert other_seed.fingerprint() != fitted.fingerprint()


def test_saved_state_loads_to_identical_vectors_and_fingerprint(
    fitted: VladDescriptor, photos: list[np.ndarray], tmp_path: Path
):
    recorded = fitted.save_state(tmp_path)
    assert recorded["clusters"] == SMALL.clusters
    assert recorded["dim"] == SMALL.dim
    assert all((tmp_path / name).is_file() for name in recorded["files"])

    loaded = VladDescriptor(SMALL)
    loaded.load_state(tmp_path, recorded)
    assert not loaded.needs_fit
    assert loaded.fingerprint() == fitted.fingerprint()
    np.testing.assert_array_equal(loaded.describe(photos[:3]), fitted.describe(photos[:3]))


def test_loading_state_built_with_other_settings_is_refused(fitted: VladDescriptor, tmp_path: Path):
    recorded = fitted.save_state(tmp_path)
    other = VladDescriptor(replace(SMALL, clusters=16))
    with pytest.raises(ConfigError, match=r"vlad\.clusters"):
        other.load_state(tmp_path, recorded)


def test_few_references_get_a_random_orthogonal_projection(fitted: VladDescriptor, tmp_path: Path):
    recorded = fitted.save_state(tmp_path)
    assert recorded["projection"] == "random-orthogonal"
    with np.load(tmp_path / "vlad_projection.npz") as projection:
        matrix = projection["matrix"]
    assert matrix.shape == (SMALL.clusters * 128, SMALL.dim)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(SMALL.dim), atol=1e-5)


def test_enough_references_learn_pca_whitening(photos: list[np.ndarray], tmp_path: Path):
    config = replace(SMALL, pca_min_images=len(photos))
    descriptor = VladDescriptor(config)
    descriptor.fit(iter(photos), len(photos))
    assert descriptor.save_state(tmp_path)["projection"] == "pca-whiten"
    vectors = descriptor.describe(photos)
    assert vectors.shape == (len(photos), config.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Whitened training vectors are spread out, not all pointing one way.
    assert abs(float(np.mean(vectors @ vectors.T))) < 0.3


def test_blank_photo_gives_a_zero_row_not_nan(fitted: VladDescriptor, photos: list[np.ndarray]):
    blank = np.full((120, 160, 3), 200, np.uint8)
    vectors = fitted.describe([blank, photos[0]])
    assert np.isfinite(vectors).all()
    assert not vectors[0].any()
    assert np.linalg.norm(vectors[1]) == pytest.approx(1.0, abs=1e-5)


def test_fitting_without_usable_photos_says_why():
    with pytest.raises(GeoSleuthError, match="no reference photos could be read"):
        VladDescriptor(SMALL).fit(iter([]), 0)
    blank = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(GeoSleuthError, match="hold 0 local features"):
        VladDescriptor(SMALL).fit(iter([blank, blank]), 2)


def test_dimension_beyond_the_vlad_size_is_a_config_error():
    with pytest.raises(ConfigError, match=r"vlad\.dim"):
        VladDescriptor(VladConfig(clusters=2, dim=512))


def test_descriptor_is_chosen_by_name_and_unknown_names_list_the_choices():
    assert isinstance(create_descriptor("vlad", EngineConfig()), VladDescriptor)
    with pytest.raises(ConfigError,
                       match="unknown descriptor 'netvlad'; choose one of: cosplace, vlad"):
        create_descriptor("netvlad", EngineConfig())
    assert set(DESCRIPTORS) == {"cosplace", "vlad", "xfeat-vlad"}


@pytest.mark.real_data
@pytest.mark.skipif(len(LUND) < 29, reason=f"the Lund walk photos are not in {DATA / 'lund'}")
def test_held_out_lund_frames_find_an_adjacent_frame_first():
    photos = [np.asarray(Image.open(path).convert("RGB")) for path in LUND]
    references = [i for i in range(len(photos)) if i not in HELD_OUT]
    descriptor = VladDescriptor(VladConfig())
    descriptor.fit((photos[i] for i in references), len(references))

    reference_vectors = descriptor.describe([photos[i] for i in references])
    query_vectors = descriptor.describe([photos[i] for i in HELD_OUT])
    for frame, query in zip(HELD_OUT, query_vectors, strict=True):
        nearest = references[int(np.argmax(reference_vectors @ query))]
        assert abs(nearest - frame) <= 2, f"frame {frame} found frame {nearest} first"
