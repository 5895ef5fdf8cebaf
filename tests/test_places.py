"""The offline gazetteer: naming the town near an answer and reading typed search areas."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.chat.places import (
    POINT_RADIUS_M,
    AreaHint,
    Gazetteer,
    NearbyPlace,
    fold,
    gazetteer,
    parse_area_hint,
    search_radius_m,
)
from engine.errors import SearchAreaError
from engine.geo import haversine_m

LUND_PHOTOS = (55.6985, 13.1950)
AMSTERDAM = (52.37, 4.89)


@pytest.fixture(scope="module")
def places() -> Gazetteer:
    return gazetteer()


def centre_km_from(hint: AreaHint, lat: float, lon: float) -> float:
    assert hint.area.centre is not None
    return haversine_m(*hint.area.centre, lat, lon) / 1000


def test_the_gazetteer_is_loaded_once(places):
    assert gazetteer() is places
    assert len(places) > 100_000


def test_nearest_place_to_the_lund_photos_is_lund(places):
    place = places.nearest_place(*LUND_PHOTOS)
    assert place is not None
    assert (place.name, place.country, place.country_code) == ("Lund", "Sweden", "SE")
    assert place.distance_m < 3_000
    assert place.describe().startswith("Lund, Sweden (")


def test_mid_atlantic_has_no_town_nearby(places):
    assert places.nearest_place(30.0, -40.0) is None


def test_nearby_place_is_described_with_a_readable_distance():
    lund = dict(name="Lund", country="Sweden", country_code="SE", admin=None, lat=55.7, lon=13.19)
    place = NearbyPlace(**lund, population=87244, distance_m=1234.0)
    assert place.describe() == "Lund, Sweden (1.2 km)"
    assert replace(place, distance_m=812.0).describe() == "Lund, Sweden (810 m)"
    texas = replace(place, name="Paris", country="United States", admin="Texas")
    assert texas.describe().startswith("Paris, Texas, United States (")


@pytest.mark.parametrize(
    ("typed", "name", "country_code"),
    [
        ("amsterdam", "Amsterdam", "NL"),
        ("Lund, Sweden", "Lund", "SE"),
        ("lund, se", "Lund", "SE"),
        ("Paris", "Paris", "FR"),
        ("Paris, US", "Paris", "US"),
        ("Paris, United States", "Paris", "US"),
        ("Paris, Texas", "Paris", "US"),
        ("New York", "New York City", "US"),
        ("São Paulo", "São Paulo", "BR"),
        ("sao paulo", "São Paulo", "BR"),
        ("SÃO  PAULO", "São Paulo", "BR"),
        ("Saint Etienne", "Saint-Étienne", "FR"),
        ("Cologne", "Köln", "DE"),
        ("Москва", "Moscow", "RU"),
    ],
)
def test_typed_place_names_resolve_to_the_most_likely_place(places, typed, name, country_code):
    place = places.resolve(typed)
    assert place is not None
    assert (place.name, place.country_code) == (name, country_code)


def test_a_country_qualifier_picks_the_largest_place_of_that_name_there(places):
    texas = places.resolve("Paris, US")
    assert texas is not None
    assert texas.admin == "Texas"
    assert texas.describe() == "Paris, Texas, United States"
    assert texas.population < places.resolve("Paris").population


@pytest.mark.parametrize("typed", ["Xyzzy", "", "  ", ",", "Paris, Narnia", "Lund, Brazil"])
def test_unknown_places_resolve_to_nothing(places, typed):
    assert places.resolve(typed) is None


def test_search_radius_grows_with_population(places):
    assert search_radius_m(500) == 3_000
    assert 20_000 <= search_radius_m(9_000_000) <= 30_000
    lund, paris = places.resolve("Lund, Sweden"), places.resolve("Paris")
    assert lund.search_radius_m < paris.search_radius_m
    assert lund.search_radius_m == search_radius_m(lund.population)


def test_folding_ignores_case_accents_and_punctuation():
    assert fold("  SÃO   Paulo ") == "sao paulo"
    assert fold("'s-Hertogenbosch") == fold("s Hertogenbosch")
    assert fold("St. Louis") == "st louis"
    assert fold("KØBENHAVN") == "kobenhavn"


@pytest.mark.parametrize(
    ("typed", "lat", "lon", "radius_m", "label"),
    [
        ("52.37,4.89", *AMSTERDAM, POINT_RADIUS_M, "within 2 km of 52.37000, 4.89000"),
        ("52.37, 4.89 5km", *AMSTERDAM, 5_000, "within 5 km of 52.37000, 4.89000"),
        ("52.37 4.89 500m", *AMSTERDAM, 500, "within 500 m of 52.37000, 4.89000"),
        ("-33.8688, 151.2093 1.5 km", -33.8688, 151.2093, 1_500, None),
        ("52.37,4.89 2 miles", *AMSTERDAM, 3_218.688, None),
        ("/locate 52.37,4.89 5km", *AMSTERDAM, 5_000, None),
        ("near 52.37,4.89 5km", *AMSTERDAM, 5_000, None),
        ("52.37,4.89,5km", *AMSTERDAM, 5_000, None),
        ("/locate@geosleuth_bot 52.37,4.89 5km", *AMSTERDAM, 5_000, None),
    ],
)
def test_coordinates_become_a_circle(typed, lat, lon, radius_m, label):
    hint = parse_area_hint(typed)
    assert hint is not None
    assert hint.area.centre == pytest.approx((lat, lon))
    assert hint.area.radius_m == pytest.approx(radius_m)
    if label is not None:
        assert hint.label == label


@pytest.mark.parametrize(
    ("typed", "radius_m"),
    [
        ("Amsterdam 5km", 5_000),
        ("amsterdam 5 KM", 5_000),
        ("near Amsterdam 2 km", 2_000),
        ("within 5 km of Amsterdam", 5_000),
        ("/locate@geosleuth_bot Amsterdam 5km", 5_000),
    ],
)
def test_a_place_and_radius_become_a_circle_around_the_place(places, typed, radius_m):
    hint = parse_area_hint(typed, places)
    assert hint is not None
    assert centre_km_from(hint, *AMSTERDAM) < 3
    assert hint.area.radius_m == radius_m
    assert hint.label == f"within {radius_m // 1000} km of Amsterdam, The Netherlands"


def test_a_place_alone_gets_a_radius_that_fits_its_size(places):
    hint = parse_area_hint("Amsterdam", places)
    assert hint is not None
    assert hint.area.radius_m == places.resolve("Amsterdam").search_radius_m
    assert hint.label.endswith("of Amsterdam, The Netherlands")


def test_near_lund_is_lund_sweden(places):
    hint = parse_area_hint("near Lund 2 km", places)
    assert hint is not None
    assert centre_km_from(hint, *LUND_PHOTOS) < 3
    assert hint.area.radius_m == 2_000
    assert hint.label == "within 2 km of Lund, Sweden"
    assert hint.area.contains([LUND_PHOTOS[0]], [LUND_PHOTOS[1]])[0]


def test_a_bbox_becomes_a_box():
    hint = parse_area_hint("bbox 13.1,55.6,13.3,55.8")
    assert hint is not None
    area = hint.area
    assert (area.west, area.south, area.east, area.north) == (13.1, 55.6, 13.3, 55.8)
    assert area.centre is None
    assert hint.label == "in the box 13.1,55.6,13.3,55.8 (W,S,E,N)"
    assert parse_area_hint("BBOX 13.1, 55.6, 13.3, 55.8").area == area


@pytest.mark.parametrize("typed", ["", "   ", "/locate", "/locate@geosleuth_bot  "])
def test_nothing_typed_means_no_area(typed):
    assert parse_area_hint(typed) is None


def test_an_unknown_place_is_refused_with_what_to_type_instead(places):
    with pytest.raises(SearchAreaError) as refused:
        parse_area_hint("Xyzzy", places)
    assert str(refused.value) == (
        "I don't know a place called 'Xyzzy'. Try a city name, or coordinates like 52.37,4.89 5km."
    )


def test_an_unknown_country_qualifier_is_refused_with_a_hint(places):
    with pytest.raises(SearchAreaError, match="After a comma, give a country name or code"):
        parse_area_hint("Paris, Narnia 5km", places)


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("Amsterdam 0km", "must be more than 0"),
        ("52.37,4.89 -5km", "must be more than 0"),
        ("Amsterdam 600 km", "600 km is too large; use at most 500 km"),
        ("52.37,4.89 501km", "too large"),
    ],
)
def test_a_radius_out_of_range_is_refused(typed, reason):
    with pytest.raises(SearchAreaError, match=reason):
        parse_area_hint(typed)


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("95.0,4.89", "not a valid latitude,longitude"),
        ("52.37,", "can't read '52.37,' as coordinates"),
        ("5km", "Around where?"),
        ("bbox 13.3,55.6,13.1,55.8", "W < E"),
    ],
)
def test_malformed_areas_are_refused_with_reason(typed, reason):
    with pytest.raises(SearchAreaError, match=reason):
        parse_area_hint(typed)
