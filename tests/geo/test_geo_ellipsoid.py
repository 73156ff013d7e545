"""Geodetic <-> ECEF conversions and ellipsoid constants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer

from landcloud.geo.ellipsoid import (
    BEIJING54_A,
    BEIJING54_F,
    CGCS2000_A,
    CGCS2000_F,
    EPSG_CGCS2000,
    XIAN80_A,
    XIAN80_F,
    geocentric,
    geodetic,
)

ELLIPSOIDS = [(CGCS2000_A, CGCS2000_F), (XIAN80_A, XIAN80_F), (BEIJING54_A, BEIJING54_F)]


@pytest.mark.parametrize(
    ("epsg", "a", "f"),
    [(EPSG_CGCS2000, CGCS2000_A, CGCS2000_F), (4610, XIAN80_A, XIAN80_F), (4214, BEIJING54_A, BEIJING54_F)],
)
def test_constants_match_epsg(epsg: int, a: float, f: float) -> None:
    ellipsoid = CRS.from_epsg(epsg).ellipsoid
    assert ellipsoid.semi_major_metre == a
    assert ellipsoid.inverse_flattening == pytest.approx(1 / f, abs=1e-9)


def test_geocentric_axes() -> None:
    x, y, z = geocentric(0.0, 0.0, 0.0)
    assert (float(x), float(y), float(z)) == pytest.approx((CGCS2000_A, 0.0, 0.0), abs=1e-9)
    x, y, z = geocentric(90.0, 0.0, 10.0)
    assert float(y) == pytest.approx(CGCS2000_A + 10.0, abs=1e-9)
    assert abs(float(x)) < 1e-6
    _, _, z = geocentric(0.0, 90.0, 0.0)
    assert float(z) == pytest.approx(CGCS2000_A * (1 - CGCS2000_F), abs=1e-6)


def test_geocentric_matches_proj_cart() -> None:
    cart = Transformer.from_pipeline(f"+proj=cart +a={CGCS2000_A} +rf=298.257222101")
    lon = np.array([126.6, 73.5, 135.0, 110.0])
    lat = np.array([45.75, 39.0, 48.4, 18.2])
    h = np.array([150.0, 4000.0, 0.0, -20.0])
    expected = cart.transform(lon, lat, h)
    got = geocentric(lon, lat, h)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    lon=st.floats(-180, 180),
    lat=st.floats(-89.999, 89.999),
    h=st.floats(-500, 9000),
    which=st.integers(0, 2),
)
def test_round_trip(lon: float, lat: float, h: float, which: int) -> None:
    a, f = ELLIPSOIDS[which]
    lon2, lat2, h2 = geodetic(*geocentric(lon, lat, h, a, f), a, f)
    assert float(lat2) == pytest.approx(lat, abs=1e-11)
    assert float(h2) == pytest.approx(h, abs=1e-6)
    dlon = (float(lon2) - lon + 180.0) % 360.0 - 180.0
    assert abs(dlon) < 1e-11


def test_vectorised_shapes() -> None:
    lon = np.full((2, 3), 126.0)
    lat = np.linspace(40, 50, 6).reshape(2, 3)
    x, y, z = geocentric(lon, lat, 0.0)
    assert x.shape == y.shape == z.shape == (2, 3)
    lon2, lat2, h2 = geodetic(x, y, z)
    np.testing.assert_allclose(lat2, lat, atol=1e-12)
    np.testing.assert_allclose(lon2, lon, atol=1e-12)
    np.testing.assert_allclose(h2, 0.0, atol=1e-6)
