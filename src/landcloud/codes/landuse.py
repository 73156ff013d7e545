"""Land-use classification codes: GB/T 21010-2017 and the 三调 working classification.

Why this module exists: every submitted 地类图斑 carries a DLBM (地类编码), and the platform must
decide whether that code is one a surveyor may actually assign, what it is called, and whether
it counts as 农用地, 建设用地 or 未利用地 for the statistics (DOMAIN.md §1, §9). The codes are facts of
published standards, so the project ships them as package data (``codes/data/*.csv``) and
loads them once.

Rules that follow from the standards (and that callers rely on):

* Codes are strings. ``0101`` and ``101`` are different things: the integer loses the leading
  zero, and 3-digit codes (``011`` 水田, ``127`` 裸地) belong to the superseded GB/T 21010-2007
  system, which must never be mixed with the 4-digit 2017 codes. A 3-digit code is therefore
  never valid, and a non-string is never a code.
* Surrounding whitespace is tolerated (fixed-width DBF fields are padded); case is not folded,
  because ``K``/``A``/``H`` are part of the 三调 codes as published.
* The code is the key, never the name: names differ between systems (02 园地 vs 种植园用地) and
  between public copies of the standard, so names are only ever compared as a soft check.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal, TypeAlias

System: TypeAlias = Literal["any", "gbt21010", "sandiao"]
# The field names a layer spells its land-use class with (地类编码): the map colours by the first one a layer
# has, and tiles below the detail zoom carry only it (publish/tiles.py).
CLASS_FIELDS: tuple[str, ...] = ("DLBM", "dlbm")
LandCategory: TypeAlias = Literal["农用地", "建设用地", "未利用地"]

_SYSTEMS: tuple[str, ...] = ("any", "gbt21010", "sandiao")
_CATEGORIES: tuple[str, ...] = ("农用地", "建设用地", "未利用地")

# The Land Administration Law's three categories for GB/T 21010-2017 second-level classes
# (DOMAIN.md §1.1, the split 三调 Table A.4 also uses). The GB table itself has no such
# column, so it lives here; the 三调 table carries it per row and tests check the two agree.
_GB_AGRICULTURAL = frozenset(
    ["0101", "0102", "0103", "0201", "0202", "0203", "0204"]
    + ["0301", "0302", "0303", "0304", "0305", "0306", "0307"]
    + ["0401", "0402", "0403", "1006", "1103", "1104", "1107", "1202", "1203"]
)
_GB_UNUSED = frozenset(
    ["0404", "1101", "1102", "1105", "1106", "1108", "1110", "1204", "1205", "1206", "1207"]
)
# Our English names for the 三调 classes that are not GB classes (the published table has none).
SANDIAO_NAMES_EN = "landuse_sandiao_names_en.csv"
_GB_CONSTRUCTION_GROUPS = frozenset(["05", "06", "07", "08", "09"])
_GB_CONSTRUCTION_EXTRA = frozenset(["1001", "1002", "1003", "1004", "1005", "1007", "1008", "1009", "1109", "1201"])

# Names seen for a code in public copies of the standard that differ from the standard's own
# wording (DOMAIN.md §1.1). Accepted by the DLMC check so that a submission made with such a
# list is not flagged; the canonical name stays the one in the table.
_NAME_ALIASES: dict[str, tuple[str, ...]] = {
    "0807": ("文体设施用地",),
    "0809": ("公共设施用地",),
}


@dataclass(frozen=True)
class LandUseClass:
    """One class of a land-use classification.

    ``level`` is 1 for the first-level groups, 2 for the classes, 3 for the 三调 sub-classes
    (``1104A``, ``08H2A`` …). ``parent`` is the code of the enclosing class in the *same*
    system: in 三调 the wetland classes (0303, 0603, 1108 …) hang under ``00`` 湿地, not under
    their GB first-level group. ``land_category`` is None where a group mixes categories
    (e.g. 04 草地 holds 农用地 and 未利用地 classes).
    """

    code: str
    name_zh: str
    name_en: str | None
    level: int
    parent: str | None
    system: Literal["gbt21010", "sandiao"]
    land_category: LandCategory | None
    gbt21010_source: tuple[str, ...] = ()
    """For 三调 classes: the GB/T 21010-2017 code(s) the class derives from (``05H1`` ← 0501…0507)."""


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("landcloud.codes").joinpath("data", name).read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def _gb_category(code: str) -> LandCategory | None:
    if code in _GB_AGRICULTURAL:
        return "农用地"
    if code in _GB_UNUSED:
        return "未利用地"
    if code[:2] in _GB_CONSTRUCTION_GROUPS or code in _GB_CONSTRUCTION_EXTRA:
        return "建设用地"
    return None


def _uniform_category(children: list[LandUseClass]) -> LandCategory | None:
    """A group's category is defined only if all its classes share one."""
    cats = {c.land_category for c in children}
    if len(cats) == 1:
        (only,) = cats
        return only
    return None


