"""The submission pipeline end to end, on both stores: accepted, rejected, converted, never half-done."""

from __future__ import annotations

import copy
import datetime
import decimal
import hashlib
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pyproj import Transformer

from landcloud.access import units
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.geo.area import survey_areas
from landcloud.geo.crs import TransformationSet
from landcloud.geo.helmert import Helmert7
from landcloud.ingest import transformations, version_facts
from landcloud.ingest.pipeline import (
    SubmissionUsageError,
    SubmitOptions,
    _json_format,
    _props_json,
    _sanitize,
    _sanitized,
    _stage_rows,
    run_submission,
)
from landcloud.messages import Forbidden, LandcloudError
from landcloud.store import rtree_bulk
from landcloud.store.features import feature_store_for

from builders import HARBIN, grid_parcels, write_geojson, write_shapefile
from conftest import REFERENCE, needs_data, table_counts


def submit(engine: sa.Engine, settings: Settings, path: Path, **kw: object):  # type: ignore[no-untyped-def]
    opts = SubmitOptions(dataset_id=str(kw.pop("dataset_id", "dltb")), unit=str(kw.pop("unit", "230102")), **kw)  # type: ignore[arg-type]
    return run_submission(engine, settings, path, opts)


def rules_of(result) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return result.report["summary"]["by_rule"]


