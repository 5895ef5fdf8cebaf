"""Test-time views: crops and mirror images of the query, and merging their searches."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.config import QueryConfig
from engine.errors import ConfigError
from engine.geo import haversine_m
from engine.locator import Locator
from engine.query_views import (
    check_query_config,
    combine_views,
    merge_hits,
    query_views,
    views_per_query,
)
from tests.conftest import jpeg_bytes


def test_views_are_centre_crops_each_followed_by_its_mirror():
    picture = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    config = QueryConfig(flip=True, crops=(1.0, 0.5))
    views = query_views(picture, config)
    assert len(views) == views_per_query(config) == 4
    assert views[0].shape == (10, 20, 3) and views[2].shape == (5, 10, 3)
    np.testing.assert_array_equal(views[1], picture[:, ::-1])
    np.testing.assert_array_equal(views[2], picture[2:7, 5:15])
    np.testing.assert_array_equal(views[3], picture[2:7, 5:15][:, ::-1])


def test_mirror_pairs_are_averaged_and_renormalised_and_empty_rows_stay_empty():
    config = QueryConfig(flip=True, crops=(1.0, 0.7))
    rows = np.array([[1, 0], [0, 1], [3, 0], [3, 0], [0, 0], [0, 0], [0, 2], [0, 2]], np.float32)
    combined = combine_views(rows, 2, config)
    assert combined.shape == (2, 2, 2)
    np.testing.assert_allclose(combined[0, 0], [2 ** -0.5, 2 ** -0.5], atol=1e-6)
    np.testing.assert_allclose(combined[0, 1], [1, 0])
    np.testing.assert_array_equal(combined[1, 0], [0, 0])
    np.testing.assert_allclose(combined[1, 1], [0, 1])


def test_merged_searches_keep_each_references_best_similarity():
    merged = merge_hits([[(1, 0.9), (2, 0.5)], [(2, 0.8), (3, 0.4)]], top_n=2)
    assert merged == [(1, 0.9), (2, 0.8)]


@pytest.mark.parametrize("crops", [(), (1.0, 1.5), (0.1,)])
def test_bad_crops_are_refused_by_name(crops):
    with pytest.raises(ConfigError, match=r"query\.crops"):
        check_query_config(QueryConfig(crops=crops))


def test_the_locator_searches_every_crop_and_still_finds_the_street(street_index, street_queries):
    config = replace(street_index, query=QueryConfig(flip=True, crops=(1.0, 0.7)))
    locator = Locator.open(config)
    try:
        view = street_queries[0]
        query = locator.prepare(jpeg_bytes(view.rgb))
        vectors = locator.describe([query])
        assert vectors.shape == (1, 2, locator.descriptor.dim)
        result = locator.finish(query, vectors[0])
    finally:
        locator.close()
    assert result.located
    assert haversine_m(view.lat, view.lon, result.lat, result.lon) <= 25.0


def test_the_whole_photo_view_is_the_photo_itself_so_its_features_are_shared():
    """Descriptor and verifier share one SIFT (or XFeat) run per photo, keyed on the picture."""
    picture = np.zeros((40, 60, 3), np.uint8)
    assert query_views(picture, QueryConfig())[0] is picture
    assert query_views(picture, QueryConfig(crops=(1.0, 0.5)))[1] is not picture
