"""SQLite (tiles made in Python) and PostGIS (ST_AsMVT) give the same features in every tile.

The same files are loaded into a SQLite store and a PostGIS store the real way; tiles over
several zooms of both tile matrix sets are decoded from both and compared feature by feature
(keys, attributes, roughly the same shape), for every row restriction the policy can produce:
all rows, rows by administrative-code prefix, rows by area, and fields of a narrow grant.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from hypothesis import strategies as hs
from mapbox_vector_tile.Mapbox import vector_tile_pb2
from test_tiles import DAOLI, key_of, layer, pg_url, setup_daoli, submit  # noqa: F401 (pg_url: a database of our own)

from landcloud.access.policy import Access, Clause
from landcloud.access.principal import system_principal
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.demo.parcels import dltb_features
from landcloud.geo.tilegen import LEVELS
from landcloud.geo.tiles import WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD
from landcloud.publish import tile_types
from landcloud.publish.tiles import _NUMERIC_KEY_SQL, EXTENT, SIMPLIFY_CELLS, feature_id, plan_tile, postgis_tile_sql, render_tile
from landcloud.store.engine import get_engine
from landcloud.store.features import RowFilter
from landcloud.store.migrate import upgrade

ZOOMS = (5, 8, 10, 12, 14)
MAX_TILES = 8


def odd_features(boundary: shapely.Geometry, seed: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Shapes that test the edges of the rule: sub-pixel to few-pixel squares, slivers, holes, points, lines."""
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = boundary.bounds
    polys: list[shapely.Geometry] = []
    kinds: list[str] = []  # P plain, S axis-parallel sliver, D diagonal sliver
    points: list[shapely.Geometry] = []
    lines: list[shapely.Geometry] = []

    def where() -> tuple[float, float]:
        return float(rng.uniform(minx, maxx)), float(rng.uniform(miny, maxy))

    def add(make: Any, kind: str = "P") -> None:  # polygons may not overlap (the submission rules refuse that)
        while True:
            g = make(*where())
            if boundary.contains(g) and not any(g.intersects(p) for p in polys):
                polys.append(g)
                kinds.append(kind)
                return

    for i, size in enumerate(np.geomspace(2e-6, 3e-3, 60)):
        add(lambda x, y, s=size: shapely.box(x, y, x + s, y + s * rng.uniform(0.3, 3)))
        if i % 3 == 0:  # slivers: long and a hair wide, axis-parallel and diagonal
            add(lambda x, y, s=size: shapely.box(x, y, x + s * 20, y + s / 50), "S")
            add(lambda x, y, s=size: shapely.Polygon([(x, y), (x + s * 10, y + s * 10), (x + s * 10, y + s * 10.05)]), "D")
    add(lambda x, y: shapely.Point(x, y).buffer(0.01, 64).difference(shapely.Point(x, y).buffer(0.006, 64)))  # with a hole
    add(lambda x, y: shapely.MultiPolygon([shapely.box(x, y, x + 0.004, y + 0.004), shapely.box(x + 0.01, y, x + 0.014, y + 0.004)]))
    for _ in range(30):
        points.append(shapely.Point(*where()))
        x, y = where()
        lines.append(shapely.LineString([(x, y), (x + rng.normal(0, 0.01), y + rng.normal(0, 0.01)), (x + rng.normal(0, 0.02), y)]))
    x, y = where()
    lines.append(shapely.LineString([(x, y), (x + 1e-6, y)]))  # a sub-pixel line

    def as_features(prefixes: list[str], geoms: list[shapely.Geometry]) -> list[dict[str, Any]]:
        return [
            {
                "type": "Feature",
                "properties": {"ID": f"{p}-{i}", "ZLDWDM": f"23010210{i % 3 + 1}201", "NAME": f"{p} {i}", "N": i, "R": i / 7},
                "geometry": shapely.geometry.mapping(g),
            }
            for i, (p, g) in enumerate(zip(prefixes, geoms))
        ]

    return {
        "odd-polygons": as_features(kinds, polys),
        "odd-points": as_features(["T"] * len(points), points),
        "odd-lines": as_features(["L"] * len(lines), lines),
    }


