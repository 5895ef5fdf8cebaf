"""Reading case exports back the way map tools would, with the RFC 7946 rules checked."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from itertools import pairwise
from typing import Any

import geojson

KML = "{http://www.opengis.net/kml/2.2}"


def signed_area(ring: list[list[float]]) -> float:
    """The shoelace sum over (lon, lat): positive for a counter-clockwise ring."""
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairwise(ring)) / 2


def geojson_features(text: str) -> list[dict[str, Any]]:
    """The features of a GeoJSON export, once it is valid and follows RFC 7946."""
    checked = geojson.loads(text)  # it rounds coordinates to 6 decimals: checked, not read
    assert checked.is_valid, checked.errors()
    document = json.loads(text)
    assert document["type"] == "FeatureCollection"
    assert "crs" not in document  # RFC 7946 §4: WGS 84 only, no crs member
    for feature in document["features"]:
        for geometry in feature["geometry"]["geometries"]:
            _check_geometry(geometry)
    return document["features"]


def _check_geometry(geometry: dict[str, Any]) -> None:
    kind, coordinates = geometry["type"], geometry["coordinates"]
    if kind == "Point":
        positions = [coordinates]
    elif kind == "LineString":
        positions = coordinates
    else:
        assert kind == "Polygon", kind
        positions = [p for ring in coordinates for p in ring]
    for lon, lat in positions:
        assert -180 <= lon <= 180 and -90 <= lat <= 90, (lon, lat)
        assert all(len(repr(v).split(".")[-1]) <= 7 for v in (lon, lat)), (lon, lat)
    if kind == "Polygon":
        [outer] = coordinates
        assert outer[0] == outer[-1] and len(outer) >= 4  # closed (§3.1.6)
        assert signed_area(outer) > 0  # exterior rings counter-clockwise (§3.1.6)


def kml_placemarks(text: str | bytes) -> list[ET.Element]:
    """The Placemarks of a KML export (it must parse as XML in the KML 2.2 namespace)."""
    root = ET.fromstring(text)
    assert root.tag == f"{KML}kml"
    return root.findall(f".//{KML}Placemark")


def kml_point(placemark: ET.Element) -> tuple[float, float]:
    """A Placemark's point as (lon, lat), the order KML writes."""
    text = placemark.find(f".//{KML}Point/{KML}coordinates").text
    lon, lat, *_ = (float(v) for v in text.strip().split(","))
    return lon, lat