def test_dltb_accepted_creates_a_secure_dataset(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(3)
    result = submit(engine, settings, write_geojson(tmp_path / "dltb.geojson", feats))
    assert result.accepted, result.report["findings"]
    assert result.version == 1
    ds = catalog.require_dataset(engine, "dltb")
    assert (ds.owner_unit, ds.openness, ds.security_level) == ("230102", "not_open", "internal")
    assert ds.standard_schema == "DLTB" and ds.key_field == "BSM" and ds.jurisdiction_field == "ZLDWDM"
    assert ds.feature_count == 9
    aliases = {f["name"]: f["alias_zh"] for f in ds.fields}
    assert aliases["DLBM"] == "地类编码" and aliases["TBMJ"] == "图斑面积"
    stored = feature_store_for(engine).get_feature("dltb", 1, "230102000005")
    assert stored is not None and stored.props["DLMC"] == feats[4]["properties"]["DLMC"]
    assert shapely.equals_exact(shapely.from_wkb(stored.wkb), shapely.geometry.shape(feats[4]["geometry"]), 1e-12)
    assert stored.area_m2 == pytest.approx(feats[4]["properties"]["TBMJ"], abs=0.01)
    assert ds.extent == pytest.approx([HARBIN[0], HARBIN[1], HARBIN[0] + 0.006, HARBIN[1] + 0.006])


def test_a_large_accepted_version_leaves_the_planner_statistics_of_its_rows(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    # Without them (the rows COPYed and merged, autovacuum a minute away) a bbox page on PostGIS ANDed
    # the GiST bitmap with the dataset's whole version index: ~3 ms of the backend per page.
    result = submit(engine, settings, write_geojson(tmp_path / "dltb.geojson", grid_parcels(3)), dataset_id="stats-fresh")
    assert result.accepted, result.report["findings"]
    assert "statistics" in result.timings
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        tuples = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE oid = CAST('features' AS regclass)").scalar_one()
        common = conn.exec_driver_sql(
            "SELECT CAST(most_common_vals AS text) FROM pg_stats WHERE tablename = 'features' AND attname = 'dataset_id'"
        ).scalar()
    assert tuples == 9
    assert common is not None and "stats-fresh" in common


def test_errors_reject_and_change_nothing(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    submit(engine, settings, write_geojson(tmp_path / "v1.geojson", grid_parcels(3)))
    before = table_counts(engine)
    feats = grid_parcels(3)
    feats[0]["properties"]["DLBM"] = "9999"
    feats[1]["properties"]["BSM"] = feats[2]["properties"]["BSM"]
    result = submit(engine, settings, write_geojson(tmp_path / "bad.geojson", feats))
    assert not result.accepted
    assert rules_of(result) == {"error:code.dlbm_invalid": 1, "error:key.duplicate": 1}
    bad = next(f for f in result.findings if f.rule == "code.dlbm_invalid")
    assert bad.feature_index == 0 and "9999" in bad.message_zh and "9999" in bad.message_en
    assert table_counts(engine) == before
    assert catalog.require_dataset(engine, "dltb").current_version == 1


def test_rejected_first_submission_creates_no_dataset(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    feats[0]["properties"]["DLBM"] = "011"  # a 2007 three-digit code
    result = submit(engine, settings, write_geojson(tmp_path / "bad.geojson", feats))
    assert not result.accepted
    assert catalog.get_dataset(engine, "dltb") is None
    assert table_counts(engine)["datasets"] == 0


def test_first_rows_go_straight_into_the_store_as_the_merge_would_put_them(
    engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keyed dataset's first version is written without the stage; the rows are the merge's, to the byte."""
    feats = grid_parcels(3)
    feats[4]["geometry"] = shapely.geometry.mapping(shapely.MultiPolygon([shapely.geometry.shape(feats[4]["geometry"])]))
    feats[5]["properties"]["DLMC"] = "别名"  # a warning: accepted
    path = write_geojson(tmp_path / "dltb.geojson", feats)
    store = feature_store_for(engine)
    written: list[object] = []
    monkeypatch.setattr(type(store), "begin_stage", lambda self, conn, direct=None, orig=type(store).begin_stage, **kw: (
        written.append(direct), orig(self, conn, direct, **kw))[1])
    direct = submit(engine, settings, path, dataset_id="direct")
    monkeypatch.setattr(type(store), "has_current_rows", lambda self, conn, dataset_id: True)
    staged = submit(engine, settings, path, dataset_id="staged")
    assert written == [("direct", 1), None]
    assert direct.accepted and staged.accepted
    assert direct.report["summary"] == staged.report["summary"]
    # the direct version's count and extent come from the stream, the staged one's from the store
    direct_ds, staged_ds = catalog.require_dataset(engine, "direct"), catalog.require_dataset(engine, "staged")
    assert direct_ds.extent is not None and direct_ds.extent == staged_ds.extent
    assert direct_ds.feature_count == staged_ds.feature_count == len(feats)

    def rows(dataset_id: str) -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            geom = "ST_AsEWKB(geom)" if engine.dialect.name == "postgresql" else "geom"
            return [tuple(r) for r in conn.execute(sa.text(
                f"SELECT fkey, v_from, v_to, props, {geom}, minx, miny, maxx, maxy, area_m2, chash FROM features "
                "WHERE dataset_id = :d ORDER BY id"), {"d": dataset_id})]

    assert rows("direct") == rows("staged") and len(rows("direct")) == 9
    assert store.count("direct", 1, bbox=(HARBIN[0], HARBIN[1], HARBIN[0] + 0.001, HARBIN[1] + 0.001)) == 1


def test_first_rows_written_in_batches_have_their_index_entries(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    """SQLite writes a direct load's R*Tree entries batch by batch: each row once, with its envelope, after
    another dataset's rows; a rejected one leaves none behind."""
    small = settings.model_copy(update={"batch_size": 3})
    assert submit(engine, small, write_geojson(tmp_path / "a.geojson", grid_parcels(2)), dataset_id="first").accepted
    feats = grid_parcels(4, origin=(HARBIN[0] + 0.01, HARBIN[1]))
    assert submit(engine, small, write_geojson(tmp_path / "b.geojson", feats), dataset_id="second").accepted
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            tree = sorted(tuple(r) for r in conn.execute(sa.text("SELECT id, minx, maxx, miny, maxy FROM features_rtree")))
            rows = [tuple(r) for r in conn.execute(sa.text("SELECT id, minx, maxx, miny, maxy FROM features ORDER BY id"))]
        assert len(tree) == len(rows) == 4 + 16
        assert [r[0] for r in tree] == [r[0] for r in rows]
        for t, r in zip(tree, rows):  # the R*Tree keeps 32-bit floats, rounded outwards
            assert t[1] <= r[1] and t[2] >= r[2] and t[3] <= r[3] and t[4] >= r[4]
            assert t[1:] == pytest.approx(r[1:], abs=2e-5)  # a float32 step at 126° is 7.6e-6
    store = feature_store_for(engine)
    assert [f.fkey for f in store.iter_features("second", 1, bbox=(HARBIN[0] + 0.0105, HARBIN[1] + 0.0005, HARBIN[0] + 0.0106, HARBIN[1] + 0.0006))] == [
        feats[0]["properties"]["BSM"]]
    before = table_counts(engine)
    bad = grid_parcels(3, origin=(HARBIN[0] + 0.03, HARBIN[1]))
    bad[8]["geometry"] = shapely.geometry.mapping(shapely.affinity.translate(shapely.geometry.shape(bad[0]["geometry"]), 0.001, 0))
    assert not submit(engine, small, write_geojson(tmp_path / "c.geojson", bad), dataset_id="third").accepted
    assert table_counts(engine) == before
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM features_rtree")).scalar_one() == 20


def _rtree_is_the_rows(engine: sa.Engine) -> int:
    """SQLite's R*Tree holds every row's envelope, as SQLite stores it, and nothing else; SQLite finds it sound."""
    with engine.connect() as conn:
        tree = [tuple(r) for r in conn.exec_driver_sql("SELECT id, minx, maxx, miny, maxy FROM features_rtree ORDER BY id")]
        rows = [tuple(r) for r in conn.exec_driver_sql("SELECT id, minx, maxx, miny, maxy FROM features WHERE minx IS NOT NULL ORDER BY id")]
        assert conn.exec_driver_sql("SELECT rtreecheck('features_rtree')").scalar_one() == "ok"
    assert [t[0] for t in tree] == [r[0] for r in rows]
    assert np.array_equal(np.array([t[1:] for t in tree]), rtree_bulk.as_stored(np.array([r[1:] for r in rows])).astype(np.float64))
    return len(tree)


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's R*Tree (PostGIS keeps its GiST up by itself)
def test_large_writes_pack_the_spatial_index_anew(
    engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a write adding many entries against the R*Tree's size packs the whole tree anew (store/rtree_bulk.py)
    instead of inserting them one by one: a dataset's first rows (written directly, batch by batch) and a replacement
    through the stage; a small write inserts. Either way the tree is the rows' envelopes and answers reads; a
    rejected submission leaves it as it was."""
    monkeypatch.setattr(rtree_bulk, "MIN_NEW", 1)  # (a province's sizes, scaled down)
    packed: list[int] = []
    pack = rtree_bulk.rebuild
    monkeypatch.setattr(rtree_bulk, "rebuild", lambda cur, table, ids, boxes: (packed.append(len(ids)), pack(cur, table, ids, boxes))[1])
    small = settings.model_copy(update={"batch_size": 7})
    store = feature_store_for(engine)
    kept: list[set[str]] = []  # what each merge leaves in its connection's info (the pool hands connections out by timing)
    monkeypatch.setattr(type(store), "merge_stage", lambda self, conn, *a, orig=type(store).merge_stage: (
        orig(self, conn, *a), kept.append({"rtree_new", "rtree_packed"} & set(conn.info)))[0])
    assert submit(engine, small, write_geojson(tmp_path / "a.geojson", grid_parcels(6)), dataset_id="first").accepted
    assert packed == [36] and _rtree_is_the_rows(engine) == 36
    east = grid_parcels(2, origin=(HARBIN[0] + 0.05, HARBIN[1]))
    assert submit(engine, small, write_geojson(tmp_path / "b.geojson", east), dataset_id="second").accepted
    assert packed == [36] and _rtree_is_the_rows(engine) == 40  # 4 against 36: inserted
    north = grid_parcels(10, origin=(HARBIN[0], HARBIN[1] + 0.05))
    assert submit(engine, small, write_geojson(tmp_path / "c.geojson", north), dataset_id="first").accepted  # (staged)
    assert packed == [36, 100] and _rtree_is_the_rows(engine) == 140
    assert kept == [set(), set(), set()]  # packed, inserted batch by batch (direct), packed after the merge
    box = (HARBIN[0] + 0.0005, HARBIN[1] + 0.0505, HARBIN[0] + 0.0006, HARBIN[1] + 0.0506)
    assert [f.fkey for f in store.iter_features("first", 2, bbox=box)] == [north[0]["properties"]["BSM"]]
    assert [f.fkey for f in store.iter_features("first", 1, bbox=(HARBIN[0] + 0.0005, HARBIN[1] + 0.0005, HARBIN[0] + 0.0006, HARBIN[1] + 0.0006))]
    assert [f.fkey for f in store.iter_features("second", 1, bbox=(HARBIN[0] + 0.0505, HARBIN[1] + 0.0005, HARBIN[0] + 0.0506, HARBIN[1] + 0.0006))] == [
        east[0]["properties"]["BSM"]]
    before, tree = table_counts(engine), _rtree_is_the_rows(engine)
    bad = grid_parcels(12, origin=(HARBIN[0] + 0.1, HARBIN[1]))
    bad[-1]["geometry"] = shapely.geometry.mapping(shapely.affinity.translate(shapely.geometry.shape(bad[0]["geometry"]), 0.001, 0))
    assert not submit(engine, small, write_geojson(tmp_path / "d.geojson", bad), dataset_id="third").accepted
    assert packed == [36, 100, 144]  # packed, then rolled back with the rows
    assert table_counts(engine) == before and _rtree_is_the_rows(engine) == tree
    rejected = grid_parcels(12, origin=(HARBIN[0] + 0.2, HARBIN[1]))
    rejected[-1]["properties"]["DLBM"] = "9999"  # an error of the rules in the last batch: the batches before are written
    assert not submit(engine, small, write_geojson(tmp_path / "e.geojson", rejected), dataset_id="fourth").accepted
    assert packed == [36, 100, 144] and table_counts(engine) == before
    with engine.connect() as conn:  # the pooled connection the submissions wrote on keeps none of their entries
        assert "rtree_new" not in conn.info and "rtree_packed" not in conn.info


def test_interrupted_first_submission_changes_nothing(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    """Stopped in the middle of writing its first rows (PostGIS: inside the open COPY): nothing stays, the next one loads."""
    path = write_geojson(tmp_path / "dltb.geojson", grid_parcels(4))
    before = table_counts(engine)
    small = settings.model_copy(update={"batch_size": 5})

    def stop(total: int) -> None:
        if total >= 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_submission(engine, small, path, SubmitOptions(dataset_id="dltb", unit="230102"), progress=stop)
    assert table_counts(engine) == before
    assert submit(engine, small, path).accepted
    assert catalog.require_dataset(engine, "dltb").feature_count == 16


def test_a_write_the_database_refuses_fails_the_submission_and_changes_nothing(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    """A row the database refuses in the middle of the first rows' writes (SQLite: on the stage's writer thread, PostGIS:
    inside the open COPY) fails the submission with the database's error: nothing stays, no writer thread is left, and
    the next submission loads."""
    path = write_geojson(tmp_path / "dltb.geojson", grid_parcels(4))
    small = settings.model_copy(update={"batch_size": 5})
    before = table_counts(engine)
    refused = "230102000012"  # the third batch's second parcel
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON features WHEN NEW.fkey = '{refused}' "
                                 "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END")
        else:
            conn.exec_driver_sql(f"CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.fkey = '{refused}' THEN "
                                 "RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON features FOR EACH ROW EXECUTE FUNCTION refuse()")
    try:
        with pytest.raises(Exception, match="refused by a trigger"):
            submit(engine, small, path)
        assert table_counts(engine) == before
        with engine.connect() as conn:
            assert not {"stage_writer", "rtree_new"} & set(conn.info)
        assert not [t for t in threading.enumerate() if t.name.startswith("landcloud-stage-writer")]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse" if engine.dialect.name == "sqlite" else "DROP TRIGGER refuse ON features")
            if engine.dialect.name != "sqlite":
                conn.exec_driver_sql("DROP FUNCTION refuse()")
    assert submit(engine, small, path).accepted
    assert catalog.require_dataset(engine, "dltb").feature_count == 16


def test_one_data_one_source(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "dltb.geojson", grid_parcels(2))
    assert submit(engine, settings, path).accepted
    with pytest.raises(Forbidden) as exc:
        submit(engine, settings, path, unit="230103")
    assert exc.value.message.code == "dataset.not_owner" and "230102" in exc.value.message.zh
    assert catalog.require_dataset(engine, "dltb").current_version == 1


def test_overlapping_parcels_are_rejected(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    moved = shapely.affinity.translate(shapely.geometry.shape(feats[3]["geometry"]), -0.001, 0)
    feats[3]["geometry"] = shapely.geometry.mapping(moved)
    feats[3]["properties"]["TBMJ"] = feats[0]["properties"]["TBMJ"]
    result = submit(engine, settings, write_geojson(tmp_path / "overlap.geojson", feats))
    assert not result.accepted
    overlaps = [f for f in result.findings if f.rule == "topology.overlap"]
    # the moved square covers the right half of its western neighbour only (the others just touch)
    assert len(overlaps) == 1
    pair = tuple(sorted((overlaps[0].feature_key, overlaps[0].details["other_key"])))
    assert pair == ("230102000002", "230102000004")
    expected = shapely.intersection(moved, shapely.geometry.shape(feats[1]["geometry"]))
    assert overlaps[0].details["overlap_m2"] == pytest.approx(float(survey_areas(np.array([expected]))[0]), abs=0.01)
    assert shapely.contains_xy(expected, *overlaps[0].location)
    assert table_counts(engine)["features"] == 0


def test_overlap_check_off_only_for_layers_of_no_standard_schema(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    building = shapely.box(HARBIN[0] + 0.0005, HARBIN[1] + 0.0005, HARBIN[0] + 0.001, HARBIN[1] + 0.001)  # inside parcel 1
    osm = [{"type": "Feature", "geometry": f["geometry"], "properties": {"landuse": "farmland"}} for f in feats]
    osm.append({"type": "Feature", "geometry": shapely.geometry.mapping(building), "properties": {"building": "yes"}})
    path = write_geojson(tmp_path / "osm.geojson", osm)
    checked = submit(engine, settings, path, dataset_id="osm")
    assert not checked.accepted and any(f.rule == "topology.overlap" for f in checked.findings)
    unchecked = submit(engine, settings, path, dataset_id="osm", overlap_check=False)
    assert unchecked.accepted, unchecked.report["findings"]
    assert unchecked.report["options"]["overlap_check"] is False
    assert catalog.require_dataset(engine, "osm").feature_count == 5
    with pytest.raises(SubmissionUsageError) as exc:  # a DLTB layer always gets the rule
        submit(engine, settings, write_geojson(tmp_path / "dltb.geojson", feats), overlap_check=False)
    assert exc.value.message.code == "submission.overlap_check_required"
    assert catalog.get_dataset(engine, "dltb") is None



def test_overlap_check_is_the_datasets_and_holds_for_later_edits(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    """Set by the first submission, recorded and shown on the dataset, followed by incremental edits (what an
    OGC API transaction submits: no overlap option), changed only by the data administrator."""
    land = [{"type": "Feature", "geometry": f["geometry"], "properties": {"OSMID": f"w{i}", "landuse": "farmland"}}
            for i, f in enumerate(grid_parcels(2))]
    assert submit(engine, settings, write_geojson(tmp_path / "osm.geojson", land), dataset_id="osm", key="OSMID", overlap_check=False).accepted
    ds = catalog.require_dataset(engine, "osm")
    assert ds.overlap_check is False and ds.to_dict()["overlap_check"] is False

    def building(i: int) -> Path:  # inside parcel w0: overlaps it by its whole area
        box = shapely.box(HARBIN[0] + 0.0002 * i, HARBIN[1] + 0.0005, HARBIN[0] + 0.0002 * i + 0.0001, HARBIN[1] + 0.001)
        feat = {"type": "Feature", "geometry": shapely.geometry.mapping(box), "properties": {"OSMID": f"b{i}", "building": "yes", "_op": "add"}}
        return write_geojson(tmp_path / f"b{i}.geojson", [feat])

    edit = submit(engine, settings, building(1), dataset_id="osm", mode="incremental", key="OSMID")
    assert edit.accepted, edit.report["findings"]
    assert edit.report["options"]["overlap_check"] is False and edit.version == 2
    stricter = submit(engine, settings, building(2), dataset_id="osm", mode="incremental", key="OSMID", overlap_check=True)
    assert not stricter.accepted and {f.rule for f in stricter.findings} == {"topology.overlap"}

    catalog.update_metadata(engine, "osm", {"overlap_check": "true"})  # the data administrator (`datasets set`, PATCH)
    assert catalog.require_dataset(engine, "osm").to_dict()["overlap_check"] is True
    checked = submit(engine, settings, building(3), dataset_id="osm", mode="incremental", key="OSMID")
    assert not checked.accepted and checked.report["options"]["overlap_check"] is True
    overlap = next(f for f in checked.findings if f.rule == "topology.overlap")
    assert {overlap.feature_key, overlap.details["other_key"]} == {"b3", "w0"}  # the new polygon against the stored one
    with pytest.raises(SubmissionUsageError) as exc:  # a submitter cannot turn the dataset's rule off
        submit(engine, settings, building(4), dataset_id="osm", mode="incremental", key="OSMID", overlap_check=False)
    assert exc.value.message.code == "submission.overlap_check_dataset"
    assert catalog.require_dataset(engine, "osm").current_version == 2  # refused and rejected submissions change nothing

    assert submit(engine, settings, write_geojson(tmp_path / "dltb.geojson", grid_parcels(2))).accepted
    with pytest.raises(LandcloudError) as bad:  # a standard schema's layer keeps the rule
        catalog.update_metadata(engine, "dltb", {"overlap_check": False})
    assert bad.value.message.code == "dataset.overlap_check_required"
    with pytest.raises(LandcloudError) as bad:
        catalog.update_metadata(engine, "osm", {"overlap_check": "maybe"})
    assert bad.value.message.code == "dataset.bad_value"
    assert catalog.require_dataset(engine, "dltb").overlap_check is True


def test_warnings_are_accepted_and_kept_with_the_version(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    feats[1]["properties"]["TBMJ"] = round(feats[1]["properties"]["TBMJ"] * 1.05, 2)
    result = submit(engine, settings, write_geojson(tmp_path / "warn.geojson", feats))
    assert result.accepted
    assert rules_of(result) == {"warning:area.inconsistent": 1}
    kept = catalog.get_version(engine, "dltb", 1).report
    assert kept["summary"]["warnings"] == 1
    assert kept["findings"][0]["feature_key"] == "230102000002"


def test_incremental_by_key_with_operations(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    submit(engine, settings, write_geojson(tmp_path / "v1.geojson", feats))
    change = copy.deepcopy(feats[:2])
    change[0]["properties"].update(DLBM="0702", DLMC="农村宅基地", _op="modify")
    change[1]["properties"]["_op"] = "删除"
    result = submit(engine, settings, write_geojson(tmp_path / "v2.geojson", change), mode="incremental", key="BSM")
    assert result.accepted, result.report["findings"]
    s = result.report["summary"]
    assert (s["added"], s["removed"], s["changed"], s["feature_count"]) == (0, 1, 1, 3)
    stored = feature_store_for(engine).get_feature("dltb", 2, "230102000001")
    assert stored is not None and stored.props["DLBM"] == "0702" and "_op" not in stored.props
    bad = copy.deepcopy(feats[1:2])
    bad[0]["properties"]["_op"] = "modify"  # deleted in v2: cannot be modified
    before = table_counts(engine)
    result = submit(engine, settings, write_geojson(tmp_path / "v3.geojson", bad), mode="incremental", key="BSM")
    assert not result.accepted
    assert rules_of(result) == {"error:incremental.modify_conflict": 1}
    assert table_counts(engine) == before


def test_a_replacement_records_which_fields_hold_only_strings_and_its_keys(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    """What `publish.tile_types` reads instead of scanning the version: every field looked at, those holding only text
    (or null) named; an incremental version records nothing (its rows include rows the submission does not see)."""
    feats = grid_parcels(2)
    feats[2]["properties"]["NOTE"] = "只此一条"  # a field the other rows lack: null there, still only strings
    result = submit(engine, settings, write_geojson(tmp_path / "v1.geojson", feats))
    assert result.accepted, result.report["findings"]
    ds = catalog.require_dataset(engine, "dltb")
    note = catalog.get_version(engine, "dltb", 1).source[version_facts.KEY]
    assert note["checked"] == sorted(f["name"] for f in ds.fields)
    assert {"BSM", "DLBM", "DLMC", "NOTE"} <= set(note["only_strings"])
    assert "TBMJ" not in note["only_strings"]  # numbers
    assert set(note["only_strings"]) == {f["name"] for f in ds.fields if f["type"] == "string"}
    # and every property key its rows carry (NOTE too: the other rows hold null there)
    assert version_facts.recorded_keys(catalog.get_version(engine, "dltb", 1).source) == {f["name"] for f in ds.fields}
    change = copy.deepcopy(feats[:1])
    change[0]["properties"]["_op"] = "modify"
    change[0]["properties"]["DLMC"] = "水田"
    result = submit(engine, settings, write_geojson(tmp_path / "v2.geojson", change), mode="incremental", key="BSM")
    assert result.accepted, result.report["findings"]
    assert version_facts.KEY not in catalog.get_version(engine, "dltb", 2).source
    assert version_facts.recorded(catalog.get_version(engine, "dltb", 2).source, ["DLBM"]) is None
    assert version_facts.recorded_keys(catalog.get_version(engine, "dltb", 2).source) is None


def test_gbk_shapefile_without_cpg_reads_correctly(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    shp = write_shapefile(tmp_path / "dltb_gbk.shp", feats, encoding="GBK", keep_cpg=False)
    assert not shp.with_suffix(".cpg").exists()
    result = submit(engine, settings, shp)
    assert result.accepted, result.report["findings"]
    enc = result.report["source"]["encoding"]
    assert enc["encoding"] in ("GBK", "GB18030") and enc["how"] == "detected"
    stored = feature_store_for(engine).get_feature("dltb", 1, "230102000001")
    assert stored is not None and stored.props["DLMC"] == "水田" and stored.props["QSDWMC"] == "测试村"


def test_gauss_kruger_zone_inferred_from_prefixed_eastings(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    shp = write_shapefile(tmp_path / "gk.shp", feats, project_to="EPSG:4530", crs=None)
    assert not shp.with_suffix(".prj").exists()
    result = submit(engine, settings, shp)
    assert result.accepted, result.report["findings"]
    crs = result.report["source"]["crs"]
    assert crs["how"] == "inferred_gk_zone" and "4530" in crs["submitted"] and "42" in crs["message_zh"]
    stored = feature_store_for(engine).get_feature("dltb", 1, "230102000004")
    original = shapely.geometry.shape(feats[3]["geometry"])
    assert shapely.hausdorff_distance(shapely.from_wkb(stored.wkb), original) < 1e-8  # type: ignore[union-attr]


def test_unprefixed_projected_file_without_crs_is_refused(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "cm126.shp", grid_parcels(2), project_to="EPSG:4551", crs=None)
    result = submit(engine, settings, shp)
    assert not result.accepted
    finding = result.findings[0]
    assert finding.rule == "crs.missing_projected" and "EPSG" in finding.message_en and "--crs" in finding.message_en
    assert table_counts(engine)["datasets"] == 0
    # naming the CRS makes it acceptable
    assert submit(engine, settings, shp, crs="EPSG:4551").accepted


XIAN80_GK42 = "EPSG:2366"  # Xian 1980 / 3-degree Gauss-Kruger zone 42 (with prefix)
HELMERT = Helmert7(tx=-15.4, ty=118.2, tz=65.3, rx=0.31, ry=-1.12, rz=2.05, ds=-2.6, convention="position_vector")


def test_xian80_needs_a_registered_7_parameter_set(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    shp = write_shapefile(tmp_path / "xian80.shp", feats, project_to=XIAN80_GK42)
    before = table_counts(engine)
    refused = submit(engine, settings, shp)
    assert not refused.accepted and refused.findings[0].rule == "crs.needs_transformation"
    assert table_counts(engine) == before
    transformations.register(engine, TransformationSet("hrb-80-2000", "xian80", "230100", "helmert7", helmert7=HELMERT))
    result = submit(engine, settings, shp)
    assert result.accepted, result.report["findings"]
    assert result.report["source"]["crs"]["transformation_set"] == "hrb-80-2000"
    # the same conversion done independently by a PROJ pipeline
    pipeline = (
        "+proj=pipeline +step +proj=tmerc +lat_0=0 +lon_0=126 +k=1 +x_0=42500000 +y_0=0 +a=6378140 +rf=298.257 +inv "
        "+step +proj=cart +a=6378140 +rf=298.257 "
        f"+step +proj=helmert +x={HELMERT.tx} +y={HELMERT.ty} +z={HELMERT.tz} +rx={HELMERT.rx} +ry={HELMERT.ry} "
        f"+rz={HELMERT.rz} +s={HELMERT.ds} +convention=position_vector "
        "+step +proj=cart +a=6378137 +rf=298.257222101 +inv +step +proj=unitconvert +xy_in=rad +xy_out=deg"
    )
    proj = Transformer.from_pipeline(pipeline)
    to_xian = Transformer.from_crs("EPSG:4490", XIAN80_GK42, always_xy=True)
    original = shapely.geometry.shape(feats[0]["geometry"])
    xy = shapely.get_coordinates(original)
    e, n = to_xian.transform(xy[:, 0], xy[:, 1])
    lon, lat = proj.transform(e, n)
    stored = feature_store_for(engine).get_feature("dltb", 1, "230102000001")
    expected = shapely.Polygon(np.column_stack([lon, lat]))
    got = shapely.from_wkb(stored.wkb)  # type: ignore[union-attr]
    assert shapely.hausdorff_distance(got, expected) < 1e-9  # the shapefile writer only reorders the ring
    assert shapely.hausdorff_distance(got, original) > 1e-4  # and the datum shift is real (≈ 100 m here)


def test_multi_layer_geopackage_needs_a_layer(engine: sa.Engine, settings: Settings) -> None:
    gpkg = needs_data("osm-harbin", "harbin_osm_2024-11.gpkg")
    with pytest.raises(SubmissionUsageError) as exc:
        submit(engine, settings, gpkg, dataset_id="osm")
    assert exc.value.message.code == "source.ambiguous_layer"
    assert "multipolygons" in exc.value.message.zh and "points" in exc.value.message.en


def test_harbin_osm_broken_rings_are_reported_not_crashing(engine: sa.Engine, settings: Settings) -> None:
    gpkg = needs_data("osm-harbin", "harbin_osm_2024-11.gpkg")
    result = submit(engine, settings, gpkg, dataset_id="osm", layer="multipolygons", key="osm_way_id")
    assert not result.accepted
    by_rule = rules_of(result)
    assert by_rule["error:geometry.unreadable"] == 23
    assert by_rule["error:geometry.invalid"] == 58
    unreadable = [f for f in result.findings if f.rule == "geometry.unreadable"]
    assert all(f.feature_index is not None for f in unreadable)
    assert table_counts(engine)["features"] == 0


def test_osm_points_are_accepted_as_wgs84(engine: sa.Engine, settings: Settings) -> None:
    gpkg = needs_data("osm-harbin", "harbin_osm_2024-11.gpkg")
    result = submit(engine, settings, gpkg, dataset_id="osm-points", layer="points")
    assert result.accepted, result.report["findings"][:3]
    assert result.report["summary"]["feature_count"] == 5073
    assert "4326" in result.report["source"]["crs"]["submitted"]


def _to_gk42(geom: shapely.Geometry) -> shapely.Geometry:
    tr = Transformer.from_crs("EPSG:4490", "EPSG:4530", always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def test_gcj02_counties_line_up_with_osm_boundaries(engine: sa.Engine, settings: Settings) -> None:
    """The Amap county outlines, declared GCJ-02, land on OpenStreetMap's (WGS84) boundaries.

    The extract holds OSM's street-level (街道) boundaries, which nest inside the districts, so
    the district borders are among their edges: after conversion many OSM boundary vertices lie
    on the converted county outlines; before it, almost none do.
    """
    counties = needs_data("cnmaps-heilongjiang", "heilongjiang_counties_merged_gcj02.geojson")
    result = submit(engine, settings, counties, dataset_id="hlj-counties", unit="230000", crs="GCJ02", key="adcode")
    assert result.accepted, result.report["findings"][:5]
    assert result.report["summary"]["feature_count"] == 122
    import pyogrio

    osm = pyogrio.read_dataframe(
        needs_data("osm-harbin", "harbin_osm_2024-11.gpkg"), layer="multipolygons", where="boundary = 'administrative'"
    )
    assert len(osm) > 50
    vertices = shapely.points(shapely.get_coordinates(_to_gk42(shapely.union_all(osm.geometry.boundary.values))))
    raw = json.loads(counties.read_text(encoding="utf-8"))
    harbin = [str(f["properties"]["adcode"]) for f in raw["features"] if str(f["properties"]["adcode"]).startswith("2301")]
    store = feature_store_for(engine)
    converted = shapely.union_all([shapely.from_wkb(store.get_feature("hlj-counties", 1, c).wkb).boundary for c in harbin])  # type: ignore[union-attr]
    original = shapely.union_all([shapely.geometry.shape(f["geometry"]).boundary for f in raw["features"]
                                  if str(f["properties"]["adcode"]) in harbin])
    d_after = shapely.distance(vertices, _to_gk42(converted))
    d_before = shapely.distance(vertices, _to_gk42(original))
    on_after, on_before = int((d_after < 10).sum()), int((d_before < 10).sum())
    assert on_after >= 150 and on_after >= 8 * on_before, (on_after, on_before)
    assert float(np.median(d_after[d_after < 100])) < 20  # measured 14 m (the raw GCJ-02 outline: 42 m)


def test_extent_and_unit_codes_checked_against_loaded_divisions(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    units.set_boundary(engine, "230102", shapely.box(126.59, 45.73, 126.61, 45.75))
    feats = grid_parcels(2)  # 126.600–126.604, inside the box except the second column
    feats[0]["properties"]["ZLDWDM"] = "230103101201"  # 南岗区: outside the submitting unit
    feats[1]["properties"]["QSDWDM"] = "999999101201"
    far = shapely.box(126.70, 45.74, 126.702, 45.742)
    feats[3]["geometry"] = shapely.geometry.mapping(far)
    feats[3]["properties"]["TBMJ"] = round(float(shapely.area(far)), 2)
    result = submit(engine, settings, write_geojson(tmp_path / "x.geojson", feats))
    by_rule = rules_of(result)
    assert not result.accepted
    assert by_rule["error:jurisdiction.outside_code"] == 1
    assert by_rule["error:code.unit_unknown"] == 1
    assert by_rule["error:jurisdiction.outside_extent"] == 1
    with pytest.raises(SubmissionUsageError) as exc:
        submit(engine, settings, tmp_path / "x.geojson", unit="999999")
    assert exc.value.message.code == "submission.unknown_unit"


@hsettings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.binary(max_size=4),
    st.floats(allow_nan=True, allow_infinity=True), st.floats().map(np.float64),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), np.float64("nan"), np.float32(1.5)]),
), max_size=6))
def test_sanitized_properties_are_the_value_by_value_sanitize(props: dict) -> None:
    """The decode stage's fast path: the same values (NaN/inf → None, bytes → hex) as `_sanitize` on each one."""
    expected = {k: _sanitize(v) for k, v in props.items()}
    got = _sanitized(dict(props))
    assert list(got) == list(expected)
    for k, v in expected.items():
        assert type(got[k]) is type(v) and (got[k] == v or (v != v and got[k] != got[k]))


_PROPERTY_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=6), st.floats(allow_nan=True, allow_infinity=True),
    st.floats().map(np.float64), st.sampled_from([np.float32(1.5), np.int64(7), decimal.Decimal("1.10"), datetime.date(2024, 5, 1)]),
    st.lists(st.integers(), max_size=2),
)
_PROPS = st.dictionaries(st.text(max_size=5), _PROPERTY_VALUES, max_size=6)
_GEOMS = st.sampled_from([
    None, shapely.Point(126.6, 45.7), shapely.Polygon(), shapely.box(126.6, 45.7, 126.61, 45.71),
    shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)]), shapely.Point(1, 2, 3),
])


