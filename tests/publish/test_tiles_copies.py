"""The pre-generalised low-zoom tile copies (`feature_tilegeoms`), on both stores: built after every writer of feature
rows, for exactly the rows a tile would simplify; used by both ways of making a tile; never a condition of a correct
tile (missing copies: the shapes are simplified on the fly)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from test_tiles import key_of, layer, pg_url, submit  # noqa: F401 (pg_url: a database of our own)

from landcloud.access.policy import Access, Clause
from landcloud.access.principal import system_principal
from landcloud.catalog import datasets as catalog
from landcloud.catalog import history
from landcloud.config import Settings
from landcloud.geo import tilegen
from landcloud.geo.tiles import WEB_MERCATOR_QUAD
from landcloud.ingest import submissions
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.ingest.tables import submissions as submissions_table
from landcloud.publish import tiles as tiles_mod
from landcloud.publish.tiles import EXTENT, SIMPLIFY_CELLS, plan_tile, render_tile
from landcloud.store import tilegeoms
from landcloud.store.features import FeatureStore, PostGISFeatureStore

from builders import write_geojson

ALL = Access(True, (Clause(None, None, frozenset(), "owner"),), frozenset(), audited=False)
ME = system_principal("test")
ORIGIN = (126.55, 45.70)


def wiggly(i: int, x: float, y: float, r: float, n: int) -> dict[str, Any]:
    """A polygon of n points around (x, y), radius ~r degrees, the boundary jagged (so simplifying removes points)."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = r * (1 + 0.08 * np.sin(a * 7) + 0.03 * np.cos(a * 23))
    ring = np.column_stack((x + rad * np.cos(a), y + rad * np.sin(a) * 0.7))
    return {
        "type": "Feature",
        "properties": {"ID": str(i), "DLBM": "0101", "NAME": f"w{i}"},
        "geometry": shapely.geometry.mapping(shapely.Polygon(ring)),
    }