def load_everywhere(engines: list[sa.Engine], settings: list[Settings], tmp: Path) -> dict[str, Any]:
    boundary = None
    for engine in engines:
        boundary = setup_daoli(engine)
    assert boundary is not None
    parcels = list(dltb_features(boundary, DAOLI, 400, seed=11))
    odd = odd_features(boundary)
    extents = {}
    for engine, s in zip(engines, settings):
        folder = tmp / engine.dialect.name
        folder.mkdir()
        submit(engine, s, folder, "daoli-dltb", parcels, unit=DAOLI, schema="DLTB")
        for name, feats in odd.items():
            submit(engine, s, folder, name, feats, unit="230000", key="ID")
            catalog.update_metadata(engine, name, {"jurisdiction_field": "ZLDWDM"})
        for name in ("daoli-dltb", *odd):  # every field and the ids at every zoom: features are compared by key
            catalog.set_extra(engine, name, {"tiles": {"detail_zoom": 0}})
        extents = {d.id: d.extent for d in catalog.list_datasets(engine)}
    return extents


def accesses() -> dict[str, Access]:
    """What the policy can make of a caller: every row; rows by code prefix; rows by area plus a narrow grant."""
    part = shapely.box(126.3, 45.6, 126.5, 45.7)
    grant_fields = frozenset({"BSM", "ID", "DLBM", "N"})
    return {
        "all": Access(True, (Clause(None, None, frozenset(), "owner"),), frozenset(), audited=False),
        "prefix": Access(True, (Clause(RowFilter(prefixes=(("ZLDWDM", "230102101"),)), None, frozenset(), "descendant"),),
                         frozenset(), audited=False),
        "area+grant": Access(True, (
            Clause(RowFilter(areas=(shapely.to_wkb(part),)), None, frozenset(), "descendant"),
            Clause(RowFilter(prefixes=(("ZLDWDM", "230102102"),)), grant_fields, frozenset(), "grant:g"),
        ), frozenset(), audited=False),
    }


def _distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """How far apart two tile geometries are (Hausdorff distance, tile units)."""
    return float(shapely.hausdorff_distance(shapely.geometry.shape(a["geometry"]), shapely.geometry.shape(b["geometry"])))


def _copies(engine: sa.Engine) -> set[tuple[str, int]]:
    with engine.connect() as conn:
        return {
            (r[0], r[1])
            for r in conn.exec_driver_sql("SELECT f.fkey, g.level FROM feature_tilegeoms g JOIN features f ON f.id = g.feature_id")
        }


