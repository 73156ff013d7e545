"""`geo.wkb.plain_polygons`: a value is called plain only when GEOS writes back exactly its bytes, and the usual
polygon of a survey layer is."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given
from hypothesis import strategies as st

from landcloud.geo.wkb import plain_polygons

coord = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e300, max_value=1e300)


@st.composite
def rings(draw: st.DrawFn, closed: bool = True) -> list[tuple[float, float]]:
    points = draw(st.lists(st.tuples(coord, coord), min_size=3, max_size=9))
    return [*points, points[0]] if closed else points


@st.composite
def wkb_values(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(a WKB value, whether it is a plain polygon by construction)."""
    kind = draw(st.sampled_from(["polygon", "holes", "multi", "z", "empty", "big-endian", "trailing", "cut", "point", "lines"]))
    outer = draw(rings())
    if kind == "holes":
        return shapely.to_wkb(shapely.Polygon(outer, draw(st.lists(rings(), min_size=1, max_size=4)))), True
    if kind == "multi":
        return shapely.to_wkb(shapely.MultiPolygon([shapely.Polygon(outer)])), False
    if kind == "z":
        return shapely.to_wkb(shapely.Polygon([(x, y, 1.0) for x, y in outer]), output_dimension=3), False
    if kind == "empty":
        return shapely.to_wkb(shapely.Polygon()), False
    if kind == "big-endian":
        return shapely.to_wkb(shapely.Polygon(outer), byte_order=0), False
    if kind == "point":
        return shapely.to_wkb(shapely.Point(outer[0])), False
    if kind == "lines":
        return shapely.to_wkb(shapely.LineString(outer)), False
    wkb = shapely.to_wkb(shapely.Polygon(outer))
    if kind == "trailing":
        return wkb + draw(st.binary(min_size=1, max_size=20)), False
    if kind == "cut":
        return wkb[: draw(st.integers(0, len(wkb) - 1))], False
    return wkb, True


@given(values=st.lists(wkb_values(), max_size=12), nulls=st.lists(st.booleans(), max_size=12))
def test_plain_values_are_the_bytes_geos_writes_back(values: list[tuple[bytes, bool]], nulls: list[bool]) -> None:
    wkbs = [w for w, _ in values]
    present = np.array([not (i < len(nulls) and nulls[i]) for i in range(len(wkbs))], dtype=bool)
    offsets = np.concatenate(([0], np.cumsum([len(w) if p else 0 for w, p in zip(wkbs, present)]))).astype(np.int32)
    data = np.frombuffer(b"".join(w for w, p in zip(wkbs, present) if p), dtype=np.uint8)
    got = plain_polygons(data, offsets, present)
    assert got.tolist() == [plain and p for (_, plain), p in zip(values, present)]
    for wkb, plain in zip(wkbs, got.tolist()):
        if plain:
            assert shapely.to_wkb(shapely.from_wkb(wkb), output_dimension=3) == wkb


def test_a_ring_count_past_the_end_or_a_huge_one_is_not_walked() -> None:
    good = shapely.to_wkb(shapely.box(0, 0, 1, 1))
    many_rings = good[:5] + (2**31).to_bytes(4, "little") + good[9:]
    many_points = good[:9] + (2**30).to_bytes(4, "little") + good[13:]
    wkbs = [good, many_rings, many_points]
    offsets = np.concatenate(([0], np.cumsum([len(w) for w in wkbs])))
    assert plain_polygons(np.frombuffer(b"".join(wkbs), dtype=np.uint8), offsets).tolist() == [True, False, False]
