"""What `/cover` reads as its area, and the store's memory of covers and waiting photos."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.chat.cover_area import CoverArea, PlaceChoice, read_cover_area
from bot.chat.store import Store
from engine.cover import area_km2
from engine.errors import SearchAreaError

CAP_KM2 = 25.0


def test_lund_is_lund_in_sweden_cut_to_the_cap_and_said_so():
    area = read_cover_area("Lund", CAP_KM2)
    assert isinstance(area, CoverArea) and area.label == "Lund, Sweden"
    assert area.bbox.contains(55.6990, 13.1950)  # the walk in ../shared/data/lund
    assert 20 < area_km2(area.bbox) <= CAP_KM2
    assert "larger than a cover may be (25 km²)" in area.note


def test_namesakes_of_comparable_size_are_asked_back_and_a_country_settles_it():
    choice = read_cover_area("Springfield", CAP_KM2)
    assert isinstance(choice, PlaceChoice) and 3 <= len(choice.places) <= 5
    assert {p.admin for p in choice.places} >= {"Missouri", "Massachusetts", "Illinois"}
    assert isinstance(read_cover_area("Paris", CAP_KM2), CoverArea)  # one Paris of its size
    village = read_cover_area("Springfield, IL", 1000.0)
    assert isinstance(village, CoverArea) and village.note == ""


def test_a_point_with_a_radius_and_a_box_are_read_and_nonsense_is_one_sentence():
    point = read_cover_area("55.70,13.19 2", CAP_KM2)
    assert isinstance(point, CoverArea) and point.bbox.contains(55.70, 13.19)
    assert area_km2(point.bbox) == pytest.approx(16, rel=0.05)
    box = read_cover_area("13.18,55.69,13.21,55.71", CAP_KM2)
    assert isinstance(box, CoverArea) and box.bbox.as_list() == [13.18, 55.69, 13.21, 55.71]
    for text in ("", "13.21,55.69,13.18,55.71", "55.70,13.19 0", "Xqzzyville"):
        with pytest.raises(SearchAreaError) as refused:
            read_cover_area(text, CAP_KM2)
        assert str(refused.value).count(". ") <= 1


def test_the_store_keeps_watches_and_finds_a_chats_waiting_photos(tmp_path):
    no_match = json.dumps({"status": "no_match", "lat": None, "lon": None,
                           "alternatives": [{"lat": 55.7, "lon": 13.19}]})
    album = json.dumps({"kind": "album", "status": "no_match"})

    async def scenario():
        async with await Store.open(tmp_path / "bot.sqlite") as store:
            ids = []
            for digest, result in (("a", no_match), ("b", album), ("a", no_match)):
                request_id = await store.start_request("telegram", "c1", "u1", "Ann", "group",
                                                       digest, None, '{"label": "Lund"}')
                await store.finish_request(request_id, result, "v1", "k1")
                ids.append(request_id)
            waiting = await store.unplaced_requests("telegram", "c1", 7.0, 20)
            watch = await store.watch_cover(4, "telegram", "c1", "group", "u1", "c1:9", "Lund")
            opened = await store.open_cover_watches("telegram")
            first, again = await store.cover_reported(watch.id), await store.cover_reported(
                watch.id)
            after = await store.open_cover_watches("telegram")
            await store.forget_chat("telegram", "c1")
            gone = await store.cover_watch("telegram", "c1", 4)
            return ids, waiting, opened, first, again, after, gone

    ids, waiting, opened, first, again, after, gone = asyncio.run(scenario())
    # The album is not one photo; the first "a" has a later answer for the same photo.
    assert [r.id for r in waiting] == [ids[2]] and waiting[0].area_json == '{"label": "Lund"}'
    assert [(w.job_id, w.message_ref) for w in opened] == [(4, "c1:9")]
    assert (first, again, after, gone) == (True, False, [], None)
