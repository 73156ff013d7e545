"""Public-edition core: generalisation, precision check, class/field removal, fingerprint/trace."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from landcloud.geo.area import survey_areas
from landcloud.publish.desensitise import (
    aggregate_grid,
    check_precision,
    filter_fields,
    fingerprint,
    generalise,
    layer_epsg,
    remove_classes,
    trace,
)

COUNTIES = Path(__file__).resolve().parents[3] / "shared" / "data" / "cnmaps-heilongjiang" / "heilongjiang_counties_merged_gcj02.geojson"
HARBIN = (126.6, 45.75)
M_PER_DEG_LAT = 111_200.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(HARBIN[1]))

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def star(cx_m: float, cy_m: float, radii_m: list[float], phase: float = 0.0) -> shapely.Polygon:
    """Star-shaped (hence simple) polygon around Harbin, offsets and radii in metres."""
    n = len(radii_m)
    pts = []
    for k, r in enumerate(radii_m):
        a = phase + 2 * math.pi * k / n
        pts.append(
            (
                HARBIN[0] + (cx_m + r * math.cos(a)) / M_PER_DEG_LON,
                HARBIN[1] + (cy_m + r * math.sin(a)) / M_PER_DEG_LAT,
            )
        )
    return shapely.Polygon(pts)


def random_layer(seed: int, n: int = 10, r_min: float = 300.0, r_max: float = 3000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        nv = int(rng.integers(8, 40))
        base = rng.uniform(r_min, r_max)
        radii = list(base * rng.uniform(0.5, 1.0, nv))
        out.append(star(rng.uniform(-20_000, 20_000), rng.uniform(-20_000, 20_000), radii, rng.uniform(0, 6.28)))
    return np.array(out, dtype=object)


def to_plane(geoms: np.ndarray, epsg: int) -> np.ndarray:
    tr = Transformer.from_crs(4490, epsg, always_xy=True)
    return shapely.transform(geoms, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))


polygons = st.builds(
    star,
    st.floats(-5000, 5000),
    st.floats(-5000, 5000),
    st.lists(st.floats(5.0, 2000.0), min_size=3, max_size=40),
    st.floats(0, 6.28),
)
tolerances = st.sampled_from([5.0, 10.0, 25.0, 50.0, 100.0])


# --------------------------------------------------------------------------- generalise


@FAST
@given(st.lists(polygons, min_size=1, max_size=8), tolerances)
def test_generalise_polygons_valid_on_grid_and_area_sane(polys: list, tol: float) -> None:
    geoms = np.array(polys, dtype=object)
    res = generalise(geoms, tol)
    kept = res.geoms[~res.collapsed]
    assert shapely.is_missing(res.geoms[res.collapsed]).all()
    assert shapely.is_valid(kept).all()
    assert np.isin(shapely.get_type_id(kept), [3, 6]).all()
    assert check_precision(res.geoms, tol, res.epsg) == 0
    assert (res.area_after_m2[res.collapsed] == 0).all()
    # every boundary point moves by at most ~tol (simplify) + tol/√2 (snap): area change is bounded
    perim = shapely.length(to_plane(geoms, res.epsg))
    bound = perim * 2 * tol + 2 * tol * tol
    assert np.all(np.abs(res.area_after_m2 - res.area_before_m2) <= bound)
    # surviving polygons have no part smaller than tol²/2
    for g in to_plane(kept, res.epsg):
        assert min(p.area for p in shapely.get_parts(g)) >= tol * tol / 2 * 0.999


def test_generalise_reports_collapsed_features() -> None:
    tiny = star(0, 0, [8.0, 9.0, 7.0, 8.5])  # ~200 m² sliver, below (50 m)²/2
    big = star(3000, 0, [1500.0] * 24)
    line_short = shapely.LineString([HARBIN, (HARBIN[0] + 10 / M_PER_DEG_LON, HARBIN[1])])
    line_long = shapely.LineString([HARBIN, (HARBIN[0] + 2000 / M_PER_DEG_LON, HARBIN[1] + 0.01)])
    pt = shapely.Point(HARBIN[0] + 0.00123, HARBIN[1] + 0.00077)
    geoms = np.array([tiny, big, None, line_short, line_long, pt], dtype=object)
    res = generalise(geoms, 50.0)
    assert res.collapsed.tolist() == [True, False, True, True, False, False]
    assert res.geoms[0] is None and res.geoms[3] is None
    assert res.area_before_m2[0] > 0 and res.area_after_m2[0] == 0
    assert abs(res.area_after_m2[1] / res.area_before_m2[1] - 1) < 0.01
    assert res.geoms[4].geom_type == "LineString" and res.geoms[5].geom_type == "Point"
    assert check_precision(res.geoms, 50.0, res.epsg) == 0
    # the raw inputs are off grid, so the check is not vacuous
    assert check_precision(geoms, 50.0, res.epsg) > 0


@FAST
@given(st.lists(st.tuples(st.floats(-20000, 20000), st.floats(-20000, 20000)), min_size=2, max_size=30), tolerances)
def test_generalise_lines_and_points(xy: list, tol: float) -> None:
    coords = [(HARBIN[0] + x / M_PER_DEG_LON, HARBIN[1] + y / M_PER_DEG_LAT) for x, y in xy]
    geoms = np.array([shapely.LineString(coords), shapely.MultiPoint(coords), shapely.Point(coords[0])], dtype=object)
    res = generalise(geoms, tol, epsg=layer_epsg(geoms))
    assert not res.collapsed[1] and not res.collapsed[2]
    assert check_precision(res.geoms, tol, res.epsg) == 0
    if not res.collapsed[0]:
        assert shapely.length(to_plane(res.geoms[:1], res.epsg))[0] >= tol
    # a point moves at most half a grid diagonal
    moved = shapely.distance(*to_plane(np.array([geoms[2], res.geoms[2]], dtype=object), res.epsg))
    assert moved <= tol * math.sqrt(2) / 2 + 1e-6


def test_generalise_heilongjiang_counties() -> None:
    fc = json.loads(COUNTIES.read_text(encoding="utf-8"))
    geoms = np.array([shapely.geometry.shape(f["geometry"]) for f in fc["features"]], dtype=object)
    assert len(geoms) == 122
    res = generalise(geoms, 50.0)
    assert not res.collapsed.any()
    assert shapely.is_valid(res.geoms).all()
    assert check_precision(res.geoms, 50.0, res.epsg) == 0
    assert check_precision(geoms, 50.0, res.epsg) > 0
    total_before, total_after = res.area_before_m2.sum(), res.area_after_m2.sum()
    assert abs(total_after / total_before - 1) < 0.01
    assert np.all(np.abs(res.area_after_m2 / res.area_before_m2 - 1) < 0.05)
    assert shapely.get_num_coordinates(res.geoms).sum() < shapely.get_num_coordinates(geoms).sum() / 2


# --------------------------------------------------------------------------- attributes

codes = st.text(alphabet="0123456789", min_size=2, max_size=6)


@FAST
@given(st.lists(codes, max_size=60), st.lists(codes, min_size=1, max_size=5))
def test_remove_classes_never_leaks(feature_codes: list, classes: list) -> None:
    props = [{"DLBM": c, "x": i} for i, c in enumerate(feature_codes)]
    keep = remove_classes(props, "DLBM", classes)
    assert keep.shape == (len(props),)
    for p, k in zip(props, keep):
        code = p["DLBM"]
        removed = code in classes or any(len(c) == 2 and code.startswith(c) for c in classes)
        assert k == (not removed)


def test_remove_classes_first_level() -> None:
    props = [{"DLBM": c} for c in ["09", "0901", "0906", "0101", "1001", "0810", None]] + [{}]
    keep = remove_classes(props, "DLBM", ["09", "1001"])
    assert keep.tolist() == [False, False, False, True, False, True, True, True]


@FAST
@given(
    st.lists(st.dictionaries(st.text(max_size=5), st.integers(), max_size=8), max_size=20),
    st.sets(st.text(max_size=5), max_size=5),
)
def test_filter_fields_never_outside_whitelist(props: list, whitelist: set) -> None:
    out = filter_fields(props, whitelist)
    assert len(out) == len(props)
    for o, p in zip(out, props):
        assert set(o) <= whitelist
        assert o == {k: v for k, v in p.items() if k in whitelist}


# --------------------------------------------------------------------------- fingerprint / trace

CANDIDATES = {f"recipient-{i}": f"secret-{i}".encode() for i in range(6)}


def _round_trip(geoms: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """What a Shapefile/GeoJSON export does to a copy: reordered features, coordinates to 1e-7°."""
    return shapely.transform(geoms[perm], lambda c: np.round(c, 7))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(sorted(CANDIDATES)), st.sampled_from([10.0, 50.0]))
def test_fingerprint_within_tolerance_and_traced(seed: int, who: str, tol: float) -> None:
    layer = generalise(random_layer(seed), tol)
    base = layer.geoms[~layer.collapsed]
    fp = fingerprint(base, CANDIDATES[who], tol)
    assert shapely.is_valid(fp).all()
    d = shapely.hausdorff_distance(to_plane(base, layer.epsg), to_plane(fp, layer.epsg))
    assert np.all(d <= tol / 5)
    assert not np.all(d == 0)
    # deterministic
    assert all(shapely.equals_exact(fp, fingerprint(base, CANDIDATES[who], tol), 0))
    perm = np.random.default_rng(seed).permutation(len(fp))
    for copy in (fp, _round_trip(fp, perm)):
        ranked = trace(base, copy, CANDIDATES, tol)
        assert ranked[0][0] == who
        assert ranked[0][1] > 0.8
        assert all(score < 0.4 for _, score in ranked[1:])


def test_fingerprint_differs_between_recipients_and_keeps_shared_vertices() -> None:
    a = star(0, 0, [2000.0] * 16)
    b = shapely.Polygon(list(a.exterior.coords)[:5] + [(HARBIN[0] + 0.05, HARBIN[1] + 0.05)])  # shares 5 vertices with a
    layer = generalise(np.array([a, b], dtype=object), 50.0)
    f1 = fingerprint(layer.geoms, b"one", 50.0)
    f2 = fingerprint(layer.geoms, b"two", 50.0)
    assert not shapely.equals_exact(f1[0], f2[0], 0)
    shared_before = {tuple(c) for c in shapely.get_coordinates(layer.geoms[0])} & {tuple(c) for c in shapely.get_coordinates(layer.geoms[1])}
    shared_after = {tuple(c) for c in shapely.get_coordinates(f1[0])} & {tuple(c) for c in shapely.get_coordinates(f1[1])}
    assert len(shared_after) == len(shared_before) > 0


def test_trace_of_unrelated_copy_scores_low() -> None:
    layer = generalise(random_layer(7), 50.0)
    ranked = trace(layer.geoms, layer.geoms, CANDIDATES, 50.0)  # unmarked copy
    assert all(abs(score) < 0.3 for _, score in ranked)


# --------------------------------------------------------------------------- aggregate_grid


def test_aggregate_grid_conserves_area_per_class() -> None:
    geoms = random_layer(11, n=6)
    codes = ["0101", "0301", "0101", "1001", "0301", "0101"]
    cells = aggregate_grid(geoms, codes, 1000.0)
    areas = survey_areas(geoms)
    for code in set(codes):
        expected = sum(a for a, c in zip(areas, codes) if c == code)
        got = sum(r["area_m2"] for r in cells if r["code"] == code)
        assert abs(got / expected - 1) < 1e-5  # cut edges are straight in the plane, chords in lon/lat: ~2e-6
    epsg = layer_epsg(geoms)
    for r in cells:
        assert r["area_m2"] <= 1000.0 * 1000.0 * 1.001 * len(geoms)
        cell = to_plane(np.array([r["geometry"]], dtype=object), epsg)[0]
        assert abs(cell.area - 1e6) < 1.0
        assert abs(cell.bounds[0] - r["cell"][0] * 1000.0) < 1e-3
    assert aggregate_grid(np.array([None, shapely.Point(HARBIN)], dtype=object), ["a", "b"], 1000.0) == []
