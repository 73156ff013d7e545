"""OGC API – Features Part 3 (Filtering): CQL2 text and CQL2 JSON → one parameterised SQL condition.

A filter arrives as text (`DLBM LIKE '01%' AND S_INTERSECTS(geometry, POLYGON((…)))`) or as JSON;
pygeofilter turns it into its AST and this module turns the AST into an `SQLFilter` over the
feature table (alias `f`) for the store at hand — the same SQL for SQLite and PostGIS apart from
the property expressions the store supplies (and GLOB, below):

* properties are reached only through `FeatureStore.prop_sql` (the name is a bound parameter
  too) and only when they are queryables of the collection; every value is a bound parameter,
  named "q…" so that it can be combined with the store's own parameters and other filters;
* numbers compare as numbers (the queryable's type decides), text as text, dates and
  timestamps as ISO-8601 text at the coarser granularity of the two sides: a DATE compares
  `YYYY-MM-DD`, a TIMESTAMP (normalised to UTC) `YYYY-MM-DDTHH:MM:SS` — stored values are cut
  to the same length, so "2024-05-01T08:00:00Z", "…+00:00" and "… 08:00:00.000" all compare
  alike (a stored offset other than UTC is not applied);
* LIKE is case-sensitive on both backends and escapes explicitly: `LIKE :q ESCAPE '\\'`, except
  that SQLite, whose LIKE ignores ASCII case, gets the same match as a (case-sensitive) GLOB
  when the pattern holds ASCII letters;
* geometry literals (WKT, GeoJSON, BBOX, ENVELOPE) are brought to EPSG:4490 lon/lat from the
  filter-crs and bound as WKB, always as the second argument of the PostGIS-named predicate
  (the SQLite predicates parse and cache that argument once), behind an envelope test on the
  stored extent columns so that SQLite calls GEOS only for candidates.

Why a grammar of our own for the text form: pygeofilter 0.4's CQL2 text grammar follows an old
draft — temporal predicates only infix (`GXSJ T_AFTER …`), no `''` inside strings, no
one-letter names, AND and OR of equal precedence, INTERVAL only of full timestamps. The grammar
below is pygeofilter's with those fixed (its AST, transformer and WKT grammar are reused), so
both standard CQL2 and pygeofilter's older forms parse. Known gaps of pygeofilter's JSON
parser (the 3-argument `between`, `bbox` literals, `t_intersects` read as `t_overlaps`) are
repaired before it runs.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pygeofilter.parsers
import shapely
import shapely.geometry
from lark import Lark, v_args
from lark.exceptions import LarkError, UnexpectedEOF, UnexpectedInput, VisitError
from pygeofilter import ast as nodes
from pygeofilter import values
from pygeofilter.parsers.cql2_json import parse as _parse_cql2_json
from pygeofilter.parsers.cql2_json.parser import walk_cql_json
from pyproj import CRS, Transformer

from landcloud.messages import LandcloudError
from landcloud.store.features import FeatureStore, SQLFilter

__all__ = [
    "CRS84",
    "Queryable",
    "compile_filter",
    "like_pattern",
    "literal_crs",
    "parse",
    "queryables_json",
    "queryables_of",
    "to_filter",
]

AST = Any  # a pygeofilter.ast.Node (or, for CQL2 JSON, a bare literal such as `true`)
FilterLang = Literal["cql2-text", "cql2-json"]

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"
GK_CODES = range(4491, 4555)  # CGCS2000 / Gauss-Kruger, 6° and 3°, with and without zone prefix
SUPPORTED_CRS = [CRS84, _EPSG_URI.format(code=4490), _EPSG_URI.format(code=4326), *(_EPSG_URI.format(code=c) for c in GK_CODES)]

QUERYABLE_TYPES = ("string", "integer", "real", "boolean", "date", "datetime")
NUMERIC = ("integer", "real")
TEMPORAL = ("date", "datetime")
GEOMETRY = "geometry"

MAX_FILTER_CHARS = 1_000_000
MAX_PARAMS = 10_000  # bound values (PostgreSQL takes 65535, SQLite 32766)
MAX_PREDICATES = 500  # SQLite refuses a WHERE of about 1000 terms ("expression tree is too large")
MAX_DEPTH = 40  # SQLite's parser stack (100 entries) overflows at about 70 nested NOTs

SUPPORTED_OPERATORS = [
    "=", "<>", "<", "<=", ">", ">=", "LIKE", "NOT LIKE", "IN", "NOT IN", "BETWEEN", "NOT BETWEEN", "IS NULL", "IS NOT NULL",
    "AND", "OR", "NOT", "S_INTERSECTS", "S_DISJOINT", "S_WITHIN", "S_CONTAINS", "S_EQUALS", "S_TOUCHES", "S_CROSSES",
    "S_OVERLAPS", "BBOX", "T_BEFORE", "T_AFTER", "T_INTERSECTS", "T_DISJOINT", "T_EQUALS", "T_DURING",
]


# -- queryables ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Queryable:
    name: str
    type: str  # "string" | "integer" | "real" | "boolean" | "date" | "datetime" | "geometry"


def queryables_of(fields: list[dict[str, Any]]) -> dict[str, Queryable]:
    """The queryables of a dataset: its attribute fields (binary ones excepted) plus "geometry"."""
    out: dict[str, Queryable] = {}
    for f in fields:
        name = str(f.get("name") or "")
        ftype = str(f.get("type") or "string")
        if not name or name == GEOMETRY or ftype == "binary":
            continue
        out[name] = Queryable(name, ftype if ftype in QUERYABLE_TYPES else "string")
    out[GEOMETRY] = Queryable(GEOMETRY, GEOMETRY)
    return out


_SCHEMA_OF_TYPE: dict[str, dict[str, str]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "real": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
}


def queryables_json(dataset_id: str, title: str, fields: list[dict[str, Any]], base_url: str) -> dict[str, Any]:
    """The JSON Schema answered at /ogc/collections/{id}/queryables (OGC API – Features Part 3).

    `base_url` is the site root (without "/ogc"); titles are the fields' Chinese aliases.
    """
    aliases = {str(f.get("name")): str(f.get("alias_zh") or "") for f in fields}
    properties: dict[str, Any] = {
        GEOMETRY: {"title": "几何 / geometry", "format": "geometry-any", "x-ogc-role": "primary-geometry"}
    }
    for name, q in queryables_of(fields).items():
        if q.type == GEOMETRY:
            continue
        alias = aliases.get(name, "")
        prop: dict[str, Any] = {"title": alias or name, **_SCHEMA_OF_TYPE[q.type]}
        if alias:
            prop["description"] = f"{alias}（{name}）"
        properties[name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base_url.rstrip('/')}/ogc/collections/{dataset_id}/queryables",
        "type": "object",
        "title": title,
        "properties": properties,
        "additionalProperties": False,
    }


# -- errors ----------------------------------------------------------------------------------
def _invalid(zh: str, en: str, **details: Any) -> LandcloudError:
    return LandcloudError("filter.invalid", f"过滤条件无效：{zh}", f"invalid filter: {en}", **details)


def _unsupported(what: str) -> LandcloudError:
    return LandcloudError(
        "filter.unsupported",
        f"过滤条件中的“{what}”不受支持",
        f"'{what}' is not supported in filters",
        operator=what,
        supported=SUPPORTED_OPERATORS,
    )


def _mismatch(prop: Queryable, value: Any, zh_need: str, en_need: str) -> LandcloudError:
    shown = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
    return LandcloudError(
        "filter.type_mismatch",
        f"属性“{prop.name}”（{prop.type}）不能与 {shown!r} 比较：{zh_need}",
        f"property '{prop.name}' ({prop.type}) cannot be compared with {shown!r}: {en_need}",
        property=prop.name,
        type=prop.type,
    )


# -- parsing ---------------------------------------------------------------------------------
_GRAMMAR = r"""
?start: condition

