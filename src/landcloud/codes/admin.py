"""Administrative division codes (GB/T 2260, with NBS 9/12-digit sub-codes).

Why this module exists: every submission is made by a unit (a county, a prefecture, the
province) and its rows name the unit they lie in (ZLDWDM 坐落单位代码, QSDWDM 权属单位代码). The
platform must answer "is this row inside the submitting unit?" and "is this a real unit?".

The division list is operator-loaded data, not shipped with the code: the Ministry of Civil
Affairs changes codes every year (DOMAIN.md §2). So this module only parses and indexes a
``code,name,level,parent`` CSV that the deployment provides.

Two principles (DOMAIN.md §2.1):

* The level of a unit is read from the list, never guessed from its digits. The digit ranges
  are conventions with exceptions (232701 漠河市 is a county of the 2327 大兴安岭地区 prefecture),
  and a province-level municipality has counties directly under the province.
* Below the county, NBS 统计用区划代码 extend the 6-digit code with 3 (township) and 3 (village)
  digits; such codes are "within" a unit when they start with that unit's prefix.
"""

from __future__ import annotations

import csv
import operator
import os
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

Level: TypeAlias = Literal["province", "prefecture", "county"]

_LEVELS: tuple[str, ...] = ("province", "prefecture", "county")
_RANK = {"province": 0, "prefecture": 1, "county": 2}
_PREFIX_LEN = {"province": 2, "prefecture": 4, "county": 6}
_EXPECTED_HEADER = ["code", "name", "level", "parent"]
_SIX = re.compile(r"\d{6}")
# 6 = county and above (GB/T 2260); 9 = + township; 12 = + village (NBS).
# 19 = the 三调 权属/坐落单位代码 (12-digit village code + a 7-digit group part). The 19-digit form
# is recalled from the 三调 database standard, not verified against the text (see DOMAIN.md
# conventions: UNCERTAIN); accepting it only widens what is parsed, the 6-digit prefix rule is
# unchanged.
_UNIT_CODE = re.compile(r"\d{6}(?:\d{3}(?:\d{3}(?:\d{7})?)?)?")
# the same lengths in ASCII digits, nothing around them: a code `normalize_unit_code` takes as it is
_PLAIN_UNIT_CODE = re.compile(r"[0-9]{6}(?:[0-9]{3}(?:[0-9]{3}(?:[0-9]{7})?)?)?")
_COUNTY_PART = operator.itemgetter(slice(0, 6))


@dataclass(frozen=True)
class AdminDivision:
    """One GB/T 2260 unit. ``parent`` is the enclosing unit's code as listed (the prefecture
    where one exists, else the province; None for a province)."""

    code: str
    name: str
    level: Level
    parent: str | None


def _lines(path_or_lines: str | os.PathLike[str] | Iterable[str]) -> tuple[Iterator[str], str]:
    if isinstance(path_or_lines, (str, os.PathLike)):
        path = Path(path_or_lines)
        # utf-8-sig: spreadsheets often save CSV with a BOM, which would corrupt the first header.
        text = path.read_text(encoding="utf-8-sig")
        return iter(text.splitlines()), str(path)
    return (line.lstrip("\ufeff") if i == 0 else line for i, line in enumerate(path_or_lines)), "<lines>"


