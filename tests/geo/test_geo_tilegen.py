"""Pre-generalised tile copies (geo/tilegen.py): which level serves a zoom, which shapes need a copy, the copy itself."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from landcloud.geo import tilegen
from landcloud.geo.tiles import WEB_MERCATOR_QUAD
from landcloud.publish.tiles import MIN_FEATURE_CELLS, TILE_SIZE, simplified_ones


@given(st.integers(0, 24))
def test_a_zoom_reads_the_nearest_level_at_or_above_it(z: int) -> None:
    level = tilegen.level_for(z)
    if not min(tilegen.LEVELS) <= z <= max(tilegen.LEVELS):
        assert level is None  # simplified on the fly
        return
    assert level is not None and level >= z  # finer than the zoom needs, never coarser
    assert not [lv for lv in tilegen.LEVELS if z <= lv < level]  # the nearest
    assert tilegen.lowest_zoom(level) <= z
    assert tilegen.tolerance_m(level) <= tilegen.SIMPLIFY_CELLS * WEB_MERCATOR_QUAD.cell_size(z) + 1e-9


def _plan(z: int, x: int, y: int) -> SimpleNamespace:
    """What `simplified_ones` reads of a TilePlan (its size rule), as plan_tile makes it."""
    lonlat = WEB_MERCATOR_QUAD.tile_bounds_lonlat(z, x, y)
    return SimpleNamespace(
        min_dx=MIN_FEATURE_CELLS * (lonlat[2] - lonlat[0]) / TILE_SIZE, min_dy=MIN_FEATURE_CELLS * (lonlat[3] - lonlat[1]) / TILE_SIZE
    )


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min(tilegen.LEVELS), max(tilegen.LEVELS)),
    st.floats(-179.0, 179.0),
    st.floats(-84.0, 84.0),
    st.floats(1e-7, 0.2),
    st.floats(1e-7, 0.2),
    st.integers(0, 3000),
)
def test_every_shape_a_tile_draws_and_simplifies_has_a_copy_of_the_level_that_tile_reads(
    z: int, lon: float, lat: float, w: float, h: float, points: int
) -> None:
    env = np.array([[lon, lat, lon + w, min(lat + h, 85.0)]])
    level = tilegen.level_for(z)
    assert level is not None
    # every tile of zoom z the envelope meets (the pixel in latitude differs from tile row to tile row)
    x0, y0, x1, y1 = WEB_MERCATOR_QUAD.tile_range(tuple(env[0]), z)
    for y in {y0, y1, (y0 + y1) // 2}:
        plan = _plan(z, x0, y)
        drawn = w >= plan.min_dx or env[0, 3] - env[0, 1] >= plan.min_dy  # the size rule
        if drawn and simplified_ones(plan, np.array([points]), env)[0]:  # type: ignore[arg-type]
            assert tilegen.needs_copy(level, np.array([points]), env)[0], (z, y)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(73.0, 135.0),
    st.floats(18.0, 53.0),
    st.floats(1e-3, 0.5),
    st.integers(12, 300),
    st.integers(0, 2**31),
)
def test_a_copy_is_the_projected_shape_within_its_levels_tolerance(lon: float, lat: float, r: float, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.6, 1.0, n)
    shape = shapely.Polygon(np.column_stack((lon + radii * np.cos(angles), lat + radii * np.sin(angles))))
    if not shape.is_valid:
        shape = shapely.make_valid(shape)
    made = tilegen.copies(np.array([shape, None, shapely.Polygon()], dtype=object), np.array([shape.bounds, [0, 0, 0, 0], [0, 0, 0, 0]]))
    assert {i for i, _, _ in made} <= {0}  # nothing for a missing or an empty shape
    px, py = WEB_MERCATOR_QUAD.to_tms(*shapely.get_coordinates(shape).T)
    projected = shapely.set_coordinates(shape, np.column_stack((px, py)))
    levels = {level for _, level, _ in made}
    assert levels == {lv for lv in tilegen.LEVELS if tilegen.needs_copy(lv, np.array([shapely.get_num_coordinates(shape)]), np.array([shape.bounds]))[0]}
    for _, level, copy in made:
        assert shapely.get_type_id(copy) == shapely.get_type_id(projected)
        assert shapely.get_num_coordinates(copy) <= shapely.get_num_coordinates(projected)
        # GEOS's simplifiers (topology-preserving: the one tiles use on the fly) keep a ring's removed vertices near the
        # tolerance, not always within it (up to ~1.3x seen, around a ring's start, which they may remove too)
        assert shapely.hausdorff_distance(copy, projected) <= 2 * tilegen.tolerance_m(level)
        assert shapely.equals_exact(copy, tilegen.simplified(np.array([projected]), tilegen.tolerance_m(level))[0], 0)
        if projected.geom_type == "Polygon":
            assert copy.is_valid  # topology preserved


def _reference_simplified(shape: shapely.Geometry, tolerance: float) -> shapely.Geometry:
    """`tilegen.simplified` for one shape, as its rule says: a one-ring polygon by Douglas-Peucker on its ring alone
    where that gives a valid polygon, anything else topology-preservingly."""
    if shape.geom_type == "Polygon" and not shape.is_empty and not shape.interiors:
        ring = shapely.simplify(shape.exterior, tolerance, preserve_topology=False)
        if ring.geom_type == "LinearRing" and shapely.Polygon(ring).is_valid:
            return shapely.Polygon(ring)
    return shapely.simplify(shape, tolerance, preserve_topology=True)


# A star-shaped ring (valid) whose Douglas-Peucker ring at 0.3 crosses itself; on the polygon GEOS mends that by
# buffer(0), adding a vertex and dropping a lobe (found by a search over random rings)
CROSSING = [(0.237, 0.02), (0.394, 0.55), (0.185, 0.788), (0.049, 0.368), (-0.128, 0.945), (-0.129, 0.282), (-0.567, 0.432),
            (-0.249, 0.081), (0.353, -0.204), (0.611, -0.145), (0.655, -0.116)]


def test_a_ring_douglas_peucker_would_cross_or_collapse_is_simplified_topology_preservingly() -> None:
    crossing = shapely.Polygon(CROSSING)
    assert crossing.is_valid
    assert not shapely.Polygon(shapely.simplify(crossing.exterior, 0.3, preserve_topology=False)).is_valid  # the case
    mended = shapely.simplify(crossing, 0.3, preserve_topology=False)  # on the polygon: valid, not of its own vertices
    assert mended.is_valid and not {tuple(c) for c in shapely.get_coordinates(mended).tolist()} <= set(CROSSING)
    sliver = shapely.Polygon([(x, 0.0) for x in np.linspace(0, 10, 10)] + [(x, 0.1) for x in np.linspace(10, 0, 10)])
    assert shapely.simplify(sliver.exterior, 0.3, preserve_topology=False).geom_type == "LineString"  # collapsed
    out = tilegen.simplified(np.array([crossing, sliver], dtype=object), 0.3)
    for shape, copy in zip((crossing, sliver), out):
        assert copy.geom_type == "Polygon" and copy.is_valid
        assert shapely.equals_exact(copy, shapely.simplify(shape, 0.3, preserve_topology=True), 0)


def _star(rng: np.random.Generator, cx: float, cy: float, r: float, n: int, scrambled: bool) -> np.ndarray:
    angles = rng.permutation(rng.uniform(0, 2 * np.pi, n)) if scrambled else np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.2, 1.0, n)
    return np.column_stack((cx + radii * np.cos(angles), cy + radii * np.sin(angles)))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 30), st.floats(0.01, 0.6))
def test_simplified_is_douglas_peucker_on_one_ring_where_valid_and_topology_preserving_elsewhere(seed: int, n: int, tol: float) -> None:
    """Shapes of every kind a copy is made of: one-ring polygons (star-shaped, so valid; some Douglas-Peucker makes
    cross or collapse at the tolerance), polygons with a hole, multipolygons, lines; the vectorised rule against the
    rule shape by shape, and what a copy must be: valid where the shape is, of its kind, of its own vertices."""
    rng = np.random.default_rng(seed)
    shapes: list[shapely.Geometry] = []
    for _ in range(n):
        kind = int(rng.integers(6))
        cx, cy, r = rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(0.2, 2.0)
        k = int(rng.integers(4, 40))
        if kind <= 2:
            shapes.append(shapely.Polygon(_star(rng, cx, cy, r, k, False)))
        elif kind == 3:
            shapes.append(shapely.Polygon(_star(rng, cx, cy, r, k, False), [_star(rng, cx, cy, 0.15 * r, 6, False)]))
        elif kind == 4:
            shapes.append(shapely.MultiPolygon([shapely.Polygon(_star(rng, cx, cy, r, k, False)), shapely.Polygon(_star(rng, cx + 5, cy, r, k, False))]))
        else:
            shapes.append(shapely.LineString(_star(rng, cx, cy, r, k, True)))
    out = tilegen.simplified(np.array(shapes, dtype=object), tol)
    for shape, copy in zip(shapes, out):
        assert shapely.equals_exact(copy, _reference_simplified(shape, tol), 0)
        assert copy.geom_type == shape.geom_type
        assert shapely.get_num_coordinates(copy) <= shapely.get_num_coordinates(shape)
        if shape.is_valid:
            assert copy.is_valid
        if shape.geom_type == "Polygon" and not shape.interiors:
            assert {tuple(c) for c in shapely.get_coordinates(copy).tolist()} <= {tuple(c) for c in shapely.get_coordinates(shape).tolist()}
            assert shapely.hausdorff_distance(copy, shape) <= 2 * tol


def test_shapes_of_few_points_or_many_pixels_get_no_copy() -> None:
    small = shapely.box(126.6, 45.7, 126.601, 45.701)  # 5 points
    line = shapely.LineString([(126.0 + i * 0.001, 45.7) for i in range(50)])  # 50 points over 0.049 degrees
    made = tilegen.copies(np.array([small, line], dtype=object), np.array([small.bounds, line.bounds]))
    assert {i for i, _, _ in made} == {1}
    # the line is ~9 pixels wide at z8, ~71 at z11: simplified by tiles up to z10 only
    assert {level for _, level, _ in made} == {lv for lv in tilegen.LEVELS if lv <= 10}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 400),
            st.floats(73.0, 135.0),
            st.floats(18.0, 53.0),
            st.floats(0.0, 0.2),
            st.floats(0.0, 0.2),
        ),
        max_size=40,
    )
)
def test_needs_any_is_some_levels_need_and_says_which_shapes_copies_makes_copies_of(
    shapes: list[tuple[int, float, float, float, float]],
) -> None:
    """`needs_any` (what a stream notes to read back) is the union of the levels' `needs_copy`, and the shapes
    `copies` makes a copy of are exactly those."""
    points = np.array([s[0] for s in shapes], dtype=np.int64)
    env = np.array([(x, y, x + w, y + h) for _, x, y, w, h in shapes], dtype=np.float64).reshape(len(shapes), 4)
    union = np.zeros(len(shapes), dtype=bool)
    for level in tilegen.LEVELS:
        union |= tilegen.needs_copy(level, points, env)
    assert tilegen.needs_any(points, env).tolist() == union.tolist()
    # shapes of these envelopes and point counts (a ring along the box's edges), a missing and an empty one after them
    rings = []
    for n, (x0, y0, x1, y1) in zip(points.tolist(), env.tolist()):
        if n < 4 or x1 <= x0 or y1 <= y0:
            rings.append(shapely.Polygon())
            continue
        t = np.linspace(0, 4, n - 1, endpoint=False)
        side, f = np.floor(t).astype(int), t - np.floor(t)
        xs = np.choose(side, [x0 + f * (x1 - x0), np.full_like(f, x1), x1 - f * (x1 - x0), np.full_like(f, x0)])
        ys = np.choose(side, [np.full_like(f, y0), y0 + f * (y1 - y0), np.full_like(f, y1), y1 - f * (y1 - y0)])
        rings.append(shapely.Polygon(np.column_stack((xs, ys))))
    geoms = np.array([*rings, None, shapely.Polygon()], dtype=object)
    bounds = shapely.bounds(geoms)
    made = {i for i, _, _ in tilegen.copies(geoms, bounds)}
    assert made == set(np.flatnonzero(tilegen.needs_any(shapely.get_num_coordinates(geoms), bounds)).tolist())
