"""Attribute encoding of shapefiles and CSV: given > .cpg > DBF bytes > LDID > latin1."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from landcloud.ingest.encoding import (
    EncodingDecision,
    classify_bytes,
    decide_shapefile_encoding,
    detect_dbf_encoding,
    detect_text_encoding,
    normalize_encoding,
    read_cpg,
    read_dbf_header,
)

CHINESE = {"XZQMC": ["哈尔滨市", "道里区", "南岗区"], "DLMC": ["水田", "旱地", "乔木林地"]}


def write_shp(folder: Path, name: str, columns: dict[str, list], *, encoding: str, keep_cpg: bool) -> Path:
    n = len(next(iter(columns.values())))
    gdf = gpd.GeoDataFrame(columns, geometry=[Point(126.6 + i * 0.01, 45.7) for i in range(n)], crs="EPSG:4490")
    shp = folder / f"{name}.shp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyogrio.write_dataframe(gdf, shp, encoding=encoding)
    cpg = shp.with_suffix(".cpg")
    if not keep_cpg and cpg.exists():
        cpg.unlink()
    return shp


def read_strings(shp: Path, encoding: str, column: str) -> list[str]:
    df = pyogrio.read_dataframe(shp, encoding=encoding, read_geometry=False)
    return list(df[column])


# --------------------------------------------------------------------------- code pages


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("UTF-8", "UTF-8"),
        ("utf8", "UTF-8"),
        ("65001", "UTF-8"),
        ("GBK", "GBK"),
        ("936", "GBK"),
        ("CP936", "GBK"),
        ("cp936", "GBK"),
        ("GB2312", "GBK"),
        ("GB18030", "GB18030"),
        (" 936\r\n", "GBK"),
        ("ISO-8859-5", "ISO-8859-5"),
        ("1251", "CP1251"),
        ("88591", "latin1"),
        ("no-such-codepage", None),
        ("", None),
    ],
)
def test_normalize_encoding(spelling: str, expected: str | None) -> None:
    assert normalize_encoding(spelling) == expected


def test_read_cpg_case_insensitive_extension(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "dltb", CHINESE, encoding="GBK", keep_cpg=False)
    (tmp_path / "dltb.CPG").write_text("936\n")
    assert read_cpg(shp) == "GBK"
    assert read_cpg(tmp_path / "dltb.CPG") == "GBK"


def test_read_cpg_missing_and_unknown(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "a", CHINESE, encoding="GBK", keep_cpg=False)
    assert read_cpg(shp) is None
    shp.with_suffix(".cpg").write_text("KLINGON-42")
    assert read_cpg(shp) is None


# --------------------------------------------------------------------------- DBF detection


def test_dbf_header_parsed(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "h", CHINESE, encoding="GBK", keep_cpg=False)
    h = read_dbf_header(shp.with_suffix(".dbf"))
    assert h.record_count == 3
    assert [f.name_bytes for f in h.fields] == [b"XZQMC", b"DLMC"]
    assert [f.type for f in h.fields] == ["C", "C"]
    assert h.header_length == 32 + 32 * 2 + 1
    assert h.record_length == 1 + sum(f.length for f in h.fields)


def test_gbk_without_cpg_detected(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "gbk", CHINESE, encoding="GBK", keep_cpg=False)
    d = detect_dbf_encoding(shp.with_suffix(".dbf"))
    assert (d.encoding, d.how) == ("GBK", "detected")
    dec = decide_shapefile_encoding(shp, None)
    assert (dec.encoding, dec.how) == ("GBK", "detected")
    assert "未找到 .cpg" in dec.message_zh and "GBK" in dec.message_zh
    assert "no .cpg" in dec.message_en and "GBK" in dec.message_en
    assert not dec.uncertain
    assert read_strings(shp, dec.encoding, "XZQMC") == CHINESE["XZQMC"]
    assert read_strings(shp, dec.encoding, "DLMC") == CHINESE["DLMC"]


def test_gbk_field_names_detected(tmp_path: Path) -> None:
    """Chinese field names are GBK bytes in the DBF header too; they count as evidence."""
    shp = write_shp(tmp_path, "names", {"地类名称": ["x", "y"]}, encoding="GBK", keep_cpg=False)
    dec = decide_shapefile_encoding(shp, None)
    assert dec.encoding == "GBK"
    df = pyogrio.read_dataframe(shp, encoding=dec.encoding, read_geometry=False)
    assert list(df.columns) == ["地类名称"]


def test_utf8_without_cpg_detected(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "u8", CHINESE, encoding="UTF-8", keep_cpg=False)
    assert not shp.with_suffix(".cpg").exists()
    dec = decide_shapefile_encoding(shp, None)
    assert (dec.encoding, dec.how) == ("UTF-8", "detected")
    assert read_strings(shp, dec.encoding, "XZQMC") == CHINESE["XZQMC"]


def test_cpg_936_honoured(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "c", CHINESE, encoding="GBK", keep_cpg=False)
    shp.with_suffix(".cpg").write_text("936")
    dec = decide_shapefile_encoding(shp, None)
    assert (dec.encoding, dec.how) == ("GBK", "cpg")
    assert ".cpg" in dec.message_zh and "936" in dec.message_zh
    assert not dec.uncertain
    assert read_strings(shp, dec.encoding, "DLMC") == CHINESE["DLMC"]


def test_cpg_contradicted_by_bytes_warns(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "lie", CHINESE, encoding="GBK", keep_cpg=False)
    shp.with_suffix(".cpg").write_text("UTF-8")
    dec = decide_shapefile_encoding(shp, None)
    assert (dec.encoding, dec.how) == ("UTF-8", "cpg")  # the declaration still wins …
    assert dec.uncertain  # … but the user is told
    assert "乱码" in dec.message_zh and "garbled" in dec.message_en


def test_given_beats_cpg(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "g", CHINESE, encoding="GBK", keep_cpg=True)
    shp.with_suffix(".cpg").write_text("UTF-8")
    dec = decide_shapefile_encoding(shp, "cp936")
    assert (dec.encoding, dec.how) == ("GBK", "given")
    with pytest.raises(ValueError):
        decide_shapefile_encoding(shp, "no-such-codec")


def test_ascii_only(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "ascii", {"CODE": ["0101", "0102"], "NAME": ["paddy", "irrigated"]}, encoding="UTF-8", keep_cpg=False)
    dec = decide_shapefile_encoding(shp, None)
    assert (dec.encoding, dec.how) == ("UTF-8", "ascii")
    assert "ASCII" in dec.message_zh and "ASCII" in dec.message_en


def test_gb18030_only_characters(tmp_path: Path) -> None:
    # U+20000 (𠀀) and U+9FA6+ are outside GBK; GB18030 encodes them with 4 bytes
    values = ["㐀地块", "𠀀村"]
    shp = write_shp(tmp_path, "g18", {"NAME": values}, encoding="GB18030", keep_cpg=False)
    dec = decide_shapefile_encoding(shp, None)
    assert dec.encoding == "GB18030"
    assert read_strings(shp, dec.encoding, "NAME") == values


def _set_ldid(dbf: Path, ldid: int) -> None:
    data = bytearray(dbf.read_bytes())
    data[29] = ldid
    dbf.write_bytes(bytes(data))


def test_undecidable_bytes_fall_back_to_latin1_with_warning(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "lat", {"NAME": ["Caf\u00e9 au lait", "na\u00efve!"]}, encoding="latin1", keep_cpg=False)
    _set_ldid(shp.with_suffix(".dbf"), 0)
    dec = decide_shapefile_encoding(shp, None)
    assert dec.encoding == "latin1"
    assert dec.uncertain
    assert "latin1" in dec.message_zh and "latin1" in dec.message_en
    assert dec.to_message().code == "encoding.uncertain"


def test_undecidable_bytes_use_ldid(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, "ld", {"NAME": ["Caf\u00e9 au lait"]}, encoding="latin1", keep_cpg=False)
    _set_ldid(shp.with_suffix(".dbf"), 0x4D)
    dec = detect_dbf_encoding(shp.with_suffix(".dbf"))
    assert (dec.encoding, dec.how) == ("GBK", "ldid")
    assert dec.uncertain and "0x4D" in dec.message_en


def test_detection_reads_only_the_sample(tmp_path: Path) -> None:
    """ASCII in the first records, GBK later: a tiny sample sees ASCII only."""
    values = ["plain"] * 200 + ["水田"]
    shp = write_shp(tmp_path, "big", {"NAME": values}, encoding="GBK", keep_cpg=False)
    dbf = shp.with_suffix(".dbf")
    assert detect_dbf_encoding(dbf, sample_bytes=64).how == "ascii"
    assert detect_dbf_encoding(dbf).encoding == "GBK"


def test_truncated_multibyte_tail_tolerated() -> None:
    gbk = "黑龙江省哈尔滨".encode("gbk")
    assert classify_bytes([gbk[:-1], "道里区".encode("gbk")]).encoding == "GBK"
    u8 = "黑龙江省哈尔滨".encode()
    assert classify_bytes([u8[:-1], "道里区".encode()]).encoding == "UTF-8"


def test_gbk_bytes_that_look_like_utf8_are_gbk() -> None:
    # 录 is C2 BC in GBK, which is also valid UTF-8 ("¼")
    assert "录".encode("gbk").decode("utf-8") == "¼"
    assert classify_bytes(["录".encode("gbk")]).encoding == "GBK"
    # genuine accented Latin UTF-8 stays UTF-8
    assert classify_bytes(["São Paulo".encode()]).encoding == "UTF-8"


CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.text(alphabet=CJK, min_size=2, max_size=12), min_size=1, max_size=5))
def test_random_chinese_round_trips_through_gbk_dbf(tmp_path_factory: pytest.TempPathFactory, values: list[str]) -> None:
    folder = tmp_path_factory.mktemp("hyp")
    shp = write_shp(folder, "r", {"NAME": values}, encoding="GBK", keep_cpg=False)
    dec = decide_shapefile_encoding(shp, None)
    assert dec.encoding in ("GBK", "GB18030")
    assert dec.how == "detected"
    assert read_strings(shp, dec.encoding, "NAME") == values


# --------------------------------------------------------------------------- CSV / text


@pytest.mark.parametrize(
    ("data", "encoding", "how"),
    [
        ("名称,lon,lat\n哈尔滨市,126.6,45.7\n".encode(), "UTF-8", "detected"),
        (b"\xef\xbb\xbf" + "名称,lon,lat\n哈尔滨市,126.6,45.7\n".encode(), "UTF-8", "detected"),
        ("名称,lon,lat\n哈尔滨市,126.6,45.7\n".encode("gbk"), "GBK", "detected"),
        (b"name,lon,lat\nharbin,126.6,45.7\n", "UTF-8", "ascii"),
    ],
)
def test_text_encoding(tmp_path: Path, data: bytes, encoding: str, how: str) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(data)
    d = detect_text_encoding(p)
    assert isinstance(d, EncodingDecision)
    assert (d.encoding, d.how) == (encoding, how)
    assert detect_text_encoding(p, "GB18030").how == "given"
