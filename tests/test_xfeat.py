"""The `xfeat` verifier with the published XFeat and LighterGlue files: loading, shapes,
coordinates, matching options and the errors (real-photo matching: test_learned_matching.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("kornia", reason="the neural extra (PyTorch, kornia) is not installed")

import torch

from engine.config import EngineConfig, NeuralConfig, XfeatConfig
from engine.errors import ConfigError, WeightsMismatch
from engine.neural.published import PUBLISHED
from engine.neural.weights import packaged_path
from engine.synthetic import make_street
from engine.verifiers import create_verifier
from engine.verifiers.xfeat import LIGHTERGLUE_PREFIX, XfeatVerifier, mutual_nearest
from tests.conftest import packaged_weights


@pytest.fixture(scope="module")
def cpu(tmp_path_factory) -> NeuralConfig:
    packaged_weights("xfeat")
    return NeuralConfig(device="cpu", models_dir=tmp_path_factory.mktemp("no-models"))


@pytest.fixture(scope="module")
def views():
    return [view.rgb for view in make_street(seed=4, n_views=4)]


def _verifier(cpu: NeuralConfig, **settings) -> XfeatVerifier:
    return XfeatVerifier(XfeatConfig(**settings), cpu)


def test_extraction_is_capped_and_in_the_given_pixels(cpu, views):
    verifier = _verifier(cpu, max_keypoints=500, max_side=320)
    photo = views[0]
    features = verifier.extract(photo)
    height, width = photo.shape[:2]
    assert features.image_size == (width, height)
    assert features.scale == pytest.approx(320 / max(width, height))
    assert 0 < features.count <= 500 and features.descriptors.shape == (features.count, 64)
    assert features.keypoints[:, 0].max() > 320  # scaled back past the extraction size
    assert features.keypoints[:, 0].max() <= width and features.keypoints[:, 1].max() <= height


def test_neighbouring_views_match_with_either_matcher(cpu, views):
    for matcher in ("mnn", "lighterglue"):
        verifier = _verifier(cpu, matcher=matcher)
        first, second, far = (verifier.extract(views[i]) for i in (0, 1, 3))
        near = verifier.verify(first, second)
        assert near.inliers >= 50, matcher
        assert near.query_points.shape == (near.inliers, 2)
        assert verifier.verify(first, far).inliers < near.inliers


def test_the_cascade_ranks_with_mnn_and_decides_with_lighterglue_on_the_strongest_points(
        cpu, views):
    cascade = _verifier(cpu, matcher="cascade", cascade_keypoints=300)
    first, second = cascade.extract(views[0]), cascade.extract(views[1])
    assert first.count > 300 and second.count > 300
    mnn = _verifier(cpu, matcher="mnn").verify(first, second)
    assert cascade.verify(first, second).inliers == mnn.inliers
    decided = cascade.decide(first, second)
    assert decided.inliers >= 30
    # Only the 300 strongest of each side were matched: XFeat lists them first.
    strongest = first.keypoints[:300]
    assert all(np.any(np.all(np.isclose(strongest, point, atol=1e-3), axis=1))
               for point in decided.query_points)
    assert cascade.calibration_key == "xfeat-cascade"


def test_the_cascade_depth_is_three_on_a_cpu_unless_set_and_none_without_a_cascade(cpu):
    assert _verifier(cpu, matcher="cascade").decide_depth(10) == 3
    assert _verifier(cpu, matcher="cascade").decide_depth(2) == 2
    assert _verifier(cpu, matcher="cascade", cascade_depth=10).decide_depth(10) == 10
    assert _verifier(cpu, matcher="mnn").decide_depth(10) == 0
    assert _verifier(cpu, matcher="lighterglue").decide_depth(10) == 0


def test_mutual_nearest_keeps_only_mutual_pairs_above_the_similarity_floor():
    query = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    reference = np.array([[1.0, 0.0], [0.8, 0.6]], np.float32)
    # Row 1 is nobody's nearest; rows 2 and 1 are each other's, at cosine 0.96.
    assert mutual_nearest(query, reference, min_cosine=0.9).tolist() == [[0, 0], [2, 1]]
    assert mutual_nearest(query, reference, min_cosine=0.97).tolist() == [[0, 0]]


def test_lighterglue_loads_only_the_matcher_half_of_its_file(cpu):
    verifier = _verifier(cpu, matcher="lighterglue")
    published = torch.load(packaged_path(PUBLISHED["lighterglue-xfeat"])[0], map_location="cpu",
                           weights_only=True)
    assert any(key.startswith("extractor.") for key in published)
    loaded = verifier._matcher.state_dict()
    assert torch.equal(loaded["input_proj.weight"],
                       published[f"{LIGHTERGLUE_PREFIX}input_proj.weight"])
    assert verifier.calibration_key == "xfeat-lighterglue"


def test_the_matcher_does_not_change_stored_features_but_extraction_settings_do(cpu):
    base = _verifier(cpu).fingerprint()
    assert _verifier(cpu, matcher="lighterglue").fingerprint() == base
    assert _verifier(cpu, max_keypoints=1024).fingerprint() != base


def test_the_lighterglue_file_as_extractor_is_refused_with_its_keys(cpu):
    path = packaged_path(PUBLISHED["lighterglue-xfeat"])[0]
    with pytest.raises(WeightsMismatch, match=r"XFeat: unexpected 'extractor\.model\.net"):
        _verifier(cpu, extractor_weights=path)


def test_bad_settings_are_refused_by_key(cpu):
    with pytest.raises(ConfigError, match=r"'xfeat\.matcher' is 'brute'"):
        _verifier(cpu, matcher="brute")
    with pytest.raises(ConfigError, match=r"'xfeat\.max_side' is 16"):
        _verifier(cpu, max_side=16)
    with pytest.raises(ConfigError, match=r"'xfeat\.cascade_depth' is -1"):
        _verifier(cpu, matcher="cascade", cascade_depth=-1)


def test_the_registry_builds_it(cpu):
    verifier = create_verifier("xfeat", replace(EngineConfig(), neural=cpu))
    assert isinstance(verifier, XfeatVerifier) and verifier.runtime.label == "cpu/fp32"
    verifier.warm_up()
