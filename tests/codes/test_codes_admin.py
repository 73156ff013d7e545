"""Administrative divisions: parsing the operator's list and the hierarchy over it (DOMAIN.md §2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from landcloud.codes.admin import AdminDivision, DivisionIndex, normalize_unit_code, parse_divisions

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
HLJ_CSV = REFERENCE / "admin_heilongjiang.csv"
ALL_CSV = REFERENCE / "admin_divisions_2024.csv"

pytestmark = pytest.mark.skipif(not HLJ_CSV.exists(), reason="shared reference tables not available")


@pytest.fixture(scope="module")
def hlj() -> DivisionIndex:
    return DivisionIndex.from_csv(HLJ_CSV)


_HLJ = DivisionIndex.from_csv(HLJ_CSV) if HLJ_CSV.exists() else DivisionIndex([])
_HLJ_CODES = sorted(d.code for d in _HLJ)


def test_heilongjiang_counts(hlj: DivisionIndex) -> None:
    levels = [d.level for d in hlj]
    assert levels.count("province") == 1
    assert levels.count("prefecture") == 13
    assert levels.count("county") == 121
    prefectures = [d.code[:4] for d in hlj.children("230000") if d.level == "prefecture"]
    assert prefectures == ["2301", "2302", "2303", "2304", "2305", "2306", "2307", "2308", "2309", "2310", "2311",
                           "2312", "2327"]


def test_lookup_and_contains(hlj: DivisionIndex) -> None:
    assert hlj.get("230102") == AdminDivision("230102", "道里区", "county", "230100")
    assert "230102" in hlj and " 230102 " in hlj
    assert "230199" not in hlj and 230102 not in hlj
    assert hlj.get("999999") is None


def test_prefixes_follow_the_listed_level(hlj: DivisionIndex) -> None:
    assert hlj.jurisdiction_prefix("230000") == "23"
    assert hlj.jurisdiction_prefix("230100") == "2301"
    assert hlj.jurisdiction_prefix("232700") == "2327"
    assert hlj.jurisdiction_prefix("230102") == "230102"
    assert hlj.jurisdiction_prefix("232701") == "232701"


def test_is_within(hlj: DivisionIndex) -> None:
    assert hlj.is_within("230102", "230100")
    assert hlj.is_within("230102", "230000")
    assert not hlj.is_within("230102", "230200")
    assert hlj.is_within("230102001001", "230102")  # NBS village code
    assert hlj.is_within("230102001", "230100")  # township
    assert not hlj.is_within("230103001001", "230102")
    assert hlj.is_within("230100", "230100")
    assert not hlj.is_within("230000", "230100")
    assert not hlj.is_within("2301", "230100")  # malformed
    assert not hlj.is_within(230102, "230100")
    with pytest.raises(KeyError):
        hlj.is_within("230102", "110000")


def test_daxinganling_hierarchy(hlj: DivisionIndex) -> None:
    anc = hlj.ancestors("232701")
    assert [d.code for d in anc] == ["232700", "230000"]
    assert anc[0].name == "大兴安岭地区"
    assert hlj.get("232701").name == "漠河市"  # type: ignore[union-attr]
    assert hlj.is_within("232701", "232700")
    assert {d.code for d in hlj.children("232700")} == {"232701", "232721", "232722"}


def test_children_and_descendants(hlj: DivisionIndex) -> None:
    harbin = hlj.children("230100")
    assert len(harbin) == 18 and all(d.level == "county" for d in harbin)
    assert len(hlj.descendants("230000")) == 134
    assert hlj.descendants("230102") == []
    with pytest.raises(KeyError):
        hlj.children("110000")


def test_unit_codes(hlj: DivisionIndex) -> None:
    assert normalize_unit_code(" 230102 ") == "230102"
    assert normalize_unit_code("230102001") == "230102"
    assert normalize_unit_code("230102001001") == "230102"
    assert normalize_unit_code("2301020010010000000") == "230102"  # 三调 19-digit 权属单位代码
    for bad in ["2301", "23010", "2301020", "23010200100", "23O102", "", None, 230102, "230102-001"]:
        assert normalize_unit_code(bad) is None, bad
    assert hlj.normalize_unit_code("230102001") == "230102"
    assert hlj.is_known_unit_code("230102001001")
    assert not hlj.is_known_unit_code("230199001001")
    assert not hlj.is_known_unit_code("110101")
    # NBS-only statistical units are not in the MCA list (DOMAIN.md §2.2)
    assert not hlj.is_known_unit_code("232761")


def test_full_list_parses() -> None:
    if not ALL_CSV.exists():
        pytest.skip("national list not available")
    idx = DivisionIndex.from_csv(ALL_CSV)
    assert len(idx) == 3213
    # a county directly under a province-level municipality
    assert [d.code for d in idx.ancestors("110101")] == ["110000"]
    assert idx.is_within("110101", "110000")


# -- malformed lists ---------------------------------------------------------------------------

GOOD = ["code,name,level,parent", "230000,黑龙江省,province,", "230100,哈尔滨市,prefecture,230000",
        "230102,道里区,county,230100"]


def test_parse_lines() -> None:
    divs = parse_divisions(GOOD)
    assert [d.code for d in divs] == ["230000", "230100", "230102"]
    assert divs[0].parent is None


def test_parse_tolerates_bom_blank_lines_and_order(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("\ufeff" + "\n".join([GOOD[0], GOOD[3], "", GOOD[2], GOOD[1]]) + "\n", encoding="utf-8")
    assert {d.code for d in parse_divisions(p)} == {"230000", "230100", "230102"}
    assert len(DivisionIndex.from_csv(str(p))) == 3


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        ("23010,道里区,county,230100", "line 4: division code '23010' is not 6 digits"),
        ("230102,道里区,district,230100", "line 4: unknown level 'district'"),
        ("230102,道里区,county,230200", "line 4: parent 230200 is not in the list"),
        ("230102,道里区,county", "line 4: expected 4 columns"),
        ("230102,道里区,county,", "line 4: 230102 has no parent"),
        ("230100,哈尔滨,county,230100", "line 4: code 230100 duplicates line 3"),
        ("230102,,county,230100", "line 4: empty name"),
        ("230102,道里区,county,2301", "line 4: parent code '2301' is not 6 digits"),
        ("240102,某区,county,230100", "line 4: code 240102 does not start with the prefix"),
    ],
)
def test_malformed_rows(bad_line: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as exc:
        parse_divisions(GOOD[:3] + [bad_line])
    assert "第 4 行" in str(exc.value)


def test_malformed_header() -> None:
    with pytest.raises(ValueError, match="line 1: header"):
        parse_divisions(["code,name,level"] + GOOD[1:])
    with pytest.raises(ValueError, match="line 1"):
        parse_divisions([])


def test_parent_level_must_be_above() -> None:
    lines = GOOD[:3] + ["230102,道里区,county,230100", "230103,某地,prefecture,230102"]
    with pytest.raises(ValueError, match="line 5: parent 230102 \\(county\\) is not above"):
        parse_divisions(lines)
    with pytest.raises(ValueError, match="province 230000 must not have a parent"):
        parse_divisions([GOOD[0], "230000,黑龙江省,province,110000", "110000,北京市,province,"])


# -- properties over the real index ------------------------------------------------------------

codes = st.sampled_from(_HLJ_CODES)


@given(codes)
def test_is_within_is_reflexive(code: str) -> None:
    assert _HLJ.is_within(code, code)


@given(codes, codes, codes)
def test_is_within_is_transitive(a: str, b: str, c: str) -> None:
    if _HLJ.is_within(a, b) and _HLJ.is_within(b, c):
        assert _HLJ.is_within(a, c)


@given(codes)
def test_prefix_of_every_descendant_and_ancestors_contain(code: str) -> None:
    prefix = _HLJ.jurisdiction_prefix(code)
    for d in _HLJ.descendants(code):
        assert d.code.startswith(prefix)
        assert _HLJ.is_within(d.code, code)
    for a in _HLJ.ancestors(code):
        assert _HLJ.is_within(code, a.code)
        assert not _HLJ.is_within(a.code, code)


@given(codes, st.text(alphabet="0123456789", min_size=3, max_size=3), st.text(alphabet="0123456789", min_size=3,
                                                                              max_size=3))
def test_sub_county_codes_inherit_membership(code: str, town: str, village: str) -> None:
    for sub in (code + town, code + town + village):
        assert _HLJ.normalize_unit_code(sub) == code
        assert _HLJ.is_known_unit_code(sub)
        assert _HLJ.is_within(sub, code)
        for a in _HLJ.ancestors(code):
            assert _HLJ.is_within(sub, a.code)


@given(codes, codes)
def test_within_matches_the_listed_hierarchy(a: str, b: str) -> None:
    """The prefix rule and the parent links agree on the real list."""
    by_hierarchy = a == b or b in {d.code for d in _HLJ.ancestors(a)}
    assert _HLJ.is_within(a, b) == by_hierarchy