def parse_divisions(path_or_lines: str | os.PathLike[str] | Iterable[str]) -> list[AdminDivision]:
    """Read a ``code,name,level,parent`` CSV into divisions, validating every row.

    ``path_or_lines`` is a path (``str``/``PathLike``) or an iterable of text lines including
    the header. A list that is wrong in one row is wrong: the first problem raises
    ``ValueError`` with a bilingual message naming the line (header = line 1), instead of
    silently dropping units and later rejecting submissions from them.
    """
    lines, source = _lines(path_or_lines)
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != _EXPECTED_HEADER:
        raise ValueError(
            f"{source} 第 1 行：表头应为 code,name,level,parent，实际为 {header!r} / "
            f"{source} line 1: header must be code,name,level,parent, got {header!r}"
        )
    divisions: list[AdminDivision] = []
    line_of: dict[str, int] = {}
    for row in reader:
        line_no = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 4:
            raise ValueError(
                f"{source} 第 {line_no} 行：应有 4 列，实际 {len(row)} 列 / "
                f"{source} line {line_no}: expected 4 columns, got {len(row)}"
            )
        code, name, level, parent = (cell.strip() for cell in row)
        if not _SIX.fullmatch(code):
            raise ValueError(
                f"{source} 第 {line_no} 行：行政区划代码 {code!r} 不是 6 位数字 / "
                f"{source} line {line_no}: division code {code!r} is not 6 digits"
            )
        if level not in _LEVELS:
            raise ValueError(
                f"{source} 第 {line_no} 行：未知级别 {level!r}（应为 province/prefecture/county）/ "
                f"{source} line {line_no}: unknown level {level!r} (expected province, prefecture or county)"
            )
        if not name:
            raise ValueError(f"{source} 第 {line_no} 行：名称为空 / {source} line {line_no}: empty name")
        if code in line_of:
            raise ValueError(
                f"{source} 第 {line_no} 行：代码 {code} 与第 {line_of[code]} 行重复 / "
                f"{source} line {line_no}: code {code} duplicates line {line_of[code]}"
            )
        if parent and not _SIX.fullmatch(parent):
            raise ValueError(
                f"{source} 第 {line_no} 行：上级代码 {parent!r} 不是 6 位数字 / "
                f"{source} line {line_no}: parent code {parent!r} is not 6 digits"
            )
        if level == "province" and parent:
            raise ValueError(
                f"{source} 第 {line_no} 行：省级单位 {code} 不应有上级 / "
                f"{source} line {line_no}: province {code} must not have a parent"
            )
        if level != "province" and not parent:
            raise ValueError(
                f"{source} 第 {line_no} 行：{code} 缺少上级代码 / {source} line {line_no}: {code} has no parent"
            )
        line_of[code] = line_no
        divisions.append(AdminDivision(code, name, level, parent or None))  # type: ignore[arg-type]

    # Parents are checked after reading everything so the file need not be sorted.
    by_code = {d.code: d for d in divisions}
    for d in divisions:
        if d.parent is None:
            continue
        line_no = line_of[d.code]
        parent = by_code.get(d.parent)
        if parent is None:
            raise ValueError(
                f"{source} 第 {line_no} 行：上级代码 {d.parent} 不在列表中 / "
                f"{source} line {line_no}: parent {d.parent} is not in the list"
            )
        if _RANK[parent.level] >= _RANK[d.level]:
            raise ValueError(
                f"{source} 第 {line_no} 行：上级 {parent.code}（{parent.level}）级别不高于 {d.code}（{d.level}）/ "
                f"{source} line {line_no}: parent {parent.code} ({parent.level}) is not above {d.code} ({d.level})"
            )
        if not d.code.startswith(parent.code[: _PREFIX_LEN[parent.level]]):
            # is_within compares on prefixes; a unit outside its parent's prefix would make
            # the hierarchy and the prefix rule disagree.
            raise ValueError(
                f"{source} 第 {line_no} 行：代码 {d.code} 不以上级 {parent.code} 的前缀开头 / "
                f"{source} line {line_no}: code {d.code} does not start with the prefix of its parent {parent.code}"
            )
    return divisions


def plain_unit_codes(codes: Collection[str]) -> bool:
    """Whether every one of `codes` is a well-formed unit code of ASCII digits without blanks (for which
    `normalize_unit_code` is the first six characters). Decided without a Python call per code: a submission's
    rules meet thousands of village codes a batch; False means "decide them one by one"."""
    return all(map(_PLAIN_UNIT_CODE.fullmatch, codes))


def normalize_unit_code(code: object) -> str | None:
    """The 6-digit county-level part of a unit code, or None if the code is malformed.

    Accepts 6 (GB/T 2260), 9 (township), 12 (village) and 19 (三调 权属/坐落单位) digit strings,
    with surrounding whitespace. Integers are rejected: a code read as a number may have lost
    meaning (and these codes are identifiers, not quantities).
    """
    if not isinstance(code, str):
        return None
    code = code.strip()
    if not _UNIT_CODE.fullmatch(code):
        return None
    return code[:6]


