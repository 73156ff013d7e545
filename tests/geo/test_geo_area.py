"""Ellipsoidal areas: geodesic (GeographicLib) and the 椭球面积 trapezoid series."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod, Transformer

from landcloud.geo.area import (
    M2_PER_HA,
    M2_PER_MU,
    ellipsoidal_area,
    ellipsoidal_areas,
    to_hectares,
    to_mu,
    trapezoid_area,
)
from landcloud.geo.ellipsoid import CGCS2000_A, CGCS2000_F, XIAN80_A, XIAN80_F


def exact_quadrangle(lat1: float, lat2: float, dlon: float, a: float = CGCS2000_A, f: float = CGCS2000_F) -> float:
    """Closed-form area between two parallels and two meridians on an ellipsoid of revolution."""
    b = a * (1 - f)
    e2 = f * (2 - f)
    e = math.sqrt(e2)

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    return b * b * math.radians(dlon) / 2 * (q(lat2) - q(lat1))


CELL = shapely.box(126.0, 45.0, 127.0, 46.0)
EXACT_CELL = exact_quadrangle(45.0, 46.0, 1.0)


def test_exact_cell_value() -> None:
    # Sanity of the independent reference: ~8.69e9 m², and a sphere of the authalic radius agrees to 1e-3.
    assert 8.6e9 < EXACT_CELL < 8.8e9
    r_authalic = 6371007.2
    sphere = r_authalic**2 * math.radians(1.0) * (math.sin(math.radians(46)) - math.sin(math.radians(45)))
    assert EXACT_CELL == pytest.approx(sphere, rel=3e-3)


def test_trapezoid_series_matches_closed_form() -> None:
    x, y = np.asarray(CELL.exterior.coords).T
    assert trapezoid_area(x, y, CGCS2000_A, CGCS2000_F) == pytest.approx(EXACT_CELL, rel=1e-11)


def test_cell_geodesic_vs_trapezoid() -> None:
    # Densified, the geodesic polygon follows the parallels: both methods agree to far below 1e-6.
    dense = shapely.segmentize(CELL, 0.01)
    geo = ellipsoidal_area(dense)
    x, y = np.asarray(CELL.exterior.coords).T
    assert geo == pytest.approx(trapezoid_area(x, y), rel=1e-6)
    assert geo == pytest.approx(EXACT_CELL, rel=1e-8)
    # With only 4 vertices the northern/southern edges are geodesics, not parallels:
    # a 1°-wide cell differs by ~1.3e-5. (Parcel edges are far too short for this to matter.)
    four = ellipsoidal_area(CELL)
    assert 5e-6 < abs(four - EXACT_CELL) / EXACT_CELL < 3e-5


def test_cell_against_geographiclib_directly() -> None:
    geod = Geod(a=CGCS2000_A, f=CGCS2000_F)
    dense = shapely.segmentize(CELL, 0.001)
    x, y = np.asarray(dense.exterior.coords)[:-1].T
    area, _ = geod.polygon_area_perimeter(x, y)
    assert abs(area) == pytest.approx(EXACT_CELL, rel=1e-9)


def test_trapezoid_sign_and_closure() -> None:
    x = np.array([126.0, 126.001, 126.001, 126.0])
    y = np.array([45.0, 45.0, 45.001, 45.001])
    ccw = trapezoid_area(x, y)
    assert ccw > 0
    assert trapezoid_area(x[::-1], y[::-1]) == pytest.approx(-ccw, rel=1e-12)
    assert trapezoid_area(np.append(x, x[0]), np.append(y, y[0])) == pytest.approx(ccw, rel=1e-12)
    assert trapezoid_area(x[:2], y[:2]) == 0.0
    assert ccw == pytest.approx(exact_quadrangle(45.0, 45.001, 0.001), rel=1e-9)
    # The 二调 (Xian 1980) ellipsoid gives a slightly different number.
    xian = trapezoid_area(x, y, XIAN80_A, XIAN80_F)
    assert xian == pytest.approx(exact_quadrangle(45.0, 45.001, 0.001, XIAN80_A, XIAN80_F), rel=1e-9)
    assert xian != pytest.approx(ccw, rel=1e-7)
    with pytest.raises(ValueError):
        trapezoid_area(x, y[:3])


parcel_strategy = st.tuples(
    st.floats(121.5, 134.5),  # lon of first vertex (Heilongjiang)
    st.floats(43.5, 53.0),
    st.lists(st.tuples(st.floats(-0.005, 0.005), st.floats(-0.004, 0.004)), min_size=3, max_size=12),
)


@settings(max_examples=150, deadline=None)
@given(p=parcel_strategy)
def test_parcels_geodesic_vs_trapezoid(p: tuple[float, float, list[tuple[float, float]]]) -> None:
    lon0, lat0, offsets = p
    pts = shapely.MultiPoint([(lon0 + dx, lat0 + dy) for dx, dy in offsets])
    parcel = shapely.convex_hull(pts)
    if not isinstance(parcel, shapely.Polygon) or parcel.area < 1e-9 or parcel.area / parcel.length**2 < 0.01:
        return  # slivers: the two edge models differ more there (see below); parcels are not slivers
    # Same ring, densified to ~5 m edges: the two methods measure the same figure.
    dense = shapely.segmentize(parcel, 0.00005)
    geo = ellipsoidal_area(dense)
    x, y = np.asarray(dense.exterior.coords).T
    trap = abs(trapezoid_area(x, y))
    assert geo > 0
    assert trap == pytest.approx(geo, rel=1e-6)
    assert ellipsoidal_area(dense, method="trapezoid") == pytest.approx(trap, rel=1e-9)  # summation order only
    # On the raw vertices they differ by edge type (geodesic vs lon/lat-linear edge with the
    # series' mean-longitude rule); the difference is third order in the edge length
    # (~1e-5 relative for a compact 400 m parcel, more for slivers).
    x0, y0 = np.asarray(parcel.exterior.coords).T
    edge = np.abs(np.radians(np.diff(x0))) + np.abs(np.radians(np.diff(y0)))
    bound = 0.05 * 6.371e6**2 * float(np.sum(edge**3))
    assert abs(abs(trapezoid_area(x0, y0)) - ellipsoidal_area(parcel)) <= bound


def test_long_diagonal_edge_geodesic_is_the_plane_area() -> None:
    # Triangle drawn with straight edges on the GK plane next to the CM (areal scale 1 + 4e-9):
    # its ellipsoidal area is the plane area. Geodesic edges reproduce it; the trapezoid
    # series on the same three vertices is ~1e-5 off because of the 566 m diagonal.
    to_geo = Transformer.from_crs(4551, 4490, always_xy=True)
    e0, n0 = 500_000.0, 5_000_000.0
    plane = shapely.Polygon([(e0, n0), (e0 + 400.0, n0), (e0, n0 + 400.0)])
    lonlat = shapely.transform(plane, lambda c: np.column_stack(to_geo.transform(c[:, 0], c[:, 1])))
    assert ellipsoidal_area(lonlat) == pytest.approx(80_000.0, rel=1e-7)
    x, y = np.asarray(lonlat.exterior.coords).T
    rel = abs(abs(trapezoid_area(x, y)) - 80_000.0) / 80_000.0
    assert 1e-6 < rel < 5e-5


def test_parcel_against_gk_plane_area_near_cm() -> None:
    # A 100 m x 100 m square on the CGCS2000 GK plane right at the central meridian:
    # scale factor 1 there, so the ellipsoidal area is the plane area to ~1e-7.
    to_geo = Transformer.from_crs(4551, 4490, always_xy=True)
    e0, n0 = 500_000.0, 5_070_000.0
    ring = shapely.segmentize(shapely.box(e0, n0, e0 + 100.0, n0 + 100.0), 10.0)
    lonlat = shapely.transform(ring, lambda c: np.column_stack(to_geo.transform(c[:, 0], c[:, 1])))
    assert ellipsoidal_area(lonlat) == pytest.approx(10_000.0, rel=1e-6)


def test_holes_multipolygons_and_orientation() -> None:
    outer = shapely.box(126.0, 45.0, 126.01, 45.01)
    hole = shapely.box(126.002, 45.002, 126.004, 45.004)
    donut = shapely.Polygon(outer.exterior.coords, [hole.exterior.coords])
    a_outer = ellipsoidal_area(outer)
    a_hole = ellipsoidal_area(hole)
    assert ellipsoidal_area(donut) == pytest.approx(a_outer - a_hole, rel=1e-12)
    reversed_donut = shapely.Polygon(outer.exterior.coords[::-1], [hole.exterior.coords[::-1]])
    assert ellipsoidal_area(reversed_donut) == pytest.approx(a_outer - a_hole, rel=1e-12)
    other = shapely.box(127.0, 46.0, 127.01, 46.01)
    multi = shapely.MultiPolygon([donut, other])
    assert ellipsoidal_area(multi) == pytest.approx(a_outer - a_hole + ellipsoidal_area(other), rel=1e-12)
    gc = shapely.GeometryCollection([multi, shapely.Point(0, 0), shapely.LineString([(0, 0), (1, 1)])])
    assert ellipsoidal_area(gc) == pytest.approx(ellipsoidal_area(multi), rel=1e-12)
    assert ellipsoidal_area(donut, method="trapezoid") == pytest.approx(a_outer - a_hole, rel=1e-8)


def test_non_areal_and_missing() -> None:
    assert ellipsoidal_area(None) == 0.0
    assert ellipsoidal_area(shapely.Polygon()) == 0.0
    assert ellipsoidal_area(shapely.MultiPolygon()) == 0.0
    assert ellipsoidal_area(shapely.Point(126, 45)) == 0.0
    assert ellipsoidal_area(shapely.LineString([(126, 45), (127, 46)])) == 0.0
    assert ellipsoidal_area(shapely.GeometryCollection()) == 0.0


def test_array_version() -> None:
    geoms = np.array(
        [CELL, None, shapely.Point(1, 2), shapely.Polygon(), shapely.segmentize(CELL, 0.01), CELL],
        dtype=object,
    )
    areas = ellipsoidal_areas(geoms)
    assert areas.dtype == np.float64 and areas.shape == (6,)
    assert areas[1] == areas[2] == areas[3] == 0.0
    assert areas[0] == pytest.approx(ellipsoidal_area(CELL), rel=1e-15)
    assert areas[4] == pytest.approx(EXACT_CELL, rel=1e-8)
    assert areas[5] == areas[0]
    assert ellipsoidal_areas(geoms.reshape(2, 3)).shape == (2, 3)
    assert ellipsoidal_areas(np.array([], dtype=object)).shape == (0,)
    trap = ellipsoidal_areas(geoms, method="trapezoid")
    assert trap[0] == pytest.approx(EXACT_CELL, rel=1e-11)
    with pytest.raises(ValueError):
        ellipsoidal_areas(geoms, method="planar")  # type: ignore[arg-type]


def test_many_parcels_vectorised() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    centres = shapely.points(rng.uniform(121.5, 134.5, n), rng.uniform(43.5, 53.0, n))
    parcels = shapely.buffer(centres, 0.0008, quad_segs=3)
    geo = ellipsoidal_areas(parcels)
    trap = ellipsoidal_areas(parcels, method="trapezoid")
    assert np.all(geo > 5_000) and np.all(geo < 20_000)
    np.testing.assert_allclose(trap, geo, rtol=1e-7)
    for i in (0, 1234, n - 1):
        assert geo[i] == pytest.approx(ellipsoidal_area(parcels[i]), rel=1e-15)


def test_units() -> None:
    assert M2_PER_MU == pytest.approx(666.6666667)
    assert M2_PER_HA == 10_000.0
    assert to_hectares(25_000.0) == 2.5
    assert to_mu(10_000.0) == pytest.approx(15.0)
    np.testing.assert_allclose(to_mu(np.array([M2_PER_MU, 2 * M2_PER_MU])), [1.0, 2.0])
    np.testing.assert_allclose(to_hectares(np.array([1e4, 5e3])), [1.0, 0.5])
    assert isinstance(to_hectares(1.0), float)
