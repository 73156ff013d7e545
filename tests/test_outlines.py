"""tests/outlines.py's distances are GEOS's: the real-data tests compare outlines with it instead of GEOS's Hausdorff."""

from __future__ import annotations

import math

import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from outlines import farthest_vertex, hausdorff

coordinate = st.integers(-5000, 5000).map(lambda v: v / 100)  # (subnormal floats make GEOS itself warn)
ring = st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=12)


@st.composite
def outlines(draw: st.DrawFn) -> shapely.Geometry:
    """A polygon (holes and all, valid or not), a multipolygon, a line or a point: every kind of linework GEOS measures."""
    kind = draw(st.sampled_from(["polygon", "holed", "multi", "line", "point"]))
    if kind == "point":
        return shapely.Point(draw(st.tuples(coordinate, coordinate)))
    if kind == "line":
        return shapely.LineString(draw(ring))
    if kind == "polygon":
        return shapely.Polygon(draw(ring))
    if kind == "holed":  # buffered points: a shell with holes where circles overlap into rings
        centres = draw(st.lists(st.tuples(coordinate, coordinate), min_size=2, max_size=6))
        shape = shapely.MultiPoint(centres).buffer(draw(st.floats(2, 20)), quad_segs=3)
        return shapely.difference(shape.buffer(5, quad_segs=2), shapely.Point(centres[0]).buffer(1, quad_segs=2))
    return shapely.MultiPolygon([shapely.Polygon(draw(ring)), shapely.Polygon(draw(ring))])


@settings(max_examples=300, deadline=None)
@given(outlines(), outlines())
def test_the_distances_are_geos_discrete_hausdorff(a: shapely.Geometry, b: shapely.Geometry) -> None:
    expected = shapely.hausdorff_distance(a, b)
    assert math.isclose(hausdorff(a, b), expected, rel_tol=1e-12, abs_tol=1e-12)
    assert farthest_vertex(a, b) <= expected + 1e-12 and farthest_vertex(b, a) <= expected + 1e-12


def test_a_vertex_off_the_outline_is_measured_to_the_nearest_segment() -> None:
    square = shapely.box(0, 0, 10, 10)
    assert farthest_vertex(shapely.Point(5, 13), square) == 3.0
    assert farthest_vertex(shapely.Point(5, 6), square) == 4.0  # inside: to the ring, not zero
    assert hausdorff(square, shapely.box(0, 0, 10, 12)) == 2.0
