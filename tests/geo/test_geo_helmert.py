"""7- and 4-parameter transformations and their least-squares estimation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from landcloud.geo.ellipsoid import geocentric
from landcloud.geo.helmert import ARCSEC, Helmert4, Helmert7, estimate_helmert4, estimate_helmert7

H7 = Helmert7(tx=-15.4, ty=118.2, tz=65.3, rx=3.31, ry=-5.12, rz=4.05, ds=-2.6)


def _harbin_xyz(n: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lon = rng.uniform(121.5, 134.5, n)
    lat = rng.uniform(43.5, 53.0, n)
    h = rng.uniform(0.0, 800.0, n)
    return np.column_stack(geocentric(lon, lat, h))


@pytest.mark.parametrize("convention", ["position_vector", "coordinate_frame"])
def test_apply_matches_proj_helmert(convention: str) -> None:
    h = Helmert7(H7.tx, H7.ty, H7.tz, H7.rx, H7.ry, H7.rz, H7.ds, convention)  # type: ignore[arg-type]
    proj = Transformer.from_pipeline(
        f"+proj=helmert +x={h.tx} +y={h.ty} +z={h.tz} +rx={h.rx} +ry={h.ry} +rz={h.rz} "
        f"+s={h.ds} +convention={convention}"
    )
    xyz = _harbin_xyz(8)
    expected = np.column_stack(proj.transform(xyz[:, 0], xyz[:, 1], xyz[:, 2]))
    got = np.column_stack(h.apply(xyz[:, 0], xyz[:, 1], xyz[:, 2]))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # The shift is real: ~100 m.
    assert np.all(np.linalg.norm(got - xyz, axis=1) > 50)


def test_conventions_are_opposite_rotations() -> None:
    cf = Helmert7(H7.tx, H7.ty, H7.tz, H7.rx, H7.ry, H7.rz, H7.ds, "coordinate_frame")
    pv = Helmert7(H7.tx, H7.ty, H7.tz, -H7.rx, -H7.ry, -H7.rz, H7.ds, "position_vector")
    xyz = _harbin_xyz(4)
    np.testing.assert_allclose(np.column_stack(cf.apply(*xyz.T)), np.column_stack(pv.apply(*xyz.T)), atol=1e-9)
    np.testing.assert_allclose(cf.matrix(), pv.matrix(), atol=0)


def test_pure_translation_and_scale() -> None:
    t = Helmert7(1.0, -2.0, 3.0, 0.0, 0.0, 0.0, 0.0)
    assert tuple(float(v) for v in t.apply(10.0, 20.0, 30.0)) == (11.0, 18.0, 33.0)
    s = Helmert7(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    x, _, _ = s.apply(6_400_000.0, 0.0, 0.0)
    assert float(x) == pytest.approx(6_400_006.4, abs=1e-9)
    # rz = 1" in position-vector sense turns +X towards +Y.
    r = Helmert7(0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    _, y, _ = r.apply(6_400_000.0, 0.0, 0.0)
    assert float(y) == pytest.approx(6_400_000.0 * ARCSEC, rel=1e-12)


def test_inverse() -> None:
    xyz = _harbin_xyz(6)
    fwd = np.column_stack(H7.apply(*xyz.T))
    exact = np.column_stack(H7.apply_inverse(*fwd.T))
    np.testing.assert_allclose(exact, xyz, rtol=0, atol=1e-6)
    approx = np.column_stack(H7.inverse().apply(*fwd.T))
    err = np.linalg.norm(approx - xyz, axis=1)
    assert np.all(err < 0.01)  # small-angle approximation: ~|r|²·R, a few mm for 5"
    twice = H7.inverse().inverse()
    assert (twice.rx, twice.ry, twice.rz) == (H7.rx, H7.ry, H7.rz)
    assert twice.ds == pytest.approx(H7.ds, abs=1e-9)


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        Helmert7(0, 0, 0, 0, 0, 0, 0, "bursa")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Helmert7(float("nan"), 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        Helmert4(0, 0, float("inf"), 0)


helmert7_params = st.builds(
    Helmert7,
    tx=st.floats(-200, 200),
    ty=st.floats(-200, 200),
    tz=st.floats(-200, 200),
    rx=st.floats(-10, 10),
    ry=st.floats(-10, 10),
    rz=st.floats(-10, 10),
    ds=st.floats(-20, 20),
    convention=st.sampled_from(["position_vector", "coordinate_frame"]),
)


@settings(max_examples=60, deadline=None)
@given(h=helmert7_params, n=st.integers(3, 12), seed=st.integers(0, 2**16))
def test_estimate_helmert7_recovers_parameters(h: Helmert7, n: int, seed: int) -> None:
    src = _harbin_xyz(n, seed)
    dst = np.column_stack(h.apply(*src.T))
    est, rms = estimate_helmert7(src, dst, h.convention)
    assert est.convention == h.convention
    assert rms < 1e-5
    # Province-wide point spread: every parameter is determined.
    assert est.tx == pytest.approx(h.tx, abs=1e-3)
    assert est.ty == pytest.approx(h.ty, abs=1e-3)
    assert est.tz == pytest.approx(h.tz, abs=1e-3)
    for got, want in ((est.rx, h.rx), (est.ry, h.ry), (est.rz, h.rz)):
        assert got == pytest.approx(want, abs=1e-4)
    assert est.ds == pytest.approx(h.ds, abs=1e-4)
    np.testing.assert_allclose(np.column_stack(est.apply(*src.T)), dst, rtol=0, atol=1e-4)


def test_estimate_helmert7_with_noise_reports_rms() -> None:
    rng = np.random.default_rng(3)
    src = _harbin_xyz(30, 11)
    dst = np.column_stack(H7.apply(*src.T)) + rng.normal(0.0, 0.02, (30, 3))
    est, rms = estimate_helmert7(src, dst)
    assert 0.01 < rms < 0.05  # ~ sqrt(3)·0.02 reduced by the 7 fitted parameters
    moved = np.column_stack(est.apply(*src.T))
    assert np.max(np.linalg.norm(moved - np.column_stack(H7.apply(*src.T)), axis=1)) < 0.05


def test_estimate_helmert7_county_sized_area() -> None:
    # Over ~30 km translations and rotations are correlated; coordinates still match.
    rng = np.random.default_rng(5)
    lon = rng.uniform(126.5, 126.9, 6)
    lat = rng.uniform(45.6, 45.9, 6)
    src = np.column_stack(geocentric(lon, lat, rng.uniform(100, 200, 6)))
    dst = np.column_stack(H7.apply(*src.T))
    est, rms = estimate_helmert7(src, dst)
    assert rms < 1e-3
    test_pts = np.column_stack(geocentric(np.array([126.7]), np.array([45.75]), np.array([150.0])))
    np.testing.assert_allclose(np.column_stack(est.apply(*test_pts.T)), np.column_stack(H7.apply(*test_pts.T)), atol=0.01)


def test_estimate_helmert7_input_checks() -> None:
    src = _harbin_xyz(3)
    with pytest.raises(ValueError, match="at least 3"):
        estimate_helmert7(src[:2], src[:2])
    with pytest.raises(ValueError):
        estimate_helmert7(src, src[:, :2])
    line = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 6.0, 9.0]]) * 1e6
    with pytest.raises(ValueError, match="collinear"):
        estimate_helmert7(line, line)
    with pytest.raises(ValueError):
        estimate_helmert7(src, src, "bursa")  # type: ignore[arg-type]


def test_helmert4_apply_and_inverse() -> None:
    h = Helmert4(dx=12.5, dy=-30.2, rotation=5.5, ds=-3.1)
    e = np.array([[500_000.0, 612_345.6], [387_000.0, 500_000.0]])
    n = np.array([[5_070_000.0, 5_100_000.0], [4_900_000.0, 5_000_000.0]])
    e2, n2 = h.apply(e, n)
    assert e2.shape == (2, 2)
    k = 1 - 3.1e-6
    th = 5.5 * ARCSEC
    assert e2[0, 0] == pytest.approx(12.5 + k * (math.cos(th) * 500_000.0 - math.sin(th) * 5_070_000.0), abs=1e-9)
    assert n2[0, 0] == pytest.approx(-30.2 + k * (math.sin(th) * 500_000.0 + math.cos(th) * 5_070_000.0), abs=1e-9)
    e3, n3 = h.inverse().apply(e2, n2)
    np.testing.assert_allclose(e3, e, atol=1e-8)
    np.testing.assert_allclose(n3, n, atol=1e-8)


def test_helmert4_from_survey_sheet() -> None:
    # Sheet form: X = north, Y = east; X' = dX + (1+m)(X cos a - Y sin a), Y' = dY + (1+m)(X sin a + Y cos a).
    d_x, d_y, alpha, m = -40.0, 25.0, 12.0, 4.0
    h = Helmert4.from_survey(d_x, d_y, alpha, m)
    x_north, y_east = 5_070_000.0, 500_000.0
    k = 1 + m * 1e-6
    a = alpha * ARCSEC
    x2 = d_x + k * (x_north * math.cos(a) - y_east * math.sin(a))
    y2 = d_y + k * (x_north * math.sin(a) + y_east * math.cos(a))
    e, n = h.apply(y_east, x_north)
    assert float(e) == pytest.approx(y2, abs=1e-8)
    assert float(n) == pytest.approx(x2, abs=1e-8)


@settings(max_examples=100, deadline=None)
@given(
    h=st.builds(
        Helmert4,
        dx=st.floats(-500, 500),
        dy=st.floats(-500, 500),
        rotation=st.floats(-100, 100),
        ds=st.floats(-50, 50),
    ),
    n=st.integers(2, 10),
    seed=st.integers(0, 2**16),
)
def test_estimate_helmert4_recovers_parameters(h: Helmert4, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = np.column_stack([rng.uniform(420_000, 580_000, n), rng.uniform(4_850_000, 5_900_000, n)])
    if np.min(np.linalg.norm(src[1:] - src[0], axis=1)) < 1_000:
        return
    dst = np.column_stack(h.apply(src[:, 0], src[:, 1]))
    est, rms = estimate_helmert4(src, dst)
    assert rms < 1e-6
    assert est.dx == pytest.approx(h.dx, abs=1e-3)
    assert est.dy == pytest.approx(h.dy, abs=1e-3)
    assert est.rotation == pytest.approx(h.rotation, abs=1e-6)
    assert est.ds == pytest.approx(h.ds, abs=1e-6)


def test_estimate_helmert4_noise_and_checks() -> None:
    rng = np.random.default_rng(1)
    h = Helmert4(3.0, -7.0, 2.0, 1.5)
    src = np.column_stack([rng.uniform(4e5, 6e5, 40), rng.uniform(5.0e6, 5.2e6, 40)])
    dst = np.column_stack(h.apply(*src.T)) + rng.normal(0, 0.01, (40, 2))
    est, rms = estimate_helmert4(src, dst)
    assert 0.007 < rms < 0.02
    assert est.rotation == pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError, match="at least 2"):
        estimate_helmert4(src[:1], dst[:1])
    with pytest.raises(ValueError, match="coincide"):
        estimate_helmert4(np.array([[1.0, 2.0], [1.0, 2.0]]), np.array([[1.0, 2.0], [1.0, 2.0]]))
    with pytest.raises(ValueError):
        estimate_helmert4(src, dst[:10])