?condition: conjunction
          | condition "OR"i conjunction                                         -> or_
?conjunction: negation
            | conjunction "AND"i negation                                       -> and_
?negation: predicate
         | "NOT"i negation                                                      -> not_
         | "(" condition ")"

?predicate: expression "=" expression                                         -> eq
          | expression "<>" expression                                        -> ne
          | expression "!=" expression                                        -> ne
          | expression "<" expression                                         -> lt
          | expression "<=" expression                                        -> lte
          | expression ">" expression                                         -> gt
          | expression ">=" expression                                        -> gte
          | expression "BETWEEN"i expression "AND"i expression                -> between
          | expression "NOT"i "BETWEEN"i expression "AND"i expression         -> not_between
          | expression "LIKE"i expression                                     -> like
          | expression "NOT"i "LIKE"i expression                              -> not_like
          | expression "IN"i "(" expression ( "," expression )* ")"           -> in_
          | expression "NOT"i "IN"i "(" expression ( "," expression )* ")"    -> not_in
          | expression "IS"i "NULL"i                                          -> null
          | expression "IS"i "NOT"i "NULL"i                                   -> not_null
          | "INCLUDE"i                                                        -> include
          | "EXCLUDE"i                                                        -> exclude
          | spatial_predicate
          | temporal_predicate

?temporal_predicate: _temporal_func "(" expression "," expression ")"          -> temporal_fn
                   | expression _temporal_func expression                     -> temporal_infix

!_temporal_func: "T_BEFORE"i | "T_AFTER"i | "T_MEETS"i | "T_METBY"i | "T_OVERLAPS"i | "T_OVERLAPPEDBY"i
               | "T_BEGINS"i | "T_BEGUNBY"i | "T_DURING"i | "T_CONTAINS"i | "T_ENDS"i | "T_ENDEDBY"i
               | "T_EQUALS"i | "T_INTERSECTS"i | "T_DISJOINT"i

?spatial_predicate: _spatial_func "(" expression "," expression ")"            -> binary_spatial_predicate
                  | "BBOX" "(" expression "," full_number "," full_number "," full_number "," full_number [ "," SINGLE_QUOTED ] ")" -> bbox_spatial_predicate

!_spatial_func: "S_INTERSECTS"i | "S_DISJOINT"i | "S_CONTAINS"i | "S_WITHIN"i | "S_TOUCHES"i | "S_CROSSES"i
              | "S_OVERLAPS"i | "S_EQUALS"i

?expression: sum

?sum: product
    | sum "+" product                                                         -> add
    | sum "-" product                                                         -> sub

?product: atom
        | product "*" atom                                                    -> mul
        | product "/" atom                                                    -> div

?atom: func
     | attribute
     | literal
     | "-" atom                                                               -> neg
     | "(" expression ")"

func.2: attribute "(" expression ("," expression)* ")"                        -> function

?literal: timestamp
        | interval
        | date
        | number
        | BOOLEAN
        | SINGLE_QUOTED
        | ewkt_geometry                                                       -> geometry
        | envelope

timestamp: "TIMESTAMP"i "(" SINGLE_QUOTED ")"
date: "DATE"i "(" SINGLE_QUOTED ")"
interval: "INTERVAL"i "(" _instant_param "," _instant_param ")"
_instant_param: SINGLE_QUOTED | date | timestamp
envelope: "ENVELOPE"i "(" full_number [","] full_number [","] full_number [","] full_number ")"

?full_number: number
            | "-" number                                                      -> neg

?number: FLOAT | INT

BOOLEAN.2: ( "TRUE"i | "FALSE"i )

DOUBLE_QUOTED: /"(?:[^"]|"")*"/
SINGLE_QUOTED: /'(?:[^']|'')*'/

attribute: /[^\W\d][\w:.]*/
         | DOUBLE_QUOTED

