"""The `cosplace` descriptor with random weights in the published layout, on the CPU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("kornia", reason="the neural backends need the 'neural' extra (PyTorch)")

import torch
from torchvision import transforms

from engine.config import CosplaceConfig, EngineConfig, NeuralConfig
from engine.descriptors import create_descriptor
from engine.descriptors.cosplace import CosplaceDescriptor
from engine.errors import (
    ConfigError,
    DeviceUnavailable,
    IndexWeightsMismatch,
    WeightsMismatch,
    WeightsMissing,
    WeightsUnreadable,
)
from tests.fakes.cosplace_weights import write_cosplace_weights

CPU = NeuralConfig(device="cpu")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_cosplace_weights(tmp_path_factory.mktemp("models") / "r18-64.pth")


def _descriptor(weights, **changes) -> CosplaceDescriptor:
    config = CosplaceConfig(backbone="resnet18", dim=64, weights=weights, short_side=96,
                            batch_size=4)
    return CosplaceDescriptor(replace(config, **changes), CPU)


def _photos(count: int, shape=(120, 160, 3), seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def test_published_key_layout_is_what_the_network_loads(weights):
    keys = set(torch.load(weights, weights_only=True))
    assert {"backbone.0.weight", "backbone.7.1.bn2.running_var", "aggregation.1.p",
            "aggregation.3.weight", "aggregation.3.bias"} <= keys


def test_rows_are_unit_float32_of_the_configured_dimension(weights):
    rows = _descriptor(weights).describe(_photos(3))
    assert rows.shape == (3, 64) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_a_batch_gives_what_each_photo_gives_alone(weights):
    descriptor = _descriptor(weights)
    # Six photos of two sizes: batches of four per size, and one photo alone each.
    photos = _photos(4) + _photos(2, shape=(200, 150, 3), seed=2)
    together = descriptor.describe(photos)
    alone = np.concatenate([descriptor.describe([photo]) for photo in photos])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_preprocessing_is_the_evaluation_codes(weights):
    """ToTensor + ImageNet Normalize on the resized photo, straight through the network."""
    descriptor = _descriptor(weights)
    photo = _photos(1)[0]
    resized = descriptor._resize(photo)
    assert min(resized.shape[:2]) == 96 and resized.shape[1] == 128  # aspect ratio kept
    pipeline = transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    with torch.inference_mode():
        expected = descriptor._network(pipeline(resized).unsqueeze(0)).numpy()
    np.testing.assert_allclose(descriptor.describe([photo]), expected, atol=1e-5)


def test_the_registry_builds_it_from_the_engine_config(weights):
    config = replace(EngineConfig(), neural=CPU,
                     cosplace=CosplaceConfig(backbone="resnet18", dim=64, weights=weights))
    descriptor = create_descriptor("cosplace", config)
    assert descriptor.dim == 64
    assert descriptor.runtime.label == "cpu/fp32"


def test_weights_for_another_backbone_are_refused_naming_keys_and_shapes(weights):
    with pytest.raises(WeightsMismatch) as caught:
        _descriptor(weights, backbone="resnet50")
    message = str(caught.value)
    assert "'aggregation.3.weight' is (64, 512), needs (64, 2048)" in caught.value.problems
    assert caught.value.problems[0] in message  # the first problems are in the message itself
    assert "CosPlace resnet50 to 64" in message and str(weights) in message


def test_weights_for_another_dimension_are_refused(weights):
    with pytest.raises(WeightsMismatch, match=r"'aggregation.3.bias' is \(64,\), needs \(128,\)"):
        _descriptor(weights, dim=128)


def test_a_state_dict_of_another_model_lists_unexpected_and_missing_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"transformers.0.self_attn.Wqkv.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(WeightsMismatch) as caught:
        _descriptor(path)
    assert "unexpected 'transformers.0.self_attn.Wqkv.weight'" in str(caught.value)
    assert "missing 'backbone.0.weight' (64, 3, 7, 7)" in str(caught.value)


def test_a_missing_published_file_says_how_to_fetch_it(tmp_path):
    with pytest.raises(WeightsMissing, match="geosleuth models fetch cosplace-resnet50-2048"):
        _descriptor(tmp_path / "cosplace-resnet50-2048.pth")


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not weights")
    with pytest.raises(WeightsUnreadable, match=r"notes\.pth is not a readable PyTorch state dict"):
        _descriptor(path)


def test_bad_settings_are_refused_by_name(weights):
    with pytest.raises(ConfigError, match=r"'cosplace\.backbone' is 'vgg16'; choose one of"):
        _descriptor(weights, backbone="vgg16")
    with pytest.raises(ConfigError, match=r"'cosplace\.batch_size'"):
        _descriptor(weights, batch_size=0)
    with pytest.raises(ConfigError, match=r"'neural\.precision'"):
        CosplaceDescriptor(CosplaceConfig(weights=weights), NeuralConfig(precision="fp8"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_configured_gpu_that_is_absent_is_a_clear_error(weights):
    with pytest.raises(DeviceUnavailable, match="'cuda' is not available here"):
        CosplaceDescriptor(CosplaceConfig(backbone="resnet18", dim=64, weights=weights),
                           NeuralConfig(device="cuda"))


def test_auto_picks_the_cpu_without_a_gpu(weights):
    descriptor = CosplaceDescriptor(CosplaceConfig(backbone="resnet18", dim=64, weights=weights),
                                    NeuralConfig(device="auto"))
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert descriptor.runtime.device.type == expected


def test_other_weights_change_the_fingerprint_and_are_refused_by_the_index(weights, tmp_path):
    first = _descriptor(weights)
    recorded = first.save_state(tmp_path)
    other = _descriptor(write_cosplace_weights(tmp_path / "other.pth", seed=5))
    assert other.fingerprint() != first.fingerprint()
    assert recorded["weights_sha256"] == first.weights_sha256
    with pytest.raises(IndexWeightsMismatch, match="rebuild the index"):
        other.load_state(tmp_path, recorded)
    with pytest.raises(ConfigError, match=r"'cosplace\.short_side' = 96"):
        _descriptor(weights, short_side=128).load_state(tmp_path, recorded)
