"""The Python way's tile geometry, array-wise (profiles/tiles-python.txt), against the pipeline it replaced.

`reference_tile_shapes` is the per-stage pipeline as it was before (GEOS clip of every shape, projection and
rounding as two shape transforms; GEOS ring orientation before the encoder): the tile shapes and the encoded layer must be the same,
byte for byte, for any mix of shapes — inside the tile, across its edges, sub-pixel, invalid, multi-part, lines,
points and collections. No database.
"""

from __future__ import annotations

from typing import Any

import mapbox_vector_tile
import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from landcloud.access.policy import Access, Clause
from landcloud.catalog import datasets as catalog
from landcloud.geo.mvt import LayerEncoder, geometry_commands
from landcloud.geo.tiles import WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD
from landcloud.publish.tiles import (
    _CELL_UNITS,
    BUFFER,
    EXTENT,
    SIMPLIFY_CELLS,
    TilePlan,
    _clip,
    _kept_shapes,
    _snap_one,
    _tile_geometries,
    _tile_shapes,
    _to_pixels,
    plan_tile,
    simplified_ones,
)

DS = catalog.Dataset(
    id="shapes", title="shapes", title_en="", description="", theme="other", owner_unit="230000", standard_schema=None,
    fields=[{"name": "name", "type": "string"}], update_frequency="", sharing_class="unconditional", openness="open",
    security_level="public", keywords=[], key_field=None, jurisdiction_field=None, extent=None, feature_count=0,
    current_version=1,
)
ACCESS = Access(True, (Clause(None, None, frozenset(), "test"),))


# -- the reference: the pipeline before the array-wise one ----------------------------------------------
def _reference_snap(geoms: np.ndarray) -> np.ndarray:
    lo, hi = -BUFFER - 0.5, EXTENT + BUFFER + 0.5
    b = shapely.bounds(geoms)
    rounded = shapely.transform(geoms, np.rint)
    fine = shapely.is_valid(rounded) & (b[:, 0] >= lo) & (b[:, 1] >= lo) & (b[:, 2] <= hi) & (b[:, 3] <= hi)
    for i in np.flatnonzero(~fine & ~shapely.is_missing(geoms)).tolist():
        rounded[i] = _snap_one(geoms[i])
    return rounded


def reference_tile_shapes(plan: TilePlan, g: np.ndarray) -> list[shapely.Geometry]:
    bounds = shapely.bounds(g)
    clipped = shapely.clip_by_rect(g, *plan.clip)
    projected = _to_pixels(plan, clipped)
    simplified = projected.copy()
    big = simplified_ones(plan, shapely.get_num_coordinates(g), bounds)
    simplified[big] = shapely.simplify(projected[big], SIMPLIFY_CELLS * _CELL_UNITS, preserve_topology=True)
    return _kept_shapes(plan, _reference_snap(simplified), shapely.get_dimensions(g), bounds)


