"""The index: build, resume, append, refuse mismatches, filter by area inside the search."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.errors import (
    DescriptorMismatch,
    EmptyIndex,
    GeoSleuthError,
    IndexMissing,
    SearchAreaError,
)
from engine.geo import SearchArea
from engine.index.builder import build_index
from engine.index.catalog import CATALOG_NAME
from engine.index.manifest import Manifest
from engine.index.reference_index import ReferenceIndex
from engine.results import ReferenceRecord
from engine.sources import SourceScan, scan_source
from tests.conftest import jpeg_bytes


def _records(street, folder: Path, views) -> SourceScan:
    records = []
    for view in views:
        path = folder / f"{view.name}.jpg"
        path.write_bytes(jpeg_bytes(view.rgb))
        records.append(ReferenceRecord("synthetic", view.name, view.lat, view.lon, str(path)))
    return SourceScan(tuple(records))


def test_build_writes_manifest_catalog_vectors_and_store(street_index):
    index = ReferenceIndex.open(street_index.index_path)
    try:
        assert index.manifest.descriptor == "xfeat-vlad"
        assert index.manifest.dim == 512
        assert index.manifest.count == len(index) == 10
        entries = index.entries([1, 2])
        picture = index.load_picture(entries[1])
        assert picture.ndim == 3 and max(picture.shape[:2]) <= 1024
    finally:
        index.close()


def test_rebuilding_the_same_photos_adds_nothing(street_index, street):
    directory = street_index.index_path
    before = Manifest.load(directory)
    scan = scan_source(directory.parent / "refs.csv")
    report = build_index(directory, [scan], EngineConfig())
    assert report.new_records == 0
    assert report.indexed_now == 0
    assert report.duplicates == len(scan.records)
    assert Manifest.load(directory).count == before.count


def test_interrupted_build_resumes_without_duplicates(tmp_path, street):
    directory = tmp_path / "index"
    scan = _records(street, tmp_path, street[:8])
    build_index(directory, [scan], EngineConfig())
    # A crash after the vectors were saved but before rows were marked: rows stay pending.
    with sqlite3.connect(directory / CATALOG_NAME) as db:
        db.execute("UPDATE refs SET status='pending', store_path=NULL WHERE id > 4")
    report = build_index(directory, [scan], EngineConfig())
    assert report.indexed_now == 4
    index = ReferenceIndex.open(directory)
    try:
        assert len(index.vectors) == 8  # replaced in place, not added twice
        assert len(index) == 8
    finally:
        index.close()


def test_index_add_appends_with_the_same_vocabulary(tmp_path, street):
    directory = tmp_path / "index"
    build_index(directory, [_records(street, tmp_path, street[:6])], EngineConfig())
    first = Manifest.load(directory)
    report = build_index(directory, [_records(street, tmp_path, street[6:9])], EngineConfig(),
                         must_exist=True)
    second = Manifest.load(directory)
    assert report.indexed_now == 3
    assert second.count == 9
    assert second.descriptor_fingerprint == first.descriptor_fingerprint
    assert second.version != first.version


def test_index_add_to_a_missing_index_is_refused(tmp_path, street):
    with pytest.raises(IndexMissing, match="geosleuth index build"):
        build_index(tmp_path / "nothing", [_records(street, tmp_path, street[:2])],
                    EngineConfig(), must_exist=True)


def test_building_with_another_descriptor_is_refused(street_index):
    with pytest.raises(DescriptorMismatch, match=r"'xfeat-vlad'.*'cosplace'"):
        build_index(street_index.index_path, [], EngineConfig(), descriptor_name="cosplace")


def test_opening_a_missing_index_names_the_fix(tmp_path):
    with pytest.raises(IndexMissing, match="geosleuth index build --index"):
        ReferenceIndex.open(tmp_path / "none")


def test_an_index_whose_photos_all_failed_is_reported_empty(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    scan = SourceScan((ReferenceRecord("local", "broken", 55.0, 13.0, str(broken)),))
    # A vocabulary cannot be learned from nothing; the error must say why, not crash obscurely.
    with pytest.raises(GeoSleuthError, match="no reference photos could be read"):
        build_index(tmp_path / "index", [scan], EngineConfig())


def test_unreadable_reference_is_recorded_not_fatal(tmp_path, street):
    scan = _records(street, tmp_path, street[:5])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg_bytes(street[5].rgb)[:2000])
    records = (*scan.records, ReferenceRecord("synthetic", "broken", 52.52, 13.40, str(broken)))
    report = build_index(tmp_path / "index", [SourceScan(records)], EngineConfig())
    assert report.indexed_now == 5
    assert report.failed_now == 1
    assert "truncated" in report.failures[0][1].lower()


def test_area_filter_gives_a_full_top_n_inside_the_area(street_index, street):
    index = ReferenceIndex.open(street_index.index_path)
    try:
        lats = np.array([v.lat for v in street])
        lons = np.array([v.lon for v in street])
        # The last third of the street only.
        area = SearchArea.from_bbox(float(lons[9:].min()) - 1e-5, float(lats.min()) - 1e-3,
                                    float(lons[9:].max()) + 1e-5, float(lats.max()) + 1e-3)
        inside = set(int(i) for i in np.flatnonzero(area.contains(
            np.array([e.lat for e in index.entries(range(1, 11)).values()]),
            np.array([e.lon for e in index.entries(range(1, 11)).values()]))) + 1)
        vector = np.ones(512, np.float32) / np.sqrt(512)
        hits = index.search(vector, 100, ef=50, area=area)
        assert {ref_id for ref_id, _ in hits} == inside
        assert len(hits) == len(inside) > 0
    finally:
        index.close()


def test_an_area_with_no_references_is_refused(street_index):
    index = ReferenceIndex.open(street_index.index_path)
    try:
        with pytest.raises(SearchAreaError, match="no reference photos"):
            index.search(np.ones(512, np.float32), 10, ef=50,
                         area=SearchArea.around(-33.9, 18.4, 1000))
    finally:
        index.close()


def test_an_index_with_no_vectors_is_reported_empty(tmp_path, street_index):
    directory = tmp_path / "copy"
    directory.mkdir()
    manifest = Manifest.load(street_index.index_path)
    replace(manifest, count=0).save(directory)
    with pytest.raises(EmptyIndex, match="holds no images"):
        ReferenceIndex.open(directory)


def test_a_small_area_is_scored_exactly_from_the_stored_rows(street_index, street):
    index = ReferenceIndex.open(street_index.index_path)
    try:
        area = SearchArea.from_bbox(min(v.lon for v in street) - 1e-3,
                                    min(v.lat for v in street) - 1e-3,
                                    max(v.lon for v in street) + 1e-3,
                                    max(v.lat for v in street) + 1e-3)
        inside = index.vectors.area_labels(area)
        stored = index.vectors.vectors_of(inside)
        query = stored[3] + 0.5 * stored[5]
        query /= np.linalg.norm(query)
        hits = index.search(query, 4, ef=50, area=area)
        expected = inside[np.argsort(-(stored @ query))[:4]]
        assert [ref_id for ref_id, _ in hits] == expected.tolist()
        assert hits[0][1] == pytest.approx(float(stored[3] @ query), abs=1e-2)  # float16 rows
    finally:
        index.close()


def test_an_index_without_rows_searches_areas_by_filter_until_a_build_adds_them(tmp_path,
                                                                               street_index,
                                                                               street):
    import shutil

    from engine.index.vector_rows import ROWS_NAME

    directory = tmp_path / "older"
    shutil.copytree(street_index.index_path, directory)
    (directory / ROWS_NAME).unlink()  # as an index built before vectors.f16 existed
    area = SearchArea.around(street[0].lat, street[0].lon, 10_000)
    query = np.ones(512, np.float32) / np.sqrt(512)
    index = ReferenceIndex.open(directory)
    try:
        by_filter = index.search(query, 5, ef=200, area=area)
    finally:
        index.close()
    build_index(directory, [], replace(street_index, index_path=directory))
    assert (directory / ROWS_NAME).stat().st_size >= 11 * 512 * 2  # labels 1..10, float16
    index = ReferenceIndex.open(directory)
    try:
        exact = index.search(query, 5, ef=200, area=area)
    finally:
        index.close()
    assert [i for i, _ in exact] == [i for i, _ in by_filter]
    assert [s for _, s in exact] == pytest.approx([s for _, s in by_filter], abs=1e-2)
