"""Case exports: a chat's kept answers as GeoJSON, KML and CSV that map tools read."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from bot.chat.store import RecordedAnswer, Store
from bot.render.export import circle, read_case, render, to_csv, to_geojson, to_kml
from engine.geo import haversine_m
from engine.results import LocateResult, Match, Status
from tests.case_files import KML, geojson_features, kml_placemarks, kml_point, signed_area

ROOT = Path(__file__).resolve().parents[1]
LUND = (55.7047, 13.1910)
MALMO = (55.6050, 13.0038)
NASTY = '<b>Eve & "Mallory"</b> ]]> =HYPERLINK("x")'


def _match(source_id: str, inliers: int | None, lat: float, lon: float) -> Match:
    return Match(ref_id=hash(source_id) % 1000, source="mapillary", source_id=source_id,
                 lat=lat, lon=lon, similarity=0.8, inliers=inliers, inlier_ratio=0.4,
                 attribution="© Jane, CC-BY-SA-4.0", licence="CC-BY-SA-4.0", creator="Jane",
                 link=f"https://www.mapillary.com/app/?pKey={source_id}")


def _photo(lat: float | None, lon: float | None, matches: tuple[Match, ...] = ()) -> dict:
    """A single photo's answer as the service stores it."""
    located = lat is not None
    return LocateResult(
        status=Status.LOCATED if located else Status.NO_MATCH, lat=lat, lon=lon,
        confidence=0.93 if located else 0.12, radius_m=60.0 if located else None,
        alternatives=(), matches=matches, exif_gps=None, timings_ms={"total": 800.0},
        descriptor="xfeat-vlad", verifier="xfeat", index_version="idx-1",
    ).to_json()


def _album(photos: list[tuple[dict, float | None]], track: list[tuple[float, float]]) -> dict:
    """An album's (or, with times, a video's) answer in the shape albums are stored in."""
    return {
        "kind": "album", "status": "located", "lat": MALMO[0], "lon": MALMO[1],
        "confidence": 0.88, "radius_m": 120.0, "alternatives": [],
        "photos": [{"label": f"photo {i}" if t is None else f"0:{t:04.1f}", "time_s": t,
                    "agrees": True, "inliers": 40, "result": result}
                   for i, (result, t) in enumerate(photos, 1)],
        "track": [{"time_s": float(i), "lat": lat, "lon": lon, "radius_m": 30.0}
                  for i, (lat, lon) in enumerate(track)],
        "best_photo": 0, "index_version": "idx-1", "descriptor": "xfeat-vlad",
        "verifier": "xfeat",
    }


def _rows() -> list[RecordedAnswer]:
    """A photo, an album, a video of a walk, a no_match and two unreadable answers."""
    photo = _photo(*LUND, (_match("a1", 55, *LUND), _match("a2", None, *LUND)))
    album = _album([(_photo(*MALMO, (_match("m1", 30, *MALMO),)), None),
                    (_photo(*MALMO, (_match("m1", 70, *MALMO), _match("m2", 20, *MALMO))), None)],
                   [])
    video = _album([(_photo(*MALMO, (_match("v1", 25, *MALMO),)), 1.0),
                    (_photo(*MALMO), 4.2)],
                   [MALMO, (MALMO[0] + 0.001, MALMO[1] + 0.002)])
    texts = [json.dumps(photo), json.dumps(album), json.dumps(video),
             json.dumps(_photo(None, None)), "{not json", json.dumps({"kind": "carousel"})]
    return [RecordedAnswer(i, f"2025-03-0{i}T10:00:00.000000+00:00", NASTY if i == 1 else "Bob",
                           text, confirms=i % 3, disputes=1)
            for i, text in enumerate(texts, 1)]


@pytest.fixture(scope="module")
def case():
    return read_case("telegram chat 42", _rows(), place_of=lambda lat, lon: "Lund, Sweden")


def test_unreadable_answers_are_skipped_and_counted(case):
    assert case.skipped == 2
    assert [a.request_id for a in case.answers] == [1, 2, 3, 4]
    assert [a.kind for a in case.answers] == ["photo", "album", "video", "photo"]
    assert [a.request_id for a in case.located] == [1, 2, 3]


