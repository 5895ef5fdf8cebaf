"""The whole funnel with `cosplace` + `lightglue` (random weights in the published layouts).

Random weights place nothing; these tests check that every stage runs on the real code path
(index build with stored LightGlue features, resume, search, verification, estimate, CLI) and
that an index refuses weights other than those it was built with.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("kornia", reason="the neural backends need the 'neural' extra (PyTorch)")

from bot.cli.main import main
from engine.config import CosplaceConfig, EngineConfig, LightglueConfig, NeuralConfig
from engine.errors import IndexWeightsMismatch
from engine.geo import haversine_m
from engine.index.builder import build_index
from engine.index.catalog import CATALOG_NAME
from engine.index.manifest import Manifest
from engine.index.reference_index import ReferenceIndex
from engine.locator import Locator
from engine.neural.weights import file_sha256
from engine.results import Status, result_from_json
from engine.sources import scan_source
from tests.conftest import jpeg_bytes, packaged_weights
from tests.fakes.cosplace_weights import write_cosplace_weights


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """CosPlace's weights are on no registry: random ones in its layout. LightGlue and ALIKED
    are the published files from the installed package."""
    packaged_weights("aliked-n16")
    folder = tmp_path_factory.mktemp("models")
    write_cosplace_weights(folder / "cosplace-r18-64.pth", "resnet18", 64)
    return folder


def _config(models: Path, index: Path) -> EngineConfig:
    return replace(
        EngineConfig(),
        index_path=index,
        descriptor="cosplace",
        verifier="lightglue",
        neural=NeuralConfig(device="cpu", models_dir=models),
        cosplace=CosplaceConfig(backbone="resnet18", dim=64, weights=models / "cosplace-r18-64.pth",
                                short_side=96, batch_size=4),
        lightglue=LightglueConfig(max_keypoints=512, max_side=384),
    )


@pytest.fixture(scope="module")
def neural_index(tmp_path_factory, models, street_references) -> EngineConfig:
    config = _config(models, tmp_path_factory.mktemp("neural-index"))
    report = build_index(config.index_path, [scan_source(street_references)], config)
    assert report.indexed_now == 10 and report.failed_now == 0
    return config


def test_the_index_records_descriptor_weights_and_feature_backend(neural_index, models):
    manifest = Manifest.load(neural_index.index_path)
    assert manifest.descriptor == "cosplace" and manifest.dim == 64 and manifest.count == 10
    assert manifest.descriptor_state["weights_sha256"] == file_sha256(
        models / "cosplace-r18-64.pth")
    assert manifest.features_verifier == "lightglue"
    assert len(list((neural_index.index_path / "features").rglob("*.npz"))) == 10


def test_a_held_out_view_runs_through_every_stage(neural_index, street_queries):
    locator = Locator.open(replace(neural_index, search=replace(neural_index.search, top_k=5)))
    try:
        result = locator.locate(jpeg_bytes(street_queries[0].rgb))
    finally:
        locator.close()
    assert result.descriptor == "cosplace" and result.verifier == "lightglue"
    assert len(result.matches) == 5
    assert all(m.inliers >= 0 and 0.0 <= m.inlier_ratio <= 1.0 for m in result.matches)
    assert {"decode", "describe", "search", "verify", "estimate", "total"} <= set(
        result.timings_ms)
    assert result_from_json(json.loads(json.dumps(result.to_json()))).status is result.status


def test_the_published_lightglue_places_a_held_out_view_when_every_reference_is_verified(
    neural_index, street_queries
):
    """CosPlace's weights are random here, so its order means nothing; verifying all ten
    references leaves the answer to the real ALIKED + LightGlue."""
    query = street_queries[0]
    locator = Locator.open(neural_index)
    try:
        result = locator.locate(jpeg_bytes(query.rgb), top_k=10)
    finally:
        locator.close()
    assert result.status is Status.LOCATED
    assert haversine_m(query.lat, query.lon, result.lat, result.lon) <= 25.0
    assert result.best_match.inliers >= 100


def test_an_interrupted_build_resumes_without_duplicates(tmp_path, models, street_references):
    config = _config(models, tmp_path / "index")
    scans = [scan_source(street_references)]
    build_index(config.index_path, scans, config)
    with sqlite3.connect(config.index_path / CATALOG_NAME) as db:
        db.execute("UPDATE refs SET status='pending', store_path=NULL WHERE id > 6")
    report = build_index(config.index_path, scans, config)
    assert report.indexed_now == 4
    index = ReferenceIndex.open(config.index_path)
    try:
        assert len(index.vectors) == 10 and len(index) == 10
    finally:
        index.close()


def test_querying_with_other_cosplace_weights_is_refused(neural_index, models, tmp_path):
    other = write_cosplace_weights(tmp_path / "other.pth", "resnet18", 64, seed=9)
    config = replace(neural_index, cosplace=replace(neural_index.cosplace, weights=other))
    with pytest.raises(IndexWeightsMismatch, match="rebuild the index"):
        Locator.open(config)


def test_cli_builds_a_cosplace_index_and_locates(tmp_path, models, street_references,
                                                 street_queries, capsys):
    config = _config(models, tmp_path / "idx")
    toml = tmp_path / "geosleuth.toml"
    toml.write_text(f"""
[engine]
verifier = "lightglue"
[engine.neural]
device = "cpu"
[engine.cosplace]
backbone = "resnet18"
dim = 64
weights = "{config.cosplace.weights}"
short_side = 96
[engine.lightglue]
max_keypoints = 512
max_side = 384
""")
    index = str(config.index_path)
    assert main(["--config", str(toml), "index", "build", "--index", index,
                 "--descriptor", "cosplace", str(street_references)]) == 0
    assert "Indexed 10 new photos" in capsys.readouterr().out
    assert main(["--config", str(toml), "index", "stats", "--index", index, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["descriptor"] == "cosplace" and stats["features"] == "lightglue"
    assert stats["descriptor_state"]["weights_sha256"] == file_sha256(config.cosplace.weights)
    photo = tmp_path / "query.jpg"
    photo.write_bytes(jpeg_bytes(street_queries[1].rgb))
    # The engine's descriptor comes from the config; the index was built with another.
    assert main(["--config", str(toml), "locate", str(photo), "--index", index, "--json"]) == 2
    assert "built with descriptor 'cosplace'" in capsys.readouterr().err
    toml.write_text(toml.read_text().replace('[engine]\n', '[engine]\ndescriptor = "cosplace"\n'))
    assert main(["--config", str(toml), "locate", str(photo), "--index", index, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["descriptor"] == "cosplace" and data["verifier"] == "lightglue"
