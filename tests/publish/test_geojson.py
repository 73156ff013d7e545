"""The GeoJSON writer: the same values as GEOS's writer (shapely.to_geojson) and the stdlib json,
whatever the geometry type, nesting, dimension or emptiness."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from landcloud.publish.geojson import encode_features, encode_json, geometry_texts
from landcloud.store.features import StoredFeature

SHAPES = [
    "POINT (1 2)",
    "POINT EMPTY",
    "POINT Z (1 2 3)",
    "POINT M (1 2 3)",
    "POINT (1e-05 1e+16)",
    "POINT (-0.0 0.30000000000000004)",
    "LINESTRING (0 0, 1 1.5)",
    "LINESTRING EMPTY",
    "LINEARRING (0 0, 1 0, 1 1, 0 0)",
    "POLYGON EMPTY",
    "POLYGON ((0 0, 1 0, 1 1, 0 0), (0.1 0.1, 0.2 0.1, 0.2 0.2, 0.1 0.1))",
    "POLYGON Z ((0 0 1, 1 0 1, 1 1 1, 0 0 1))",
    "MULTIPOINT (1 2, 3 4)",
    "MULTIPOINT EMPTY",
    "MULTILINESTRING ((0 0, 1 1), (2 2, 3 3, 4 4))",
    "MULTILINESTRING (EMPTY, (0 0, 1 1))",
    "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5), (5.1 5.1, 5.2 5.1, 5.2 5.2, 5.1 5.1)))",
    "MULTIPOLYGON (EMPTY, ((0 0, 1 0, 1 1, 0 0)))",
    "GEOMETRYCOLLECTION (POINT (1 2), LINESTRING (0 0, 1 1))",
    "GEOMETRYCOLLECTION EMPTY",
]


def _same(ours: list[str | None], geoms: np.ndarray) -> None:
    for text, geom in zip(ours, geoms):
        if geom is None:
            assert text is None
        else:
            assert json.loads(text) == json.loads(shapely.to_geojson(geom)), shapely.to_wkt(geom)


def test_every_kind_of_geometry_as_geos_writes_it() -> None:
    geoms = np.array([shapely.from_wkt(w) for w in SHAPES] + [None], dtype=object)
    _same(geometry_texts(geoms), geoms)
    for i in range(len(geoms)):  # alone too: each type group, and the fallback, on its own
        _same(geometry_texts(geoms[i : i + 1]), geoms[i : i + 1])
    assert geometry_texts(np.array([], dtype=object)) == []


coordinate = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e7, max_value=1e7) | st.floats(
    allow_nan=False, allow_infinity=False, min_value=-1e-3, max_value=1e-3
)
position = st.tuples(coordinate, coordinate)


@st.composite
def geometries(draw: st.DrawFn) -> shapely.Geometry:
    kind = draw(st.sampled_from(["point", "line", "polygon", "multipoint", "multiline", "multipolygon"]))

    def ring() -> list[tuple[float, float]]:
        pts = draw(st.lists(position, min_size=3, max_size=8))
        return [*pts, pts[0]]

    if kind == "point":
        return shapely.Point(draw(position))
    if kind == "line":
        return shapely.LineString(draw(st.lists(position, min_size=2, max_size=12)))
    if kind == "multipoint":
        return shapely.MultiPoint(draw(st.lists(position, min_size=1, max_size=6)))
    if kind == "multiline":
        return shapely.MultiLineString([draw(st.lists(position, min_size=2, max_size=6)) for _ in range(draw(st.integers(1, 4)))])
    polygons = [shapely.Polygon(ring(), [ring() for _ in range(draw(st.integers(0, 2)))]) for _ in range(draw(st.integers(1, 3)))]
    return polygons[0] if kind == "polygon" else shapely.MultiPolygon(polygons)


@settings(max_examples=200, deadline=None)
@given(st.lists(geometries() | st.none(), max_size=12))
def test_random_mixtures_as_geos_writes_them(geoms: list[shapely.Geometry | None]) -> None:
    arr = np.array(geoms + [None], dtype=object)[:-1]  # an object array even when every item is None
    _same(geometry_texts(arr), arr)


@pytest.mark.parametrize(
    "props",
    [
        {"DLBM": "0101", "名称": "道里区", "TBMJ": 11645107.44, "SJNF": 2024, "n": None, "ok": True},
        {"big": 123456789012345678901234567890, "tiny": 1e-05, "line": "a\nb\u2028\x00\"\\"},  # orjson refuses the big integer
        {},
    ],
)
def test_feature_text_has_the_values_json_gives(props: dict) -> None:
    feat = StoredFeature(1, "k-1", props, shapely.to_wkb(shapely.Point(126.5, 45.75)), 1, None, None)
    (text,) = encode_features([feat])
    doc = json.loads(text)
    assert doc == {"type": "Feature", "id": "k-1", "properties": json.loads(json.dumps(props)),
                   "geometry": {"type": "Point", "coordinates": [126.5, 45.75]}}
    assert json.loads(encode_json(props)) == props
    (only,) = encode_features([feat], properties=["DLBM"], skip_geometry=True)
    assert json.loads(only) == {"type": "Feature", "id": "k-1", "properties": {k: v for k, v in props.items() if k == "DLBM"},
                                "geometry": None}