def _fill_group_categories(classes: dict[str, LandUseClass]) -> dict[str, LandUseClass]:
    out = dict(classes)
    for code, cls in classes.items():
        if cls.level == 1 and cls.land_category is None:
            children = [c for c in classes.values() if c.parent == code]
            if children:
                out[code] = LandUseClass(
                    cls.code, cls.name_zh, cls.name_en, cls.level, cls.parent, cls.system,
                    _uniform_category(children), cls.gbt21010_source,
                )
    return out


@cache
def _gb_table() -> dict[str, LandUseClass]:
    classes: dict[str, LandUseClass] = {}
    for row in _read_csv("landuse_gbt21010_2017.csv"):
        code = row["code"].strip()
        level = int(row["level"])
        classes[code] = LandUseClass(
            code=code,
            name_zh=row["name_zh"].strip(),
            name_en=(row.get("name_en") or "").strip() or None,
            level=level,
            parent=(row.get("parent") or "").strip() or None,
            system="gbt21010",
            land_category=_gb_category(code) if level >= 2 else None,
            gbt21010_source=(code,),
        )
    return _fill_group_categories(classes)


@cache
def _sandiao_table() -> dict[str, LandUseClass]:
    gb = _gb_table()
    english = {row["code"]: row["name_en"] for row in _read_csv(SANDIAO_NAMES_EN)}
    classes: dict[str, LandUseClass] = {}
    for row in _read_csv("landuse_sandiao_working.csv"):
        code = row["code"].strip()
        name = row["name_zh"].strip()
        cat = (row.get("land_category_3") or "").strip() or None
        if cat is not None and cat not in _CATEGORIES:
            raise ValueError(f"三调地类表中的未知三大类 {cat!r}（{code}）/ unknown land category {cat!r} for {code}")
        sources = tuple(s.strip() for s in (row.get("gbt21010_source") or "").split(";") if s.strip())
        # The 三调 table as published has no English names (and is shipped unchanged): a class that is
        # the GB class of the same code and name borrows the GB name, the others take our translation.
        same = gb.get(code)
        borrowed = same.name_en if same is not None and same.name_zh == name else None
        name_en = borrowed or english.get(code)
        classes[code] = LandUseClass(
            code=code,
            name_zh=name,
            name_en=name_en,
            level=int(row["level"]),
            parent=(row.get("parent") or "").strip() or None,
            system="sandiao",
            land_category=cat,  # type: ignore[arg-type]  # checked above
            gbt21010_source=sources,
        )
    return _fill_group_categories(classes)


@cache
def _has_children(system: str) -> frozenset[str]:
    table = _gb_table() if system == "gbt21010" else _sandiao_table()
    return frozenset(c.parent for c in table.values() if c.parent)


def _check_system(system: str) -> None:
    if system not in _SYSTEMS:
        raise ValueError(f"未知的地类分类体系 {system!r} / unknown classification system {system!r}; expected one of {_SYSTEMS}")


def _normalize(code: object) -> str | None:
    if not isinstance(code, str):
        return None
    code = code.strip()
    return code or None


def gbt21010_classes() -> tuple[LandUseClass, ...]:
    """All GB/T 21010-2017 classes (12 first-level, 73 second-level), in table order."""
    return tuple(_gb_table().values())


