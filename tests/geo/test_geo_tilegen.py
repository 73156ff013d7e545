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
        # GEOS's topology-preserving simplifier (the one tiles use on the fly) keeps a ring's removed vertices near the
        # tolerance, not always within it (up to ~1.3x seen, around a ring's start, which it may remove too)
        assert shapely.hausdorff_distance(copy, projected) <= 2 * tilegen.tolerance_m(level)
        assert shapely.equals_exact(copy, shapely.simplify(projected, tilegen.tolerance_m(level), preserve_topology=True), 0)
        if projected.geom_type == "Polygon":
            assert copy.is_valid  # topology preserved


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