%import wkt.ewkt_geometry
%import common.INT
%import common.FLOAT
%import common.WS
%ignore WS
"""


def _parse_instant(text: str) -> date | datetime | None:
    """An ISO-8601 date or timestamp as CQL2 writes it ('..' is an open interval end)."""
    s = text.strip()
    if s == "..":
        return None
    try:
        if len(s) == 10:
            return date.fromisoformat(s)
        return datetime.fromisoformat(s[:-1] + "+00:00" if s[-1:] in ("Z", "z") else s)
    except ValueError:
        raise _invalid(f"“{text}”不是 ISO-8601 日期或时间", f"'{text}' is not an ISO-8601 date or timestamp", value=text) from None


def _timestamp(text: str) -> datetime:
    value = _parse_instant(text)
    if not isinstance(value, datetime):
        raise _invalid(f"TIMESTAMP(“{text}”) 需要日期和时间", f"TIMESTAMP('{text}') needs a date and a time", value=text)
    return value


def _date(text: str) -> date:
    value = _parse_instant(text)
    if value is None or isinstance(value, datetime):
        raise _invalid(f"DATE(“{text}”) 需要 YYYY-MM-DD", f"DATE('{text}') needs YYYY-MM-DD", value=text)
    return value


@lru_cache(maxsize=1)
def _transformer() -> Any:
    """pygeofilter's text transformer with the corrections the grammar above needs (imported late:
    pygeofilter builds its own grammar when that module is first imported)."""
    from pygeofilter.parsers.cql2_text.parser import CQLTransformer

    @v_args(inline=True)
    class Transformer(CQLTransformer):  # type: ignore[misc]
        def wkt__geometry_with_srid(self, srid: Any, geometry: dict[str, Any]) -> dict[str, Any]:
            return {**geometry, "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{int(srid)}"}}}

        def wkt__multipoint_2(self, *coordinates: Any) -> dict[str, Any]:
            return {"type": "MultiPoint", "coordinates": coordinates}

        def SINGLE_QUOTED(self, token: str) -> str:  # noqa: N802 — lark terminal name
            return str(token)[1:-1].replace("''", "'")

        def DOUBLE_QUOTED(self, token: str) -> str:  # noqa: N802
            return str(token)[1:-1].replace('""', '"')

        def DATE(self, token: Any) -> Any:  # noqa: N802 — the DATE keyword, not pygeofilter's date terminal
            return token

        def temporal_fn(self, op: Any, lhs: Any, rhs: Any) -> nodes.Node:
            return _temporal_node(str(op), lhs, rhs)

        def temporal_infix(self, lhs: Any, op: Any, rhs: Any) -> nodes.Node:
            return _temporal_node(str(op), lhs, rhs)

        def timestamp(self, text: str) -> datetime:
            return _timestamp(text)

        def date(self, text: str) -> date:
            return _date(text)

        def interval(self, start: Any, end: Any) -> values.Interval:
            return values.Interval(
                _parse_instant(start) if isinstance(start, str) else start, _parse_instant(end) if isinstance(end, str) else end
            )

    return Transformer()


_TEMPORAL_NODES: dict[str, type[nodes.TemporalPredicate]] = {
    "t_before": nodes.TimeBefore,
    "t_after": nodes.TimeAfter,
    "t_meets": nodes.TimeMeets,
    "t_metby": nodes.TimeMetBy,
    "t_overlaps": nodes.TimeOverlaps,
    "t_overlappedby": nodes.TimeOverlappedBy,
    "t_begins": nodes.TimeBegins,
    "t_begunby": nodes.TimeBegunBy,
    "t_during": nodes.TimeDuring,
    "t_contains": nodes.TimeContains,
    "t_ends": nodes.TimeEnds,
    "t_endedby": nodes.TimeEndedBy,
    "t_equals": nodes.TimeEquals,
    "t_disjoint": nodes.TimeDisjoint,
}


def _temporal_node(op: str, lhs: Any, rhs: Any) -> nodes.Node:
    name = op.lower()
    if name == "t_intersects":  # pygeofilter reads it as T_OVERLAPS; it is exactly NOT T_DISJOINT
        return nodes.Not(nodes.TimeDisjoint(lhs, rhs))
    return _TEMPORAL_NODES[name](lhs, rhs)


@lru_cache(maxsize=1)
def _text_parser() -> Lark:
    return Lark(
        _GRAMMAR,
        parser="lalr",
        maybe_placeholders=False,
        transformer=_transformer(),
        import_paths=[os.path.dirname(pygeofilter.parsers.__file__)],
    )


_JSON_OPS = {
    "and", "or", "not", "=", "<>", "<", "<=", ">", ">=", "like", "between", "in", "isNull",
    "s_intersects", "s_equals", "s_disjoint", "s_touches", "s_within", "s_overlaps", "s_crosses", "s_contains",
    "t_before", "t_after", "t_meets", "t_metby", "t_overlaps", "t_overlappedby", "t_begins", "t_begunby", "t_during",
    "t_contains", "t_ends", "t_endedby", "t_equals", "t_disjoint", "t_intersects",
}


def _repair_json(node: Any, depth: int = 0) -> Any:
    """Bring CQL2 JSON into the shape pygeofilter 0.4 reads correctly (see the module docstring)."""
    if depth > 200:
        raise _invalid("嵌套过深", "nested too deeply")
    if isinstance(node, list):
        return [_repair_json(x, depth + 1) for x in node]
    if not isinstance(node, dict):
        return node
    if "op" in node:
        op = node["op"]
        args = node.get("args")
        if not isinstance(op, str):
            raise _invalid("“op”应为字符串", "'op' must be a string", op=str(op))
        if op not in _JSON_OPS:
            raise _unsupported(op)
        if not isinstance(args, (list, dict)):
            raise _invalid(f"“{op}”缺少 args", f"'{op}' has no args", op=op)
        args = _repair_json(args, depth + 1)
        if op == "between" and isinstance(args, list) and len(args) == 3:
            args = [args[0], [args[1], args[2]]]
        if op.startswith("t_"):  # pygeofilter has no t_disjoint and reads t_intersects as t_overlaps
            if not isinstance(args, list) or len(args) != 2:
                raise _invalid(f"“{op}”需要两个参数", f"'{op}' takes two arguments", op=op)
            return _temporal_node(op, *(walk_cql_json(a) for a in args))
        if op in ("like", "in", "between") and (not isinstance(args, list) or len(args) != 2):
            raise _invalid(f"“{op}”的参数个数不对", f"wrong number of arguments for '{op}'", op=op)
        if op == "in" and not isinstance(args[1], list):
            raise _invalid("“in”的第二个参数应为数组", "the second argument of 'in' must be an array", op=op)
        return {**node, "args": args}
    if "bbox" in node and "type" not in node and "property" not in node:
        box = node["bbox"]
        if not isinstance(box, list) or len(box) not in (4, 6) or not all(_is_number(v) for v in box):
            raise _invalid("bbox 应为 4 或 6 个数", "a bbox must be 4 or 6 numbers", bbox=str(box))
        return {"type": "Polygon", "coordinates": shapely.geometry.mapping(_box(box))["coordinates"]}
    if node.get("type") == "GeometryCollection" and "geometries" in node:  # pygeofilter knows only "coordinates"
        return values.Geometry(node)
    if "interval" in node and isinstance(node["interval"], list):
        bounds = node["interval"]
        if len(bounds) != 2 or not all(isinstance(b, str) for b in bounds):
            raise _invalid("interval 应为两个 ISO-8601 字符串", "an interval must be two ISO-8601 strings", interval=str(bounds))
        return values.Interval(_parse_instant(bounds[0]), _parse_instant(bounds[1]))
    if "timestamp" in node and isinstance(node["timestamp"], str) and len(node) == 1:
        return _timestamp(node["timestamp"])
    if "date" in node and isinstance(node["date"], str) and len(node) == 1:
        return _date(node["date"])
    if "filter" in node and isinstance(node["filter"], (dict, list)):
        return {**node, "filter": _repair_json(node["filter"], depth + 1)}
    if "function" in node:
        fn = node["function"]
        name = fn.get("name") if isinstance(fn, dict) else None
        raise _unsupported(f"{name.upper()}()" if isinstance(name, str) else "function")
    return node


def parse(text_or_json: str | dict[str, Any], lang: FilterLang | str = "cql2-text") -> AST:
    """Parse a CQL2 filter into pygeofilter's AST; syntax errors → LandcloudError "filter.invalid"."""
    if lang == "cql2-text":
        if not isinstance(text_or_json, str):
            raise _invalid("CQL2 文本应为字符串", "CQL2 text must be a string")
        if not text_or_json.strip():
            raise _invalid("过滤条件为空", "the filter is empty")
        parser = _text_parser()
        try:
            return parser.parse(text_or_json)
        except UnexpectedInput as exc:
            token = getattr(exc, "token", None)
            if isinstance(exc, UnexpectedEOF) or getattr(token, "type", None) == "$END":
                before = text_or_json.rstrip()
                line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
                raise _invalid(
                    f"过滤条件在第 {line} 行第 {column} 列意外结束", f"the filter ends unexpectedly at line {line}, column {column}",
                    line=line, column=column, position=len(before),
                ) from None
            context = exc.get_context(text_or_json, span=30).rstrip()
            line, column = getattr(exc, "line", None), getattr(exc, "column", None)
            raise _invalid(
                f"第 {line} 行第 {column} 列有语法错误", f"syntax error at line {line}, column {column}",
                line=line, column=column, position=getattr(exc, "pos_in_stream", None), context=context,
            ) from None
        except VisitError as exc:
            if isinstance(exc.orig_exc, LandcloudError):
                raise exc.orig_exc from None
            raise _invalid("无法解析", f"cannot parse: {exc.orig_exc}") from None
        except LandcloudError:
            raise
        except RecursionError:
            raise _invalid("嵌套过深", "nested too deeply") from None
        except (LarkError, ValueError, TypeError, KeyError) as exc:
            raise _invalid("无法解析", f"cannot parse: {exc}") from None
    if lang == "cql2-json":
        doc: Any = text_or_json
        if isinstance(text_or_json, str):
            try:
                doc = json.loads(text_or_json)
            except json.JSONDecodeError as exc:
                raise _invalid(
                    f"JSON 第 {exc.lineno} 行第 {exc.colno} 列有错误：{exc.msg}",
                    f"JSON error at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                    line=exc.lineno, column=exc.colno, position=exc.pos,
                ) from None
            except RecursionError:
                raise _invalid("嵌套过深", "nested too deeply") from None
        if isinstance(doc, bool):
            return doc
        if not isinstance(doc, dict):
            raise _invalid("CQL2 JSON 应为对象", "CQL2 JSON must be an object")
        try:
            return _parse_cql2_json(_repair_json(doc))
        except LandcloudError:
            raise
        except RecursionError:
            raise _invalid("嵌套过深", "nested too deeply") from None
        except Exception as exc:  # noqa: BLE001 — pygeofilter raises bare Exceptions/ValueErrors on bad shapes
            raise _invalid("无法解析 CQL2 JSON", f"cannot parse CQL2 JSON: {exc}") from None
    raise LandcloudError(
        "filter.unsupported",
        f"不支持的过滤语言“{lang}”；支持 cql2-text、cql2-json",
        f"unsupported filter-lang '{lang}'; supported: cql2-text, cql2-json",
        operator=f"filter-lang={lang}",
        supported=["cql2-text", "cql2-json"],
    )