def features(shift: float = 0.0) -> list[dict[str, Any]]:
    """Non-overlapping shapes of every kind the rule tells apart: few points, many points at sizes from sub-pixel at z8
    to several pixels at z11, and a point."""
    feats = []
    for i in range(40):
        r = float(np.geomspace(2e-4, 0.02, 40)[i])
        n = 6 if i % 5 == 0 else int(12 + (i * 37) % 150)
        feats.append(wiggly(i + 1, ORIGIN[0] + (i % 8) * 0.05, ORIGIN[1] + (i // 8) * 0.05 + shift, r, n))
    feats.append({"type": "Feature", "properties": {"ID": "99", "DLBM": "0101", "NAME": "p"}, "geometry": {"type": "Point", "coordinates": [126.5, 45.65]}})
    return feats


def load(engine: sa.Engine, settings: Settings, tmp: Path, dataset_id: str = "wig", feats: list[dict[str, Any]] | None = None, **opts: Any) -> None:
    submit(engine, settings, tmp, dataset_id, feats if feats is not None else features(), unit="230000", key="ID", overlap_check=False, **opts)


def copies(engine: sa.Engine, dataset_id: str = "wig") -> set[tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT g.feature_id, g.level FROM feature_tilegeoms g JOIN features f ON f.id = g.feature_id WHERE f.dataset_id = :d"),
            {"d": dataset_id},
        )
        return {(int(a), int(b)) for a, b in rows}


def wanted(engine: sa.Engine, dataset_id: str = "wig", current: bool = False) -> set[tuple[int, int]]:
    """The copies the rule asks for, computed here from the stored rows."""
    with engine.connect() as conn:
        where = " AND f.v_to IS NULL" if current else ""
        rows = conn.execute(
            sa.text(f"SELECT f.id, f.minx, f.miny, f.maxx, f.maxy FROM features f WHERE f.dataset_id = :d{where} ORDER BY f.id"),
            {"d": dataset_id},
        ).all()
    store = tiles_mod.feature_store_for(engine)
    geoms = store.fetch_geometries(engine.connect(), [r[0] for r in rows])
    points = np.array([shapely.get_num_coordinates(shapely.from_wkb(geoms[r[0]][1])) for r in rows])
    env = np.array([r[1:] for r in rows], dtype=np.float64)
    return {(rows[i][0], level) for level in tilegen.LEVELS for i in np.flatnonzero(tilegen.needs_copy(level, points, env)).tolist()}


def drop_all(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM feature_tilegeoms")


def tiles_over(engine: sa.Engine, dataset_id: str = "wig") -> list[tuple[int, int, int]]:
    ds = catalog.get_dataset(engine, dataset_id)
    assert ds is not None and ds.extent
    return [(z, x, y) for z in (8, 9, 10, 11, 12, 13, 14, 15) for x, y in WEB_MERCATOR_QUAD.tiles_covering(tuple(ds.extent), z)]


def drawn(engine: sa.Engine, method: str = "auto", dataset_id: str = "wig") -> dict[tuple[int, int, int], dict[str, dict[str, Any]]]:
    ds = catalog.get_dataset(engine, dataset_id)
    assert ds is not None
    out = {}
    for z, x, y in tiles_over(engine, dataset_id):
        data = render_tile(engine, ME, ds, ALL, None, WEB_MERCATOR_QUAD, z, x, y, method=method)  # type: ignore[arg-type]
        out[(z, x, y)] = {key_of(f): f for f in layer(data, dataset_id)}
    return out


def close(a: dict[tuple[int, int, int], dict[str, dict[str, Any]]], b: dict[tuple[int, int, int], dict[str, dict[str, Any]]]) -> float:
    """The same features with the same properties in every tile; the largest distance between their shapes."""
    worst = 0.0
    assert a.keys() == b.keys()
    for tile, feats in a.items():
        assert feats.keys() == b[tile].keys(), tile
        for key, f in feats.items():
            g = b[tile][key]
            assert f["properties"] == g["properties"] and f.get("id", 0) == g.get("id", 0), (tile, key)
            d = shapely.hausdorff_distance(shapely.geometry.shape(f["geometry"]), shapely.geometry.shape(g["geometry"]))
            worst = max(worst, float(d))
    return worst


LIMIT = 2 * SIMPLIFY_CELLS * EXTENT / 256 + 2  # two simplifications within their tolerance, and the snapping


def test_a_submission_builds_the_copies_its_rows_need_and_tiles_read_them(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    load(engine, settings, tmp_path)
    made = copies(engine)
    assert made == wanted(engine) and len({level for _, level in made}) == len(tilegen.LEVELS)
    assert tilegeoms.build(engine, "wig", 1).copies == 0  # nothing left to make
    with_copies = drawn(engine)
    ds = catalog.get_dataset(engine, "wig")
    assert ds is not None
    plan = plan_tile(ds, ALL, None, WEB_MERCATOR_QUAD, 10, *WEB_MERCATOR_QUAD.tile_for_lonlat(*ORIGIN, 10))
    assert plan.copy_level == 10
    assert plan_tile(ds, ALL, None, WEB_MERCATOR_QUAD, 14, 0, 0).copy_level == 14
    assert plan_tile(ds, ALL, None, WEB_MERCATOR_QUAD, 15, 0, 0).copy_level is None
    if engine.dialect.name == "postgresql":  # the Python way reads the same copies
        assert close(with_copies, drawn(engine, "python")) <= LIMIT
    drop_all(engine)  # what an older store (or a failed build) has: every shape simplified on the fly
    on_the_fly = drawn(engine)
    assert on_the_fly != with_copies  # the copies were read (shapes simplified at another zoom's tolerance differ)
    assert close(with_copies, on_the_fly) <= LIMIT
    assert sum(len(t) for t in with_copies.values()) > 100


def test_new_versions_and_rollbacks_get_copies_for_the_rows_they_write(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    load(engine, settings, tmp_path)
    first = copies(engine)
    moved = features(shift=0.001)  # every shape changed: new rows
    load(engine, settings, tmp_path, feats=moved[:30])
    assert copies(engine) == wanted(engine) and copies(engine) > first  # the old rows keep theirs
    history.rollback(engine, "wig", 1)
    assert copies(engine) == wanted(engine)
    assert {fid for fid, _ in wanted(engine, current=True)} <= {fid for fid, _ in copies(engine)}


def test_a_failed_build_leaves_the_version_and_correct_tiles(
    engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_args: Any) -> Any:
        raise RuntimeError("no copies today")

    monkeypatch.setattr(tilegeoms, "_postgis", fail)
    monkeypatch.setattr(tilegeoms, "_sqlite", fail)
    load(engine, settings, tmp_path)  # accepted: the copies come after the commit
    assert copies(engine) == set()
    ds = catalog.get_dataset(engine, "wig")
    assert ds is not None and ds.current_version == 1 and ds.feature_count == 41
    without = drawn(engine)
    monkeypatch.undo()
    assert tilegeoms.build(engine, "wig").copies == len(wanted(engine))  # what `landcloud tiles build` does
    assert close(drawn(engine), without) <= LIMIT


def test_copies_go_with_their_feature_rows(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    load(engine, settings, tmp_path)
    fid = next(iter(copies(engine)))[0]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM features WHERE id = :i"), {"i": fid})
    assert copies(engine) and fid not in {f for f, _ in copies(engine)}


def test_the_tiles_build_command(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    load(engine, settings, tmp_path)
    n = len(copies(engine))
    env = {"LANDCLOUD_DATA_DIR": str(settings.data_dir), "LANDCLOUD_DATABASE_URL": settings.resolved_database_url, "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "landcloud.cli", "tiles", "build", *args], env=env, capture_output=True, text=True, timeout=120)

    again = run("wig")
    assert again.returncode == 0 and "0 made" in again.stdout, again.stdout + again.stderr
    rebuilt = run("wig", "--rebuild")
    assert rebuilt.returncode == 0 and f"{n} made ({n} dropped first)" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    assert len(copies(engine)) == n
    unknown = run("nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr


# -- the build spread over the cores: the same copies as one at a time ------------------------------------------------


def grid(n: int) -> list[dict[str, Any]]:
    """n non-overlapping shapes (a grid 0.05 degrees apart) of every size and point count `features` has."""
    radii = np.geomspace(2e-4, 0.02, 40)
    return [
        wiggly(i + 1, ORIGIN[0] + (i % 20) * 0.05, ORIGIN[1] + (i // 20) * 0.05, float(radii[i % 40]), 6 if i % 5 == 0 else 12 + (i * 37) % 150)
        for i in range(n)
    ]


def snapshot(engine: sa.Engine, dataset_id: str = "wig") -> dict[tuple[int, int], bytes]:
    """Every copy of a dataset's rows: (feature id, level) -> the stored shape's bytes."""
    geom = "ST_AsEWKB(g.geom)" if engine.dialect.name == "postgresql" else "g.geom"
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT g.feature_id, g.level, {geom} FROM feature_tilegeoms g JOIN features f ON f.id = g.feature_id WHERE f.dataset_id = :d"),
            {"d": dataset_id},
        )
        return {(int(a), int(b)): bytes(c) for a, b, c in rows}


@pytest.fixture
def in_parts(monkeypatch: pytest.MonkeyPatch) -> int:
    """Small parts, so that a test dataset is built in several: SQLite batches of 16 rows, PostGIS ranges of >= 40 ids
    (three at once)."""
    monkeypatch.setattr(tilegeoms, "BATCH", 16)
    monkeypatch.setattr(tilegeoms, "MIN_PART_ROWS", 40)
    monkeypatch.setenv("LANDCLOUD_GEOS_THREADS", "3")
    return 3


def one_at_a_time(engine: sa.Engine, settings: Settings, tmp: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> dict[tuple[int, int], bytes]:
    """Submit `grid(n)` with the copies built on one thread, one statement (the reference); return them, then drop them."""
    with monkeypatch.context() as serial:
        serial.setenv("LANDCLOUD_GEOS_THREADS", "1")
        load(engine, settings, tmp, feats=grid(n))
    reference = snapshot(engine)
    assert set(reference) == wanted(engine) and len(reference) > 100
    drop_all(engine)
    return reference


def parts_of(engine: sa.Engine, workers: int) -> int:
    """How many parts the build of "wig" v1 (no copies yet) is cut into: PostGIS's id ranges, SQLite's batches."""
    if engine.dialect.name == "postgresql":
        return len(tilegeoms._id_ranges(engine, "wig", 1, workers))
    return sum(1 for _ in tilegeoms._batches(engine, "wig", 1))


def test_the_parallel_build_makes_the_very_copies_of_a_one_at_a_time_build(
    engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_parts: int
) -> None:
    reference = one_at_a_time(engine, settings, tmp_path, monkeypatch, 200)
    assert parts_of(engine, in_parts) >= 3
    built = tilegeoms.build(engine, "wig", 1)
    assert built.copies == len(reference) and snapshot(engine) == reference  # same rows, levels and bytes
    drop_all(engine)
    assert tilegeoms.build(engine, "wig").copies == len(reference) and snapshot(engine) == reference  # every version
    assert tilegeoms.build(engine, "wig", 1).copies == 0


def test_a_first_load_reads_back_only_the_rows_that_need_copies(
    engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_parts: int
) -> None:
    """SQLite: a dataset's first rows note which of them need copies as they stream in, and the build reads those
    alone (their ids from their places in the stream), and makes the very copies a read of every row makes. A note
    that does not fit the version's rows falls back to reading every row."""
    read: list[int] = []
    real = tilegeoms._copies_of

    def counted(batch: tuple[list[int], list[bytes | None]]) -> list[tilegeoms.Copy]:
        read.extend(batch[0])
        return real(batch)

    monkeypatch.setattr(tilegeoms, "_copies_of", counted)
    # and three shapes of many points, each wider than those points in pixels of every level: no copy anywhere
    large = [wiggly(1000 + i, ORIGIN[0] + 2 + i, ORIGIN[1], 0.3, 40) for i in range(3)]
    load(engine, settings, tmp_path, feats=grid(200) + large)
    made = snapshot(engine)
    need = {fid for fid, _ in wanted(engine)}
    assert set(made) == wanted(engine) and len(made) > 100
    if engine.dialect.name == "sqlite":
        assert sorted(read) == sorted(need)  # not a row more, each once, over several batches
    drop_all(engine)
    read.clear()
    assert tilegeoms.build(engine, "wig", 1).copies == len(made) and snapshot(engine) == made  # every row read
    every = sorted(read)
    drop_all(engine)
    read.clear()
    wrong = tilegeoms.StreamedRows()
    wrong.add(np.array([None] * 5, dtype=object), np.full((5, 4), np.nan))  # five rows noted: the version has 203
    assert tilegeoms.build(engine, "wig", 1, wrong).copies == len(made) and snapshot(engine) == made
    assert sorted(read) == every
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:  # (the full read takes every row long enough to need one: the large ones too)
            large_ids = {fid for (fid,) in conn.execute(sa.text("SELECT id FROM features WHERE CAST(fkey AS INTEGER) >= 1000"))}
        assert len(large_ids) == 3 and set(every) - need == large_ids


def test_a_failed_part_leaves_the_other_parts_copies_and_the_version(
    engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_parts: int
) -> None:
    reference = one_at_a_time(engine, settings, tmp_path, monkeypatch, 200)
    ids = sorted({fid for fid, _ in reference})
    bad = ids[len(ids) // 2]  # a row of a middle part: its copy's insert fails in the database
    postgis = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgis:
            conn.exec_driver_sql(
                "CREATE FUNCTION no_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.feature_id = {bad} THEN RAISE EXCEPTION 'no copies today'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql("CREATE TRIGGER no_copy BEFORE INSERT ON feature_tilegeoms FOR EACH ROW EXECUTE FUNCTION no_copy()")
        else:
            conn.exec_driver_sql(
                f"CREATE TRIGGER no_copy BEFORE INSERT ON feature_tilegeoms WHEN NEW.feature_id = {bad} "
                "BEGIN SELECT RAISE(ABORT, 'no copies today'); END"
            )
    try:
        assert tilegeoms.build_quietly(engine, "wig", 1) is None  # logged, not raised
        with pytest.raises((tilegeoms.PartsFailed, sqlite3.IntegrityError)):  # (SQLite: its driver's, written on it)
            tilegeoms.build(engine, "wig", 1)
        made = snapshot(engine)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER no_copy" + (" ON feature_tilegeoms" if postgis else ""))
            if postgis:
                conn.exec_driver_sql("DROP FUNCTION no_copy()")
    assert made and {k: reference[k] for k in made} == made  # what was made is right
    assert bad not in {fid for fid, _ in made}
    assert min(fid for fid, _ in made) == ids[0]  # the first part's copies are there
    if postgis:  # the ranges are independent: the last one's copies are there too
        assert max(fid for fid, _ in made) == ids[-1]
    else:  # one batch after the other: the failed batch ended the build
        assert max(fid for fid, _ in made) < bad
    ds = catalog.get_dataset(engine, "wig")
    assert ds is not None and ds.current_version == 1 and ds.feature_count == 200
    assert tilegeoms.build(engine, "wig", 1).copies == len(reference) - len(made)  # the rest, as `tiles build` would
    assert snapshot(engine) == reference


def test_jobs_in_order_hold_at_most_their_workers() -> None:
    held: list[int] = []
    with tilegeoms._InOrder(3) as jobs:
        out: list[int] = []
        for i in range(20):
            out += jobs.push(lambda x: x * x, i)
            held.append(len(jobs._queue))
        out += list(jobs.drain())
    assert out == [i * i for i in range(20)] and max(held) == 3


# -- accepted first, the copies after (ingest/after_acceptance.py) ----------------------------------------------------


def by_key(engine: sa.Engine, dataset_id: str) -> dict[tuple[str, int], bytes]:
    """`snapshot` keyed by the rows' feature keys (two datasets' rows have different ids)."""
    with engine.connect() as conn:
        keys = dict(conn.execute(sa.text("SELECT id, fkey FROM features WHERE dataset_id = :d"), {"d": dataset_id}).all())
    return {(keys[fid], level): shape for (fid, level), shape in snapshot(engine, dataset_id).items()}


def test_a_submission_accepted_before_its_copies_gets_the_copies_of_one_that_waits(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "wig.geojson", features())
    opts = SubmitOptions(dataset_id="wig", unit="230000", key="ID", overlap_check=False)
    result = run_submission(engine, settings, path, opts, copies_after=True)
    assert result.accepted and result.version == 1 and result.after is not None
    assert "tile_copies" not in result.timings and copies(engine) == set()
    ds = catalog.get_dataset(engine, "wig")
    assert ds is not None and ds.current_version == 1 and ds.feature_count == 41  # committed and served before them
    before = drawn(engine)
    spent = result.after.run()
    assert copies(engine) == wanted(engine) and result.after.built is not None and result.after.built.copies == len(wanted(engine))
    assert set(spent) == ({"tile_copies", "checkpoint"} if engine.dialect.name == "sqlite" else {"tile_copies"})
    assert result.after.run() == spent and result.after.built.copies == len(copies(engine))  # once
    assert close(drawn(engine), before) <= LIMIT
    load(engine, settings, tmp_path, dataset_id="waits")  # the same rows, the copies built inside the submission
    assert by_key(engine, "wig") == by_key(engine, "waits") and len(by_key(engine, "wig")) > 40


@pytest.mark.parametrize("copies_after", [False, True])
def test_a_version_committed_then_failing_still_gets_its_copies(
    engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copies_after: bool
) -> None:
    def fail(self: Any, written: int) -> None:
        raise RuntimeError("statistics refused")

    monkeypatch.setattr(PostGISFeatureStore, "refresh_statistics", fail)
    monkeypatch.setattr(FeatureStore, "refresh_statistics", fail)
    path = write_geojson(tmp_path / "wig.geojson", features())
    opts = SubmitOptions(dataset_id="wig", unit="230000", key="ID", overlap_check=False)
    with pytest.raises(RuntimeError, match="statistics refused"):
        run_submission(engine, settings, path, opts, copies_after=copies_after)
    ds = catalog.get_dataset(engine, "wig")
    assert ds is not None and ds.current_version == 1  # committed before it failed
    assert copies(engine) == wanted(engine) and copies(engine)


def test_a_rejected_submission_leaves_nothing_to_follow(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = features()
    feats[3]["properties"]["ID"] = feats[2]["properties"]["ID"]  # a key twice
    path = write_geojson(tmp_path / "dup.geojson", feats)
    result = run_submission(engine, settings, path, SubmitOptions(dataset_id="wig", unit="230000", key="ID", overlap_check=False), copies_after=True)
    assert not result.accepted and result.after is None and catalog.get_dataset(engine, "wig") is None


def test_the_http_submission_is_accepted_before_its_copies_are_built(
    engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = tilegeoms.build

    def watched(engine_: sa.Engine, dataset_id: str, version: int | None = None, streamed: Any = None) -> tilegeoms.Built:
        with engine_.connect() as conn:
            seen.append(conn.execute(sa.select(submissions_table.c.status).where(submissions_table.c.id == sid)).scalar_one())
        return real(engine_, dataset_id, version, streamed)

    monkeypatch.setattr(tilegeoms, "build", watched)
    upload = tmp_path / "upload"
    upload.mkdir()
    path = write_geojson(upload / "wig.geojson", features())
    opts = SubmitOptions(dataset_id="wig", unit="230000", key="ID", overlap_check=False)
    sid = submissions.create(engine, opts, path.name)
    submissions.process(engine, settings, sid, path)
    assert seen == ["accepted"]  # the row said so when the build began
    assert submissions.get(engine, sid)["status"] == "accepted" and copies(engine) == wanted(engine)
    assert not upload.exists()  # the upload removed after all of it


def test_the_ingest_command_says_accepted_then_builds_the_copies(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "wig.geojson", features())
    env = {"LANDCLOUD_DATA_DIR": str(settings.data_dir), "LANDCLOUD_DATABASE_URL": settings.resolved_database_url, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "landcloud.cli", "ingest", str(path), "--dataset", "wig", "--unit", "230000", "--key", "ID", "--no-overlap-check"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.index("已接受 accepted") < out.index("正在生成低层级瓦片概化副本") < out.index(f"瓦片概化副本已生成: {len(wanted(engine))},")
    assert copies(engine) == wanted(engine)