def _reference_stage_rows(
    geoms: np.ndarray, areas: np.ndarray, props: list[dict], key_field: str | None, ops: list[str] | None
) -> list[tuple]:
    """The rows as the content hashes of stored versions were made: json.dumps text, blake2b over it and the WKB."""
    rows = []
    for i, p in enumerate(props):
        text = json.dumps(p, ensure_ascii=False, default=str)
        wkb = None if geoms[i] is None else shapely.to_wkb(geoms[i], output_dimension=3)
        chash = hashlib.blake2b(text.encode() + (wkb or b""), digest_size=16).hexdigest()
        value = p.get(key_field) if key_field else None
        fkey = (("" if value is None else str(value).strip()) if key_field else f"h:{chash}")
        box = shapely.bounds(geoms[i]).tolist() if wkb is not None else None
        bbox = None if box is None or math.isnan(box[0]) else tuple(box)
        rows.append((fkey, text, wkb, bbox, float(areas[i]) if wkb is not None else None, chash, ops[i] if ops else "upsert"))
    return rows


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_PROPS, _GEOMS, st.sampled_from(["add", "modify", "delete", "upsert"])), max_size=8),
       st.sampled_from([None, "K", ""]), st.booleans())
def test_stage_rows_are_the_reference_rows(feats: list, key_field: str | None, with_ops: bool) -> None:
    """`_stage_rows`' fast path (the JSON encoder made once, rows by tuple.__new__) makes the rows, text and
    content hashes of json.dumps + blake2b, keyed or keyless, with or without operations."""
    props = [dict(p, K=f" k{i} ") if i % 2 else p for i, (p, _, _) in enumerate(feats)]
    geoms = np.array([g for _, g, _ in feats], dtype=object)
    areas = np.arange(len(feats), dtype=float) * 1.5
    ops = [op for _, _, op in feats] if with_ops else None
    got = _stage_rows(geoms, areas, props, key_field, ops)
    assert [tuple(r) for r in got] == _reference_stage_rows(geoms, areas, props, key_field, ops)
    assert all(type(r).__name__ == "StageRow" and r.chash == r[5] for r in got)


