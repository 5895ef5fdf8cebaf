"""`xfeat-vlad`: VLAD over the published XFeat's descriptors, vocabulary learned at build time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("kornia", reason="the neural extra (PyTorch, kornia) is not installed")

from engine.config import EngineConfig, NeuralConfig, VladConfig, XfeatConfig
from engine.descriptors import create_descriptor
from engine.errors import ConfigError
from engine.geo import haversine_m
from engine.index.builder import build_index
from engine.index.manifest import Manifest
from engine.locator import Locator
from engine.results import Status
from engine.sources import scan_source
from tests.conftest import jpeg_bytes, packaged_weights


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> EngineConfig:
    packaged_weights("xfeat")
    neural = NeuralConfig(device="cpu", models_dir=tmp_path_factory.mktemp("no-models"))
    return replace(EngineConfig(), descriptor="xfeat-vlad", verifier="xfeat", neural=neural,
                   vlad=VladConfig(clusters=16, dim=64), xfeat=XfeatConfig(max_keypoints=1024))


@pytest.fixture(scope="module")
def index(config, street_references, tmp_path_factory) -> EngineConfig:
    config = replace(config, index_path=tmp_path_factory.mktemp("xfeat-vlad-index"))
    report = build_index(config.index_path, [scan_source(street_references)], config)
    assert report.indexed_now == 10 and report.failed_now == 0
    return config


def test_the_index_records_the_descriptor_and_its_learned_vocabulary(index):
    manifest = Manifest.load(index.index_path)
    assert manifest.descriptor == "xfeat-vlad" and manifest.dim == 64
    assert manifest.descriptor_state["clusters"] == 16
    vocabulary = np.load(index.index_path / "vlad_vocabulary.npy")
    assert vocabulary.shape == (16, 64)  # XFeat's 64-d descriptors, not RootSIFT's 128


def test_descriptors_are_unit_rows_and_the_same_photo_describes_alike(index, street):
    locator = Locator.open(index)
    try:
        rows = locator.descriptor.describe([street[0].rgb, street[-1].rgb])
        again = locator.descriptor.describe([street[0].rgb.copy()])
    finally:
        locator.close()
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(again[0], rows[0], atol=1e-5)
    assert rows[0] @ rows[1] < 0.999


def test_a_held_out_view_is_located(index, street_queries):
    query = street_queries[0]
    locator = Locator.open(index)
    try:
        result = locator.locate(jpeg_bytes(query.rgb))
    finally:
        locator.close()
    assert result.descriptor == "xfeat-vlad" and result.status is Status.LOCATED
    assert haversine_m(query.lat, query.lon, result.lat, result.lon) <= 25.0


def test_other_xfeat_settings_change_the_fingerprint(config):
    base = create_descriptor("xfeat-vlad", config)
    other = create_descriptor("xfeat-vlad", replace(config, xfeat=XfeatConfig(max_keypoints=512)))
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(4)]
    for descriptor in (base, other):
        descriptor.fit(pictures, len(pictures))
    assert base.fingerprint() != other.fingerprint()


def test_a_dimension_larger_than_the_vlad_is_refused_naming_the_backend(config):
    with pytest.raises(ConfigError, match=r"'xfeat-vlad\.dim' is 2000.*clusters x 64 = 1024"):
        create_descriptor("xfeat-vlad", replace(config, vlad=VladConfig(clusters=16, dim=2000)))
