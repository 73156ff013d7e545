"""The overlap rule's certificate (`geo.separation`): a pair it calls apart never has interiors that meet.

The verdicts of the rule must not change, so every test holds the certificate to GEOS's relate
(DE-9IM T********) on the same pairs: tessellations (clean, jittered into concave cells, with vertices
pushed over the neighbours and repaired as the rules repair them), nested and duplicated shapes, rings of
either orientation, collections, lines, points, empty and missing shapes; and with every edge hashed to one
key, so that only the compared end points can match two edges. A star (a ring that turns one way at every
corner and still is not convex) is not taken for its own hull.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from landcloud.geo import separation
from landcloud.geo.separation import Payoff, apart_codes, apart_pairs, hull_edges, kept_apart

MEET = "T********"


def envelope_pairs(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) whose envelopes meet, as the overlap rule proposes them."""
    present = np.flatnonzero(~(shapely.is_missing(geoms) | shapely.is_empty(geoms)))
    qi, ti = shapely.STRtree(geoms[present]).query(geoms[present])
    keep = ti < qi
    return present[ti[keep]], present[qi[keep]]


def assert_sound(geoms: np.ndarray) -> np.ndarray:
    """`apart_pairs` on the envelope pairs: none of those it settles meets by relate, and the verdicts are the
    same with each pair's shapes the other way round. Returns the verdicts."""
    ia, ib = envelope_pairs(geoms)
    apart = apart_pairs(geoms, ia, ib)
    assert np.array_equal(apart, apart_pairs(geoms, ib, ia)), "a pair's verdict depends on its order"
    if len(ia):
        meets = shapely.relate_pattern(geoms[ia], geoms[ib], MEET)
        wrong = np.flatnonzero(apart & meets)
        assert not len(wrong), [(geoms[ia[w]].wkt, geoms[ib[w]].wkt) for w in wrong[:3]]
    return apart


def grid(nx: int, ny: int, rng: np.random.Generator, jitter: float) -> list[shapely.Geometry]:
    """Quads over a lattice whose inner vertices moved by up to `jitter` cells (0.5 and more: concave, or folded)."""
    px, py = np.meshgrid(np.arange(nx + 1, dtype=float), np.arange(ny + 1, dtype=float), indexing="ij")
    px[1:nx, 1:ny] += rng.uniform(-jitter, jitter, (nx - 1, ny - 1))
    py[1:nx, 1:ny] += rng.uniform(-jitter, jitter, (nx - 1, ny - 1))
    return [
        shapely.Polygon([(px[i, j], py[i, j]), (px[i + 1, j], py[i + 1, j]), (px[i + 1, j + 1], py[i + 1, j + 1]), (px[i, j + 1], py[i, j + 1])])
        for i in range(nx)
        for j in range(ny)
    ]


def test_a_grid_of_squares_is_settled_by_its_shared_edges() -> None:
    squares = np.array([shapely.box(i, j, i + 1, j + 1) for i in range(4) for j in range(4)])
    ia, ib = envelope_pairs(squares)
    apart = apart_pairs(squares, ia, ib)
    shares_edge = shapely.length(shapely.intersection(squares[ia], squares[ib])) > 0
    assert shares_edge.sum() == 24  # 4 x 3 pairs each way
    assert np.array_equal(apart, shares_edge)  # corner neighbours share no edge: left to relate
    assert not shapely.relate_pattern(squares[ia], squares[ib], MEET).any()


def test_rings_of_either_orientation_are_settled() -> None:
    left = shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])  # counter-clockwise
    right_cw = shapely.Polygon([(1, 0), (1, 1), (2, 1), (2, 0)])  # clockwise: runs the shared edge the same way
    right_ccw = shapely.Polygon([(1, 0), (2, 0), (2, 1), (1, 1)])
    for right in (right_cw, right_ccw):
        geoms = np.array([left, right])
        assert apart_pairs(geoms, np.array([0]), np.array([1])).tolist() == [True]