# -- literal CRS -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _LiteralCRS:
    """How literal coordinates reach EPSG:4490 lon/lat: swap axes (lat/lon CRSs), or reproject (GK)."""

    code: int | None  # None: CRS84
    swap: bool

    def to_storage(self, geom: shapely.Geometry) -> shapely.Geometry:
        if self.swap:
            geom = shapely.transform(geom, lambda xy: xy[:, ::-1])
        if self.code in GK_CODES:
            tr = _gk_transformer(self.code)
            dense = shapely.segmentize(geom, 250.0)  # metres: keep long straight GK edges straight

            def project(xy: np.ndarray) -> np.ndarray:
                lon, lat = tr.transform(xy[:, 0], xy[:, 1])
                return np.column_stack([lon, lat])

            geom = shapely.transform(dense, project)
        return geom


@lru_cache(maxsize=64)
def _gk_transformer(code: int) -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(code), CRS.from_epsg(4490), always_xy=True)


_CRS84_NAMES = {CRS84, "https://www.opengis.net/def/crs/OGC/1.3/CRS84", "CRS84", "OGC:CRS84", "[OGC:CRS84]", "urn:ogc:def:crs:OGC:1.3:CRS84"}
_EPSG_PATTERNS = (
    re.compile(r"^https?://www\.opengis\.net/def/crs/EPSG/0/(\d+)$"),
    re.compile(r"^\[?EPSG:{1,2}(\d+)\]?$", re.IGNORECASE),
    re.compile(r"^urn:ogc:def:crs:EPSG:[\d.]*:(\d+)$", re.IGNORECASE),
)


def literal_crs(value: str | None, *, traditional_axes: bool = False) -> _LiteralCRS:
    """The CRS of filter literals (filter-crs): CRS84 by default; EPSG:4490/4326 are lat/lon as
    EPSG defines them (unless `traditional_axes`, as for EWKT's SRID=…); CGCS2000 GK (EPSG:4491–4554)
    is read easting first, as GIS clients write it."""
    text = (value or "").strip()
    if not text or text in _CRS84_NAMES:
        return _LiteralCRS(None, False)
    code = next((int(m.group(1)) for p in _EPSG_PATTERNS if (m := p.match(text))), None)
    if code in (4490, 4326):
        return _LiteralCRS(code, not traditional_axes)
    if code in GK_CODES:
        return _LiteralCRS(code, False)
    raise LandcloudError(
        "crs.unsupported",
        f"过滤条件不支持坐标系“{value}”；支持：CRS84、EPSG:4490、EPSG:4326、EPSG:4491–4554（CGCS2000 高斯-克吕格）",
        f"unsupported filter-crs '{value}'; supported: CRS84, EPSG:4490, EPSG:4326, EPSG:4491–4554 (CGCS2000 Gauss-Kruger)",
        supported=SUPPORTED_CRS,
    )