# -- random shapes around a tile ------------------------------------------------------------------------
def random_shapes(plan: TilePlan, seed: int, n: int = 60, collections: bool = True) -> np.ndarray:
    """Shapes in lon/lat around the tile: most inside it, some across its edges or beyond its buffer, from
    sub-pixel to larger than the tile; star-shaped (valid) or scrambled (often invalid) rings, holes, one-part and
    several-part multi-shapes, lines, points, collections and empties."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = plan.lonlat
    w, h = x1 - x0, y1 - y0

    def ring(cx: float, cy: float, r: float, scrambled: bool) -> np.ndarray:
        k = int(rng.integers(3, 40))
        a = rng.permutation(rng.uniform(0, 2 * np.pi, k)) if scrambled else np.sort(rng.uniform(0, 2 * np.pi, k))
        rr = r * rng.uniform(0.3, 1.0, k)
        return np.column_stack([cx + rr * np.cos(a), cy + rr * np.sin(a) * h / w])

    def polygon() -> shapely.Geometry:
        cx, cy = x0 + rng.uniform(-0.3, 1.3) * w, y0 + rng.uniform(-0.3, 1.3) * h
        r = w * float(rng.choice([0.0005, 0.002, 0.01, 0.05, 0.3, 1.5]))
        shell = ring(cx, cy, r, rng.integers(6) == 0)
        holes = [ring(cx, cy, r / 4, False)] if rng.integers(4) == 0 else []
        return shapely.Polygon(shell, holes)

    def line() -> shapely.Geometry:
        k = int(rng.integers(2, 12))
        return shapely.LineString(np.column_stack([x0 + rng.uniform(-0.2, 1.2, k) * w, y0 + rng.uniform(-0.2, 1.2, k) * h]))

    makers = [
        polygon, polygon, polygon, polygon,
        lambda: shapely.MultiPolygon([polygon()]),
        lambda: shapely.MultiPolygon([polygon(), polygon()]),
        line,
        lambda: shapely.MultiLineString([line()]),
        lambda: shapely.MultiLineString([line(), line()]),
        lambda: shapely.Point(x0 + rng.uniform(-0.1, 1.1) * w, y0 + rng.uniform(-0.1, 1.1) * h),
        lambda: shapely.MultiPoint(np.column_stack([x0 + rng.uniform(0, 1, 3) * w, y0 + rng.uniform(0, 1, 3) * h])),
        lambda: shapely.Polygon(),
        lambda: None,
    ]
    if collections:
        makers.append(lambda: shapely.GeometryCollection([polygon(), line()]))
    return np.array([makers[int(rng.integers(len(makers)))]() for _ in range(n)], dtype=object)


def _plan(seed: int) -> TilePlan:
    rng = np.random.default_rng(seed)
    tms = [WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD][int(rng.integers(2))]
    z = int(rng.integers(6, 17))
    x, y = tms.tile_for_lonlat(126.6 + rng.uniform(-1, 1), 45.7 + rng.uniform(-1, 1), z)
    return plan_tile(DS, ACCESS, None, tms, z, x, y)


def _wkb(geoms: list[shapely.Geometry | None]) -> list[bytes | None]:
    return [None if g is None else shapely.to_wkb(g) for g in geoms]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_tile_geometries_are_the_reference_pipelines(seed: int) -> None:
    plan = _plan(seed)
    geoms = random_shapes(plan, seed)
    geoms = geoms[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]
    assert _outcome(_tile_shapes, plan, geoms) == _outcome(reference_tile_shapes, plan, geoms)


def _outcome(make: Any, plan: TilePlan, geoms: np.ndarray) -> Any:
    """The WKB of the tile shapes, or the error: a collection whose clipped or snapped form holds a multi-shape stops
    `_of_dimension` (get_parts goes one level down) in both pipelines alike — left as it was, noted in the profile."""
    try:
        return _wkb(make(plan, geoms))
    except (TypeError, ValueError) as e:
        return type(e).__name__


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_clip_is_clip_by_rect(seed: int) -> None:
    """Shapes inside the box skip GEOS; what comes back is what clip_by_rect gives for every shape."""
    plan = _plan(seed)
    geoms = random_shapes(plan, seed)
    geoms = geoms[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]
    got = _clip(plan, geoms, shapely.bounds(geoms))
    assert _wkb(list(got)) == _wkb(list(shapely.clip_by_rect(geoms, *plan.clip)))


def _drawn(seed: int) -> tuple[TilePlan, list[shapely.Geometry]]:
    plan = _plan(seed)
    made = []
    for g in random_shapes(plan, seed, collections=False):
        try:  # a scrambled ring may meet the `_of_dimension` limit (see _outcome): such shapes left out here
            made += _tile_geometries(plan, np.array([g], dtype=object))
        except TypeError:
            continue
    return plan, [g for g in made if g is not None]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_the_encoder_orients_rings_as_geos_does(seed: int) -> None:
    """`orient=True` on tile shapes (valid, integer) writes what GEOS-oriented shapes write, and what
    mapbox-vector-tile writes when it checks the winding order itself."""
    _, drawn = _drawn(seed)
    oriented = shapely.orient_polygons(np.array(drawn, dtype=object), exterior_cw=False)
    assert geometry_commands(drawn, orient=True) == geometry_commands(oriented)
    feats: list[dict[str, Any]] = [{"geometry": g, "properties": {"i": i}, "id": i} for i, g in enumerate(drawn)]
    enc = LayerEncoder("x", EXTENT, orient=True)
    enc.add(drawn, [(f["id"], f["properties"]) for f in feats])
    checked = mapbox_vector_tile.encode(
        [{"name": "x", "features": feats}], default_options={"extents": EXTENT, "y_coord_down": True, "check_winding_order": True}
    )
    assert (enc.tile() if feats else b"") == (checked if feats else b"")


def test_one_part_multi_shapes_inside_come_back_as_their_part() -> None:
    plan = _plan(1)
    x0, y0, x1, y1 = plan.lonlat
    inner = shapely.box(x0 + (x1 - x0) * 0.2, y0 + (y1 - y0) * 0.2, x0 + (x1 - x0) * 0.4, y0 + (y1 - y0) * 0.4)
    geoms = np.array([shapely.MultiPolygon([inner]), inner, shapely.MultiLineString([inner.exterior])], dtype=object)
    got = _clip(plan, geoms, shapely.bounds(geoms))
    assert [g.geom_type for g in got] == ["Polygon", "Polygon", "LineString"]
    assert all(shapely.equals_exact(a, b, 0) for a, b in zip(got, shapely.clip_by_rect(geoms, *plan.clip)))