def test_geojson_is_rfc_7946_with_one_feature_per_located_answer(case):
    features = geojson_features(to_geojson(case))
    assert [f["id"] for f in features] == [1, 2, 3]  # the no_match answer has no place
    lund = features[0]
    point, polygon = lund["geometry"]["geometries"]
    assert point["coordinates"] == [LUND[1], LUND[0]]  # lon, lat
    props = lund["properties"]
    assert props["asked_by"] == NASTY and props["time"] == "2025-03-01T10:00:00Z"
    assert (props["confirms"], props["disputes"], props["radius_m"]) == (1, 1, 60.0)
    assert props["status"] == "located" and props["confidence"] == 0.93
    assert props["place"] == "Lund, Sweden"
    assert [r["source_id"] for r in props["references"]] == ["a1"]  # a2 was never verified
    assert props["references"][0]["link"].startswith("https://www.mapillary.com/")
    assert props["attribution"] == "© Jane, CC-BY-SA-4.0"
    # Every vertex of the circle lies at the stated radius.
    for lon, lat in polygon["coordinates"][0]:
        assert haversine_m(LUND[0], LUND[1], lat, lon) == pytest.approx(60.0, abs=0.05)


def test_an_album_is_one_feature_with_its_photos_references_merged(case):
    album, video = geojson_features(to_geojson(case))[1:]
    props = album["properties"]
    assert props["photos"] == 2 and props["kind"] == "album"
    assert [(r["source_id"], r["inliers"]) for r in props["references"]] == [("m1", 70),
                                                                            ("m2", 20)]
    assert [g["type"] for g in album["geometry"]["geometries"]] == ["Point", "Polygon"]
    kinds = [g["type"] for g in video["geometry"]["geometries"]]
    assert kinds == ["Point", "Polygon", "LineString"]  # a video of a walk: its track too
    assert video["geometry"]["geometries"][2]["coordinates"][0] == [MALMO[1], MALMO[0]]


def test_circles_are_closed_counter_clockwise_rings_anywhere(case):
    for lat, lon in ((0.0, 0.0), (-33.86, 151.21), (64.15, -21.94), (89.0, 179.99)):
        ring = [list(p) for p in circle(lat, lon, 250.0)]
        assert ring[0] == ring[-1] and len(ring) == 65
        assert signed_area(ring) > 0


def test_kml_has_a_placemark_per_located_answer_in_one_folder(case):
    text = to_kml(case)
    placemarks = kml_placemarks(text)
    assert len(placemarks) == 3
    root = ET.fromstring(text)
    assert len(root.findall(f".//{KML}Folder")) == 1
    lon, lat = kml_point(placemarks[0])
    assert (lon, lat) == (LUND[1], LUND[0])
    data = {d.get("name"): d.find(f"{KML}value").text
            for d in placemarks[0].findall(f".//{KML}Data")}
    assert data["asked_by"] == NASTY  # escaped once, read back whole
    description = placemarks[0].find(f"{KML}description").text
    assert "&lt;b&gt;Eve &amp; &quot;Mallory&quot;&lt;/b&gt;" in description  # shown, not run
    assert '<a href="https://www.mapillary.com/app/?pKey=a1">' in description
    assert placemarks[0].find(f"{KML}TimeStamp/{KML}when").text == "2025-03-01T10:00:00Z"
    assert placemarks[2].find(f".//{KML}LineString") is not None
    ring = placemarks[0].find(f".//{KML}Polygon//{KML}coordinates").text.split()
    assert ring[0] == ring[-1]