# -- translation -----------------------------------------------------------------------------
_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SPATIAL_SQL: dict[type, str] = {
    nodes.GeometryIntersects: "ST_Intersects",
    nodes.GeometryDisjoint: "ST_Disjoint",
    nodes.GeometryWithin: "ST_Within",
    nodes.GeometryContains: "ST_Contains",
    nodes.GeometryEquals: "ST_Equals",
    nodes.GeometryTouches: "ST_Touches",
    nodes.GeometryCrosses: "ST_Crosses",
    nodes.GeometryOverlaps: "ST_Overlaps",
}
_SPATIAL_CONVERSE = {"ST_Within": "ST_Contains", "ST_Contains": "ST_Within"}
_SHAPELY = {
    "ST_Intersects": shapely.intersects, "ST_Disjoint": shapely.disjoint, "ST_Within": shapely.within,
    "ST_Contains": shapely.contains, "ST_Equals": shapely.equals, "ST_Touches": shapely.touches,
    "ST_Crosses": shapely.crosses, "ST_Overlaps": shapely.overlaps,
}
_TEMPORAL_NAME = {
    nodes.TimeBefore: "T_BEFORE", nodes.TimeAfter: "T_AFTER", nodes.TimeDisjoint: "T_DISJOINT", nodes.TimeEquals: "T_EQUALS",
    nodes.TimeDuring: "T_DURING", nodes.TimeMeets: "T_MEETS", nodes.TimeMetBy: "T_METBY", nodes.TimeOverlaps: "T_OVERLAPS",
    nodes.TimeOverlappedBy: "T_OVERLAPPEDBY", nodes.TimeBegins: "T_BEGINS", nodes.TimeBegunBy: "T_BEGUNBY",
    nodes.TimeContains: "T_CONTAINS", nodes.TimeEnds: "T_ENDS", nodes.TimeEndedBy: "T_ENDEDBY",
    nodes.TimeBeforeOrDuring: "T_BEFORE OR DURING", nodes.TimeDuringOrAfter: "T_DURING OR AFTER",
}
_TEMPORAL_CONVERSE = {"T_BEFORE": "T_AFTER", "T_AFTER": "T_BEFORE", "T_DISJOINT": "T_DISJOINT", "T_EQUALS": "T_EQUALS"}
_TRUE, _FALSE = "(1 = 1)", "(1 = 0)"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _box(nums: list[Any]) -> shapely.Geometry:
    if len(nums) == 6:  # 3-D: minx, miny, minz, maxx, maxy, maxz
        nums = [nums[0], nums[1], nums[3], nums[4]]
    minx, miny, maxx, maxy = (float(v) for v in nums)
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)) or minx > maxx or miny > maxy:
        raise _invalid("bbox 应为 minx,miny,maxx,maxy（min ≤ max）", "a bbox must be minx,miny,maxx,maxy with min <= max")
    return shapely.box(minx, miny, maxx, maxy)


