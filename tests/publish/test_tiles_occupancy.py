"""A tile over none of the current version's rows is known empty without a statement, on both stores; a tile with a
row in it, even one touching its edge, is never taken for empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from test_tiles import layer, pg_url, submit  # noqa: F401 (pg_url: a database of our own)

from landcloud.access.policy import Access, Clause
from landcloud.access.principal import system_principal
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.geo.occupancy import Grid
from landcloud.geo.tiles import WEB_MERCATOR_QUAD
from landcloud.publish import tile_occupancy, tiles
from landcloud.publish.tiles import known_empty, plan_tile, render_tile

EVERYONE = Access(True, (Clause(None, None, frozenset(), "owner"),), frozenset(), audited=False)
Z = 12


def point(key: str, lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Feature", "properties": {"ID": key, "NAME": key}, "geometry": {"type": "Point", "coordinates": [lon, lat]}}


def square(key: str, lon: float, lat: float, side: float) -> dict[str, Any]:
    ring = [[lon, lat], [lon + side, lat], [lon + side, lat + side], [lon, lat + side], [lon, lat]]
    return {"type": "Feature", "properties": {"ID": key, "NAME": key}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def no_statement(*_: Any, **__: Any) -> Any:
    raise AssertionError("a tile known empty ran a statement")


def test_a_tile_between_two_clusters_is_empty_without_a_statement(
    engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    west, north_east = (126.60, 45.75), (127.60, 46.60)
    edge_w, _, _, _ = WEB_MERCATOR_QUAD.tile_bounds_lonlat(Z, *WEB_MERCATOR_QUAD.tile_for_lonlat(127.10, 46.20, Z))
    feats = [point(f"w{i}", west[0] + i * 1e-3, west[1]) for i in range(5)]
    feats += [point(f"e{i}", north_east[0] + i * 1e-3, north_east[1]) for i in range(5)]
    feats.append(point("edge", edge_w, 46.20))  # on the west edge of the tile at (127.10, 46.20): in that tile
    submit(engine, settings, tmp_path, "two-clusters", feats, unit="230000", key="ID")
    ds = catalog.get_dataset(engine, "two-clusters")
    assert ds is not None and ds.current_version == 1
    tile_occupancy.forget()
    me = system_principal()

    def plan(lon: float, lat: float) -> tiles.TilePlan:
        return plan_tile(ds, EVERYONE, None, WEB_MERCATOR_QUAD, Z, *WEB_MERCATOR_QUAD.tile_for_lonlat(lon, lat, Z), engine=engine)

    middle = plan(126.95, 46.30)  # inside the extent, nowhere near a row
    assert not known_empty(engine, ds, middle)  # not learnt yet: the extent alone cannot tell
    grid = tile_occupancy.occupancy(engine, ds, 1, wait=True)
    assert grid is not None and grid.occupied.sum() >= 3
    assert known_empty(engine, ds, middle)
    for lon, lat in (west, north_east, (127.10, 46.20), (edge_w - 1e-9, 46.20)):  # the edge row is in both tiles
        assert not known_empty(engine, ds, plan(lon, lat)), (lon, lat)
    monkeypatch.setattr(tiles, "_render_postgis", no_statement)
    monkeypatch.setattr(tiles, "_render_python", no_statement)
    assert render_tile(engine, me, ds, EVERYONE, None, WEB_MERCATOR_QUAD, Z, *WEB_MERCATOR_QUAD.tile_for_lonlat(126.95, 46.30, Z)) == b""
    with pytest.raises(AssertionError, match="ran a statement"):
        render_tile(engine, me, ds, EVERYONE, None, WEB_MERCATOR_QUAD, Z, *WEB_MERCATOR_QUAD.tile_for_lonlat(127.10, 46.20, Z))
    monkeypatch.undo()
    for lon in (127.10, edge_w - 1e-9):  # the tile east of the edge and the one west of it both draw the edge row
        got = render_tile(engine, me, ds, EVERYONE, None, WEB_MERCATOR_QUAD, Z, *WEB_MERCATOR_QUAD.tile_for_lonlat(lon, 46.20, Z))
        assert {f["properties"]["ID"] for f in layer(got, "two-clusters")} == {"edge"}, lon


def test_a_later_version_is_learnt_anew_and_an_earlier_one_not_at_all(
    engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str
) -> None:
    submit(engine, settings, tmp_path, "grows", [point("a", 126.60, 45.75), point("b", 127.60, 46.60)], unit="230000", key="ID")
    submit(engine, settings, tmp_path, "grows", [point("c", 126.95, 46.30)], unit="230000", key="ID", mode="incremental")
    ds = catalog.get_dataset(engine, "grows")
    assert ds is not None and ds.current_version == 2
    tile_occupancy.forget()
    assert tile_occupancy.occupancy(engine, ds, 1, wait=True) is None  # the dataset row describes version 2 only
    xy = WEB_MERCATOR_QUAD.tile_for_lonlat(126.95, 46.30, Z)
    assert tile_occupancy.occupancy(engine, ds, 2, wait=True) is not None
    assert not known_empty(engine, ds, plan_tile(ds, EVERYONE, None, WEB_MERCATOR_QUAD, Z, *xy, engine=engine))
    got = render_tile(engine, system_principal(), ds, EVERYONE, None, WEB_MERCATOR_QUAD, Z, *xy)
    assert {f["properties"]["ID"] for f in layer(got, "grows")} == {"c"}


def test_the_stores_cells_are_the_floor_of_each_envelope(engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str) -> None:
    """SQLite truncates a quotient, PostgreSQL's CAST rounds it: the statement takes the floor on both, as `Grid.cells`
    does, and gives per first cell the furthest last one."""
    rng = np.random.default_rng(5)
    sides = rng.uniform(1e-4, 0.04, 60)  # one square in each 0.05° slot (they may not overlap), anywhere in it
    feats = [square(f"s{i}", 126.0 + (i % 10) * 0.05 + rng.uniform(0, 0.05 - s), 45.0 + (i // 10) * 0.05 + rng.uniform(0, 0.05 - s), float(s))
             for i, s in enumerate(sides)]
    submit(engine, settings, tmp_path, "squares", feats, unit="230000", key="ID")
    ds = catalog.get_dataset(engine, "squares")
    assert ds is not None and ds.extent is not None
    grid = Grid.over(tuple(float(v) for v in ds.extent))  # type: ignore[arg-type]
    sql, params = tile_occupancy.cells_sql(engine, "squares", 1, grid)
    with engine.connect() as conn:
        got = {tuple(r) for r in conn.execute(sa.text(sql), params)}
        boxes = conn.execute(sa.text("SELECT minx, miny, maxx, maxy FROM features WHERE dataset_id = 'squares'")).all()
    want: dict[tuple[int, int], tuple[int, int]] = {}  # per first cell, the furthest last cell
    for b in boxes:
        i0, j0, i1, j1 = grid.cells(tuple(b))
        far = want.get((i0, j0), (i1, j1))
        want[(i0, j0)] = (max(far[0], i1), max(far[1], j1))
    assert got == {(*first, *last) for first, last in want.items()} and len(got) > 30