def test_csv_has_every_answer_and_no_formula(case):
    rows = list(csv.DictReader(io.StringIO(to_csv(case))))
    assert [r["request_id"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0]["asked_by"] == NASTY  # starts with '<': nothing to defuse
    assert (float(rows[0]["lat"]), float(rows[0]["lon"])) == LUND
    assert rows[3]["status"] == "no_match" and rows[3]["lat"] == rows[3]["lon"] == ""
    assert rows[1]["references"] == "mapillary:m1 (70 inliers); mapillary:m2 (20 inliers)"
    formula = read_case("x", [RecordedAnswer(9, "2025-03-01T10:00:00+00:00", "=cmd|'/c calc'!A1",
                                             json.dumps(_photo(*LUND)), 0, 0)])
    [row] = csv.DictReader(io.StringIO(to_csv(formula)))
    assert row["asked_by"] == "'=cmd|'/c calc'!A1"
    assert row["lon"] == repr(LUND[1])  # a number is never prefixed, even a negative one


def test_an_empty_case_is_still_a_valid_file_of_each_format():
    empty = read_case("nothing", [])
    assert geojson_features(render(empty, "geojson").decode()) == []
    assert kml_placemarks(render(empty, "kml")) == []
    assert render(empty, "csv").decode().startswith("request_id,time,asked_by,")
    with pytest.raises(ValueError, match="geojson, kml, csv"):
        render(empty, "shp")


def test_coordinates_carry_at_most_seven_decimals():
    row = RecordedAnswer(1, "2025-03-01T10:00:00+00:00", "A",
                         json.dumps(_photo(55.123456789123, 13.987654321987)), 0, 0)
    feature = geojson_features(to_geojson(read_case("x", [row])))[0]
    assert feature["geometry"]["geometries"][0]["coordinates"] == [13.9876543, 55.1234568]
    assert not math.isnan(feature["properties"]["confidence"])


# --- the command line ------------------------------------------------------------------------


async def _fill(path: Path) -> None:
    """Two chats' answers, written through the store as the bot writes them."""
    async with await Store.open(path) as store:
        for chat, user, (lat, lon) in (("-100", "Ann", LUND), ("-100", "Ben", MALMO),
                                       ("777", "Cy", LUND)):
            request = await store.start_request("telegram", chat, user, user, "group",
                                                "f" * 64, None)
            await store.finish_request(request, json.dumps(_photo(lat, lon, (
                _match(f"{user}-ref", 40, lat, lon),))), "idx-1", "key")
            await store.vote(request, "u9", "Dee", "confirm")
        discord = await store.start_request("discord", "-100", "Eve", "Eve", "guild", "e" * 64,
                                            None)
        await store.finish_request(discord, json.dumps(_photo(None, None)), "idx-1", "key")


def _geosleuth(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    config = tmp_path / "geosleuth.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "bot.sqlite"}"\n')
    return subprocess.run([sys.executable, "-m", "bot.cli", "--config", str(config), *argv],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_history_export_writes_one_chats_case(tmp_path):
    asyncio.run(_fill(tmp_path / "bot.sqlite"))
    out = tmp_path / "case.geojson"
    done = _geosleuth(tmp_path, "history", "export", "--chat", "-100", "--platform", "telegram",
                      "--format", "geojson", "-o", str(out))
    assert done.returncode == 0, done.stderr
    features = geojson_features(out.read_text())
    assert [f["properties"]["asked_by"] for f in features] == ["Ann", "Ben"]  # not Cy's chat
    assert all(f["properties"]["confirms"] == 1 for f in features)
    # The same chat id on both platforms: which one must be said.
    ambiguous = _geosleuth(tmp_path, "history", "export", "--chat", "-100", "--format", "csv")
    assert ambiguous.returncode == 2 and "--platform" in ambiguous.stderr
    assert len(ambiguous.stderr.strip().splitlines()) == 1
    kml = _geosleuth(tmp_path, "history", "export", "--chat", "777", "--format", "kml")
    assert kml.returncode == 0, kml.stderr
    assert len(kml_placemarks(kml.stdout)) == 1


def test_history_export_of_nothing_says_so_and_a_missing_store_is_not_created(tmp_path):
    asyncio.run(_fill(tmp_path / "bot.sqlite"))
    done = _geosleuth(tmp_path, "history", "export", "--chat", "555", "--format", "geojson")
    assert done.returncode == 0
    assert geojson_features(done.stdout) == []
    assert "no answers" in done.stderr
    (tmp_path / "bot.sqlite").unlink()
    missing = _geosleuth(tmp_path, "history", "export", "--chat", "555", "--format", "csv")
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1 and "bot.sqlite" in missing.stderr
    assert not (tmp_path / "bot.sqlite").exists()


def test_a_local_references_path_on_the_server_stays_there():
    local = replace(_match("x", 50, *LUND), source="local",
                    source_id="/srv/geosleuth/refs/lund/04.jpg")
    row = RecordedAnswer(1, "2025-03-01T10:00:00.000000+00:00", "Bob",
                         json.dumps(_photo(*LUND, (local,))), confirms=0, disputes=0)
    text = to_geojson(read_case("chat", [row], place_of=lambda lat, lon: None))
    [feature] = geojson_features(text)
    assert [r["source_id"] for r in feature["properties"]["references"]] == ["04.jpg"]
    assert "/srv/" not in text