def _temporal_key(value: date | datetime, granularity: int) -> str:
    """ISO text of a date or timestamp (UTC; naive timestamps taken as UTC) cut to the granularity."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo is not None else value
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")[:granularity]
    return value.isoformat()[:granularity]


class _Translator:
    def __init__(self, store: FeatureStore, queryables: dict[str, Queryable], crs: _LiteralCRS) -> None:
        self.store = store
        self.queryables = queryables
        self.crs = crs
        self.params: dict[str, Any] = {}
        self._props: dict[tuple[str, str], str] = {}
        self._n = 0
        self._np = 0
        self._depth = 0
        self._predicates = 0

    # parameters and properties
    def bind(self, value: Any) -> str:
        key = f"q{self._n}"
        self._n += 1
        self.params[key] = value
        if len(self.params) > MAX_PARAMS:
            raise _invalid(f"值超过 {MAX_PARAMS} 个", f"more than {MAX_PARAMS} values")
        return f":{key}"

    def prop(self, q: Queryable, ftype: str | None = None) -> str:
        """SQL for a property (through the store, whose "prop…" parameters are renamed to "qp…")."""
        kind = ftype or q.type
        cached = self._props.get((q.name, kind))
        if cached is not None:
            return cached
        scratch: dict[str, Any] = {}
        sql = self.store.prop_sql(q.name, kind, scratch)
        for key, value in scratch.items():
            new = f"qp{self._np}"
            self._np += 1
            sql = re.sub(rf":{re.escape(key)}(?!\w)", f":{new}", sql)
            self.params[new] = value
        self._props[(q.name, kind)] = sql
        return sql

    def attribute(self, node: Any) -> Queryable:
        name = str(node.name)
        q = self.queryables.get(name)
        if q is None:
            folded = [v for k, v in self.queryables.items() if k.lower() == name.lower()]
            q = folded[0] if len(folded) == 1 else None
        if q is None:
            raise LandcloudError(
                "filter.unknown_property",
                f"过滤条件中的属性“{name}”不是可查询属性；可查询：{', '.join(sorted(self.queryables))}",
                f"'{name}' is not a queryable property; queryables: {', '.join(sorted(self.queryables))}",
                property=name,
                queryables=sorted(self.queryables),
            )
        return q

    def temporal_expr(self, q: Queryable, granularity: int) -> str:
        return f"substr(replace({self.prop(q, 'string')}, ' ', 'T'), 1, {granularity})"

    # literals
    def literal(self, node: Any) -> Any:
        """A plain value; expressions we do not evaluate are refused by name."""
        if isinstance(node, nodes.Arithmetic):
            raise _unsupported(f"arithmetic {node.op.value}")
        if isinstance(node, nodes.Function):
            raise _unsupported(_function_name(node))
        if isinstance(node, nodes.Node):
            raise _unsupported(type(node).__name__)
        if isinstance(node, list):
            raise _unsupported("array")
        return node

    def coerce(self, q: Queryable, value: Any, granularity: int | None = None) -> tuple[str, Any]:
        """(SQL for the property, bound-ready value) for comparing property q with a literal."""
        if q.type in NUMERIC:
            if not _is_number(value):
                raise _mismatch(q, value, "需要数字", "a number is needed")
            return self.prop(q), float(value)
        if q.type == "boolean":
            if not isinstance(value, bool):
                raise _mismatch(q, value, "需要 TRUE 或 FALSE", "TRUE or FALSE is needed")
            return self.prop(q), value
        if q.type in TEMPORAL:
            instant = self.instant(q, value)
            gran = granularity or self.granularity(q, [instant])
            return self.temporal_expr(q, gran), _temporal_key(instant, gran)
        if q.type == GEOMETRY:
            raise _mismatch(q, value, "几何只能用空间谓词比较", "geometry is compared with spatial predicates only")
        if not isinstance(value, str):
            raise _mismatch(q, value, "需要用单引号括起的文本", "a quoted text literal is needed")
        return self.prop(q), value

    def instant(self, q: Queryable, value: Any) -> date | datetime:
        if isinstance(value, str):
            try:
                parsed = _parse_instant(value)
            except LandcloudError:
                parsed = None
            if parsed is not None:
                return parsed
        if isinstance(value, (date, datetime)):
            return value
        raise _mismatch(q, value, "需要 DATE('…') 或 TIMESTAMP('…')", "DATE('…') or TIMESTAMP('…') is needed")

    @staticmethod
    def granularity(q: Queryable, instants: list[date | datetime | None]) -> int:
        if q.type == "date" or any(isinstance(v, date) and not isinstance(v, datetime) for v in instants if v is not None):
            return 10
        return 19

    # conditions
    def condition(self, node: Any) -> str:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _invalid(f"嵌套超过 {MAX_DEPTH} 层", f"nested more than {MAX_DEPTH} levels deep")
            if not isinstance(node, (nodes.And, nodes.Or, nodes.Not)):
                self._predicates += 1
                if self._predicates > MAX_PREDICATES:
                    raise _invalid(f"条件超过 {MAX_PREDICATES} 个", f"more than {MAX_PREDICATES} conditions")
            return self._condition(node)
        finally:
            self._depth -= 1

    def _condition(self, node: Any) -> str:
        if isinstance(node, bool):
            return _TRUE if node else _FALSE
        if isinstance(node, (nodes.And, nodes.Or)):
            # a long chain (a OR b OR c …) is one flat list, not a deep recursion
            kind, operands, stack = type(node), [], [node]
            while stack:
                item = stack.pop()
                if type(item) is kind:
                    stack += [item.rhs, item.lhs]
                else:
                    operands.append(self.condition(item))
            return "(" + (" AND " if kind is nodes.And else " OR ").join(operands) + ")"
        if isinstance(node, nodes.Not):
            return f"NOT {self.condition(node.sub_node)}"
        if isinstance(node, nodes.Include):
            return _FALSE if node.not_ else _TRUE
        if isinstance(node, nodes.Comparison):
            return self.comparison(node.op.value, node.lhs, node.rhs)
        if isinstance(node, nodes.Between):
            return self.between(node)
        if isinstance(node, nodes.Like):
            return self.like(node)
        if isinstance(node, nodes.In):
            return self.in_(node)
        if isinstance(node, nodes.IsNull):
            return self.is_null(node)
        if isinstance(node, nodes.SpatialComparisonPredicate):
            return self.spatial(_SPATIAL_SQL[type(node)], node.lhs, node.rhs)
        if isinstance(node, nodes.BBox):
            crs = literal_crs(node.crs) if node.crs else None
            return self.spatial("ST_Intersects", node.lhs, _box([node.minx, node.miny, node.maxx, node.maxy]), crs)
        if isinstance(node, nodes.TemporalPredicate):
            return self.temporal(_TEMPORAL_NAME.get(type(node), type(node).__name__), node.lhs, node.rhs)
        if isinstance(node, nodes.Attribute):
            q = self.attribute(node)
            if q.type != "boolean":
                raise _mismatch(q, None, "只有布尔属性可单独作为条件", "only a boolean property can stand alone as a condition")
            return f"({self.prop(q)} = {self.bind(True)})"
        if isinstance(node, nodes.Relate):
            raise _unsupported("S_RELATE")
        if isinstance(node, nodes.SpatialDistancePredicate):
            raise _unsupported(node.op.name)
        if isinstance(node, nodes.ArrayPredicate):
            raise _unsupported(f"A_{node.op.name[1:]}")
        if isinstance(node, nodes.Exists):
            raise _unsupported("EXISTS")
        if isinstance(node, nodes.Function):
            raise _unsupported(_function_name(node))
        if isinstance(node, nodes.Arithmetic):
            raise _unsupported(f"arithmetic {node.op.value}")
        if isinstance(node, nodes.Node):
            raise _unsupported(type(node).__name__)
        raise _invalid(f"{node!r} 不是条件", f"{node!r} is not a condition")

    def comparison(self, op: str, lhs: Any, rhs: Any) -> str:
        if not isinstance(lhs, nodes.Attribute) and isinstance(rhs, nodes.Attribute):
            lhs, rhs, op = rhs, lhs, _FLIP[op]
        if not isinstance(lhs, nodes.Attribute):
            return self.constant_comparison(op, self.literal(lhs), self.literal(rhs))
        q = self.attribute(lhs)
        if isinstance(rhs, nodes.Attribute):
            return self.property_comparison(op, q, self.attribute(rhs))
        value = self.literal(rhs)
        if isinstance(value, values.Interval):
            raise _mismatch(q, "INTERVAL", "比较运算需要单个值，区间请用 T_INTERSECTS 等", "comparisons take one value; use T_INTERSECTS etc. for intervals")
        if q.type == "boolean" and op not in ("=", "<>"):
            raise _mismatch(q, value, "布尔值只能用 = 或 <> 比较", "booleans compare with = or <> only")
        expr, bound = self.coerce(q, value)
        return f"({expr} {op} {self.bind(bound)})"

    def property_comparison(self, op: str, a: Queryable, b: Queryable) -> str:
        if a.type in NUMERIC and b.type in NUMERIC:
            return f"({self.prop(a)} {op} {self.prop(b)})"
        if a.type in TEMPORAL and b.type in TEMPORAL:
            gran = 10 if "date" in (a.type, b.type) else 19
            return f"({self.temporal_expr(a, gran)} {op} {self.temporal_expr(b, gran)})"
        if a.type == b.type and a.type in ("string", "boolean") and (a.type == "string" or op in ("=", "<>")):
            return f"({self.prop(a)} {op} {self.prop(b)})"
        raise _mismatch(a, b.name, f"类型不同（{b.type}）", f"the types differ ({b.type})")

    @staticmethod
    def constant_comparison(op: str, a: Any, b: Any) -> str:
        ops = {"=": lambda x, y: x == y, "<>": lambda x, y: x != y, "<": lambda x, y: x < y,
               "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}
        same_kind = (_is_number(a) and _is_number(b)) or type(a) is type(b)
        if not same_kind:
            raise _invalid(f"无法比较 {a!r} 与 {b!r}", f"cannot compare {a!r} with {b!r}")
        try:
            return _TRUE if ops[op](a, b) else _FALSE
        except TypeError:
            raise _invalid(f"无法比较 {a!r} 与 {b!r}", f"cannot compare {a!r} with {b!r}") from None

    def between(self, node: nodes.Between) -> str:
        if not isinstance(node.lhs, nodes.Attribute):
            raise _unsupported("BETWEEN on a literal")
        q = self.attribute(node.lhs)
        low, high = self.literal(node.low), self.literal(node.high)
        if q.type not in (*NUMERIC, *TEMPORAL, "string"):
            raise _mismatch(q, low, "BETWEEN 需要数字、文本或时间属性", "BETWEEN needs a number, text or time property")
        gran = self.granularity(q, [self.instant(q, low), self.instant(q, high)]) if q.type in TEMPORAL else None
        expr, lo = self.coerce(q, low, gran)
        _, hi = self.coerce(q, high, gran)
        return f"({expr} {'NOT ' if node.not_ else ''}BETWEEN {self.bind(lo)} AND {self.bind(hi)})"

    def in_(self, node: nodes.In) -> str:
        if not isinstance(node.lhs, nodes.Attribute):
            raise _unsupported("IN on a literal")
        q = self.attribute(node.lhs)
        items = [self.literal(v) for v in node.sub_nodes]
        if not items:
            return _TRUE if node.not_ else _FALSE
        gran = self.granularity(q, [self.instant(q, v) for v in items]) if q.type in TEMPORAL else None
        coerced = [self.coerce(q, v, gran) for v in items]
        placeholders = ", ".join(self.bind(v) for _, v in coerced)
        return f"({coerced[0][0]} {'NOT ' if node.not_ else ''}IN ({placeholders}))"

    def is_null(self, node: nodes.IsNull) -> str:
        if not isinstance(node.lhs, nodes.Attribute):
            value = self.literal(node.lhs)
            return _TRUE if (value is None) != node.not_ else _FALSE
        q = self.attribute(node.lhs)
        expr = "f.geom" if q.type == GEOMETRY else self.prop(q, "string")
        return f"({expr} IS {'NOT ' if node.not_ else ''}NULL)"

    def like(self, node: nodes.Like) -> str:
        if not isinstance(node.lhs, nodes.Attribute):
            raise _unsupported("LIKE on a literal")
        q = self.attribute(node.lhs)
        pattern = self.literal(node.pattern)
        if q.type not in ("string", *TEMPORAL) or not isinstance(pattern, str):
            raise _mismatch(q, pattern, "LIKE 只用于文本属性", "LIKE applies to text properties only")
        expr = self.prop(q, "string")
        negate = "NOT " if node.not_ else ""
        if _needs_glob(pattern, self.store.kind):
            # SQLite's LIKE ignores ASCII case; its GLOB is the same match, case-sensitive
            return f"({negate}{expr} GLOB {self.bind(like_pattern(pattern, self.store.kind))})"
        return f"({negate}{expr} LIKE {self.bind(like_pattern(pattern, self.store.kind))} ESCAPE '\\')"

    # geometry
    def geometry_literal(self, node: Any, crs: _LiteralCRS | None = None) -> shapely.Geometry:
        if isinstance(node, shapely.Geometry):
            geom = node
        elif isinstance(node, values.Geometry):
            spec = dict(node.geometry)
            crs_spec = spec.pop("crs", None)
            if crs_spec is not None:
                name = (crs_spec.get("properties") or {}).get("name") if isinstance(crs_spec, dict) else None
                crs = literal_crs(str(name), traditional_axes=True)
            try:
                geom = shapely.geometry.shape(spec)
            except Exception as exc:  # noqa: BLE001 — shapely raises several kinds for a bad shape
                raise _invalid(f"几何无效：{exc}", f"invalid geometry: {exc}") from None
        elif isinstance(node, values.Envelope):
            geom = _box([min(node.x1, node.x2), min(node.y1, node.y2), max(node.x1, node.x2), max(node.y1, node.y2)])
        elif isinstance(node, nodes.Function) and node.name.lower() == "bbox":
            if len(node.arguments) not in (4, 6) or not all(_is_number(v) for v in node.arguments):
                raise _invalid("BBOX 应为 4 或 6 个数", "BBOX takes 4 or 6 numbers")
            geom = _box(list(node.arguments))
        else:
            value = self.literal(node)
            raise _invalid(f"{value!r} 不是几何", f"{value!r} is not a geometry")
        geom = shapely.force_2d((crs or self.crs).to_storage(geom))
        if not geom.is_empty:
            coords = shapely.get_coordinates(geom)
            if not np.isfinite(coords).all():
                raise _invalid("几何坐标无效", "geometry coordinates are not finite numbers")
            if not shapely.is_valid(geom):
                reason = shapely.is_valid_reason(geom)
                raise _invalid(f"几何无效：{reason}", f"invalid geometry: {reason}", reason=reason)
        return geom

    def spatial(self, fn: str, lhs: Any, rhs: Any, crs: _LiteralCRS | None = None) -> str:
        if not isinstance(lhs, nodes.Attribute) and isinstance(rhs, nodes.Attribute):
            lhs, rhs, fn = rhs, lhs, _SPATIAL_CONVERSE.get(fn, fn)
        if not isinstance(lhs, nodes.Attribute):
            a, b = self.geometry_literal(lhs, crs), self.geometry_literal(rhs, crs)
            return _TRUE if bool(_SHAPELY[fn](a, b)) else _FALSE
        q = self.attribute(lhs)
        if q.type != GEOMETRY:
            raise _mismatch(q, fn, "空间谓词只用于几何", "spatial predicates apply to the geometry only")
        if isinstance(rhs, nodes.Attribute):
            other = self.attribute(rhs)
            if other.type != GEOMETRY:
                raise _mismatch(other, fn, "空间谓词只用于几何", "spatial predicates apply to the geometry only")
            return f"({fn}(f.geom, f.geom))"
        geom = self.geometry_literal(rhs, crs)
        call = f"{fn}(f.geom, ST_GeomFromWKB({self.bind(shapely.to_wkb(geom))}, 4490))"
        if geom.is_empty:
            return f"({call})"
        minx, miny, maxx, maxy = (self.bind(float(v)) for v in geom.bounds)
        # the stored extent narrows first (SQLite then calls GEOS only for candidates); exact test after
        if fn == "ST_Disjoint":
            return f"(f.maxx < {minx} OR f.minx > {maxx} OR f.maxy < {miny} OR f.miny > {maxy} OR {call})"
        return f"(f.minx <= {maxx} AND f.maxx >= {minx} AND f.miny <= {maxy} AND f.maxy >= {miny} AND {call})"

    # time
    def temporal(self, name: str, lhs: Any, rhs: Any) -> str:
        if not isinstance(lhs, nodes.Attribute) and isinstance(rhs, nodes.Attribute):
            if name not in _TEMPORAL_CONVERSE:
                raise _unsupported(f"{name} with the literal first")
            lhs, rhs, name = rhs, lhs, _TEMPORAL_CONVERSE[name]
        if name not in ("T_BEFORE", "T_AFTER", "T_DISJOINT", "T_EQUALS", "T_DURING"):
            raise _unsupported(name)
        if not isinstance(lhs, nodes.Attribute):
            raise _unsupported(f"{name} between two literals")
        q = self.attribute(lhs)
        if q.type not in TEMPORAL:
            raise _mismatch(q, name, "时间谓词需要日期或时间属性", "temporal predicates need a date or timestamp property")
        if isinstance(rhs, nodes.Attribute):
            return self.temporal_properties(name, q, self.attribute(rhs))
        value = self.literal(rhs)
        if isinstance(value, values.Interval):
            start, end, is_interval = value.start, value.end, True
            for bound in (start, end):
                if bound is not None and not isinstance(bound, (date, datetime)):
                    raise _unsupported("INTERVAL with durations")
        else:
            start = end = self.instant(q, value)
            is_interval = False

        def cmp(op: str, bound: date | datetime) -> str:
            gran = self.granularity(q, [bound])
            return f"{self.temporal_expr(q, gran)} {op} {self.bind(_temporal_key(bound, gran))}"

        never = f"({self.temporal_expr(q, 19)} <> {self.temporal_expr(q, 19)})"  # false, or NULL for a missing value
        if name == "T_BEFORE":
            return f"({cmp('<', start)})" if start is not None else never
        if name == "T_AFTER":
            return f"({cmp('>', end)})" if end is not None else never
        if name == "T_DISJOINT":
            parts = [cmp("<", start)] if start is not None else []
            parts += [cmp(">", end)] if end is not None else []
            return "(" + " OR ".join(parts) + ")" if parts else never
        if name == "T_EQUALS":
            if start is None or end is None or _temporal_key(start, 19) != _temporal_key(end, 19):
                return never
            return f"({cmp('=', start)})"
        # T_DURING: strictly inside an interval
        if not is_interval:
            return never
        parts = [cmp(">", start)] if start is not None else []
        parts += [cmp("<", end)] if end is not None else []
        return "(" + " AND ".join(parts) + ")" if parts else f"({self.temporal_expr(q, 19)} IS NOT NULL)"

    def temporal_properties(self, name: str, a: Queryable, b: Queryable) -> str:
        if b.type not in TEMPORAL:
            raise _mismatch(b, name, "时间谓词需要日期或时间属性", "temporal predicates need a date or timestamp property")
        op = {"T_BEFORE": "<", "T_AFTER": ">", "T_EQUALS": "=", "T_DISJOINT": "<>"}.get(name)
        if op is None:
            raise _unsupported(f"{name} between two properties")
        gran = 10 if "date" in (a.type, b.type) else 19
        return f"({self.temporal_expr(a, gran)} {op} {self.temporal_expr(b, gran)})"


def _function_name(node: nodes.Function) -> str:
    name = str(node.name)
    return "CASEI()" if name == "lower" else f"{name.upper()}()"


def _like_tokens(pattern: str) -> list[tuple[str, str]]:
    """A CQL2 LIKE pattern as ("any", "%") / ("one", "_") / ("char", c) tokens: % any run, _ one
    character, a backslash makes the next character literal (a lone trailing backslash is itself)."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            i += 1
            tokens.append(("char", pattern[i]))
        elif c == "%":
            tokens.append(("any", c))
        elif c == "_":
            tokens.append(("one", c))
        else:
            tokens.append(("char", c))
        i += 1
    return tokens


