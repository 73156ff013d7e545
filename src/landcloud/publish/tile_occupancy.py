"""Where a version's rows are (`geo.occupancy`), learnt once per version: a tile over none of them is empty, known
without a statement. Both stores: one scan groups the rows' envelopes by the cells they span (SQL, so a million
rows cross as a few thousand ranges); learnt on the learning thread (`version_learning`), the first time a tile of the
version asks. Until then, and for a version the dataset row does not describe (its extent is the current version's),
only the extent tells a tile empty, as before.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine

from landcloud.catalog import datasets as catalog
from landcloud.geo.occupancy import BBox, Grid, Occupancy
from landcloud.publish.version_learning import Key, Learnt, own_engine, version_key
from landcloud.store.features import feature_store_for

MAX_VERSIONS = 256  # grids kept (each at most 256 KiB)


def cells_sql(engine: Engine, dataset_id: str, version: int, grid: Grid) -> tuple[str, dict[str, object]]:
    """The distinct cell ranges (i0, j0, i1, j1) of the version's envelopes. The grid has a cell of margin around the
    extent, so every quotient is at least 1: truncation (SQLite's CAST) and floor (PostgreSQL's) agree."""
    store = feature_store_for(engine)
    clauses, params = store.conditions(dataset_id, version, None, None, None)
    params.update(oc_x0=grid.x0, oc_y0=grid.y0, oc_cw=grid.cw, oc_ch=grid.ch)
    whole = "floor({})" if store.kind == "postgis" else "{}"

    def cell(column: str, origin: str, size: str) -> str:
        return "CAST(" + whole.format(f"(f.{column} - :{origin}) / :{size}") + " AS INTEGER)"

    cols = [cell("minx", "oc_x0", "oc_cw"), cell("miny", "oc_y0", "oc_ch"), cell("maxx", "oc_x0", "oc_cw"), cell("maxy", "oc_y0", "oc_ch")]
    return (f"SELECT DISTINCT {', '.join(cols)} FROM features f WHERE {' AND '.join(clauses)} AND f.minx IS NOT NULL",
            params)


def scan(engine: Engine, dataset_id: str, version: int, extent: BBox) -> Occupancy:
    """The version's occupancy over `extent` (the version's own), read now."""
    grid = Grid.over(extent)
    sql, params = cells_sql(engine, dataset_id, version, grid)
    with own_engine(engine).connect() as conn:
        ranges = np.array(conn.execute(text(sql), params).all(), dtype=np.int64).reshape(-1, 4)
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