def test_shapes_on_the_same_side_of_a_shared_edge_are_not_settled() -> None:
    outer = shapely.box(0, 0, 4, 4)
    inner = shapely.box(0, 0, 1, 4)  # inside, along the outer's left edge: one hull edge, same side
    same = shapely.box(0, 0, 4, 4)
    geoms = np.array([outer, inner, same])
    apart = apart_pairs(geoms, np.array([0, 0, 1]), np.array([1, 2, 2]))
    assert apart.tolist() == [False, False, False]
    assert shapely.relate_pattern(geoms[[0, 0, 1]], geoms[[1, 2, 2]], MEET).all()


def test_a_concave_neighbour_goes_by_its_hull() -> None:
    # an L whose hull's edge along x = 2 is the right square's edge: apart; the notch's square is not settled
    ell = shapely.Polygon([(0, 0), (2, 0), (2, 2), (1, 2), (1, 1), (0, 1)])
    right = shapely.box(2, 0, 3, 2)
    notch = shapely.box(0, 1, 1, 2)
    geoms = np.array([ell, right, notch])
    apart = apart_pairs(geoms, np.array([0, 0]), np.array([1, 2]))
    assert apart.tolist() == [True, False]
    assert not shapely.relate_pattern(geoms[[0, 0]], geoms[[1, 2]], MEET).any()


def test_a_star_is_not_taken_for_its_own_hull() -> None:
    # a pentagram turns one way at every corner, yet its ring is not convex (and not valid)
    star = shapely.Polygon([(0, 3), (1.2, -1), (-1.9, 1.6), (1.9, 1.6), (-1.2, -1)])
    xy, idx = shapely.get_coordinates(np.array([star, shapely.box(0, 0, 1, 1)]), return_index=True)
    convex, ccw = separation._convex_rings(xy, idx, 2)
    assert convex.tolist() == [False, True] and ccw.tolist()[1]
    # its edges come from GEOS's hull of it: the pentagon of its points
    edges = hull_edges(np.array([star]))
    assert len(edges.key) == 5
    ends = {tuple(e) for e in edges.ends.tolist()}
    assert ((-1.9, 1.6, -1.2, -1.0)) in ends


def test_shapes_that_give_no_edges() -> None:
    geoms = np.array(
        [
            None,
            shapely.Polygon(),
            shapely.Point(0, 0),
            shapely.LineString([(0, 0), (1, 0)]),
            shapely.Polygon([(0, 0), (1, 0), (2, 0), (0, 0)]),  # collinear: its hull is a line
        ],
        dtype=object,
    )
    edges = hull_edges(geoms)
    assert len(edges.key) == 0
    assert not apart_pairs(geoms, np.array([2, 3]), np.array([3, 4])).any()


def test_holes_and_several_parts_go_by_their_hull() -> None:
    holed = shapely.Polygon([(0, 0), (2, 0), (2, 2), (0, 2)], [[(0.5, 0.5), (1.5, 0.5), (1.5, 1.5), (0.5, 1.5)]])
    inside = shapely.box(0.5, 0.5, 1.5, 1.5)  # fills the hole: touches only
    parts = shapely.MultiPolygon([shapely.box(2, 0, 3, 1), shapely.box(2, 1, 3, 2)])  # right of the holed square
    geoms = np.array([holed, inside, parts])
    apart = apart_pairs(geoms, np.array([0, 0]), np.array([1, 2]))
    assert apart.tolist() == [False, True]  # the hole's filling shares no hull edge; the parts' hull does


def test_edges_are_matched_by_their_ends_not_their_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(separation, "_MIX", np.zeros(4, dtype=np.uint64))  # every edge: key 0
    rng = np.random.default_rng(5)
    geoms = np.array(grid(4, 4, rng, 0.2))
    apart = assert_sound(geoms)
    monkeypatch.undo()
    assert np.array_equal(apart, assert_sound(geoms))  # the same pairs as with the keys spread


