"""The `geosleuth` command: what a person types and what they read back."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from PIL import Image

from bot.cli import main
from tests.conftest import jpeg_bytes


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, street):
    """Eight views of the generated street as files with a CSV manifest."""
    folder = tmp_path_factory.mktemp("photos")
    with (folder / "refs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "lat", "lon", "source", "source_id"])
        for view in street[:8]:
            (folder / f"{view.name}.jpg").write_bytes(jpeg_bytes(view.rgb))
            writer.writerow([f"{view.name}.jpg", view.lat, view.lon, "synthetic", view.name])
    return folder


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_build_then_rebuild_reports_what_it_did(capsys, tmp_path, photo_folder):
    index = str(tmp_path / "idx")
    code, out, _ = _run(capsys, "index", "build", "--index", index, str(photo_folder / "refs.csv"))
    assert code == 0
    assert "Indexed 8 new photos" in out and "the index holds 8" in out
    code, out, _ = _run(capsys, "index", "build", "--index", index, str(photo_folder / "refs.csv"))
    assert code == 0
    assert "Indexed 0 new photos" in out and "8 already indexed" in out
    code, out, _ = _run(capsys, "index", "stats", "--index", index, "--json")
    stats = json.loads(out)
    assert stats["indexed"] == 8 and stats["descriptor"] == "vlad"
    assert stats["sources"] == {"synthetic": 8}
    west, south, east, north = stats["bbox"]
    assert west < east and south < north


def test_locate_json_and_map(capsys, tmp_path, street_index, street_queries):
    photo = tmp_path / "query.jpg"
    photo.write_bytes(jpeg_bytes(street_queries[0].rgb))
    picture = tmp_path / "map.png"
    code, out, _ = _run(capsys, "locate", str(photo), "--index", str(street_index.index_path),
                        "--json", "--top-k", "5", "--map", str(picture))
    assert code == 0
    data = json.loads(out)
    assert data["status"] == "located"
    assert 1 <= len(data["matches"]) <= 5  # candidates under the similarity floor are dropped
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.size == (800, 600)


def test_locate_prints_a_readable_answer(capsys, tmp_path, street_index, street_queries):
    photo = tmp_path / "query.jpg"
    photo.write_bytes(jpeg_bytes(street_queries[1].rgb))
    code, out, _ = _run(capsys, "locate", str(photo), "--index", str(street_index.index_path))
    assert code == 0
    assert out.startswith("Located: ")
    assert "Confidence:" in out and "verified correspondences" in out and "Timings:" in out


@pytest.mark.parametrize(
    ("make_input", "extra", "reason"),
    [
        (lambda p: p.write_text("hello"), [], "not an image GeoSleuth can read"),
        (lambda p: p.write_bytes(b""), [], "The file is empty"),
        (lambda p: None, [], "cannot read"),
        (lambda p: p.write_bytes(b"x"), ["--bbox", "1,2,3"], "four numbers W,S,E,N"),
        (lambda p: p.write_bytes(b"x"), ["--near", "91,0"], "not a valid latitude,longitude"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_reason(capsys, tmp_path, street_index, make_input,
                                                  extra, reason):
    photo = tmp_path / "input.jpg"
    make_input(photo)
    code, out, err = _run(capsys, "locate", str(photo), "--index", str(street_index.index_path),
                          *extra)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("geosleuth: error: ")
    assert reason in err


def test_locate_without_an_index_says_how_to_build_one(capsys, tmp_path, street_queries):
    photo = tmp_path / "query.jpg"
    photo.write_bytes(jpeg_bytes(street_queries[0].rgb))
    code, _, err = _run(capsys, "locate", str(photo), "--index", str(tmp_path / "none"))
    assert code == 2
    assert "geosleuth index build --index" in err


def test_eval_holdout_prints_every_figure(capsys, photo_folder):
    code, out, _ = _run(capsys, "eval", str(photo_folder / "refs.csv"), "--holdout-every", "4",
                        "--degrade", "chat,crop0.9", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["queries"] == 2
    for key in ("recall@1_25m", "recall@5_25m", "recall@1_100m", "recall@5_100m",
                "median_error_m", "answered_share"):
        assert key in summary
    assert len(summary["calibration"]) == 10
    assert {"p50", "p95"} <= summary["latency_ms"]["total"].keys()


def test_eval_refuses_an_unknown_degradation(capsys, photo_folder):
    code, _, err = _run(capsys, "eval", str(photo_folder / "refs.csv"), "--holdout-every", "4",
                        "--degrade", "blur")
    assert code == 2
    assert "unknown degradation 'blur'" in err


def test_demo_runs_with_no_data_and_writes_maps(capsys, tmp_path):
    code, out, _ = _run(capsys, "demo", "--out", str(tmp_path / "demo"), "--views", "9")
    assert code == 0
    assert "Located 3 of 3 held-out views" in out
    maps = sorted((tmp_path / "demo" / "maps").glob("*.png"))
    assert len(maps) == 3


def test_every_command_has_help():
    for command in (["--help"], ["index", "build", "--help"], ["locate", "--help"],
                    ["eval", "--help"], ["demo", "--help"], ["index", "stats", "--help"]):
        done = subprocess.run([sys.executable, "-m", "bot.cli", *command], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, command
        assert "usage: geosleuth" in done.stdout


def test_bot_without_a_token_says_so_and_opens_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("GEOSLEUTH_TELEGRAM_TOKEN", raising=False)
    config = tmp_path / "geosleuth.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "bot.sqlite"}"\n[telegram]\nenabled = true\n')
    code, _, err = _run(capsys, "--config", str(config), "bot")
    assert code == 2
    assert err == "geosleuth: error: no Telegram token: set GEOSLEUTH_TELEGRAM_TOKEN or" \
                  " telegram.token\n"
    assert not (tmp_path / "bot.sqlite").exists()
