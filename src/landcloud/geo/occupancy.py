"""Where a version's rows are: a coarse grid of the cells their envelopes meet, to know a tile empty without a query.

A layer's extent is one rectangle; much of it can be empty. A province's parcels leave the corners of Heilongjiang's
box to Inner Mongolia, Jilin and Russia; a sparse layer (landslide points, mining rights, a town's registered parcels)
leaves most of its box empty. A map over such a layer asks mostly for empty tiles, and each cost a statement (the
bench's 40 empty DLTB tiles, 33 of them inside Heilongjiang's box: 0.78 ms median; the seven beyond the box, known
empty from the extent, had been 0.54 ms). The grid answers them from memory: a tile none of whose cells holds a row's
envelope holds nothing, for any caller.

The grid only ever says "maybe" where a row might be: every cell an envelope meets is marked, and a box is tested with
one cell more on each side, so neither rounding of the cell arithmetic (done in SQL for the marks, here for the tests)
nor a row touching the box's edge can make a tile with a row in it look empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

MAX_CELLS = 256  # per axis: at most 64 KiB a grid (Heilongjiang's box: cells of ~4.4 km, a z12 tile 1.6 wide)
MIN_CELL = 0.002  # degrees (~160-220 m at 45° N): a z14 tile is 0.022° wide; finer cells tell apart no more tiles

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Grid:
    """Cells over an extent: cell (i, j) covers [x0 + i·cw, x0 + (i+1)·cw) × [y0 + j·ch, y0 + (j+1)·ch)."""

    x0: float
    y0: float
    cw: float
    ch: float
    nx: int
    ny: int

    @classmethod
    def over(cls, extent: BBox) -> Grid:
        """The grid of an extent, one cell of margin around it (the cell of a row on its edge is then inside)."""
        minx, miny, maxx, maxy = extent
        nx = int(min(MAX_CELLS - 2, max(1, (maxx - minx) // MIN_CELL)))  # rounded down: no cell under MIN_CELL
        ny = int(min(MAX_CELLS - 2, max(1, (maxy - miny) // MIN_CELL)))
        cw = max(maxx - minx, MIN_CELL) / nx
        ch = max(maxy - miny, MIN_CELL) / ny
        return cls(minx - cw, miny - ch, cw, ch, nx + 2, ny + 2)

    def cells(self, box: BBox, widen: int = 0) -> tuple[int, int, int, int]:
        """The range of cells (i0, j0, i1, j1, inclusive) a box meets, `widen` more on each side, clipped to the grid."""
        minx, miny, maxx, maxy = box
        i0 = math.floor((minx - self.x0) / self.cw) - widen
        j0 = math.floor((miny - self.y0) / self.ch) - widen
        i1 = math.floor((maxx - self.x0) / self.cw) + widen
        j1 = math.floor((maxy - self.y0) / self.ch) + widen
        return max(i0, 0), max(j0, 0), min(i1, self.nx - 1), min(j1, self.ny - 1)


@dataclass(frozen=True)
class Occupancy:
    """The cells of a grid some row's envelope meets."""

    grid: Grid
    occupied: NDArray[np.bool_]  # (ny, nx)

    @classmethod
    def of_ranges(cls, grid: Grid, ranges: NDArray[np.int64]) -> Occupancy:
        """From the envelopes' cell ranges, one (i0, j0, i1, j1) a row (inclusive; clipped to the grid here)."""
        r = np.asarray(ranges, dtype=np.int64).reshape(-1, 4)
        i0 = np.clip(r[:, 0], 0, grid.nx - 1)
        j0 = np.clip(r[:, 1], 0, grid.ny - 1)
        i1 = np.clip(np.maximum(r[:, 2], r[:, 0]), 0, grid.nx - 1)
        j1 = np.clip(np.maximum(r[:, 3], r[:, 1]), 0, grid.ny - 1)
        marks = np.zeros((grid.ny + 1, grid.nx + 1), dtype=np.int64)  # a rectangle = four corners, summed up below
        np.add.at(marks, (j0, i0), 1)
        np.add.at(marks, (j0, i1 + 1), -1)
        np.add.at(marks, (j1 + 1, i0), -1)
        np.add.at(marks, (j1 + 1, i1 + 1), 1)
        covered = marks.cumsum(axis=0).cumsum(axis=1)[: grid.ny, : grid.nx] > 0
        return cls(grid, covered)

    def may_meet(self, box: BBox) -> bool:
        """False only when no row's envelope can meet the box (a box outside the grid meets nothing)."""
        g = self.grid
        if box[2] < g.x0 or box[0] > g.x0 + g.cw * g.nx or box[3] < g.y0 or box[1] > g.y0 + g.ch * g.ny:
            return False
        i0, j0, i1, j1 = g.cells(box, widen=1)
        return bool(self.occupied[j0 : j1 + 1, i0 : i1 + 1].any())

    @property
    def nbytes(self) -> int:
        return int(self.occupied.nbytes)