_COLUMN_VALUES = st.sampled_from([
    st.text(max_size=4), st.text(alphabet="地类 0123456789ab%", max_size=4), st.floats(allow_nan=False, allow_infinity=False),
    st.floats(), st.integers(), st.none(), st.booleans(), st.one_of(st.none(), st.text(max_size=3)),
    st.sampled_from(["a\"b", "c\\d", "e\nf", "\x7f", "\u2028", "%s", "%%"]), st.floats().map(np.float64),
])


@st.composite
def _table(draw: st.DrawFn) -> tuple[list[str], list[dict]]:
    """Rows as a reader's columns make them: the same fields in the same order, each column of one kind of value."""
    names = draw(st.lists(st.text(alphabet="KAB%\"地_", min_size=1, max_size=3), unique=True, max_size=5))
    n = draw(st.integers(0, 6))
    columns = {name: draw(st.lists(draw(_COLUMN_VALUES), min_size=n, max_size=n)) for name in names}
    return names, [{name: columns[name][i] for name in names} for i in range(n)]


@hsettings(max_examples=400, deadline=None)
@given(_table(), st.lists(_GEOMS.filter(lambda g: g is not None), min_size=6, max_size=6), st.sampled_from([None, "K"]),
       st.booleans())
def test_stage_rows_from_columns_are_the_reference_rows(table: tuple, geoms: list, key_field: str | None, missing: bool) -> None:
    """Given the reader's columns, `_stage_rows` writes each row's text by one format string per batch where every
    column is plain (text JSON writes as it is, finite floats, integers, None) and hashes, boxes and keys column by
    column: the same rows as the reference, whatever the columns hold (the others fall back row by row)."""
    names, props = table
    geoms_ = np.array(geoms[: len(props)], dtype=object)
    if missing and len(props):
        geoms_[0] = None  # a batch with a missing geometry goes row by row
    areas = np.arange(len(props), dtype=float) * 2.5
    columns = {name: [p[name] for p in props] for name in names}
    got = _stage_rows(geoms_, areas, props, key_field, None, columns)
    assert [tuple(r) for r in got] == _reference_stage_rows(geoms_, areas, props, key_field, None)
    assert [tuple(r) for r in got] == [tuple(r) for r in _stage_rows(geoms_, areas, props, key_field, None)]