class DivisionIndex:
    """Lookup and hierarchy over a loaded division list."""

    def __init__(self, divisions: Iterable[AdminDivision]) -> None:
        self._by_code: dict[str, AdminDivision] = {}
        self._children: dict[str, list[AdminDivision]] = {}
        for d in divisions:
            if d.code in self._by_code:
                raise ValueError(f"重复的行政区划代码 {d.code} / duplicate division code {d.code}")
            self._by_code[d.code] = d
        for d in self._by_code.values():
            if d.parent is not None:
                if d.parent not in self._by_code:
                    raise ValueError(
                        f"{d.code} 的上级 {d.parent} 不在列表中 / parent {d.parent} of {d.code} is not in the list"
                    )
                self._children.setdefault(d.parent, []).append(d)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> DivisionIndex:
        """Parse and index a ``code,name,level,parent`` CSV (see :func:`parse_divisions`)."""
        return cls(parse_divisions(path))

    def __len__(self) -> int:
        return len(self._by_code)

    def __iter__(self) -> Iterator[AdminDivision]:
        return iter(self._by_code.values())

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code.strip() in self._by_code

    def get(self, code: str) -> AdminDivision | None:
        return self._by_code.get(code.strip()) if isinstance(code, str) else None

    def _require(self, code: str) -> AdminDivision:
        d = self.get(code)
        if d is None:
            raise KeyError(f"行政区划代码 {code!r} 不在列表中 / division code {code!r} is not in the list")
        return d

    def ancestors(self, code: str) -> list[AdminDivision]:
        """The enclosing units, nearest first (county → prefecture → province)."""
        d = self._require(code)
        out: list[AdminDivision] = []
        while d.parent is not None:
            d = self._by_code[d.parent]
            out.append(d)
        return out

    def children(self, code: str) -> list[AdminDivision]:
        """The units listed with ``code`` as parent."""
        return list(self._children.get(self._require(code).code, ()))

    def descendants(self, code: str) -> list[AdminDivision]:
        """All units below ``code``, depth-first."""
        out: list[AdminDivision] = []
        stack = list(reversed(self.children(code)))
        while stack:
            d = stack.pop()
            out.append(d)
            stack.extend(reversed(self._children.get(d.code, ())))
        return out

    def jurisdiction_prefix(self, code: str) -> str:
        """The code prefix shared by everything within ``code``: 2 digits for a province, 4 for
        a prefecture, 6 for a county — by the unit's *listed* level."""
        d = self._require(code)
        return d.code[: _PREFIX_LEN[d.level]]

    def is_within(self, code: object, jurisdiction_code: str) -> bool:
        """Whether the unit ``code`` (6, 9, 12 or 19 digits) lies within ``jurisdiction_code``.

        Reflexive (a unit is within itself). Compared on the jurisdiction's prefix, so a
        township/village code is within its county; ``code`` itself need not be in the list
        (use :meth:`is_known_unit_code` for that). Malformed codes are within nothing.
        Raises ``KeyError`` when the jurisdiction is not in the list.
        """
        prefix = self.jurisdiction_prefix(jurisdiction_code)
        if normalize_unit_code(code) is None:
            return False
        return code.strip().startswith(prefix)  # type: ignore[union-attr]  # a str, see above

    def normalize_unit_code(self, code: object) -> str | None:
        """See the module-level :func:`normalize_unit_code`."""
        return normalize_unit_code(code)

    def is_known_unit_code(self, code: object) -> bool:
        """Whether the 6-digit county-level part of ``code`` is a listed unit."""
        six = normalize_unit_code(code)
        return six is not None and six in self._by_code

    def all_known_unit_codes(self, codes: Collection[str]) -> bool:
        """Whether `is_known_unit_code` holds for each of `codes`, when they are plain codes (`plain_unit_codes`);
        False otherwise, which means "ask one by one". No Python call per code."""
        return plain_unit_codes(codes) and self._by_code.keys() >= set(map(_COUNTY_PART, codes))
