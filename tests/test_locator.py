"""The synchronous funnel end to end, on a generated street and on the real photos."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from engine.config import EngineConfig
from engine.degrade import apply_degradations, parse_degradations
from engine.errors import DescriptorMismatch, IndexMissing, NotAnImage, SearchAreaError
from engine.geo import SearchArea, haversine_m
from engine.locator import Locator
from engine.results import Stage, Status
from tests.conftest import jpeg_bytes, shared_data


@pytest.fixture(scope="module")
def street_locator(street_index):
    locator = Locator.open(street_index)
    yield locator
    locator.close()


def test_held_out_street_views_are_located_within_25_m(street_locator, street_queries):
    for view in street_queries:
        result = street_locator.locate(jpeg_bytes(view.rgb))
        assert result.status is Status.LOCATED, view.name
        assert haversine_m(view.lat, view.lon, result.lat, result.lon) <= 25.0
        assert result.confidence >= 0.5
        assert result.radius_m is not None and result.radius_m >= 25.0


def test_result_json_has_the_documented_shape(street_locator, street_queries):
    data = street_locator.locate(jpeg_bytes(street_queries[0].rgb)).to_json()
    assert {"lat", "lon", "confidence", "radius_m", "status", "alternatives", "matches",
            "exif_gps", "timings_ms"} <= data.keys()
    assert data["status"] == "located"
    match = data["matches"][0]
    assert {"ref_id", "source", "source_id", "lat", "lon", "similarity", "inliers",
            "decisive"} <= match.keys()
    assert match["decisive"]
    assert match["inliers"] == max(m["inliers"] for m in data["matches"] if m["decisive"])
    stages = {"decode", "describe", "search", "verify", "estimate", "total"}
    assert stages <= data["timings_ms"].keys()


def test_progress_passes_every_stage_in_order(street_locator, street_queries):
    events = []
    street_locator.locate(jpeg_bytes(street_queries[1].rgb), top_k=4, progress=events.append)
    stages = [e.stage for e in events]
    assert stages[:4] == [Stage.DECODING, Stage.DESCRIBING, Stage.SEARCHING, Stage.VERIFYING]
    assert stages[-1] is Stage.DONE
    # The default cascade checks four candidates with mnn, then decides among up to three
    # (a settled place ends it early, and its progress is then complete).
    steps = [e.step for e in events if e.stage is Stage.VERIFYING]
    assert steps[:5] == [0, 1, 2, 3, 4] and steps == sorted(steps) and steps[-1] == 7
    assert {e.total for e in events if e.stage is Stage.VERIFYING} == {7}


def _locate_with(config: EngineConfig, data: bytes, top_k: int):
    locator = Locator.open(config)
    try:
        return locator.locate(data, top_k=top_k)
    finally:
        locator.close()


def test_the_cascade_decides_among_the_candidates_mnn_ranks_highest(street_index,
                                                                    street_queries):
    data = jpeg_bytes(street_queries[0].rgb)
    mnn = _locate_with(replace(street_index, xfeat=replace(street_index.xfeat, matcher="mnn")),
                       data, top_k=5)
    # A curve that never settles, so both deciding checks run.
    unsettled = replace(street_index,
                        xfeat=replace(street_index.xfeat, matcher="cascade", cascade_depth=2),
                        estimate=replace(street_index.estimate, inliers_midpoint=10_000.0))
    cascade = _locate_with(unsettled, data, top_k=5)
    first_pass = {m.ref_id: m.inliers for m in mnn.matches}
    decided = [m for m in cascade.matches if m.decisive]
    assert len(decided) == 2 and len(cascade.matches) == len(mnn.matches) >= 4
    assert {m.ref_id for m in decided} == set(sorted(first_pass, key=first_pass.get)[-2:])
    # The others keep their mnn counts, shown as evidence but never weighed.
    assert all(m.inliers == first_pass[m.ref_id] for m in cascade.matches if not m.decisive)


def test_a_cascade_deciding_every_candidate_never_stops_early(street_index, street_queries):
    everything = replace(street_index, xfeat=replace(street_index.xfeat, matcher="cascade",
                                                     cascade_depth=10))
    result = _locate_with(everything, jpeg_bytes(street_queries[0].rgb), top_k=5)
    assert result.located and all(m.decisive for m in result.matches)


def test_the_cascade_stops_once_a_place_is_settled(street_index, street_queries):
    cascade = replace(street_index, xfeat=replace(street_index.xfeat, matcher="cascade",
                                                  cascade_depth=3))
    result = _locate_with(cascade, jpeg_bytes(street_queries[0].rgb), top_k=5)
    decided = [m for m in result.matches if m.decisive]
    assert len(decided) == 1 and result.located and result.best_match is decided[0]


def test_an_unrelated_photo_is_no_match_not_a_location(street_locator):
    rng = np.random.default_rng(5)
    noise = (rng.random((600, 800, 3)) * 255).astype(np.uint8)
    result = street_locator.locate(jpeg_bytes(noise))
    assert result.status is Status.NO_MATCH
    assert result.lat is None and result.lon is None and result.radius_m is None
    assert result.confidence < 0.3


def test_search_area_keeps_candidates_inside_it(street_locator, street, street_queries):
    view = street_queries[0]
    far_end = street[-1]
    area = SearchArea.around(far_end.lat, far_end.lon, 30)
    result = street_locator.locate(jpeg_bytes(view.rgb), area=area)
    for match in result.matches:
        assert haversine_m(far_end.lat, far_end.lon, match.lat, match.lon) <= 30
    assert result.status is Status.NO_MATCH  # the right place was excluded by the area


def test_exif_gps_is_reported_beside_the_visual_answer(street_locator, street_queries):
    view = street_queries[0]
    image = Image.fromarray(view.rgb)
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (55.0, 42.0, 0.0)
    gps[3], gps[4] = "E", (13.0, 11.0, 0.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    result = street_locator.locate(buffer.getvalue())
    assert result.exif_gps is not None
    assert result.exif_gps.lat == pytest.approx(55.7, abs=1e-6)
    assert haversine_m(view.lat, view.lon, result.lat, result.lon) <= 25.0  # visual answer


def test_a_non_image_is_refused_before_any_search(street_locator):
    with pytest.raises(NotAnImage):
        street_locator.locate(b"%PDF-1.7 definitely a document")


def test_a_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexMissing):
        Locator.open(replace(EngineConfig(), index_path=tmp_path / "absent"))


def test_a_query_descriptor_other_than_the_index_is_refused(street_index):
    with pytest.raises(DescriptorMismatch, match="built with descriptor 'xfeat-vlad'"):
        Locator.open(replace(street_index, descriptor="cosplace"))


def test_malformed_search_area_is_refused():
    with pytest.raises(SearchAreaError, match="W,S,E,N"):
        SearchArea.from_bbox(13.5, 55.8, 13.1, 55.6)


# --- the bar on real photos -------------------------------------------------------------


@pytest.mark.real_data
def test_held_out_lund_frames_after_chat_recompression_and_crop(lund_index, lund_split):
    _, held_out = lund_split
    degradations = parse_degradations("chat,crop0.8")
    locator = Locator.open(lund_index)
    try:
        hits = 0
        for record in held_out:
            with Image.open(record.image_path) as image:
                rgb = np.asarray(image.convert("RGB"))
            result = locator.locate(jpeg_bytes(apply_degradations(rgb, degradations), 95))
            if result.located:
                assert result.confidence >= 0.5
                hits += haversine_m(record.lat, record.lon, result.lat, result.lon) <= 25.0
        assert hits / len(held_out) >= 0.9
    finally:
        locator.close()


@pytest.mark.real_data
def test_berlin_against_lund_alone_is_not_answered(tmp_path, lund_split):
    from engine.index.builder import build_index
    from engine.sources import scan_source

    build_index(tmp_path / "lund", [scan_source(shared_data("lund"))], EngineConfig())
    locator = Locator.open(replace(EngineConfig(), index_path=tmp_path / "lund"))
    try:
        for photo in sorted(shared_data("berlin").glob("*.jpg")):
            result = locator.locate(photo.read_bytes())
            assert result.status is Status.NO_MATCH or result.confidence < 0.3, photo.name
            assert result.exif_gps is not None  # Berlin photos carry GPS: reported beside
    finally:
        locator.close()