def _like(tokens: list[tuple[str, str]]) -> str:
    return "".join(c if t != "char" else "\\" + c if c in "%_\\" else c for t, c in tokens)


def _glob(tokens: list[tuple[str, str]]) -> str:
    special = {"*": "[*]", "?": "[?]", "[": "[[]"}
    return "".join("*" if t == "any" else "?" if t == "one" else special.get(c, c) for t, c in tokens)


def like_pattern(pattern: str, backend: str = "postgis") -> str:
    """A CQL2 LIKE pattern as the backend's pattern: for LIKE … ESCAPE '\\' (PostgreSQL; SQLite when
    the pattern has no ASCII letters) or for GLOB (SQLite otherwise, for case-sensitivity)."""
    tokens = _like_tokens(pattern)
    return _glob(tokens) if _needs_glob(pattern, backend) else _like(tokens)


def _needs_glob(pattern: str, backend: str) -> bool:
    return backend == "sqlite" and any(t == "char" and c.isascii() and c.isalpha() for t, c in _like_tokens(pattern))


def to_filter(
    ast: AST, store: FeatureStore, queryables: dict[str, Queryable], filter_crs: str | None = None
) -> SQLFilter:
    """Translate a parsed filter into an SQL condition over `features f` with "q…" parameters."""
    translator = _Translator(store, queryables, literal_crs(filter_crs))
    try:
        sql = translator.condition(ast)
    except RecursionError:
        raise _invalid("嵌套过深", "nested too deeply") from None
    return SQLFilter(sql, translator.params)


def compile_filter(
    filter_value: str | dict[str, Any],
    lang: str | None,
    store: FeatureStore,
    queryables: dict[str, Queryable],
    filter_crs: str | None = None,
) -> SQLFilter:
    """`filter` + `filter-lang` (default cql2-text) + `filter-crs` of a request → SQLFilter."""
    name = (lang or ("cql2-text" if isinstance(filter_value, str) else "cql2-json")).strip().lower()
    if isinstance(filter_value, str) and len(filter_value) > MAX_FILTER_CHARS:
        raise _invalid(f"过滤条件超过 {MAX_FILTER_CHARS} 个字符", f"the filter is longer than {MAX_FILTER_CHARS} characters")
    return to_filter(parse(filter_value, name), store, queryables, filter_crs)
