"""The `geosleuth` command: what a person types and what they read back."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from PIL import Image

from bot.cli.main import main
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
    assert stats["indexed"] == 8 and stats["descriptor"] == "xfeat-vlad"
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


# --- the command line as a careless user meets it: one line on stderr, exit 2, nothing lost ---


def _one_line_refusal(code: int, err: str) -> str:
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("geosleuth: error: "), err
    return err


def test_a_map_that_cannot_be_written_keeps_the_answer(capsys, tmp_path, street_index,
                                                       street_queries):
    photo = tmp_path / "query.jpg"
    photo.write_bytes(jpeg_bytes(street_queries[0].rgb))
    code, out, err = _run(capsys, "locate", str(photo), "--index", str(street_index.index_path),
                          "--map", str(tmp_path / "no" / "such" / "dir" / "map.png"))
    assert out.startswith("Located: ")  # the answer was printed before the map failed
    assert "cannot write the map to" in _one_line_refusal(code, err)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["locate", "x.jpg", "--top-k", "0"], "--top-k: must be at least 1, not 0"),
        (["locate", "x.jpg", "--top-k", "-3"], "--top-k: must be at least 1, not -3"),
        (["locate", "x.jpg", "--top-k", "ten"], "'ten' is not a whole number"),
        (["locate", "x.jpg", "--radius-km", "3"], "--radius-km needs --near"),
        (["eval", "q", "--holdout-every", "0"], "--holdout-every: must be at least 2"),
        (["eval", "q", "--holdout-every", "1"], "--holdout-every: must be at least 2"),
        (["locate"], "the following arguments are required: PHOTO"),
    ],
)
def test_a_wrong_command_line_is_refused_in_one_line(capsys, argv, reason):
    code, out, err = _run(capsys, *argv)
    assert out == ""
    assert reason in _one_line_refusal(code, err)


def test_a_thumbnail_is_refused_as_too_small(capsys, tmp_path, street_index):
    photo = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1), (100, 100, 100)).save(photo)
    code, out, err = _run(capsys, "locate", str(photo), "--index", str(street_index.index_path))
    assert out == ""
    assert "1 x 1 pixels, too small to locate" in _one_line_refusal(code, err)


def test_a_144_megapixel_picture_is_refused_without_pillows_warning(tmp_path, street_index):
    photo = tmp_path / "huge.png"
    Image.new("1", (12_000, 12_000)).save(photo)  # above Pillow's own warning threshold
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "locate", str(photo),
         "--index", str(street_index.index_path)],
        capture_output=True, text=True, timeout=300)
    assert done.stdout == ""
    refusal = _one_line_refusal(done.returncode, done.stderr)
    assert "144 megapixels; the limit is 50" in refusal and "Warning" not in refusal


@pytest.fixture
def unplaced_folder(tmp_path):
    """Three photos with neither EXIF GPS nor a position in their names."""
    folder = tmp_path / "unplaced"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (320, 240), (40 * i, 90, 120)).save(folder / f"IMG_{i}.jpg")
    return folder


def test_photos_without_positions_are_named_as_the_cause(capsys, tmp_path, unplaced_folder):
    index = tmp_path / "idx"
    code, out, err = _run(capsys, "index", "build", "--index", str(index), str(unplaced_folder))
    assert out == ""
    assert "None of the 3 photos found has a position" in _one_line_refusal(code, err)
    assert "CSV manifest with columns path,lat,lon" in err
    assert not index.exists()  # a refused build leaves nothing to trip over


def test_verbose_lists_each_skipped_photo_and_manifest_line(capsys, tmp_path, unplaced_folder,
                                                            photo_folder):
    manifest = tmp_path / "refs.csv"
    rows = (photo_folder / "refs.csv").read_text().splitlines()
    manifest.write_text("\n".join([*rows[:3], "missing.jpg,not-a-number,13.0,synthetic,x"]) + "\n")
    for row in rows[1:3]:  # the manifest's paths are relative to it
        name = row.split(",")[0]
        (tmp_path / name).write_bytes((photo_folder / name).read_bytes())
    code, out, err = _run(capsys, "-v", "index", "build", "--index", str(tmp_path / "idx"),
                          str(unplaced_folder), str(manifest))
    assert code == 0 and "Indexed 2 new photos" in out
    assert f"{unplaced_folder}: 3 skipped" in err
    assert "IMG_0.jpg: no position in the file name or EXIF GPS" in err
    assert "refs.csv:4" in err  # the manifest's bad row, by line number (header = line 1)


def test_a_build_refused_before_it_starts_leaves_no_rows_to_count_twice(capsys, tmp_path,
                                                                        photo_folder):
    index = tmp_path / "idx"
    refs = str(photo_folder / "refs.csv")
    code, _, err = _run(capsys, "index", "build", "--index", str(index), "--descriptor", "nope",
                        refs)
    assert "unknown descriptor 'nope'" in _one_line_refusal(code, err)
    assert not index.exists()
    code, out, _ = _run(capsys, "index", "build", "--index", str(index), refs)
    assert code == 0
    assert "Indexed 8 new photos" in out and "already indexed" not in out


def test_a_second_build_on_the_same_index_is_refused_while_one_runs(capsys, tmp_path,
                                                                   photo_folder):
    from filelock import FileLock

    from engine.index.builder import LOCK_NAME

    index = tmp_path / "idx"
    index.mkdir()
    with FileLock(index / LOCK_NAME):  # as a build in another process holds it
        code, _, err = _run(capsys, "index", "build", "--index", str(index),
                            str(photo_folder / "refs.csv"))
    assert "Another 'index build' or 'index add' is writing to" in _one_line_refusal(code, err)
    assert sorted(p.name for p in index.iterdir()) == [LOCK_NAME]
