"""The occupancy grid never calls a box empty that an envelope meets, and calls empty what lies well away from all."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from landcloud.geo.occupancy import MAX_CELLS, MIN_CELL, Grid, Occupancy

coord = st.floats(-1.0, 1.0, allow_nan=False)


@st.composite
def boxes(draw: st.DrawFn, span: float = 3.0) -> tuple[float, float, float, float]:
    x = draw(st.floats(120.0, 120.0 + span, allow_nan=False))
    y = draw(st.floats(40.0, 40.0 + span, allow_nan=False))
    w = draw(st.one_of(st.just(0.0), st.floats(0.0, span / 4, allow_nan=False)))
    h = draw(st.one_of(st.just(0.0), st.floats(0.0, span / 4, allow_nan=False)))
    return x, y, x + w, y + h


def occupancy_of(envelopes: list[tuple[float, float, float, float]]) -> Occupancy:
    """What the store's scan gives: the extent of the envelopes, each envelope's cells by floor division."""
    e = np.array(envelopes)
    extent = (float(e[:, 0].min()), float(e[:, 1].min()), float(e[:, 2].max()), float(e[:, 3].max()))
    grid = Grid.over(extent)
    ranges = np.array([grid.cells(b) for b in envelopes], dtype=np.int64)
    return Occupancy.of_ranges(grid, ranges)


def meets(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


@settings(max_examples=300, deadline=None)
@given(st.lists(boxes(), min_size=1, max_size=40), st.lists(boxes(), min_size=1, max_size=20))
def test_a_box_an_envelope_meets_is_never_called_empty(envelopes: list, queries: list) -> None:
    occ = occupancy_of(envelopes)
    for q in queries + envelopes:  # an envelope meets itself; a box touching one only at an edge or a corner too
        if any(meets(q, e) for e in envelopes):
            assert occ.may_meet(q), (q, [e for e in envelopes if meets(q, e)])


@settings(max_examples=200, deadline=None)
@given(st.lists(boxes(), min_size=1, max_size=40), boxes())
def test_a_box_two_cells_away_from_every_envelope_is_empty(envelopes: list, q: tuple) -> None:
    occ = occupancy_of(envelopes)
    g = occ.grid
    margin = 2.5 * max(g.cw, g.ch)
    if all(not meets(q, (e[0] - margin, e[1] - margin, e[2] + margin, e[3] + margin)) for e in envelopes):
        assert not occ.may_meet(q)


def test_the_grid_is_bounded_and_never_finer_than_its_least_cell() -> None:
    province = Grid.over((121.18, 43.42, 135.09, 53.56))  # Heilongjiang's box
    assert (province.nx, province.ny) == (MAX_CELLS, MAX_CELLS)
    town = Grid.over((126.60, 45.75, 126.61, 45.76))
    assert MIN_CELL <= town.cw < 1.5 * MIN_CELL and MIN_CELL <= town.ch < 1.5 * MIN_CELL
    assert 5 <= town.nx <= 7 and 5 <= town.ny <= 7  # 0.01° in cells of at least 0.002°, a margin each side
    point = Grid.over((126.6, 45.7, 126.6, 45.7))  # one row, one point: one cell
    assert (point.nx, point.ny) == (3, 3) and math.isclose(point.cw, MIN_CELL)


def test_two_clusters_leave_the_middle_empty_and_the_outside_too() -> None:
    occ = occupancy_of([(121.0, 43.0, 121.01, 43.01), (135.0, 53.0, 135.01, 53.01)])
    assert occ.may_meet((121.005, 43.005, 121.006, 43.006))
    assert occ.may_meet((135.01, 53.01, 136.0, 54.0))  # touches the corner
    assert not occ.may_meet((128.0, 48.0, 128.1, 48.1))
    assert not occ.may_meet((100.0, 20.0, 101.0, 21.0))
    assert occ.nbytes == MAX_CELLS * MAX_CELLS
    ranges_out_of_grid = np.array([[-5, -5, -1, -1], [10**6, 10**6, 10**6 + 3, 10**6 + 3]])  # clipped, not an error
    clipped = Occupancy.of_ranges(occ.grid, ranges_out_of_grid)
    assert clipped.occupied[0, 0] and clipped.occupied[-1, -1] and clipped.occupied.sum() == 2