def sandiao_classes() -> tuple[LandUseClass, ...]:
    """All classes of the 三调 working classification (TD/T 1055-2019 Table A.2), in table order."""
    return tuple(_sandiao_table().values())


def lookup(code: object, system: System = "any") -> LandUseClass | None:
    """The class for ``code``, or None.

    With ``system="any"`` the GB/T 21010 class wins when a code exists in both systems (so
    ``lookup("0303").parent == "03"``); 三调-only codes (``05H1``, ``1104K`` …) come from the
    三调 table. First-level group codes are found too; use :func:`is_valid_dlbm` to ask
    whether a code may be assigned to a polygon.
    """
    _check_system(system)
    c = _normalize(code)
    if c is None:
        return None
    if system in ("any", "gbt21010"):
        found = _gb_table().get(c)
        if found is not None or system == "gbt21010":
            return found
    return _sandiao_table().get(c)


def _assignable(cls: LandUseClass) -> bool:
    # Groups are not classes a polygon can carry — except a group the system does not split
    # (三调 uses 09 特殊用地 as a single class).
    return cls.level >= 2 or cls.code not in _has_children(cls.system)


def is_valid_dlbm(code: object, system: System = "any") -> bool:
    """Whether ``code`` may appear as a polygon's DLBM in the given system.

    Second-level classes (and 三调 third-level sub-classes) are assignable; first-level groups
    are not, except a group without classes (三调 ``09``). 3-digit GB/T 21010-2007 codes and
    non-strings are never valid.
    """
    _check_system(system)
    c = _normalize(code)
    if c is None:
        return False
    systems = ("gbt21010", "sandiao") if system == "any" else (system,)
    for s in systems:
        cls = lookup(c, s)  # type: ignore[arg-type]
        if cls is not None and _assignable(cls):
            return True
    return False


def first_level(code: object, system: System = "any") -> str:
    """The first-level group of ``code``, walking ``parent`` within the class's own system.

    ``first_level("0303")`` is ``"03"`` (GB grouping), ``first_level("0303", "sandiao")`` is
    ``"00"`` (湿地), ``first_level("1104K")`` is ``"11"``. Raises ``ValueError`` for an unknown
    code, because silently grouping garbage would falsify statistics.
    """
    cls = lookup(code, system)
    if cls is None:
        raise ValueError(f"未知的地类编码 {code!r} / unknown land-use code {code!r}")
    table = _gb_table() if cls.system == "gbt21010" else _sandiao_table()
    while cls.parent is not None:
        cls = table[cls.parent]
    return cls.code


def land_category(code: object, system: System = "any") -> LandCategory | None:
    """农用地 / 建设用地 / 未利用地 of ``code`` (DOMAIN.md §1.1 for GB, 三调 Table A.4 for 三调).

    三调 K/A suffix codes take the category of their source code (``1104K`` → 1104 → 农用地).
    None for unknown codes and for groups that mix categories.
    """
    cls = lookup(code, system)
    return None if cls is None else cls.land_category


def name_zh(code: object, system: System = "any") -> str | None:
    """The Chinese name of ``code`` (GB name first when ``system="any"``), or None."""
    cls = lookup(code, system)
    return None if cls is None else cls.name_zh


def accepted_names(code: object, system: System = "any") -> frozenset[str]:
    """Every DLMC that is consistent with ``code``: its name in each applicable system plus
    known variant names from public copies of the standard. Empty for unknown codes.

    With ``system="any"`` both systems' names count, since 三调 data legitimately names
    02 种植园用地 where GB says 园地.
    """
    _check_system(system)
    c = _normalize(code)
    if c is None:
        return frozenset()
    systems = ("gbt21010", "sandiao") if system == "any" else (system,)
    names: set[str] = set()
    for s in systems:
        cls = lookup(c, s)  # type: ignore[arg-type]
        if cls is not None:
            names.add(cls.name_zh)
            names.update(_NAME_ALIASES.get(c, ()))
    return frozenset(names)