def test_codes_offsets_and_lookup() -> None:
    a = np.array([shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 6)])
    b = np.array([shapely.box(9, 9, 10, 10), shapely.box(1, 0, 2, 1)])
    codes = apart_codes(hull_edges(a), hull_edges(b), len(b), offset_a=10)
    assert codes.tolist() == [(10 + 0) * 2 + 1]
    assert kept_apart([codes], np.array([10, 10, 11]), np.array([1, 0, 1]), 2).tolist() == [True, False, False]
    assert kept_apart([], np.array([1]), np.array([1]), 2).tolist() == [False]


@hsettings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    jitter=st.sampled_from([0.0, 0.2, 0.45, 0.7]),
    pushes=st.integers(0, 6),
    extras=st.integers(0, 4),
    flip=st.booleans(),
)
def test_never_apart_where_relate_says_the_interiors_meet(seed: int, jitter: float, pushes: int, extras: int, flip: bool) -> None:
    rng = np.random.default_rng(seed)
    cells = grid(5, 4, rng, jitter)
    for _ in range(pushes):  # a vertex over the neighbours (or away: a gap)
        i = int(rng.integers(len(cells)))
        xy = np.asarray(cells[i].exterior.coords)[:-1].copy()
        xy[int(rng.integers(len(xy)))] += rng.uniform(-0.6, 0.6, 2)
        cells[i] = shapely.Polygon(xy)
    for _ in range(extras):  # shapes laid over the tessellation: copies, shifted copies, boxes along grid lines
        kind = int(rng.integers(3))
        base = cells[int(rng.integers(len(cells)))]
        if kind == 0:
            cells.append(shapely.Polygon(base.exterior.coords))
        elif kind == 1:
            shift = rng.uniform(-0.5, 0.5, 2)
            cells.append(shapely.transform(base, lambda c, shift=shift: c + shift))
        else:
            x, y = int(rng.integers(4)), int(rng.integers(3))
            cells.append(shapely.box(x, y, x + int(rng.integers(1, 3)), y + 1))
    if flip:  # every other ring the other way round
        cells = [shapely.reverse(c) if i % 2 else c for i, c in enumerate(cells)]
    # the rule sees valid shapes only (an invalid one is an error, or repaired as here), and relate's verdict on
    # an invalid one (a ring crossing itself) says nothing about the point sets
    geoms = shapely.make_valid(np.array(cells, dtype=object))
    assert shapely.is_valid(geoms).all()
    assert_sound(geoms)


def test_a_clean_tessellation_is_mostly_settled() -> None:
    rng = np.random.default_rng(11)
    points = shapely.multipoints(rng.random((400, 2)))
    cells = np.asarray(shapely.voronoi_polygons(points, extend_to=shapely.box(0, 0, 1, 1)).geoms)
    cells = shapely.intersection(cells, shapely.box(0, 0, 1, 1))  # convex cells clipped by a square: convex
    apart = assert_sound(cells)
    ia, ib = envelope_pairs(cells)
    shares_edge = shapely.length(shapely.intersection(cells[ia], cells[ib])) > 0
    assert apart[shares_edge].mean() > 0.99
    assert not apart[~shares_edge].any()


def test_payoff_stops_and_probes_again() -> None:
    pay = Payoff()
    assert pay.wanted()
    pay.record(90, 100)
    assert pay.wanted()
    pay.record(10, 100)  # below a quarter: off
    wanted = [pay.wanted() for _ in range(Payoff.PROBE)]
    assert wanted == [False] * (Payoff.PROBE - 1) + [True]
    pay.record(50, 100)  # the probe paid: on again
    assert pay.wanted() and pay.wanted()


def test_payoff_settles_a_group_or_leaves_it_to_relate() -> None:
    squares = np.array([shapely.box(i, 0, i + 1, 1) for i in range(4)])
    circles = np.array([shapely.Point(i * 0.9, i * 0.9).buffer(0.5, 4) for i in range(4)])
    pay = Payoff()
    ia, ib = np.array([0, 1, 2]), np.array([1, 2, 3])
    assert pay.settle(squares, ia, ib).tolist() == [True, True, True]
    assert pay.settle(circles, ia, ib).tolist() == [False, False, False]  # none settled: hulls left out
    assert pay.settle(squares, ia, ib) is None
