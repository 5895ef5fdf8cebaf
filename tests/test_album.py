"""Albums and videos fused into one answer (engine/album.py): made-up evidence, real photos."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.album import AlbumPhoto, album_from_json, fuse, is_album_json
from engine.calibration import SHIPPED, verified_from_matches
from engine.config import EstimateConfig
from engine.estimate import InlierCurve, estimate
from engine.geo import haversine_m
from engine.locator import Locator
from engine.results import LocateResult, Match, Status

CURVE = SHIPPED["xfeat-cascade"]  # min 0, midpoint 56, scale 8: 40 inliers alone is a lead
CONFIG = EstimateConfig()
X = (55.7000, 13.1900)
Y = (55.7100, 13.2100)  # about 1.7 km from X
Z = (55.7200, 13.2300)
_ids = iter(range(1, 10_000))


def _match(at: tuple[float, float], inliers: int, north_m: float = 0.0,
           place: int | None = None) -> Match:
    """A verified reference; its own place unless `place` groups it (as the search stage
    groups references within 40 m)."""
    ref = next(_ids)
    return Match(ref, "test", str(ref), at[0] + north_m / 111_000, at[1], 0.5, inliers, 0.5,
                 place=ref if place is None else place)


def _photo(*matches: Match, label: str = "photo", time_s: float | None = None) -> AlbumPhoto:
    """A photo's own answer, estimated from its evidence as the locator would."""
    answer = estimate(verified_from_matches(matches), CONFIG, CURVE)
    result = LocateResult(answer.status, answer.lat, answer.lon, answer.confidence,
                          answer.radius_m, answer.alternatives, matches, None, {}, "d", "v", "i")
    return AlbumPhoto(label, result, time_s)


def test_photos_too_weak_alone_place_the_album_together():
    photos = [_photo(_match(X, 42)), _photo(_match(X, 40, north_m=12)),
              _photo(_match(X, 38, north_m=-8)), _photo()]
    assert not any(p.result.located for p in photos)
    album = fuse(photos, CONFIG, CURVE)
    assert album.located and haversine_m(album.lat, album.lon, *X) < 15
    assert album.confidence > max(p.result.confidence for p in photos)
    assert [p.agrees for p in album.photos] == [True, True, True, None]
    assert album.best_photo == 0 and album.photos[0].inliers == 42


def test_a_place_seen_by_several_photos_beats_a_place_seen_by_one():
    photos = [_photo(_match(X, 62), _match(Y, 50)), _photo(_match(Y, 52)),
              _photo(_match(Y, 47, north_m=10))]
    assert haversine_m(photos[0].result.lat, photos[0].result.lon, *X) < 1  # alone: X
    album = fuse(photos, CONFIG, CURVE)
    assert album.located and haversine_m(album.lat, album.lon, *Y) < 15
    assert album.confidence > photos[0].result.confidence
    assert album.best_photo == 1


def test_a_photo_placed_elsewhere_is_shown_as_disagreeing():
    photos = [_photo(_match(X, 80)), _photo(_match(X, 75, north_m=5)), _photo(_match(Z, 70))]
    album = fuse(photos, CONFIG, CURVE)
    assert album.located and haversine_m(album.lat, album.lon, *X) < 10
    assert [p.agrees for p in album.photos] == [True, True, False]
    assert album.photos[2].inliers == 0
    assert haversine_m(album.photos[2].result.lat, album.photos[2].result.lon, *Z) < 1


def test_one_photo_is_its_own_album():
    photo = _photo(_match(X, 70, place=1), _match(X, 30, north_m=20, place=1), _match(Y, 25))
    album = fuse([photo], CONFIG, CURVE)
    assert (album.status, album.lat, album.lon) == (photo.result.status, photo.result.lat,
                                                   photo.result.lon)
    assert album.confidence == pytest.approx(photo.result.confidence)


def test_frames_that_move_in_order_are_a_track_and_jumps_are_rivals():
    walk = [_photo(_match(X, 90, north_m=60 * i), time_s=5.0 * i) for i in range(4)]
    album = fuse(walk, CONFIG, CURVE)
    assert [t.time_s for t in album.track] == [0.0, 5.0, 10.0, 15.0]
    assert album.located and album.best_photo in {t.photo for t in album.track}
    # The same places 1.7 km apart within a second: no camera moved so; no track.
    jumping = [_photo(_match(X, 90), time_s=0.0), _photo(_match(Y, 90), time_s=1.0)]
    assert fuse(jumping, CONFIG, CURVE).track == ()
    # Without times (an album), never a track.
    assert fuse([replace(p, time_s=None) for p in walk], CONFIG, CURVE).track == ()


def test_nothing_to_go_on_is_no_match_with_every_photo_listed():
    album = fuse([_photo(), _photo()], CONFIG, CURVE)
    assert album.status is Status.NO_MATCH and album.lat is None and album.best_photo is None
    assert [p.agrees for p in album.photos] == [None, None]


def test_the_json_round_trips_and_names_itself_an_album():
    walk = [_photo(_match(X, 90, north_m=60 * i), label=f"0:0{i}", time_s=float(i))
            for i in range(3)]
    album = fuse(walk, CONFIG, CURVE)
    data = json.loads(json.dumps(album.to_json()))
    assert is_album_json(data) and not is_album_json(walk[0].result.to_json())
    again = album_from_json(data)
    assert again.track == album.track and again.best_photo == album.best_photo
    assert [p.label for p in again.photos] == ["0:00", "0:01", "0:02"]
    assert again.photos[1].result.matches == album.photos[1].result.matches


@pytest.mark.real_data
def test_three_held_out_lund_photos_are_placed_together(lund_index, lund_split):
    """Real photos: an album of held-out frames of one stretch of street, placed where they
    were taken; one photo alone gives the same answer as fusing it alone."""
    _, held_out = lund_split
    album_frames = held_out[:3]
    locator = Locator.open(lund_index)
    try:
        photos = [AlbumPhoto(f"photo {i}", locator.locate(Path(r.image_path).read_bytes()))
                  for i, r in enumerate(album_frames, 1)]
        album = fuse(photos, locator.config.estimate, locator.curve)
        single = fuse(photos[:1], locator.config.estimate, locator.curve)
    finally:
        locator.close()
    truth_lat = sum(r.lat for r in album_frames) / 3
    truth_lon = sum(r.lon for r in album_frames) / 3
    spread = max(haversine_m(r.lat, r.lon, truth_lat, truth_lon) for r in album_frames)
    assert album.located
    assert haversine_m(album.lat, album.lon, truth_lat, truth_lon) <= 25 + spread
    assert album.confidence >= max(p.result.confidence for p in photos) - 1e-6
    assert all(p.agrees for p in album.photos)
    first = photos[0].result
    assert single.status is first.status
    assert haversine_m(single.lat, single.lon, first.lat, first.lon) < 1.0


def test_a_curve_with_a_floor_still_needs_one_photo_over_it():
    strict = InlierCurve(min_inliers=30, midpoint=20.0, scale=4.0)
    photos = [_photo(_match(X, 25)), _photo(_match(X, 25, north_m=5))]
    # 25 + 25 * 0.5 would be far past the midpoint, but no photo reaches the floor alone:
    # under-floor counts are chance, and chance does not add up.
    assert not fuse(photos, CONFIG, strict).located