def test_stage_rows_from_plain_columns_take_the_format_string() -> None:
    """The fast path is taken for a DLTB-like batch (text, a float and an integer column): the format string exists
    and writes json.dumps' text, spaces and all; a quote in a text column, a NaN or a mixed column turns it off."""
    columns = {"BSM": ["a1", "a2"], "DLMC": ["旱地", "水田"], "TBMJ": [1.5, 1e16], "SJNF": [2024, 2025]}
    fmt, args = _json_format(columns, 2)
    assert fmt % tuple(c[1] for c in args) == '{"BSM": "a2", "DLMC": "水田", "TBMJ": 1e+16, "SJNF": 2025}'
    assert _json_format({**columns, "X": ['q"', "r"]}, 2) is None
    assert _json_format({**columns, "X": [float("nan"), 1.0]}, 2) is None
    assert _json_format({**columns, "X": [1, "1"]}, 2) is None
    assert _json_format({**columns, "X": [None, None]}, 2)[0].endswith(', "X": null}')


@hsettings(max_examples=300, deadline=None)
@given(_PROPS)
def test_props_json_is_json_dumps(props: dict) -> None:
    """The stored text (and so every content hash) is json.dumps(p, ensure_ascii=False, default=str)'s."""
    assert _props_json(props) == json.dumps(props, ensure_ascii=False, default=str)
