"""Where a version's rows are (`geo.occupancy`), learnt once per version: a tile over none of them is empty, known
without a statement. Both stores: one scan groups the rows' envelopes by their first cell (SQL: at most one row a
cell crosses, 65,536; 1M parcels on PostgreSQL ~1 s of the database's time and 0.03 s of this process's); learnt on
the learning thread (`version_learning`), the first time a tile of the version asks. Until then, and for a version
the dataset row does not describe (its extent is the current version's), only the extent tells a tile empty, as
before.
"""

from __future__ import annotations

import itertools

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine

from landcloud.catalog import datasets as catalog
from landcloud.geo.occupancy import BBox, Grid, Occupancy
from landcloud.publish.version_learning import Key, Learnt, own_engine, version_key
from landcloud.store.features import feature_store_for

MAX_VERSIONS = 256  # grids kept (each at most 64 KiB)


def cells_sql(engine: Engine, dataset_id: str, version: int, grid: Grid) -> tuple[str, dict[str, object]]:
    """Cell ranges (i0, j0, i1, j1) that hold the version's envelopes: per first cell (i0, j0), the furthest last
    cell of the envelopes starting there, so at most one row a cell crosses (the rectangle holds every envelope
    starting in that cell; a little more is marked than is held, never less). The grid has a cell of margin around
    the extent, so every quotient is at least 1: truncation (SQLite's CAST) and floor (PostgreSQL's) agree."""
    store = feature_store_for(engine)
    clauses, params = store.conditions(dataset_id, version, None, None, None)
    params.update(oc_x0=grid.x0, oc_y0=grid.y0, oc_cw=grid.cw, oc_ch=grid.ch)
    whole = "floor({})" if store.kind == "postgis" else "{}"

    def cell(column: str, origin: str, size: str) -> str:
        return "CAST(" + whole.format(f"(f.{column} - :{origin}) / :{size}") + " AS INTEGER)"

    cells = (f"SELECT {cell('minx', 'oc_x0', 'oc_cw')} AS i0, {cell('miny', 'oc_y0', 'oc_ch')} AS j0, "
             f"{cell('maxx', 'oc_x0', 'oc_cw')} AS i1, {cell('maxy', 'oc_y0', 'oc_ch')} AS j1 "
             f"FROM features f WHERE {' AND '.join(clauses)} AND f.minx IS NOT NULL")
    return f"SELECT i0, j0, max(i1), max(j1) FROM ({cells}) c GROUP BY i0, j0", params


def scan(engine: Engine, dataset_id: str, version: int, extent: BBox) -> Occupancy:
    """The version's occupancy over `extent` (the version's own), read now."""
    grid = Grid.over(extent)
    sql, params = cells_sql(engine, dataset_id, version, grid)
    with own_engine(engine).connect() as conn:
        rows = conn.execute(text(sql), params).all()
    # (numbers out of the rows' values in one pass: np.array over Row objects took 1.4 s for 93,000 of them)
    ranges = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=4 * len(rows)).reshape(-1, 4)
    return Occupancy.of_ranges(grid, ranges)


def _learn(engine: Engine, key: Key, extent: BBox) -> Occupancy:
    return scan(engine, key[1], key[2], extent)


_grids: Learnt[Occupancy | None, BBox] = Learnt("where the rows are", _learn, None, max_keys=MAX_VERSIONS)


def occupancy(engine: Engine, ds: catalog.Dataset, version: int, *, wait: bool = False) -> Occupancy | None:
    """Where the current version's rows are: None until learnt (started here the first time), or for another version."""
    if version != ds.current_version or not ds.extent or len(ds.extent) != 4:
        return None
    extent = tuple(float(v) for v in ds.extent)
    return _grids.get(engine, version_key(engine, ds, version), extent, wait=wait)  # type: ignore[arg-type]


def forget() -> None:
    """Drop every answer (tests)."""
    _grids.forget()