@pytest.mark.parametrize("backend", ["postgis"])
@pytest.mark.parametrize("copies", ["built", "none"])
def test_sqlite_and_postgis_give_the_same_features_per_tile(
    engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str, copies: str
) -> None:
    """With the pre-generalised copies each store built (PostGIS on the server, SQLite with shapely), and without any
    (a store from before them, a build that failed: every shape simplified on the fly, as before). Without, the Python
    way makes the very same tile on either store; with, the copies come from two GEOS builds (the server's and
    shapely's), which may keep another vertex of the same line within the tolerance: the same features, properties and
    ids, shapes within the bound below."""
    lite_settings = Settings(data_dir=tmp_path / "lite", secret_key="test-secret")
    lite = get_engine(lite_settings)
    upgrade(lite)
    extents = load_everywhere([lite, engine], [lite_settings, settings], tmp_path)
    built = _copies(lite)
    assert built == _copies(engine) and {level for _, level in built} == set(LEVELS)  # the same rule on both stores
    if copies == "none":
        for e in (lite, engine):
            with e.begin() as conn:
                conn.exec_driver_sql("DELETE FROM feature_tilegeoms")
    me = system_principal("test")
    compared = features = 0
    per_caller: dict[str, int] = {}
    distances: list[float] = []
    slivers = 0
    for dataset_id, extent in extents.items():
        ds_lite, ds_pg = catalog.get_dataset(lite, dataset_id), catalog.get_dataset(engine, dataset_id)
        assert ds_lite is not None and ds_pg is not None
        for who, access in accesses().items():
            if who != "all" and dataset_id == "odd-lines":
                continue
            for tms in (WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD):
                for z in ZOOMS:
                    tiles = list(tms.tiles_covering(tuple(extent), z))
                    if len(tiles) > MAX_TILES:
                        tiles = tiles[:: len(tiles) // MAX_TILES][:MAX_TILES]
                    for x, y in tiles:
                        made = {
                            "sqlite": render_tile(lite, me, ds_lite, access, None, tms, z, x, y),
                            "st_asmvt": render_tile(engine, me, ds_pg, access, None, tms, z, x, y, method="postgis"),
                            "pg-python": render_tile(engine, me, ds_pg, access, None, tms, z, x, y, method="python"),
                        }
                        decoded = {k: {key_of(f): f for f in layer(v, dataset_id)} for k, v in made.items()}
                        where = (dataset_id, who, tms.id, z, x, y)
                        assert set(decoded["sqlite"]) == set(decoded["st_asmvt"]) == set(decoded["pg-python"]), where
                        for key, f in decoded["sqlite"].items():  # the Python way makes the same tile on either store
                            g = decoded["pg-python"][key]
                            if copies == "none":
                                assert f == g, (where, key)
                            else:
                                assert f["properties"] == g["properties"] and f.get("id", 0) == g.get("id", 0), (where, key)
                                if not key.startswith("D-"):
                                    distances.append(_distance(f, g))
                        for key, f in decoded["sqlite"].items():
                            g = decoded["st_asmvt"][key]
                            assert f["properties"] == g["properties"], (where, key)
                            assert f.get("id", 0) == g.get("id", 0), (where, key)
                            if key.startswith("D-"):
                                slivers += 1  # diagonal slivers: GEOS may keep a hair of area where wagyu
                                continue  # collapses it (and the feature is then drawn as its envelope)
                            distances.append(_distance(f, g))
                            features += 1
                        compared += 1
                        per_caller[who] = per_caller.get(who, 0) + len(decoded["sqlite"])
    assert compared > 300 and features > 3000 and slivers > 20
    assert per_caller["all"] > per_caller["area+grant"] > per_caller["prefix"] > 0
    # the simplified shapes (GEOS here, GEOS and wagyu in PostGIS) lie within the simplification
    # tolerance of the same lines, so within twice that plus the snapping of each other
    limit = 2 * SIMPLIFY_CELLS * EXTENT / 256 + 2
    assert max(distances) <= limit, sorted(distances)[-5:]


@pytest.mark.parametrize("backend", ["postgis"])
def test_st_asmvt_carries_the_property_values_the_python_way_does(
    engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str
) -> None:
    """Strings, numbers and booleans kept, nulls left out; `_key` for keys that are no MVT id, also over a field of
    that name: the same properties and ids either way (lists and objects arrive as text from a submission)."""
    columns: dict[str, list[Any]] = {  # one type per field (or null), as a submission keeps them
        "S": ["文字", "", None, "0", "007", "x"],
        "I": [0, -7, 2**53, None, 12, 1],
        "F": [1.5, -0.25, None, 0.1, 3.0, 2.5],  # (ST_AsMVT writes a number within FLT_EPSILON of an integer as that integer: 1e-9 → 0)
        "B": [True, False, None, True, False, True],
        "L": [[1, 2], {"a": 1}, None, [], {}, ["x"]],
    }
    keys = ["1", "02", "x-3", "4", "18446744073709551615", "0"]
    feats = [
        {
            "type": "Feature",
            "properties": {"ID": key, **{name: col[i] for name, col in columns.items()}, "_key": f"field {i}" if i % 3 == 0 else None},
            "geometry": {"type": "Point", "coordinates": [126.6 + i * 0.001, 45.75]},
        }
        for i, key in enumerate(keys)
    ]
    submit(engine, settings, tmp_path, "values", feats, unit="230000", key="ID")
    me = system_principal("test")
    ds = catalog.get_dataset(engine, "values")
    assert ds is not None
    access = accesses()["all"]
    z = 12
    x, y = WEB_MERCATOR_QUAD.tile_for_lonlat(126.605, 45.75, z)
    st = {key_of(f): f for f in layer(render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, z, x, y, method="postgis"), "values")}
    py = {key_of(f): f for f in layer(render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, z, x, y, method="python"), "values")}
    assert len(st) == len(feats) and st.keys() == py.keys()
    for key, f in st.items():
        assert f["properties"] == py[key]["properties"] and f.get("id", 0) == py[key].get("id", 0), key
    kept = {type(v) for f in st.values() for v in f["properties"].values()}
    assert kept == {str, int, float, bool}, kept
    assert sum("S" not in f["properties"] for f in st.values()) == 1  # nulls are left out


