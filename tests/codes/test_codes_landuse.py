"""Land-use codes: the shipped tables must match the standards (DOMAIN.md §1)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from landcloud.codes import landuse
from landcloud.codes.landuse import (
    accepted_names,
    first_level,
    gbt21010_classes,
    is_valid_dlbm,
    land_category,
    lookup,
    name_zh,
    sandiao_classes,
)

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
PACKAGE_DATA = Path(landuse.__file__).resolve().parent / "data"


def test_gb_has_12_first_level_and_73_second_level_classes() -> None:
    levels = Counter(c.level for c in gbt21010_classes())
    assert levels == {1: 12, 2: 73}
    first = [c.code for c in gbt21010_classes() if c.level == 1]
    assert first == [f"{i:02d}" for i in range(1, 13)]
    per_group = Counter(c.parent for c in gbt21010_classes() if c.level == 2)
    assert [per_group[g] for g in first] == [3, 4, 7, 4, 7, 4, 2, 10, 6, 9, 10, 7]


def test_gb_second_level_codes_are_four_digits_under_their_group() -> None:
    for c in gbt21010_classes():
        if c.level == 2:
            assert len(c.code) == 4 and c.code.isdigit()
            assert c.parent == c.code[:2]
            assert c.system == "gbt21010"
            assert c.land_category in ("农用地", "建设用地", "未利用地")


@pytest.mark.parametrize("name", ["landuse_gbt21010_2017.csv", "landuse_sandiao_working.csv"])
def test_shipped_tables_equal_the_reference(name: str) -> None:
    shipped = (PACKAGE_DATA / name).read_text(encoding="utf-8")
    reference = REFERENCE / name
    if not reference.exists():
        pytest.skip("shared reference tables not available")
    assert shipped == reference.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("code", "name"),
    [("0101", "水田"), ("0807", "文化设施用地"), ("0809", "公用设施用地"), ("1207", "裸岩石砾地"), ("02", "园地")],
)
def test_gb_names(code: str, name: str) -> None:
    assert name_zh(code, "gbt21010") == name


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("0101", "农用地"), ("0307", "农用地"), ("0401", "农用地"), ("0402", "农用地"), ("0403", "农用地"),
        ("1006", "农用地"), ("1103", "农用地"), ("1104", "农用地"), ("1107", "农用地"), ("1202", "农用地"),
        ("1203", "农用地"),
        ("0501", "建设用地"), ("0603", "建设用地"), ("0604", "建设用地"), ("0702", "建设用地"), ("0810", "建设用地"),
        ("0906", "建设用地"), ("1001", "建设用地"), ("1005", "建设用地"), ("1007", "建设用地"), ("1009", "建设用地"),
        ("1109", "建设用地"), ("1201", "建设用地"),
        ("0404", "未利用地"), ("1101", "未利用地"), ("1102", "未利用地"), ("1105", "未利用地"), ("1106", "未利用地"),
        ("1108", "未利用地"), ("1110", "未利用地"), ("1204", "未利用地"), ("1207", "未利用地"),
    ],
)
def test_gb_land_category(code: str, category: str) -> None:
    assert land_category(code, "gbt21010") == category
    assert land_category(code) == category


def test_group_category_only_when_uniform() -> None:
    assert land_category("01") == "农用地"
    assert land_category("05") == "建设用地"
    assert land_category("04") is None  # 0404 其他草地 is 未利用地
    assert land_category("11") is None


def test_sandiao_specifics() -> None:
    assert is_valid_dlbm("05H1", "sandiao")
    assert not is_valid_dlbm("05H1", "gbt21010")
    assert is_valid_dlbm("05H1")  # any
    assert is_valid_dlbm("0501", "gbt21010") and not is_valid_dlbm("0501", "sandiao")
    assert is_valid_dlbm("0604", "gbt21010") and not is_valid_dlbm("0604", "sandiao")
    assert name_zh("0508", "sandiao") == "物流仓储用地"
    assert name_zh("02", "sandiao") == "种植园用地"
    # 0603 盐田 moves to 00 湿地 in 三调 but stays 建设用地
    assert land_category("0603") == "建设用地"
    assert land_category("0603", "sandiao") == "建设用地"
    assert lookup("0603", "sandiao").parent == "00"  # type: ignore[union-attr]
    assert first_level("0603", "sandiao") == "00"
    assert first_level("0603") == "06"
    # K suffix: category via the source code
    assert land_category("1104K") == "农用地"
    assert lookup("1104K").gbt21010_source == ("1104",)  # type: ignore[union-attr]
    assert first_level("1104K") == "11"
    assert land_category("1107A") == "农用地"
    assert land_category("0201K") == "农用地"
    assert not is_valid_dlbm("1104K", "gbt21010")
    # 09 特殊用地 is one class in 三调, a group in GB
    assert is_valid_dlbm("09", "sandiao")
    assert not is_valid_dlbm("09", "gbt21010")
    assert land_category("09", "sandiao") == "建设用地"


def test_sandiao_wetland_group_holds_the_eight_classes() -> None:
    wetland = sorted(c.code for c in sandiao_classes() if c.parent == "00")
    assert wetland == ["0303", "0304", "0306", "0402", "0603", "1105", "1106", "1108"]
    forest = sorted(c.code for c in sandiao_classes() if c.parent == "03" and c.level == 2)
    assert forest == ["0301", "0301K", "0302", "0302K", "0305", "0307", "0307K"]


def test_sandiao_categories_agree_with_their_gb_sources() -> None:
    for c in sandiao_classes():
        if c.level == 1:
            continue
        assert c.gbt21010_source, c
        source_cats = {land_category(s, "gbt21010") for s in c.gbt21010_source}
        assert source_cats == {c.land_category}, c


def test_sandiao_table_is_read_completely() -> None:
    with (PACKAGE_DATA / "landuse_sandiao_working.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [c.code for c in sandiao_classes()] == [r["code"] for r in rows]


@pytest.mark.parametrize("code", ["011", "127", "101", "", "   ", "01", "12", "0100", "1211", "05h1", "0101K", "9999"])
def test_invalid_codes(code: str) -> None:
    assert not is_valid_dlbm(code)


@pytest.mark.parametrize("code", [101, 1.0, None, b"0101"])
def test_non_strings_are_never_codes(code: object) -> None:
    assert not is_valid_dlbm(code)
    assert lookup(code) is None


def test_whitespace_is_tolerated() -> None:
    assert is_valid_dlbm(" 0101 ")
    assert lookup("\t0303\n").code == "0303"  # type: ignore[union-attr]
    assert land_category(" 1104K") == "农用地"


def test_three_digit_2007_codes_are_unknown() -> None:
    for code in ("011", "012", "013", "021", "031", "111", "127"):
        assert lookup(code) is None
        assert land_category(code) is None


def test_first_level_of_unknown_code_raises() -> None:
    with pytest.raises(ValueError, match="unknown land-use code"):
        first_level("011")


def test_unknown_system_raises() -> None:
    with pytest.raises(ValueError):
        is_valid_dlbm("0101", "gb2007")  # type: ignore[arg-type]


def test_accepted_names() -> None:
    assert "种植园用地" in accepted_names("02") and "园地" in accepted_names("02")
    assert accepted_names("02", "gbt21010") == {"园地"}
    assert "文体设施用地" in accepted_names("0807")
    assert accepted_names("011") == frozenset()


@given(st.sampled_from([c.code for c in gbt21010_classes() if c.level == 2]))
def test_every_gb_class_is_valid_and_grouped_by_prefix(code: str) -> None:
    assert is_valid_dlbm(code, "gbt21010")
    assert first_level(code, "gbt21010") == code[:2]
    assert land_category(code, "gbt21010") is not None


@given(st.text(max_size=6))
def test_valid_codes_are_known_classes(text: str) -> None:
    if is_valid_dlbm(text):
        assert lookup(text) is not None
        assert len(text.strip()) >= 2
        assert len(text.strip()) != 3


def test_every_sandiao_class_has_an_english_name_from_one_source() -> None:
    """GB names are borrowed where the class is the GB class; our translations cover only the rest."""
    translated = {row["code"] for row in csv.DictReader((PACKAGE_DATA / landuse.SANDIAO_NAMES_EN).open(encoding="utf-8"))}
    gb = {c.code: c for c in landuse.gbt21010_classes()}
    for c in landuse.sandiao_classes():
        assert c.name_en, c.code
        same = gb.get(c.code)
        if same is not None and same.name_zh == c.name_zh:
            assert c.name_en == same.name_en and c.code not in translated
        else:
            assert c.code in translated
    assert landuse.lookup("05H1", system="sandiao").name_en == "Commercial and service facility land"
