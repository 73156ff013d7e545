"""The standard layer schemas that submissions are checked against.

Why this module exists: county surveys deliver their 三调 / 年度变更调查 results as layers with
fixed field names (DLTB 地类图斑, XZQ 行政区 …). The submission rules need to know which fields
must be present and filled, which field is the feature key (BSM 标识码) and which field names
the unit a feature lies in (used for the jurisdiction check). Field names and meanings follow
the 三调 database layout as used by public change-survey software (DOMAIN.md §9).

Field widths are given only where they follow from code facts (e.g. DLBM holds up to 5
characters: ``08H2A``); the standard's exact widths were not verified, so nothing here checks
widths yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

FieldType: TypeAlias = Literal["string", "integer", "real", "date"]


@dataclass(frozen=True)
class FieldSpec:
    """One attribute field of a standard layer (``alias_zh`` is the standard's Chinese name)."""

    name: str
    alias_zh: str
    type: FieldType
    required: bool
    width: int | None = None


@dataclass(frozen=True)
class StandardSchema:
    """A standard layer: its fields, its key field and its jurisdiction field.

    ``geometry_type`` is the OGC type family of the layer; ``"Polygon"`` accepts Polygon and
    MultiPolygon. ``key_field`` identifies a feature (must be unique in a submission);
    ``jurisdiction_field`` holds the unit code a feature lies in.
    """

    id: str
    name_zh: str
    name_en: str
    geometry_type: Literal["Point", "LineString", "Polygon"]
    fields: tuple[FieldSpec, ...]
    key_field: str
    jurisdiction_field: str

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name`` (case-insensitive, as shapefile/GDB drivers differ), or None."""
        upper = name.upper()
        for f in self.fields:
            if f.name.upper() == upper:
                return f
        return None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.required)


DLTB = StandardSchema(
    id="DLTB",
    name_zh="地类图斑",
    name_en="Land-use polygons",
    geometry_type="Polygon",
    fields=(
        FieldSpec("BSM", "标识码", "string", True),
        FieldSpec("YSDM", "要素代码", "string", False),
        FieldSpec("TBYBH", "图斑预编号", "string", False),
        FieldSpec("TBBH", "图斑编号", "string", True),
        FieldSpec("DLBM", "地类编码", "string", True, 5),
        FieldSpec("DLMC", "地类名称", "string", True),
        FieldSpec("QSXZ", "权属性质", "string", True),
        FieldSpec("QSDWDM", "权属单位代码", "string", True),
        FieldSpec("QSDWMC", "权属单位名称", "string", False),
        FieldSpec("ZLDWDM", "坐落单位代码", "string", True),
        FieldSpec("ZLDWMC", "坐落单位名称", "string", False),
        FieldSpec("TBMJ", "图斑面积", "real", True),  # m², ellipsoidal (DOMAIN.md §9)
        FieldSpec("KCDLBM", "扣除地类编码", "string", False, 5),
        FieldSpec("KCXS", "扣除地类系数", "real", False),
        FieldSpec("KCMJ", "扣除地类面积", "real", False),
        FieldSpec("TBDLMJ", "图斑地类面积", "real", False),  # = TBMJ − KCMJ
        FieldSpec("GDLX", "耕地类型", "string", False),
        FieldSpec("GDPDJB", "耕地坡度级别", "string", False),
        FieldSpec("TBXHDM", "图斑细化代码", "string", False),
        FieldSpec("ZZSXDM", "种植属性代码", "string", False),
        FieldSpec("CZCSXM", "城镇村属性码", "string", False, 4),  # 201 … 205, 201A … 203A
        FieldSpec("SJNF", "数据年份", "integer", False),
        FieldSpec("BZ", "备注", "string", False),
    ),
    key_field="BSM",
    jurisdiction_field="ZLDWDM",
)

XZQ = StandardSchema(
    id="XZQ",
    name_zh="行政区",
    name_en="Administrative areas",
    geometry_type="Polygon",
    fields=(
        FieldSpec("BSM", "标识码", "string", True),
        FieldSpec("YSDM", "要素代码", "string", False),
        FieldSpec("XZQDM", "行政区代码", "string", True),  # township level: 9 or 12 digits
        FieldSpec("XZQMC", "行政区名称", "string", True),
        FieldSpec("DCMJ", "调查面积", "real", True),  # m²
        FieldSpec("JSMJ", "计算面积", "real", False),  # m²
        FieldSpec("BZ", "备注", "string", False),
    ),
    key_field="BSM",
    jurisdiction_field="XZQDM",
)

SCHEMAS: dict[str, StandardSchema] = {s.id: s for s in (DLTB, XZQ)}


def get_schema(id: str) -> StandardSchema | None:
    """The standard schema with this id (case-insensitive), or None."""
    return SCHEMAS.get(id.strip().upper()) if isinstance(id, str) else None


# Field names the standards use beyond these layers, with their Chinese names (for aliases only).
COMMON_ALIASES: dict[str, str] = {
    "JB": "级别", "SJXZQDM": "上级行政区代码", "GHFQMC": "规划分区名称", "GHQJ": "规划期限", "YFCD": "易发程度",
}


def known_alias(name: str) -> str:
    """The Chinese name a standard gives a field, whatever layer it turns up in ('' when none does).

    A file submitted without a standard schema still carries standard field names (XZQDM in a
    boundary layer, DLBM in a planning layer); users read them by their Chinese names.
    """
    for schema in SCHEMAS.values():
        for f in schema.fields:
            if f.name == name:
                return f.alias_zh
    return COMMON_ALIASES.get(name, "")
