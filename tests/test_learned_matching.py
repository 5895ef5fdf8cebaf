"""The learned verifiers with their published weights on real photos: the same place matches
with many inliers, unrelated places with few, on one walk and across captures years apart."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

pytest.importorskip("kornia", reason="the neural extra (PyTorch, kornia) is not installed")

import torch

from engine.config import EngineConfig, LightglueConfig, NeuralConfig, XfeatConfig
from engine.verifiers import create_verifier
from tests.conftest import packaged_weights, shared_data

# (verifier, settings): what `bench/bench_crosscapture.py` compares.
BACKENDS = {
    "xfeat-mnn": ("xfeat", {}),
    "xfeat-lighterglue": ("xfeat", {"xfeat": XfeatConfig(matcher="lighterglue")}),
    "lightglue-aliked": ("lightglue", {"lightglue": LightglueConfig(features="aliked")}),
    "lightglue-disk": ("lightglue", {"lightglue": LightglueConfig(features="disk")}),
}
# Measured here with these backends: unrelated photos keep 0-22 inliers; neighbouring Lund
# frames 230-340; the San Francisco pair below, twelve years apart and at night, 250-500.
UNRELATED_AT_MOST = 30
SAME_WALK_AT_LEAST = 100
CROSS_CAPTURE_AT_LEAST = 150


@pytest.fixture(scope="module", autouse=True)
def installed_weights_and_two_threads():
    packaged_weights("xfeat", "aliked-n16")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def verifier(request, tmp_path_factory):
    name, changes = BACKENDS[request.param]
    neural = NeuralConfig(device="cpu", models_dir=tmp_path_factory.mktemp("no-models"))
    return create_verifier(name, replace(EngineConfig(), neural=neural, **changes))


def _photo(*parts: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(shared_data(*parts))), cv2.COLOR_BGR2RGB)


def test_neighbouring_frames_of_one_walk_match_and_another_city_does_not(verifier):
    first = verifier.extract(_photo("lund", "05.jpg"))
    second = verifier.extract(_photo("lund", "06.jpg"))
    elsewhere = verifier.extract(_photo("berlin", "01.jpg"))
    assert verifier.verify(first, second).inliers >= SAME_WALK_AT_LEAST
    assert verifier.verify(first, elsewhere).inliers <= UNRELATED_AT_MOST


def test_a_view_taken_years_later_matches_its_place_and_not_a_street_away(verifier):
    query = verifier.extract(_photo(
        "sf_xs_west", "queries",
        "@0544700.67@4172905.28@10@S@037.70229@-122.49291@9Ekm9f008fhlbkTju7vuNg@@0@@@@202011@@.jpg"))
    same_place = verifier.extract(_photo(
        "sf_xs_west", "database",
        "@0544700.68@4172904.17@10@S@037.70228@-122.49291@8_gs0kbLGt8WWy6i3yHQMA@@0@@@@200804@@.jpg"))
    far_away = verifier.extract(_photo(
        "sf_xs_west", "database",
        "@0544204.34@4173404.11@10@S@037.70681@-122.49851@ubFEPvi18FX7ZwRKzwY6JA@@0@@@@201107@@.jpg"))
    assert verifier.verify(query, same_place).inliers >= CROSS_CAPTURE_AT_LEAST
    assert verifier.verify(query, far_away).inliers <= UNRELATED_AT_MOST


def test_features_have_the_backends_shapes_and_come_back_from_storage(verifier):
    features = verifier.extract(_photo("lund", "05.jpg"))
    dims = {"xfeat": 64, "lightglue": 128}[verifier.name]
    assert features.image_size == (1024, 768)
    assert features.count > 100 and features.descriptors.shape == (features.count, dims)
    norms = np.linalg.norm(features.descriptors, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)
    restored = verifier.unpack(verifier.pack(features))
    np.testing.assert_allclose(restored.descriptors, features.descriptors, atol=1e-3)
    assert restored.extraction_size == features.extraction_size
