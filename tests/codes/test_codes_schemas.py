"""Standard schemas: the fields submissions are checked against."""

from __future__ import annotations

from landcloud.codes.schemas import DLTB, SCHEMAS, XZQ, get_schema, known_alias


def test_dltb_fields() -> None:
    names = DLTB.field_names
    for name in ["BSM", "YSDM", "TBYBH", "TBBH", "DLBM", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWDM", "ZLDWMC",
                 "TBMJ", "KCDLBM", "KCXS", "KCMJ", "TBDLMJ", "GDLX", "GDPDJB", "TBXHDM", "ZZSXDM", "CZCSXM", "SJNF",
                 "BZ"]:
        assert name in names
    assert len(set(names)) == len(names)
    required = {f.name for f in DLTB.required_fields}
    assert required == {"BSM", "TBBH", "DLBM", "DLMC", "QSXZ", "QSDWDM", "ZLDWDM", "TBMJ"}
    assert DLTB.field("TBMJ").type == "real"  # type: ignore[union-attr]
    assert DLTB.field("dlbm").alias_zh == "地类编码"  # type: ignore[union-attr]
    assert DLTB.key_field == "BSM" and DLTB.jurisdiction_field == "ZLDWDM"
    assert DLTB.geometry_type == "Polygon"


def test_xzq_schema() -> None:
    assert {"XZQDM", "XZQMC", "DCMJ"} <= set(XZQ.field_names)
    assert XZQ.field(XZQ.jurisdiction_field) is not None
    assert XZQ.field(XZQ.key_field) is not None


def test_registry() -> None:
    assert get_schema("DLTB") is DLTB
    assert get_schema(" dltb ") is DLTB
    assert get_schema("XZQ") is XZQ
    assert get_schema("NOPE") is None
    assert set(SCHEMAS) == {"DLTB", "XZQ"}
    for schema in SCHEMAS.values():
        assert schema.field(schema.key_field) is not None


def test_standard_field_names_keep_their_chinese_names_outside_their_layer() -> None:
    assert known_alias("XZQDM") == "行政区代码" and known_alias("DLBM") == "地类编码" and known_alias("JB") == "级别"
    assert known_alias("name") == "" and known_alias("xzqdm") == ""  # standard names only, as spelled