LONG_NAME = "坐落单位名称" * 4  # 72 bytes: longer than a PostgreSQL column name


def _typed_points() -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """Six points keyed by ID, one type per field (or null) as a submission keeps them; names that need quoting or are
    longer than a column name may be: (the columns, the GeoJSON features)."""
    columns: dict[str, list[Any]] = {
        "S": ["文字", "", None, "0", "007", "x"],
        "I": [0, -7, 2**53, None, 12, 1],
        "F": [1.5, -0.25, None, 0.1, 3.0, 2.5],
        "B": [True, False, None, True, False, True],
        'Q"uote': ["a", None, "b", "", "c", "d"],
        LONG_NAME: ["长", None, "名", "字", "", "段"],
    }
    keys = ["1", "02", "x-3", "4", "18446744073709551615", "0"]
    feats = [
        {
            "type": "Feature",
            "properties": {"ID": key, **{name: col[i] for name, col in columns.items()}},
            "geometry": {"type": "Point", "coordinates": [126.6 + i * 0.001, 45.75]},
        }
        for i, key in enumerate(keys)
    ]
    return columns, feats


@pytest.mark.parametrize("backend", ["postgis"])
def test_st_asmvt_carries_the_same_values_whatever_the_fields_declared_types(
    engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str
) -> None:
    """A field declared as a string goes to ST_AsMVT as a text column of its string values, its numbers and booleans
    through the jsonb column (rows of an older submission keep their types under a newer declaration): exactly the
    properties the Python way writes, however the fields are declared; names PostgreSQL would cut (over 63 bytes) or
    that need quoting, too."""
    columns, feats = _typed_points()
    submit(engine, settings, tmp_path, "typed", feats, unit="230000", key="ID")
    me = system_principal("test")
    ds = catalog.get_dataset(engine, "typed")
    assert ds is not None and {f["name"] for f in ds.fields} >= set(columns)
    access = accesses()["all"]
    z = 12
    x, y = WEB_MERCATOR_QUAD.tile_for_lonlat(126.605, 45.75, z)

    def decoded(d: catalog.Dataset, method: str) -> dict[str, dict[str, Any]]:
        tile = render_tile(engine, me, d, access, None, WEB_MERCATOR_QUAD, z, x, y, method=method)  # type: ignore[arg-type]
        feats = {key_of(f): f for f in layer(tile, "typed")}
        # each key once per feature (a decoder keeps the last of a repeated key: the text column and the jsonb must
        # never both write one)
        raw = vector_tile_pb2.tile()
        raw.ParseFromString(tile)
        assert sorted(len(f.tags) // 2 for f in raw.layers[0].features) == sorted(len(f["properties"]) for f in feats.values())
        return feats

    plan = plan_tile(ds, access, None, WEB_MERCATOR_QUAD, z, x, y)
    sql, _ = postgis_tile_sql(plan, access, engine, {f["name"] for f in ds.fields})
    assert 'AS "S"' in sql and 'AS "Q""uote"' in sql and f'AS "{LONG_NAME}"' not in sql  # text columns, but no cut name
    want = decoded(ds, "python")
    assert len(want) == len(feats)
    assert {k for f in want.values() for k in f["properties"]} >= set(columns)
    for declared in ("string", "integer", None):
        d = dataclasses.replace(ds, fields=[{**f, "type": declared} if declared else {"name": f["name"]} for f in ds.fields])
        got = decoded(d, "postgis")
        assert got.keys() == want.keys(), declared
        for key, f in got.items():
            assert f["properties"] == want[key]["properties"] and f.get("id", 0) == want[key].get("id", 0), (declared, key)
    # Once the version's fields are known to hold only strings, those go out as text columns with no test per value;
    # the numbers and booleans of the other fields declared as strings still go through the jsonb: the same tile
    d = dataclasses.replace(ds, fields=[{**f, "type": "string"} for f in ds.fields])
    tile_types.forget()
    learnt = tile_types.facts(engine, d, ds.current_version, wait=True).only_strings
    assert learnt == {"ID", "S", 'Q"uote', LONG_NAME}
    sql, _ = postgis_tile_sql(plan, access, engine, {f["name"] for f in d.fields}, learnt)
    assert 'ELSE s.fkey END AS _key, s.props ->> CAST(:tile_a' in sql and sql.count("jsonb_typeof") > 0
    assert not re.search(r"THEN s\.props ->> CAST\(:tile_a\d+ AS text\) END AS \"S\"", sql)
    got = decoded(d, "postgis")
    assert got.keys() == want.keys()
    for key, f in got.items():
        assert f["properties"] == want[key]["properties"] and f.get("id", 0) == want[key].get("id", 0), key


@pytest.mark.parametrize("backend", ["postgis"])
def test_a_field_is_known_to_hold_only_strings_per_version(
    engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a version's scan learns holds for that version only: a later version that adds a number under a field
    of strings carries that number as a number (through the jsonb), while the earlier version's tiles still take the
    field as text; rows of a restricted caller are a subset, so the version's answer serves every caller."""
    def point(i: int, m: Any) -> dict[str, Any]:
        return {"type": "Feature", "properties": {"ID": f"k{i}", "M": m, "N": f"n{i}"},
                "geometry": {"type": "Point", "coordinates": [126.6 + i * 0.001, 45.75]}}

    submit(engine, settings, tmp_path, "mixed", [point(i, f"m{i}") for i in range(4)], unit="230000", key="ID")
    submit(engine, settings, tmp_path, "mixed", [point(9, 5)], unit="230000", key="ID", mode="incremental")
    ds = catalog.get_dataset(engine, "mixed")
    assert ds is not None and ds.current_version == 2
    d = dataclasses.replace(ds, fields=[{**f, "type": "string"} for f in ds.fields])  # M declared a string
    tile_types.forget()
    scanned: list[int] = []
    scan = tile_types.scan
    monkeypatch.setattr(tile_types, "scan", lambda e, dsid, v, fields: scanned.append(v) or scan(e, dsid, v, fields))
    assert tile_types.facts(engine, d, 1, wait=True).only_strings & {"M", "N", "ID"} == {"M", "N", "ID"}
    assert scanned == []  # the replacement noted it (ingest.version_facts): no scan of its rows
    assert tile_types.facts(engine, d, 1).keys == {"ID", "M", "N"}
    assert tile_types.facts(engine, d, 2, wait=True).only_strings & {"M", "N", "ID"} == {"N", "ID"}
    assert scanned == [2]  # the incremental version has rows its submission did not see: scanned
    monkeypatch.undo()
    engine.pool.dispose()  # no pooled connection: a scan opens one of its own, outside the pool requests take theirs from
    found = tile_types.scan(engine, "mixed", 2, ["M", "N", "absent"])
    assert found.only_strings == {"N", "absent"}  # no value at all: nothing to test
    assert found.keys == {"ID", "M", "N"}  # every key the version's rows carry
    assert engine.pool.checkedin() == 0 and engine.pool.checkedout() == 0
    me = system_principal("test")
    access = accesses()["all"]
    z = 12
    x, y = WEB_MERCATOR_QUAD.tile_for_lonlat(126.605, 45.75, z)
    for version, want in ((1, {f"k{i}": f"m{i}" for i in range(4)}), (2, {**{f"k{i}": f"m{i}" for i in range(4)}, "k9": 5})):
        for method in ("postgis", "python"):
            tile = render_tile(engine, me, d, access, version, WEB_MERCATOR_QUAD, z, x, y, method=method)  # type: ignore[arg-type]
            got = {key_of(f): f["properties"].get("M") for f in layer(tile, "mixed")}
            assert got == want, (version, method)
            assert all(type(got[k]) is type(want[k]) for k in want), (version, method)


_KEY_EDGES = ["0", "00", "01", "1", "9", "10", "999999999999999999", "1000000000000000000", "", " 1", "1 ", "1\n", "+1", "-1",
              "1.0", "1e3", "0x1", "١٢", "１２", "²", "12a", "a12", "2301020000000001"]


@pytest.mark.parametrize("backend", ["postgis"])
@hypothesis.settings(max_examples=60, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(
    more=hs.lists(
        hs.one_of(
            hs.integers(0, 10**20).map(str),
            hs.text(alphabet="0123456789", max_size=20),
            hs.text(alphabet="0123456789 -+.\n١１²ea", max_size=6),
        ),
        max_size=40,
    )
)
def test_the_statement_takes_a_key_for_the_mvt_id_exactly_when_the_python_way_does(
    engine: sa.Engine, backend: str, more: list[str]
) -> None:
    """The PostGIS statement decides per row whether the key is the MVT id (a plain integer of at most 18 digits, no
    leading zero) without a regular expression; the Python way with one. Both must agree on every key."""
    keys = _KEY_EDGES + more
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT f.fkey, {_NUMERIC_KEY_SQL} AS numeric FROM unnest(CAST(:keys AS text[])) AS f(fkey)"), {"keys": keys}
        ).all()
    assert [r.fkey for r in rows] == keys
    got = {r.fkey: bool(r.numeric) for r in rows}
    want = {k: feature_id(k) is not None for k in keys}
    assert got == want
    assert want["999999999999999999"] and not want["1000000000000000000"] and not want["1\n"] and not want["01"]


@pytest.mark.parametrize("backend", ["postgis"])
def test_class_map_tiles_carry_no_identity_and_agree_between_the_ways(
    engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str
) -> None:
    """Below the detail zoom (12 by default) a tile is the class map: DLBM only, no MVT id, no `_key`, made alike by
    ST_AsMVT and the Python way (the same features in the same drawing order); from the detail zoom on, the ids."""
    boundary = setup_daoli(engine)
    parcels = list(dltb_features(boundary, DAOLI, 300, seed=5))
    for p in parcels[::3]:
        p["properties"]["BSM"] = "X" + p["properties"]["BSM"]  # not plain integers: these keys travel as `_key`
    submit(engine, settings, tmp_path, "daoli-dltb", parcels, unit=DAOLI, schema="DLTB")
    me = system_principal("test")
    ds = catalog.get_dataset(engine, "daoli-dltb")
    assert ds is not None
    access = accesses()["all"]
    drawn = 0
    for z in (8, 9, 10, 11, 12):
        tiles = list(WEB_MERCATOR_QUAD.tiles_covering(tuple(ds.extent), z))  # type: ignore[arg-type]
        for x, y in tiles[:: max(1, len(tiles) // 4)]:
            ways = {m: layer(render_tile(engine, me, ds, access, None, WEB_MERCATOR_QUAD, z, x, y, method=m), "daoli-dltb")
                    for m in ("postgis", "python")}
            pg, py = ways["postgis"], ways["python"]
            assert len(pg) == len(py), (z, x, y)
            for f, g in zip(pg, py, strict=True):
                assert f["properties"] == g["properties"], (z, x, y)
                if z < 12:
                    assert set(f["properties"]) == {"DLBM"} and not f.get("id") and not g.get("id"), (z, x, y)
                else:
                    assert key_of(f) == key_of(g) and key_of(f).lstrip("X") == f["properties"]["BSM"].lstrip("X")
                assert _distance(f, g) <= 2 * SIMPLIFY_CELLS * EXTENT / 256 + 2, (z, x, y)
            drawn += len(pg)
    assert drawn > 300


@pytest.mark.parametrize("backend", ["postgis"])
def test_rows_whose_every_key_the_caller_sees_go_to_st_asmvt_whole(
    engine: sa.Engine, settings: Settings, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every property key of the version is known (`tile_types.facts`), a tile whose attributes include them all
    hands each row's `props` to ST_AsMVT as they are: the same properties and ids as the Python way (strings, numbers,
    booleans kept; nulls left out; names that need quoting or are longer than a column name may be); a caller who
    does not see every field, a zoom that carries fewer fields, or a version whose keys are not known gets the
    statement that builds each row's properties. The choice is part of the tile's key (the bytes differ in key order)."""
    columns, feats = _typed_points()
    submit(engine, settings, tmp_path, "whole", feats, unit="230000", key="ID")
    me = system_principal("test")
    ds = catalog.get_dataset(engine, "whole")
    assert ds is not None
    tile_types.forget()
    known = tile_types.facts(engine, ds, ds.current_version, wait=True)
    assert known.keys == {"ID", *columns}
    access = accesses()["all"]
    z = 12
    x, y = WEB_MERCATOR_QUAD.tile_for_lonlat(126.605, 45.75, z)
    plan = plan_tile(ds, access, None, WEB_MERCATOR_QUAD, z, x, y, engine=engine)
    assert plan.whole_props
    sql, _ = postgis_tile_sql(plan, access, engine, tile_types.declared_strings(ds), known.only_strings)
    assert "s.props AS tile_props" in sql and "jsonb_build_object" not in sql and "jsonb_typeof" not in sql

    def decoded(d: catalog.Dataset, who: Access, method: str) -> dict[str, dict[str, Any]]:
        tile = render_tile(engine, me, d, who, None, WEB_MERCATOR_QUAD, z, x, y, method=method)  # type: ignore[arg-type]
        return {key_of(f): f for f in layer(tile, "whole")}

    want = decoded(ds, access, "python")
    got = decoded(ds, access, "postgis")
    assert len(want) == len(feats) and got.keys() == want.keys()
    for key, f in got.items():
        assert f["properties"] == want[key]["properties"] and f.get("id", 0) == want[key].get("id", 0), key
    assert {type(v) for f in got.values() for v in f["properties"].values()} == {str, int, float, bool}
    assert sum("S" not in f["properties"] for f in got.values()) == 1  # the null left out

    # a caller who sees three of the fields: the rows' props would carry the others, so each row's are built
    narrow = Access(True, (Clause(None, frozenset({"ID", "S", "I"}), frozenset(), "grant:g"),), frozenset(), audited=False)
    narrow_plan = plan_tile(ds, narrow, None, WEB_MERCATOR_QUAD, z, x, y, engine=engine)
    sql, _ = postgis_tile_sql(narrow_plan, narrow, engine, tile_types.declared_strings(ds), known.only_strings)
    assert not narrow_plan.whole_props and "s.props AS tile_props" not in sql
    narrow_got, narrow_want = decoded(ds, narrow, "postgis"), decoded(ds, narrow, "python")
    assert narrow_got.keys() == narrow_want.keys() and len(narrow_got) == len(feats)
    assert all(f["properties"] == narrow_want[k]["properties"] for k, f in narrow_got.items())
    assert {k for f in narrow_got.values() for k in f["properties"]} == {"ID", "S", "I", "_key"}
    low = plan_tile(ds, access, None, WEB_MERCATOR_QUAD, 8, *WEB_MERCATOR_QUAD.tile_for_lonlat(126.605, 45.75, 8), engine=engine)
    assert low.attributes == () and not low.whole_props  # (no land-use class field: below the detail zoom, no attribute)
    monkeypatch.setattr(tile_types, "facts", lambda *a, **k: tile_types.NOTHING_KNOWN)  # the version's keys not (yet) known
    unknown = plan_tile(ds, access, None, WEB_MERCATOR_QUAD, z, x, y, engine=engine)
    assert not unknown.whole_props and unknown.key != plan.key  # another statement's bytes: another key (and ETag)
    got_unknown = decoded(ds, access, "postgis")
    assert got_unknown.keys() == want.keys()
    assert all(f["properties"] == want[k]["properties"] and f.get("id", 0) == want[k].get("id", 0) for k, f in got_unknown.items())
