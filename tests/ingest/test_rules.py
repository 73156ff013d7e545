"""Submission rules: each rule's exact findings on small hand-built batches near Harbin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Polygon, box

from landcloud.codes.admin import DivisionIndex
from landcloud.codes.schemas import DLTB, XZQ
from landcloud.ingest.rules import Batch, RuleConfig, RuleRunner
from landcloud.ingest.version_facts import column_kinds

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
HLJ_CSV = REFERENCE / "admin_heilongjiang.csv"

# An independent check of the area the rules compute (CGCS2000 ellipsoid, DOMAIN.md §9).
GEOD = pyproj.Geod(a=6378137.0, f=1 / 298.257222101)

LON, LAT = 126.6, 45.75  # Harbin
HARBIN_BOX = box(126.0, 45.0, 127.5, 46.5)


def square(i: int = 0, size: float = 0.001) -> Polygon:
    x = LON + i * 0.002
    return box(x, LAT, x + size, LAT + size)


def geod_area(g: shapely.Geometry) -> float:
    return abs(GEOD.geometry_area_perimeter(g)[0])


def props(bsm: Any, geom: shapely.Geometry | None = None, **over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "BSM": bsm, "YSDM": "2001010100", "TBBH": "1", "DLBM": "0101", "DLMC": "水田", "QSXZ": "20",
        "QSDWDM": "230102001001", "QSDWMC": "某村", "ZLDWDM": "230102001001", "ZLDWMC": "某村",
        "TBMJ": round(geod_area(geom), 2) if geom is not None and not geom.is_empty else 1.0,
    }
    p.update(over)
    return p


def batch(geoms: list[shapely.Geometry | None], rows: list[dict[str, Any]], start: int = 0) -> Batch:
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    return Batch(start=start, geometries=arr, properties=rows)


def summary(runner: RuleRunner) -> set[tuple[str, str, int | None, str | None]]:
    return {(f.rule, f.severity, f.feature_index, f.feature_key) for f in runner.findings}


@pytest.fixture(scope="module")
def hlj() -> DivisionIndex:
    if not HLJ_CSV.exists():
        pytest.skip("shared reference tables not available")
    return DivisionIndex.from_csv(HLJ_CSV)


@pytest.fixture
def full(hlj: DivisionIndex) -> RuleConfig:
    return RuleConfig(schema=DLTB, divisions=hlj, jurisdiction_code="230100", jurisdiction_geometry=HARBIN_BOX)


def run(config: RuleConfig, *batches: Batch) -> RuleRunner:
    runner = RuleRunner(config)
    for b in batches:
        runner.check(b)
    runner.finish()
    return runner


# -- a clean submission ------------------------------------------------------------------------

def test_clean_batch_has_no_findings(full: RuleConfig) -> None:
    geoms = [square(i) for i in range(3)]
    rows = [props(f"BSM{i}", g) for i, g in enumerate(geoms)]
    rows[1].update(DLBM="1104K", DLMC="可调整养殖坑塘")  # 三调 code, system "any"
    rows[2].update(DLBM=" 0307 ", DLMC="其他林地", ZLDWDM="230183", QSDWDM="230183100200")
    runner = RuleRunner(full)
    out = runner.check(batch(geoms, rows))
    runner.finish()
    assert runner.findings == []
    assert runner.counts == {}
    assert runner.error_count == 0 and runner.warning_count == 0
    assert len(out) == 3 and all(a is b for a, b in zip(out, geoms))


# -- geometry ----------------------------------------------------------------------------------

def test_unreadable_and_empty(full: RuleConfig) -> None:
    geoms = [None, Polygon(), square()]
    runner = run(full, batch(geoms, [props("A"), props("B"), props("C", geoms[2])], start=10))
    assert summary(runner) == {
        ("geometry.unreadable", "error", 10, "A"),
        ("geometry.empty", "error", 11, "B"),
    }
    assert runner.error_count == 2
    f = runner.findings[0]
    assert "BSM=A" in f.message_zh and "BSM=A" in f.message_en and f.location is None


BOWTIE = Polygon([(LON, LAT), (LON + 0.001, LAT + 0.001), (LON + 0.001, LAT), (LON, LAT + 0.001)])


def test_invalid_geometry_is_an_error(full: RuleConfig) -> None:
    runner = run(full, batch([BOWTIE, square(1)], [props("X", TBMJ=100.0), props("Y", square(1))]))
    assert summary(runner) == {("geometry.invalid", "error", 0, "X")}
    f = runner.findings[0]
    assert f.details["reason"].startswith("Self-intersection")
    assert f.location == pytest.approx((LON + 0.0005, LAT + 0.0005))
    assert "Self-intersection" in f.message_en and "几何无效" in f.message_zh


def test_repair_turns_a_bowtie_into_a_valid_polygon(full: RuleConfig) -> None:
    full.repair = True
    expected = geod_area(shapely.make_valid(BOWTIE))
    runner = RuleRunner(full)
    out = runner.check(batch([BOWTIE], [props("X", TBMJ=round(expected, 2))]))
    runner.finish()
    assert summary(runner) == {("geometry.repaired", "warning", 0, "X")}
    assert runner.error_count == 0 and runner.warning_count == 1
    fixed = out[0]
    assert fixed.is_valid and fixed.geom_type in ("Polygon", "MultiPolygon")
    f = runner.findings[0]
    assert f.details["area_after_m2"] == pytest.approx(expected, rel=1e-6)
    assert f.location == pytest.approx((LON + 0.0005, LAT + 0.0005))
    assert "m²" in f.message_en and "平方米" in f.message_zh


def test_repair_keeps_only_the_polygonal_part(full: RuleConfig) -> None:
    # a polygon with a spike: make_valid yields a polygon plus a dangling line
    spike = shapely.from_wkt(
        f"POLYGON(({LON} {LAT}, {LON + 0.002} {LAT}, {LON + 0.002} {LAT + 0.001}, {LON + 0.001} {LAT + 0.001}, "
        f"{LON + 0.001} {LAT + 0.002}, {LON + 0.001} {LAT + 0.001}, {LON} {LAT + 0.001}, {LON} {LAT}))"
    )
    assert not spike.is_valid
    full.repair = True
    runner = RuleRunner(full)
    out = runner.check(batch([spike], [props("S", box(LON, LAT, LON + 0.002, LAT + 0.001))]))
    assert out[0].geom_type == "Polygon" and out[0].is_valid
    assert summary(runner) == {("geometry.repaired", "warning", 0, "S")}


def test_wrong_geometry_type(full: RuleConfig) -> None:
    line = LineString([(LON, LAT), (LON + 0.001, LAT)])
    runner = run(full, batch([line], [props("L")]))
    assert summary(runner) == {("geometry.wrong_type", "error", 0, "L")}


# -- keys --------------------------------------------------------------------------------------

def test_key_missing_and_duplicates_across_batches(full: RuleConfig) -> None:
    g = [square(i) for i in range(4)]
    b1 = batch(g[:3], [props("K1", g[0]), props("K2", g[1]), props("K1", g[2])], start=0)
    b2 = batch(g[:4], [props("K2", g[0]), props(None, g[1]), props("  ", g[2]), props(" K3 ", g[3])], start=3)
    runner = run(full, b1, b2)
    assert summary(runner) == {
        ("key.duplicate", "error", 2, "K1"),
        ("key.duplicate", "error", 3, "K2"),
        ("key.missing", "error", 4, None),
        ("key.missing", "error", 5, None),
    }
    dup = [f for f in runner.findings if f.rule == "key.duplicate" and f.feature_index == 3][0]
    assert dup.details["first_index"] == 1
    assert "#1" in dup.message_en and "K2" in dup.message_zh


def test_numeric_keys_compare_as_text(full: RuleConfig) -> None:
    g = [square(0), square(1)]
    runner = run(full, batch(g, [props(7, g[0]), props(7.0, g[1])]))
    assert summary(runner) == {("key.duplicate", "error", 1, "7")}


def test_configured_key_field_outside_the_schema(full: RuleConfig) -> None:
    full.key_field = "TBBH"
    g = [square(0), square(1)]
    runner = run(full, batch(g, [props("A", g[0]), props("B", g[1])]))  # both TBBH "1"
    assert summary(runner) == {("key.duplicate", "error", 1, "1")}


def test_no_key_field_no_key_rules() -> None:
    runner = run(RuleConfig(), batch([square(0), square(0)], [{"A": 1}, {"A": 1}]))
    assert runner.findings == []


def test_absent_key_column_is_reported_once() -> None:
    runner = run(RuleConfig(key_field="ID"), batch([square(0)], [{"A": 1}]), batch([square(1)], [{"A": 2}], start=1))
    assert summary(runner) == {("key.missing", "error", None, None)}


# -- required fields ---------------------------------------------------------------------------

def test_required_field_missing_once_and_null_per_feature(full: RuleConfig) -> None:
    g = [square(i) for i in range(3)]
    rows = [props(f"B{i}", g[i]) for i in range(3)]
    for r in rows:
        del r["QSXZ"]
    rows[1]["TBBH"] = None
    rows[2]["TBBH"] = " "
    rows[2]["DLMC"] = float("nan")
    later = props("B3", g[0])
    del later["QSXZ"]
    runner = run(full, batch(g, rows), batch([g[0]], [later], start=3))
    assert sorted((f.rule, f.severity, f.feature_index or -1, f.feature_key or "") for f in runner.findings) == [
        ("field.required_missing", "error", -1, ""),
        ("field.required_null", "error", 1, "B1"),
        ("field.required_null", "error", 2, "B2"),
        ("field.required_null", "error", 2, "B2"),
    ]
    missing = [f for f in runner.findings if f.rule == "field.required_missing"]
    assert len(missing) == 1 and missing[0].details == {"field": "QSXZ"}
    nulls = sorted((f.feature_index, f.details["field"]) for f in runner.findings if f.rule == "field.required_null")
    assert nulls == [(1, "TBBH"), (2, "DLMC"), (2, "TBBH")]


def test_field_names_are_case_insensitive(full: RuleConfig) -> None:
    g = square()
    row = {k.lower(): v for k, v in props("lc", g).items()}
    runner = run(full, batch([g], [row]))
    assert runner.findings == []


# -- codes -------------------------------------------------------------------------------------

def test_dlbm_and_dlmc(full: RuleConfig) -> None:
    g = [square(i) for i in range(5)]
    rows = [
        props("A", g[0], DLBM="011", DLMC="水田"),  # 2007 code
        props("B", g[1], DLBM="05H1", DLMC="商业服务业设施用地"),  # fine under "any"
        props("C", g[2], DLBM="0101", DLMC="旱地"),  # name of 0103
        props("D", g[3], DLBM="01", DLMC="耕地"),  # a group, not a class
        props("E", g[4], DLBM="0807", DLMC="文体设施用地"),  # known variant name
    ]
    runner = run(full, batch(g, rows))
    assert summary(runner) == {
        ("code.dlbm_invalid", "error", 0, "A"),
        ("code.dlmc_mismatch", "warning", 2, "C"),
        ("code.dlbm_invalid", "error", 3, "D"),
    }
    a = [f for f in runner.findings if f.feature_key == "A"][0]
    assert "'011'" in a.message_en and "2007" in a.message_en
    c = [f for f in runner.findings if f.feature_key == "C"][0]
    assert c.details["expected"] == "水田" and "旱地" in c.message_zh


def test_dlbm_system_gbt21010_rejects_sandiao_codes(full: RuleConfig) -> None:
    full.dlbm_system = "gbt21010"
    g = [square(0), square(1)]
    runner = run(full, batch(g, [props("A", g[0], DLBM="05H1", DLMC="商业服务业设施用地"),
                                 props("B", g[1], DLBM="0501", DLMC="零售商业用地")]))
    assert summary(runner) == {("code.dlbm_invalid", "error", 0, "A")}
    full.dlbm_system = "sandiao"
    runner = run(full, batch(g, [props("A", g[0], DLBM="05H1", DLMC="商业服务业设施用地"),
                                 props("B", g[1], DLBM="0501", DLMC="零售商业用地")]))
    assert summary(runner) == {("code.dlbm_invalid", "error", 1, "B")}


def test_unit_codes_unknown(full: RuleConfig) -> None:
    g = [square(i) for i in range(3)]
    rows = [
        props("A", g[0], QSDWDM="230199001001"),  # county 230199 does not exist
        props("B", g[1], QSDWDM="2301"),  # malformed
        props("C", g[2], QSDWDM="2301020010010000000"),  # 19-digit 三调 code: fine
    ]
    runner = run(full, batch(g, rows))
    assert summary(runner) == {("code.unit_unknown", "error", 0, "A"), ("code.unit_unknown", "error", 1, "B")}
    b = [f for f in runner.findings if f.feature_key == "B"][0]
    assert b.details["malformed"] is True and "QSDWDM" in b.message_en


def test_unit_codes_not_checked_without_divisions() -> None:
    runner = run(RuleConfig(schema=DLTB), batch([square()], [props("A", square(), QSDWDM="239999")]))
    assert runner.findings == []


# -- jurisdiction ------------------------------------------------------------------------------

def test_outside_code(full: RuleConfig) -> None:
    g = [square(i) for i in range(4)]
    rows = [
        props("A", g[0], ZLDWDM="230202001001"),  # Qiqihar: outside 2301
        props("B", g[1], ZLDWDM="230183"),  # 尚志市 in Harbin
        props("C", g[2], ZLDWDM="2301"),  # malformed: unit_unknown only
        props("D", g[3], ZLDWDM="239999001001"),  # unknown county outside 2301: both rules
    ]
    runner = run(full, batch(g, rows))
    assert summary(runner) == {
        ("jurisdiction.outside_code", "error", 0, "A"),
        ("code.unit_unknown", "error", 2, "C"),
        ("code.unit_unknown", "error", 3, "D"),
        ("jurisdiction.outside_code", "error", 3, "D"),
    }
    a = runner.findings[0]
    assert "230100" in a.message_en and "230202001001" in a.message_zh


def test_outside_code_for_a_county_jurisdiction(hlj: DivisionIndex) -> None:
    config = RuleConfig(schema=DLTB, divisions=hlj, jurisdiction_code="232701")
    g = [square(0), square(1)]
    runner = run(config, batch(g, [props("A", g[0], ZLDWDM="232701100200", QSDWDM="232701100200"),
                                   props("B", g[1], ZLDWDM="232721100200", QSDWDM="232721100200")]))
    assert summary(runner) == {("jurisdiction.outside_code", "error", 1, "B")}


def test_xzq_jurisdiction_field(hlj: DivisionIndex) -> None:
    config = RuleConfig(schema=XZQ, divisions=hlj, jurisdiction_code="230100")
    g = [square(0), square(1)]
    rows = [{"BSM": "1", "XZQDM": "230102001", "XZQMC": "某街道", "DCMJ": 1.0},
            {"BSM": "2", "XZQDM": "230202001", "XZQMC": "某街道", "DCMJ": 1.0}]
    runner = run(config, batch(g, rows))
    assert summary(runner) == {("jurisdiction.outside_code", "error", 1, "2")}


def test_jurisdiction_needs_the_division_list() -> None:
    with pytest.raises(ValueError, match="division list"):
        RuleRunner(RuleConfig(schema=DLTB, jurisdiction_code="230100"))


def test_unknown_jurisdiction_code(hlj: DivisionIndex) -> None:
    with pytest.raises(ValueError, match="not in the division list"):
        RuleRunner(RuleConfig(schema=DLTB, divisions=hlj, jurisdiction_code="110000"))


def test_outside_extent(full: RuleConfig) -> None:
    east = HARBIN_BOX.bounds[2]
    inside_edge = box(east - 0.001, LAT, east, LAT + 0.001)  # touches the boundary from inside
    noise = box(east - 0.001, LAT, east + 0.000005, LAT + 0.001)  # ~0.4 m over: within tolerance
    crossing = box(east - 0.001, LAT, east + 0.001, LAT + 0.001)
    far = box(116.4, 39.9, 116.401, 39.901)  # Beijing
    geoms = [inside_edge, noise, crossing, far]
    runner = run(full, batch(geoms, [props(k, g) for k, g in zip("ABCD", geoms)]))
    assert summary(runner) == {
        ("jurisdiction.outside_extent", "error", 2, "C"),
        ("jurisdiction.outside_extent", "error", 3, "D"),
    }
    c = [f for f in runner.findings if f.feature_key == "C"][0]
    assert c.location is not None and c.location[0] > east
    assert c.details["outside_area_m2"] == pytest.approx(geod_area(box(east, LAT, east + 0.001, LAT + 0.001)),
                                                         rel=0.01)


# -- area --------------------------------------------------------------------------------------

def test_area_inconsistent(full: RuleConfig) -> None:
    g = [square(i) for i in range(5)]
    true = [geod_area(x) for x in g]
    tiny = box(LON, LAT + 0.01, LON + 0.00001, LAT + 0.01 + 0.00001)  # ~0.9 m²
    rows = [
        props("OK", g[0]),
        props("BIG", g[1], TBMJ=true[1] * 1.5),
        props("ABS", g[2], TBMJ=true[2] + 0.9),  # within 1 m² (but ~0.01%)
        props("REL", g[3], TBMJ=true[3] + 50.0),  # 50 m² over ~8 700 m² ≈ 0.6%: within 1%
        props("TXT", g[4], TBMJ="abc"),
        props("TINY", tiny, TBMJ=geod_area(tiny) * 1.8),  # 80% off but < 1 m² absolute
    ]
    runner = run(full, batch([*g, tiny], rows))
    assert summary(runner) == {
        ("area.inconsistent", "warning", 1, "BIG"),
        ("area.inconsistent", "warning", 4, "TXT"),
    }
    big = [f for f in runner.findings if f.feature_key == "BIG"][0]
    assert big.details["computed_m2"] == pytest.approx(true[1], rel=1e-6)
    assert big.details["declared_m2"] == pytest.approx(true[1] * 1.5)
    assert "TBMJ" in big.message_en and "m²" in big.message_en and "平方米" in big.message_zh


def test_area_check_off_without_schema() -> None:
    runner = run(RuleConfig(), batch([square()], [{"TBMJ": 1.0}]))
    assert runner.findings == []


def test_area_field_override() -> None:
    g = square()
    runner = run(RuleConfig(area_field="MJ"), batch([g], [{"MJ": geod_area(g) * 2}]))
    assert summary(runner) == {("area.inconsistent", "warning", 0, None)}


# -- bounded reports ---------------------------------------------------------------------------

def test_suppression_counts_the_rest(full: RuleConfig) -> None:
    full.max_findings_per_rule = 2
    rows = [props(f"U{i}") for i in range(5)]
    runner = RuleRunner(full)
    runner.check(batch([None] * 3, rows[:3]))
    runner.check(batch([None] * 2, rows[3:], start=3))
    runner.finish()
    listed = [f for f in runner.findings if f.rule == "geometry.unreadable"]
    assert [f.feature_index for f in listed] == [0, 1]
    assert runner.counts[("geometry.unreadable", "error")] == 5
    assert runner.error_count == 5
    (note,) = [f for f in runner.findings if f.rule == "report.suppressed"]
    assert note.severity == "info"
    assert note.details == {"rule": "geometry.unreadable", "severity": "error", "total": 5, "listed": 2,
                            "suppressed": 3}
    runner.finish()  # idempotent
    assert len([f for f in runner.findings if f.rule == "report.suppressed"]) == 1
    with pytest.raises(RuntimeError):
        runner.check(batch([None], [props("Z")]))


def test_batch_length_mismatch() -> None:
    with pytest.raises(ValueError):
        RuleRunner(RuleConfig()).check(batch([square()], []))


def test_empty_batch() -> None:
    runner = RuleRunner(RuleConfig(schema=DLTB))
    assert len(runner.check(batch([], []))) == 0
    assert runner.findings == []  # no "required field missing" from an empty batch


# -- properties --------------------------------------------------------------------------------

keys_and_splits = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=1, max_size=30).flatmap(
    lambda keys: st.tuples(st.just(keys), st.lists(st.integers(0, len(keys)), max_size=4).map(sorted))
)


@settings(max_examples=60, deadline=None)
@given(keys_and_splits, st.integers(0, 5))
def test_duplicates_do_not_depend_on_batching(data: tuple[list[str], list[int]], cap: int) -> None:
    keys, cuts = data
    runner = RuleRunner(RuleConfig(key_field="ID", max_findings_per_rule=cap))
    bounds = [0, *cuts, len(keys)]
    for lo, hi in zip(bounds, bounds[1:]):
        runner.check(batch([None] * (hi - lo), [{"ID": k} for k in keys[lo:hi]], start=lo))
    runner.finish()
    seen: set[str] = set()
    expected = []
    for i, k in enumerate(keys):
        if k in seen:
            expected.append(i)
        seen.add(k)
    assert runner.counts.get(("key.duplicate", "error"), 0) == len(expected)
    assert runner.counts[("geometry.unreadable", "error")] == len(keys)
    listed = [f.feature_index for f in runner.findings if f.rule == "key.duplicate"]
    assert listed == expected[:cap]
    assert runner.error_count == len(keys) + len(expected)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-0.5, 0.5), min_size=1, max_size=10))
def test_returned_geometries_are_valid_when_repairing(offsets: list[float]) -> None:
    # random quadrilaterals around Harbin, some self-intersecting
    geoms = []
    for j, o in enumerate(offsets):
        x, y = LON + j * 0.01, LAT
        geoms.append(Polygon([(x, y), (x + 0.001, y + 0.001 * o), (x + 0.001, y + 0.001), (x + 0.0005 * o, y + 0.001)]))
    runner = RuleRunner(RuleConfig(repair=True))
    out = runner.check(batch(geoms, [{} for _ in geoms]))
    runner.finish()
    ok = ~shapely.is_empty(out)
    assert shapely.is_valid(out[ok]).all()
    invalid_in = int((~shapely.is_valid(np.array(geoms, dtype=object))).sum())
    repaired = runner.counts.get(("geometry.repaired", "warning"), 0)
    failed = runner.counts.get(("geometry.invalid", "error"), 0)
    assert repaired + failed == invalid_in


def test_findings_are_json_serialisable(full: RuleConfig) -> None:
    import json

    full.repair = True
    geoms = [None, BOWTIE, square(2), box(116.4, 39.9, 116.401, 39.901)]
    rows = [props("A"), props("B", TBMJ=1.0), props("C", square(2), DLBM="011"), props("D", geoms[3])]
    runner = run(full, batch(geoms, rows, start=np.int64(5)))  # type: ignore[arg-type]
    assert {f.rule for f in runner.findings} >= {"geometry.unreadable", "geometry.repaired", "code.dlbm_invalid",
                                                  "jurisdiction.outside_extent", "area.inconsistent"}
    for f in runner.findings:
        assert type(f.feature_index) is int
        json.dumps(f.to_dict(), ensure_ascii=False)


# -- the GEOS tests made beside the rules (RuleRunner.prechecks, on the read-ahead thread) ------------

@pytest.mark.parametrize("repair", [False, True])
def test_prechecked_batches_give_the_same_findings_and_geometries(full: RuleConfig, repair: bool) -> None:
    """Invalid (repairable, and repaired to outside the jurisdiction), outside, missing, empty and wrong-type
    geometries: the runner with `Batch.prechecked` finds exactly what it finds testing them itself."""
    outside_bowtie = shapely.affinity.translate(BOWTIE, 2.0, 0)  # invalid, and beyond the Harbin box
    geoms = [square(0), BOWTIE, outside_bowtie, box(128.0, 45.0, 128.001, 45.001), None, Polygon(),
             LineString([(LON, LAT), (LON + 0.001, LAT)]), square(3)]
    rows = [props(f"K{i}", g if isinstance(g, Polygon) and g.is_valid else None) for i, g in enumerate(geoms)]

    def checked(pre: bool) -> tuple[list[tuple[object, ...]], list[str | None]]:
        config = RuleConfig(schema=full.schema, divisions=full.divisions, jurisdiction_code=full.jurisdiction_code,
                            jurisdiction_geometry=full.jurisdiction_geometry, repair=repair)
        runner = RuleRunner(config)
        b = batch(list(geoms), [dict(r) for r in rows])
        if pre:
            b.prechecked = runner.prechecks(b.geometries)  # type: ignore[arg-type]
        out = runner.check(b)
        runner.finish()
        found = [(f.rule, f.severity, f.feature_index, f.feature_key, f.message_en, f.location) for f in runner.findings]
        return found, [None if g is None else g.wkt for g in out]

    plain, with_pre = checked(False), checked(True)
    assert with_pre == plain
    rules = {f[0] for f in plain[0]}
    assert {"geometry.unreadable", "geometry.empty", "geometry.wrong_type", "jurisdiction.outside_extent"} <= rules
    assert ("geometry.repaired" if repair else "geometry.invalid") in rules
    outside = {f[3] for f in plain[0] if f[0] == "jurisdiction.outside_extent"}
    assert outside == ({"K2", "K3"} if repair else {"K3"})


def test_prechecks_must_match_the_batch(full: RuleConfig) -> None:
    runner = RuleRunner(full)
    b = batch([square(0), square(1)], [props("A", square(0)), props("B", square(1))])
    b.prechecked = runner.prechecks(np.array([square(0)], dtype=object))
    with pytest.raises(ValueError, match="prechecks of 1 geometries for 2 features"):
        runner.check(b)


def _all_findings(runner: RuleRunner) -> list[tuple[Any, ...]]:
    return [(f.rule, f.severity, f.message_zh, f.message_en, f.feature_index, f.feature_key, repr(f.details))
            for f in runner.findings]


_CELL = st.sampled_from([
    "230102001001", " 230102001001", "２３０１０２001001", "999999001001", "23010200100", "", " ", None, 230102001001,
    230102001001.0, True, float("nan"), "0101", "0404", "011", 101, "水田", "旱地", "x", 1, 1.0, "B1", "B2", " B1 ",
])
_ROW = st.fixed_dictionaries(
    {name: _CELL for name in ("BSM", "DLBM", "DLMC", "QSDWDM", "ZLDWDM", "TBBH", "TBMJ")},
    optional={"dlbm": _CELL},
)


@settings(max_examples=250, deadline=None)
@given(st.lists(_ROW, max_size=24), st.integers(1, 7), st.booleans(), st.booleans())
def test_findings_do_not_depend_on_batches_or_on_the_columns_given(
    hlj: DivisionIndex, rows: list, size: int, given_columns: bool, given_kinds: bool
) -> None:
    """The attribute rules decide column by column, each distinct value once (`_flagged`): the same findings, each
    rule's in the same order and under the same caps, whether the rows come one batch or several, and whether the
    reader's columns come with them — for codes given as numbers, blanks, NaN, full-width digits and repeated keys
    alike, and whether the columns' types come with them (`Batch.kinds`). (Findings of different rules interleave
    batch by batch: geometry rules run before attribute rules.)"""
    def run(batch_size: int, with_columns: bool, with_kinds: bool = False) -> list[tuple[Any, ...]]:
        runner = RuleRunner(RuleConfig(schema=DLTB, divisions=hlj, jurisdiction_code="230100", max_findings_per_rule=5))
        for start in range(0, len(rows), batch_size):
            part = rows[start : start + batch_size]
            columns = None
            if with_columns and part and all(list(p) == list(part[0]) for p in part):
                columns = {name: [p[name] for p in part] for name in part[0]}
            kinds = column_kinds(columns) if columns is not None and with_kinds else None
            runner.check(Batch(start=start, geometries=np.full(len(part), None, dtype=object), properties=part,
                               columns=columns, kinds=kinds))
        runner.finish()
        return sorted(_all_findings(runner), key=lambda f: f[0])  # (stable: each rule's own order kept)

    whole = run(max(1, len(rows)), False)
    assert run(size, given_columns, given_kinds) == whole
    assert run(1, False) == whole


def test_a_unit_code_given_as_a_number_is_not_the_same_code_as_text(hlj: DivisionIndex) -> None:
    """The rules' verdicts are kept by value; a number is not its digits as text. The number 230102001001 after the
    code "230102001001" is still malformed (codes are identifiers: a DBF that read one as a number lost its meaning)."""
    runner = RuleRunner(RuleConfig(schema=DLTB, divisions=hlj))
    geoms = [square(0), square(1)]
    runner.check(batch(geoms, [props("B1", geoms[0]), props("B2", geoms[1], QSDWDM=230102001001)]))
    unknown = [f for f in runner.findings if f.rule == "code.unit_unknown"]
    assert [(f.feature_index, f.details["field"], f.details["malformed"]) for f in unknown] == [(1, "QSDWDM", True)]
