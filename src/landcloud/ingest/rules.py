"""The submission rules: what a unit's data must satisfy before the platform accepts it.

Why this module exists: every submission (a county's 地类图斑 layer, say) is checked once, at
the gate, and the result is a quality report of :class:`~landcloud.ingest.report.Finding`
items. Errors reject the submission; warnings are accepted and kept with it.

How it runs: a submission can be a whole province (millions of polygons), so the rules run
over batches as the reader streams them. Geometry rules are vectorised with shapely 2 array
functions; attribute rules are one pass over the property dicts. The only state kept across
batches is what a rule needs (the keys seen so far for ``key.duplicate``, which submission-level
findings were already reported) plus the bounded findings list: each rule keeps at most
``max_findings_per_rule`` findings and only counts the rest, so a systematically wrong layer
still yields a report a person can read.

Rule ids (stable; the portal and the tests key on them):

=============================  ========  ==========================================================
``geometry.unreadable``        error     the reader could not parse the geometry (None)
``geometry.empty``             error     empty geometry
``geometry.wrong_type``        error     geometry type does not match the schema (e.g. a line in DLTB)
``geometry.invalid``           error     not OGC-valid (``repair=False``, or repair failed)
``geometry.repaired``          warning   was invalid, repaired with make_valid (``repair=True``)
``key.missing``                error     key field null/empty (or the key column is absent)
``key.duplicate``              error     key seen before in this submission
``field.required_missing``     error     required schema field absent from the layer (once)
``field.required_null``        error     required schema field null/empty on a feature
``code.dlbm_invalid``          error     DLBM not a class of the chosen classification
``code.dlmc_mismatch``         warning   DLMC is not the name of the DLBM class
``code.unit_unknown``          error     QSDWDM/ZLDWDM county part not in the division list
``jurisdiction.outside_code``  error     the jurisdiction field is not within the submitting unit
``jurisdiction.outside_extent`` error    geometry not within the submitting unit's boundary
``area.inconsistent``          warning   TBMJ differs from the ellipsoidal area beyond tolerance
``report.suppressed``          info      (from :meth:`RuleRunner.finish`) how many findings of a
                                         rule were counted but not listed
=============================  ========  ==========================================================
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import shapely
from shapely.errors import GEOSException

from landcloud.codes.admin import DivisionIndex, normalize_unit_code, plain_unit_codes
from landcloud.codes.landuse import accepted_names, is_valid_dlbm, name_zh
from landcloud.codes.schemas import StandardSchema
from landcloud.geo.area import survey_areas
from landcloud.ingest.report import Finding, Severity

# ~1 m expressed in degrees of latitude (1° ≈ 111.32 km). The extent check tolerates this much
# so that parcels digitised along the unit boundary are not rejected for coordinate noise;
# in longitude it is a bit more than 1 m at Heilongjiang's latitudes, which is still negligible.
EXTENT_TOLERANCE_DEG = 1.0 / 111_320.0

_TYPE_IDS: dict[str, tuple[int, ...]] = {
    "Point": (0, 4),  # Point, MultiPoint
    "LineString": (1, 2, 5),  # LineString, LinearRing, MultiLineString
    "Polygon": (3, 6),  # Polygon, MultiPolygon
}
_POLYGONAL = (3, 6)
_REASON_POINT = re.compile(r"\[\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)")
_UNIT_FIELDS = ("QSDWDM", "ZLDWDM")
_SYSTEM_ZH = {"any": "GB/T 21010-2017 或三调工作分类", "gbt21010": "GB/T 21010-2017", "sandiao": "三调工作分类"}
_SYSTEM_EN = {"any": "GB/T 21010-2017 or the 三调 working classification", "gbt21010": "GB/T 21010-2017",
              "sandiao": "the 三调 working classification"}


@dataclass
class RuleConfig:
    """Which rules run for a submission, and their parameters.

    Rules whose inputs are absent are simply off: no schema → no required-field or code
    checks; no division list → no unit-code check; no boundary → no extent check.
    """

    schema: StandardSchema | None = None
    key_field: str | None = None
    dlbm_system: Literal["any", "gbt21010", "sandiao"] = "any"
    divisions: DivisionIndex | None = None
    jurisdiction_code: str | None = None
    jurisdiction_geometry: shapely.Geometry | None = None
    area_field: str | None = None
    area_tolerance_rel: float = 0.01
    area_tolerance_abs: float = 1.0
    repair: bool = False
    max_findings_per_rule: int = 1000


@dataclass
class Batch:
    """A slice of a submission as the reader delivers it.

    ``geometries`` are shapely geometries already transformed to EPSG:4490 (lon, lat); None
    means the reader could not parse the feature's geometry. ``properties`` holds one dict per
    feature. ``start`` is the index of the first feature in the whole submission, so findings
    point at the right feature across batches. ``areas`` optionally holds the survey areas (m²)
    of ``geometries`` when the caller computed them already (it stores them too); the runner
    then uses them and updates the entries of geometries it repairs. ``prechecked`` optionally
    holds `RuleRunner.prechecks` of ``geometries``, computed beside the runner (on a read-ahead
    thread): the runner then does not run those GEOS tests itself.
    """

    start: int
    geometries: np.ndarray | Sequence[shapely.Geometry | None]
    properties: Sequence[dict[str, Any]]
    areas: np.ndarray | None = None
    prechecked: Prechecks | None = None
    # ``properties`` by field, when every row has exactly these fields with these values (the reader's columns)
    columns: dict[str, list[Any]] | None = None
    # the Python types each of ``columns`` holds (`version_facts.column_kinds`), when the caller has them: the
    # rules need them too, and each look is a pass over the column
    kinds: dict[str, set[type]] | None = None

    def kinds_of(self, name: str) -> set[type] | None:
        """The types the given column `name` holds, when the caller gave them (None: look at the column)."""
        if self.kinds is None or self.columns is None or name not in self.columns:
            return None
        return self.kinds.get(name)


@dataclass(frozen=True)
class Prechecks:
    """The geometry rules' GEOS tests of one batch, made before `RuleRunner.check`: whether each geometry
    is valid, and whether each valid one is covered by the jurisdiction's extent (None without one)."""

    valid: np.ndarray
    covered: np.ndarray | None


def _ellipsoidal_areas(geoms: np.ndarray) -> np.ndarray:
    return np.asarray(survey_areas(np.asarray(geoms, dtype=object)), dtype=float)


def _is_null(value: Any) -> bool:
    """None, blank text or NaN (how DBF/GDB readers deliver an unset value)."""
    if value is None:
        return True
    cls = value.__class__
    if cls is str:
        return not value.strip()
    if cls is float or isinstance(value, (float, np.floating)):
        return value != value
    if isinstance(value, str):
        return not value.strip()
    return False


def _key_str(value: Any) -> str:
    """A key as text: numeric keys read from a DBF as 1.0 must equal the string "1"."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _point(geom: shapely.Geometry | None) -> tuple[float, float] | None:
    """A (lon, lat) on the geometry for the map; robust to invalid input."""
    if geom is None or shapely.is_empty(geom):
        return None
    for fn in (shapely.point_on_surface, shapely.centroid):
        try:
            p = fn(geom)
            if not shapely.is_empty(p):
                return (float(p.x), float(p.y))
        except GEOSException:
            continue
    xy = shapely.get_coordinates(geom)
    return (float(xy[0, 0]), float(xy[0, 1])) if len(xy) else None


def _reason_point(reason: str) -> tuple[float, float] | None:
    m = _REASON_POINT.search(reason)
    if m is None:
        return None
    try:
        return (float(m.group(1)), float(m.group(2)))
    except ValueError:
        return None


def _polygonal_part(geom: shapely.Geometry) -> shapely.Geometry:
    """The polygons of a make_valid result (it may add stray lines/points from collapsed spikes)."""
    if shapely.get_type_id(geom) in _POLYGONAL:
        return geom
    parts = shapely.get_parts(shapely.get_parts(geom))  # collection → members → single parts
    polys = [p for p in parts if shapely.get_type_id(p) == 3 and not shapely.is_empty(p)]
    if not polys:
        return shapely.from_wkt("POLYGON EMPTY")
    return shapely.union_all(polys) if len(polys) > 1 else polys[0]


class RuleRunner:
    """Runs the configured rules over the batches of one submission.

    Use one runner per submission: call :meth:`check` for each batch in order, then
    :meth:`finish` once. ``findings`` holds the listed findings; ``counts`` maps
    (rule, severity) to the total number found, including findings not listed.
    """

    def __init__(self, config: RuleConfig) -> None:
        if config.max_findings_per_rule < 0:
            raise ValueError("max_findings_per_rule 不能为负 / max_findings_per_rule must not be negative")
        if config.area_tolerance_rel < 0 or config.area_tolerance_abs < 0:
            raise ValueError("面积容差不能为负 / area tolerances must not be negative")
        self.config = config
        schema = config.schema
        self.findings: list[Finding] = []
        self.counts: dict[tuple[str, str], int] = {}
        self._listed: dict[str, int] = {}
        self._finished = False

        self._key_field = config.key_field or (schema.key_field if schema else None)
        self._area_field = config.area_field or (
            "TBMJ" if schema is not None and schema.id == "DLTB" else None
        )
        self._allowed_types = _TYPE_IDS.get(schema.geometry_type) if schema is not None else None
        self._polygon_layer = schema is not None and schema.geometry_type == "Polygon"
        self._jurisdiction_field = schema.jurisdiction_field if schema is not None else "ZLDWDM"
        unit_fields = list(_UNIT_FIELDS)
        if schema is not None and schema.jurisdiction_field not in unit_fields:
            unit_fields.append(schema.jurisdiction_field)
        if schema is not None:
            unit_fields = [f for f in unit_fields if schema.field(f) is not None]
        self._unit_fields = tuple(unit_fields)

        # The jurisdiction prefix comes from the unit's listed level (DOMAIN.md §2.1), so the
        # code check needs the division list; guessing the level from trailing zeros would be
        # wrong for units like 232701.
        self._jurisdiction_prefix: str | None = None
        if config.jurisdiction_code is not None:
            code = config.jurisdiction_code.strip()
            if config.divisions is None:
                raise ValueError(
                    f"检查辖区代码 {code} 需要加载行政区划列表 / "
                    f"checking against jurisdiction {code} needs the administrative division list (divisions)"
                )
            if code not in config.divisions:
                raise ValueError(
                    f"辖区代码 {code} 不在行政区划列表中 / jurisdiction code {code} is not in the division list"
                )
            self._jurisdiction_prefix = config.divisions.jurisdiction_prefix(code)
        self._jurisdiction_code = config.jurisdiction_code.strip() if config.jurisdiction_code else None

        self._extent: shapely.Geometry | None = None
        if config.jurisdiction_geometry is not None:
            extent = shapely.buffer(config.jurisdiction_geometry, EXTENT_TOLERANCE_DEG)
            shapely.prepare(extent)
            self._extent = extent
        # a prepared geometry builds its index on first use: one thread at a time (prechecks run on another)
        self._extent_lock = threading.Lock()

        self._seen_keys: dict[str, int] = {}
        self._reported_missing: set[str] = set()
        # verdicts by value; a value other than text by its type and repr (the int 404 is not the code "404")
        self._unit_known: dict[Any, bool] = {}
        self._within: dict[Any, bool] = {}
        self._dlbm_cache: dict[Any, bool] = {}
        self._dlmc_cache: dict[tuple[str, Any], bool] = {}
        # per attribute rule (and unit field): the distinct values found good so far, by type (`_flagged`)
        self._passed: defaultdict[str, dict[tuple[type, ...], set[Any]]] = defaultdict(dict)

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def error_count(self) -> int:
        return sum(n for (_, sev), n in self.counts.items() if sev == "error")

    @property
    def warning_count(self) -> int:
        return sum(n for (_, sev), n in self.counts.items() if sev == "warning")

    def _admit(self, rule: str, severity: Severity) -> bool:
        """Count a finding; True when it should also be listed (under the per-rule cap)."""
        self.counts[(rule, severity)] = self.counts.get((rule, severity), 0) + 1
        listed = self._listed.get(rule, 0)
        if listed >= self.config.max_findings_per_rule:
            return False
        self._listed[rule] = listed + 1
        return True

    def _add(
        self,
        rule: str,
        severity: Severity,
        zh: str,
        en: str,
        index: int | None = None,
        key: str | None = None,
        location: tuple[float, float] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.findings.append(Finding(rule, severity, zh, en, index, key, location, details or {}))

    def _label(self, index: int, key: str | None) -> tuple[str, str]:
        if key is None:
            return f"要素 #{index}", f"feature #{index}"
        return f"要素 #{index}（{self._key_field}={key}）", f"feature #{index} ({self._key_field}={key})"

    # -- the rules ---------------------------------------------------------------------------

    def prechecks(self, geometries: np.ndarray) -> Prechecks:
        """The batch's vectorised GEOS tests (validity, jurisdiction), for `Batch.prechecked`.

        Why apart: they release the GIL, so computed on the thread that reads and converts the next
        batches they run beside the per-feature rules instead of before them (at 100,000 parcels 17% of
        the checking thread's time). Reads no state a batch changes: safe on another thread.
        """
        geoms = np.asarray(geometries, dtype=object)
        valid = shapely.is_valid(geoms)
        covered = None
        if self._extent is not None:
            covered = np.zeros(len(geoms), dtype=bool)
            with self._extent_lock:
                covered[valid] = shapely.covers(self._extent, geoms[valid])
        return Prechecks(valid, covered)

    def check(self, batch: Batch) -> np.ndarray:
        """Check one batch; returns the geometries to store (repaired ones replaced when
        ``config.repair``), same length and order as ``batch.geometries``."""
        if self._finished:
            raise RuntimeError("finish() 之后不能再检查 / check() called after finish()")
        n = len(batch.properties)
        geoms = np.empty(len(batch.geometries), dtype=object)
        geoms[:] = list(batch.geometries)
        if len(geoms) != n:
            raise ValueError(
                f"几何数 {len(geoms)} 与属性数 {n} 不一致 / {len(geoms)} geometries but {n} property rows"
            )
        if n == 0:
            return geoms
        keys = self._keys(batch)
        self._repaired: list[int] = []
        pre = batch.prechecked
        if pre is not None and len(pre.valid) != n:
            raise ValueError(f"prechecks of {len(pre.valid)} geometries for {n} features")
        usable = self._check_geometries(int(batch.start), geoms, keys, pre.valid if pre is not None else None)
        if batch.areas is not None and self._repaired:
            batch.areas[self._repaired] = _ellipsoidal_areas(geoms[self._repaired])
        self._check_properties(batch, keys)
        if self._extent is not None:
            covered = pre.covered if pre is not None and pre.covered is not None else None
            if covered is not None and self._repaired:  # a repaired geometry is not the one prechecked
                covered = covered.copy()
                with self._extent_lock:
                    covered[self._repaired] = shapely.covers(self._extent, geoms[self._repaired])
            self._check_extent(int(batch.start), geoms, usable, keys, covered)
        if self._area_field is not None:
            self._check_area(batch, geoms, usable, keys)
        return geoms

    def _keys(self, batch: Batch) -> list[str | None]:
        """Each feature's key as text, None when null. A column of text (the usual case) is stripped in one
        comprehension: exactly `None if _is_null(v) else _key_str(v)` for a str."""
        props_list = batch.properties
        name = self._key_field
        if name is None:
            return [None] * len(props_list)
        if batch.columns is not None and name in batch.columns:
            values = batch.columns[name]
        else:
            values = [p[name] if name in p else _get(p, name) for p in props_list]
        given = batch.kinds_of(name)
        if (given if given is not None else set(map(type, values))) == {str}:
            return [v.strip() or None for v in values]
        return [None if _is_null(v) else _key_str(v) for v in values]

    def _check_geometries(
        self, start: int, geoms: np.ndarray, keys: list[str | None], valid: np.ndarray | None = None
    ) -> np.ndarray:
        """Geometry rules, vectorised; returns the mask of geometries later rules may use.
        `valid`: `shapely.is_valid(geoms)`, when computed already (`prechecks`)."""
        missing = shapely.is_missing(geoms)
        empty = ~missing & shapely.is_empty(geoms)
        present = ~missing & ~empty
        usable = present.copy()

        for i in np.flatnonzero(missing).tolist():
            if self._admit("geometry.unreadable", "error"):
                lz, le = self._label(start + i, keys[i])
                self._add("geometry.unreadable", "error", f"{lz}：几何无法读取或缺失",
                          f"{le}: geometry is missing or could not be read", start + i, keys[i])
        for i in np.flatnonzero(empty).tolist():
            if self._admit("geometry.empty", "error"):
                lz, le = self._label(start + i, keys[i])
                self._add("geometry.empty", "error", f"{lz}：几何为空", f"{le}: geometry is empty", start + i, keys[i])

        type_ids = shapely.get_type_id(geoms)
        if self._allowed_types is not None:
            wrong = present & ~np.isin(type_ids, self._allowed_types)
            usable &= ~wrong
            expected = self.config.schema.geometry_type  # type: ignore[union-attr]
            for i in np.flatnonzero(wrong).tolist():
                if self._admit("geometry.wrong_type", "error"):
                    lz, le = self._label(start + i, keys[i])
                    got = geoms[i].geom_type
                    self._add("geometry.wrong_type", "error", f"{lz}：几何类型为 {got}，应为 {expected}",
                              f"{le}: geometry type is {got}, expected {expected}", start + i, keys[i],
                              _point(geoms[i]), {"geometry_type": got, "expected": expected})

        invalid = np.flatnonzero(usable & ~(shapely.is_valid(geoms) if valid is None else valid))
        invalid_list: list[int] = invalid.tolist()
        if len(invalid) == 0:
            return usable
        reasons = [str(r) for r in shapely.is_valid_reason(geoms[invalid])]
        if self.config.repair:
            originals = geoms[invalid]
            fixed = shapely.make_valid(originals)
            for j, i in enumerate(invalid):
                if self._polygon_layer or type_ids[i] in _POLYGONAL:
                    fixed[j] = _polygonal_part(fixed[j])
            ok = ~shapely.is_empty(fixed) & shapely.is_valid(fixed)
            before = np.full(len(invalid), np.nan)
            after = np.full(len(invalid), np.nan)
            if ok.any():
                after[ok] = _ellipsoidal_areas(fixed[ok])
                try:
                    # The area "before" of an invalid ring is whatever the signed-area sum
                    # gives (a bow-tie's lobes cancel out); still the honest figure of what
                    # the submitted TBMJ could have been computed from.
                    before[ok] = _ellipsoidal_areas(originals[ok])
                except (GEOSException, ValueError):
                    pass
            for j, (i, reason) in enumerate(zip(invalid_list, reasons)):
                if not ok[j]:
                    continue
                geoms[i] = fixed[j]
                self._repaired.append(i)
                k = j
                if self._admit("geometry.repaired", "warning"):
                    lz, le = self._label(start + i, keys[i])
                    a0, a1 = float(before[k]), float(after[k])
                    self._add(
                        "geometry.repaired", "warning",
                        f"{lz}：几何无效（{reason}），已自动修复；面积由 {a0:.2f} 平方米变为 {a1:.2f} 平方米（变化 {a1 - a0:+.2f} 平方米）",
                        f"{le}: invalid geometry ({reason}) was repaired; area changed from {a0:.2f} m² to {a1:.2f} m² ({a1 - a0:+.2f} m²)",
                        start + i, keys[i], _reason_point(reason) or _point(originals[j]),
                        {"reason": reason, "area_before_m2": a0, "area_after_m2": a1,
                         "area_change_m2": a1 - a0, "geometry_type": fixed[j].geom_type},
                    )
            still_bad = [(i, r) for j, (i, r) in enumerate(zip(invalid_list, reasons)) if not ok[j]]
        else:
            still_bad = list(zip(invalid_list, reasons))
        for i, reason in still_bad:
            usable[i] = False
            if self._admit("geometry.invalid", "error"):
                lz, le = self._label(start + i, keys[i])
                hint_zh = "，且无法自动修复" if self.config.repair else ""
                hint_en = " and could not be repaired" if self.config.repair else ""
                self._add("geometry.invalid", "error", f"{lz}：几何无效（{reason}）{hint_zh}",
                          f"{le}: invalid geometry ({reason}){hint_en}", start + i, keys[i],
                          _reason_point(reason) or _point(geoms[i]), {"reason": reason})
        return usable

    def _check_properties(self, batch: Batch, keys: list[str | None]) -> None:
        """The attribute rules, column by column.

        Why columns: a layer of millions of rows holds a few dozen land-use codes and a few thousand unit codes,
        so each rule decides each distinct value of its column once (`_flagged`) and visits rows only to find
        the ones it flagged; a feature-by-feature loop cost ~3.4 s of the submission's main thread per million
        parcels (`benchmarks/profiles/ingest-columns.txt`). The findings are the same as a feature-by-feature
        pass makes, in the same order: each flagged row becomes an event, and the events are reported sorted
        by feature and, within a feature, in the rules' order.
        """
        cfg = self.config
        schema = cfg.schema
        props_list = batch.properties
        present: set[str] = set()
        if batch.columns is not None:
            present.update(batch.columns)
        else:
            for props in props_list:
                present.update(props.keys())
        present_upper = {k.upper() for k in present if isinstance(k, str)}
        # Standard layers come with upper-case field names; only a layer that has others
        # (a GDB with "Dlbm", say) pays for a per-feature copy with upper-cased keys.
        uppercase_only = all(isinstance(k, str) and k == k.upper() for k in present)
        if not uppercase_only:
            props_list = [_upper_keys(p) for p in props_list]

        # Submission-level: required columns absent from the layer. Reported once; such a
        # field is then not reported per feature (one finding says it all).
        absent: set[str] = set()
        if schema is not None:
            for f in schema.required_fields:
                if f.name.upper() not in present_upper:
                    absent.add(f.name)
                    if f.name not in self._reported_missing:
                        self._reported_missing.add(f.name)
                        if self._admit("field.required_missing", "error"):
                            self._add("field.required_missing", "error",
                                      f"缺少必填字段 {f.name}（{f.alias_zh}）",
                                      f"required field {f.name} ({f.alias_zh}) is missing from the layer",
                                      details={"field": f.name})
        key_field = self._key_field
        key_column = key_field is not None and key_field.upper() in present_upper
        if key_field is not None and not key_column and key_field not in self._reported_missing:
            self._reported_missing.add(key_field)
            if schema is None or schema.field(key_field) is None or not schema.field(key_field).required:  # type: ignore[union-attr]
                if self._admit("key.missing", "error"):
                    self._add("key.missing", "error", f"缺少标识字段 {key_field}",
                              f"key field {key_field} is missing from the layer", details={"field": key_field})
        required = [(f.name, f.name.upper()) for f in schema.required_fields
                    if f.name not in absent and f.name != key_field] if schema is not None else []
        check_codes = schema is not None and schema.field("DLBM") is not None
        check_dlmc = check_codes and schema.field("DLMC") is not None  # type: ignore[union-attr]
        unit_fields = self._unit_fields if cfg.divisions is not None else ()
        jfield = self._jurisdiction_field if self._jurisdiction_prefix is not None else None

        # (row in the batch, the rule's place in a feature's checks, what to report, the field)
        events: list[tuple[int, int, str, str]] = []
        column = _Columns(props_list, batch.columns if uppercase_only else None, batch.kinds if uppercase_only else None)
        if key_column:
            events += self._key_events(int(batch.start), keys)
        for order, (name, upper) in enumerate(required, start=1):
            events += [(i, order, "required", name) for i in _null_rows(column[upper], column.kinds(upper))]
        codes = len(required) + 1
        if check_codes:
            dlbm = column["DLBM"]
            dlbm_kinds = column.kinds("DLBM")
            events += [(i, codes, "dlbm", "DLBM") for i in _flagged(self._dlbm_bad, self._passed["dlbm"], dlbm, kinds=[dlbm_kinds])]
            if check_dlmc:
                rows = _flagged(self._dlmc_bad, self._passed["dlmc"], dlbm, column["DLMC"], kinds=[dlbm_kinds, column.kinds("DLMC")])
                events += [(i, codes, "dlmc", "DLMC") for i in rows]  # never a row whose DLBM was flagged
        for order, fname in enumerate(unit_fields, start=codes + 1):
            rows = _flagged(self._unit_bad, self._passed[fname], column[fname], all_good=cfg.divisions.all_known_unit_codes,  # type: ignore[union-attr]
                            kinds=[column.kinds(fname)])
            events += [(i, order, "unit", fname) for i in rows]
        if jfield is not None:
            outside = self._outside_jurisdiction_bad if jfield in unit_fields else self._outside_bad
            rows = _flagged(outside, self._passed["jurisdiction"], column[jfield.upper()], all_good=self._all_within,
                            kinds=[column.kinds(jfield.upper())])
            events += [(i, codes + len(unit_fields) + 1, "jurisdiction", jfield) for i in rows]
        if events:
            events.sort(key=lambda e: (e[0], e[1]))
            for i, _, what, name in events:
                self._report_property(batch, props_list[i], i, keys[i], what, name)

    def _key_events(self, start: int, keys: list[str | None]) -> list[tuple[int, int, str, str]]:
        """Rows whose key is null or was used before (in this batch or an earlier one); remembers each key's
        first row. Without a duplicate the batch's keys go in at once."""
        n = len(keys)
        first_rows = dict(zip(reversed(keys), range(start + n - 1, start - 1, -1)))  # each key's first row
        first_rows.pop(None, None)
        missing = keys.count(None)
        if len(first_rows) == n - missing and self._seen_keys.keys().isdisjoint(first_rows):
            self._seen_keys.update(first_rows)
            return [(i, 0, "key_missing", "") for i, k in enumerate(keys) if k is None] if missing else []
        events: list[tuple[int, int, str, str]] = []
        seen = self._seen_keys
        for i, key in enumerate(keys):
            if key is None:
                events.append((i, 0, "key_missing", ""))
            elif key in seen:
                events.append((i, 0, "key_duplicate", ""))
            else:
                seen[key] = start + i
        return events

    def _report_property(self, batch: Batch, props: dict[str, Any], i: int, key: str | None, what: str, name: str) -> None:
        """One attribute finding (counted, listed under the rule's cap), worded as the rule says."""
        idx = int(batch.start) + i
        key_field = self._key_field
        if what == "key_missing":
            if self._admit("key.missing", "error"):
                lz, le = self._label(idx, None)
                self._add("key.missing", "error", f"{lz}：标识字段 {key_field} 为空",
                          f"{le}: key field {key_field} is empty", idx, None, self._loc(batch, i), {"field": key_field})
        elif what == "key_duplicate":
            if self._admit("key.duplicate", "error"):
                first = self._seen_keys[key]  # type: ignore[index]
                lz, le = self._label(idx, key)
                self._add("key.duplicate", "error", f"{lz}：{key_field}={key} 重复，与要素 #{first} 相同",
                          f"{le}: duplicate {key_field}={key}, first used by feature #{first}",
                          idx, key, self._loc(batch, i), {"field": key_field, "first_index": first})
        elif what == "required":
            if self._admit("field.required_null", "error"):
                lz, le = self._label(idx, key)
                self._add("field.required_null", "error", f"{lz}：必填字段 {name} 为空",
                          f"{le}: required field {name} is empty", idx, key, self._loc(batch, i), {"field": name})
        elif what == "dlbm":
            if self._admit("code.dlbm_invalid", "error"):
                dlbm, system = props.get("DLBM"), self.config.dlbm_system
                lz, le = self._label(idx, key)
                hint_zh, hint_en = _dlbm_hint(dlbm)
                self._add("code.dlbm_invalid", "error",
                          f"{lz}：地类编码 DLBM={dlbm!r} 不是 {_SYSTEM_ZH[system]} 中的有效地类{hint_zh}",
                          f"{le}: land-use code DLBM={dlbm!r} is not a valid class of {_SYSTEM_EN[system]}{hint_en}",
                          idx, key, self._loc(batch, i), {"field": "DLBM", "value": dlbm, "system": system})
        elif what == "dlmc":
            if self._admit("code.dlmc_mismatch", "warning"):
                dlbm, dlmc = props.get("DLBM"), props.get("DLMC")
                lz, le = self._label(idx, key)
                expected = name_zh(dlbm, self.config.dlbm_system)
                self._add("code.dlmc_mismatch", "warning",
                          f"{lz}：地类名称 DLMC={dlmc!r} 与地类编码 {dlbm.strip()} 的名称“{expected}”不符",
                          f"{le}: DLMC={dlmc!r} does not match the name of code {dlbm.strip()} ({expected})",
                          idx, key, self._loc(batch, i), {"dlbm": dlbm, "dlmc": dlmc, "expected": expected})
        elif what == "unit":
            if self._admit("code.unit_unknown", "error"):
                value = props.get(name)
                lz, le = self._label(idx, key)
                malformed = normalize_unit_code(value) is None
                why_zh = "格式不正确（应为 6、9、12 或 19 位数字）" if malformed else "的县级代码不在行政区划列表中"
                why_en = "is malformed (expected 6, 9, 12 or 19 digits)" if malformed else "has a county code not in the division list"
                self._add("code.unit_unknown", "error", f"{lz}：{name}={value!r} {why_zh}",
                          f"{le}: {name}={value!r} {why_en}", idx, key, self._loc(batch, i),
                          {"field": name, "value": value, "malformed": malformed})
        elif what == "jurisdiction":
            if self._admit("jurisdiction.outside_code", "error"):
                value = props.get(name.upper())
                lz, le = self._label(idx, key)
                self._add("jurisdiction.outside_code", "error",
                          f"{lz}：{name}={value!r} 不在报送单位 {self._jurisdiction_code} 辖区内",
                          f"{le}: {name}={value!r} is not within the submitting unit {self._jurisdiction_code}",
                          idx, key, self._loc(batch, i),
                          {"field": name, "value": value, "jurisdiction": self._jurisdiction_code})
        else:  # pragma: no cover - the events are made above
            raise ValueError(what)

    def _check_extent(
        self, start: int, geoms: np.ndarray, usable: np.ndarray, keys: list[str | None], covered: np.ndarray | None = None
    ) -> None:
        """`covered`: `shapely.covers(extent, geoms)` for every usable geometry, when computed already."""
        cand = np.flatnonzero(usable)
        if len(cand) == 0:
            return
        if covered is not None:
            inside = covered[cand]
        else:
            with self._extent_lock:
                inside = shapely.covers(self._extent, geoms[cand])
        for i in cand[~inside].tolist():
            if not self._admit("jurisdiction.outside_extent", "error"):
                continue
            outside = shapely.difference(geoms[i], self._extent)
            out_area = float(_ellipsoidal_areas(np.array([outside], dtype=object))[0]) if not outside.is_empty else 0.0
            lz, le = self._label(start + i, keys[i])
            where_zh = f" {self._jurisdiction_code}" if self._jurisdiction_code else ""
            self._add("jurisdiction.outside_extent", "error",
                      f"{lz}：几何超出报送单位{where_zh}的辖区范围（超出约 {out_area:.2f} 平方米）",
                      f"{le}: geometry extends outside the submitting unit{where_zh} boundary (by about {out_area:.2f} m²)",
                      start + i, keys[i], _point(outside) or _point(geoms[i]),
                      {"outside_area_m2": out_area, "jurisdiction": self._jurisdiction_code})

    def _check_area(self, batch: Batch, geoms: np.ndarray, usable: np.ndarray, keys: list[str | None]) -> None:
        field_name = self._area_field.upper()  # type: ignore[union-attr]
        column = batch.columns.get(field_name) if batch.columns is not None else None
        kinds = batch.kinds_of(field_name)
        if column is not None and (kinds if kinds is not None else set(map(type, column))) <= {float, int} and all(map(math.isfinite, column)):
            # the reader's column of finite numbers (the usual TBMJ): no value is null or not a number
            idxs = np.flatnonzero(usable)
            self._compare_areas(batch, geoms, keys, idxs, np.asarray(column, dtype=np.float64)[idxs])
            return
        cand: list[int] = []
        declared: list[float] = []
        for i in np.flatnonzero(usable).tolist():
            raw = _get(batch.properties[i], field_name)
            if _is_null(raw):
                continue
            value = _as_number(raw)
            if value is None or not math.isfinite(value):
                if self._admit("area.inconsistent", "warning"):
                    idx = int(batch.start) + i
                    lz, le = self._label(idx, keys[i])
                    self._add("area.inconsistent", "warning", f"{lz}：{field_name}={raw!r} 不是数值",
                              f"{le}: {field_name}={raw!r} is not a number", idx, keys[i], _point(geoms[i]),
                              {"field": field_name, "declared": raw})
                continue
            cand.append(int(i))
            declared.append(value)
        self._compare_areas(batch, geoms, keys, np.asarray(cand, dtype=np.int64), np.asarray(declared, dtype=np.float64))

    def _compare_areas(self, batch: Batch, geoms: np.ndarray, keys: list[str | None], idxs: np.ndarray, decl: np.ndarray) -> None:
        """The area rule for the rows `idxs` of the batch, whose declared areas are `decl` (finite numbers)."""
        if not len(idxs):
            return
        field_name = self._area_field.upper()  # type: ignore[union-attr]
        computed = batch.areas[idxs] if batch.areas is not None else _ellipsoidal_areas(geoms[idxs])
        diff = np.abs(decl - computed)
        bad = (diff > self.config.area_tolerance_abs) & (diff > self.config.area_tolerance_rel * np.abs(computed))
        for j in np.flatnonzero(bad):
            i = int(idxs[j])
            if not self._admit("area.inconsistent", "warning"):
                continue
            idx = int(batch.start) + i
            d, c = float(decl[j]), float(computed[j])
            rel = (d - c) / c if c else math.inf
            lz, le = self._label(idx, keys[i])
            self._add("area.inconsistent", "warning",
                      f"{lz}：{field_name}={d:.2f} 平方米，与椭球面积 {c:.2f} 平方米相差 {d - c:+.2f} 平方米（{rel:+.2%}）",
                      f"{le}: {field_name}={d:.2f} m² differs from the ellipsoidal area {c:.2f} m² by {d - c:+.2f} m² ({rel:+.2%})",
                      idx, keys[i], _point(geoms[i]),
                      {"field": field_name, "declared_m2": d, "computed_m2": c, "difference_m2": d - c})

    # -- helpers -----------------------------------------------------------------------------

    def _loc(self, batch: Batch, i: int) -> tuple[float, float] | None:
        g = batch.geometries[i]
        try:
            return _point(g)
        except GEOSException:
            return None

    def _dlbm_ok(self, value: Any) -> bool:
        # A layer has millions of rows but a few dozen distinct codes: cache the verdicts.
        cache_key = value if isinstance(value, str) else (value.__class__, repr(value))
        ok = self._dlbm_cache.get(cache_key)
        if ok is None:
            ok = is_valid_dlbm(value, self.config.dlbm_system)
            self._dlbm_cache[cache_key] = ok
        return ok

    def _dlmc_ok(self, dlbm: str, dlmc: Any) -> bool:
        cache_key = (dlbm, dlmc if isinstance(dlmc, str) else (dlmc.__class__, repr(dlmc)))
        ok = self._dlmc_cache.get(cache_key)
        if ok is None:
            ok = str(dlmc).strip() in accepted_names(dlbm, self.config.dlbm_system)
            self._dlmc_cache[cache_key] = ok
        return ok

    def _unit_is_known(self, value: Any) -> bool:
        # Millions of rows share a few hundred unit codes: cache by raw value.
        cache_key = value if isinstance(value, str) else (value.__class__, repr(value))
        known = self._unit_known.get(cache_key)
        if known is None:
            known = self.config.divisions.is_known_unit_code(value)  # type: ignore[union-attr]
            self._unit_known[cache_key] = known
        return known

    def _is_within(self, value: Any) -> bool:
        cache_key = value if isinstance(value, str) else (value.__class__, repr(value))
        within = self._within.get(cache_key)
        if within is None:
            within = normalize_unit_code(value) is not None and value.strip().startswith(self._jurisdiction_prefix)
            self._within[cache_key] = within
        return within

    def _dlbm_bad(self, value: Any) -> bool:
        return not _is_null(value) and not self._dlbm_ok(value)

    def _dlmc_bad(self, dlbm: Any, dlmc: Any) -> bool:
        """A DLMC that is not the name of a valid DLBM (an invalid DLBM is reported by itself)."""
        return not _is_null(dlbm) and self._dlbm_ok(dlbm) and not _is_null(dlmc) and not self._dlmc_ok(dlbm, dlmc)

    def _unit_bad(self, value: Any) -> bool:
        return not _is_null(value) and not self._unit_is_known(value)

    def _outside_bad(self, value: Any) -> bool:
        return not _is_null(value) and not self._is_within(value)

    def _all_within(self, codes: set[str]) -> bool:
        """`_is_within` of every code, for plain codes (`plain_unit_codes`), without a Python call per code."""
        prefix = self._jurisdiction_prefix
        return plain_unit_codes(codes) and set(map(operator.itemgetter(slice(0, len(prefix))), codes)) == {prefix}  # type: ignore[arg-type]

    def _outside_jurisdiction_bad(self, value: Any) -> bool:
        """Outside, when the jurisdiction field is also a unit field: a malformed code is that rule's error."""
        return self._outside_bad(value) and normalize_unit_code(value) is not None

    def finish(self) -> None:
        """End of stream: list, per rule, how many findings were counted but not listed."""
        if self._finished:
            return
        self._finished = True
        cap = self.config.max_findings_per_rule
        for (rule, severity), total in sorted(self.counts.items()):
            if total > cap:
                suppressed = total - cap
                self.counts[("report.suppressed", "info")] = self.counts.get(("report.suppressed", "info"), 0) + 1
                self._add("report.suppressed", "info",
                          f"规则 {rule} 共发现 {total} 处问题，仅列出前 {cap} 处，其余 {suppressed} 处未列出",
                          f"rule {rule} found {total} problems; only the first {cap} are listed, {suppressed} more were counted",
                          details={"rule": rule, "severity": severity, "total": total, "listed": cap,
                                   "suppressed": suppressed})


class _Columns:
    """A batch's property columns, each made once (a field may be both required and a code the rules check)."""

    def __init__(
        self, props_list: list[dict[str, Any]], columns: dict[str, list[Any]] | None = None,
        kinds: dict[str, set[type]] | None = None,
    ) -> None:
        self._props = props_list
        self._given = columns  # every row has exactly these fields: an absent one is None in every row
        self._kinds = kinds if columns is not None else None  # (the given columns' types: `Batch.kinds`)
        self._columns: dict[str, list[Any]] = {}

    def kinds(self, name: str) -> set[type] | None:
        """The types the column holds, when the caller gave them (None: the column is looked at)."""
        if self._kinds is None or self._given is None:
            return None
        if name not in self._given:
            return {_NONE_TYPE} if self._props else set()
        return self._kinds.get(name)

    def __getitem__(self, name: str) -> list[Any]:
        if self._given is not None:
            given = self._given.get(name)
            return given if given is not None else [None] * len(self._props)
        column = self._columns.get(name)
        if column is None:
            column = self._columns[name] = [p.get(name) for p in self._props]
        return column


_NONE_TYPE = type(None)


def _null_rows(column: list[Any], kinds: set[type] | None = None) -> list[int]:
    """The rows whose value is null (`_is_null`). A column of one type of str, float or int without None is
    cleared without a Python call per row (the usual case: a required field filled in everywhere). `kinds`:
    the types the column holds, when known (`Batch.kinds`)."""
    kinds = set(kinds) if kinds is not None else set(map(type, column))
    if _NONE_TYPE not in kinds and len(kinds) == 1:
        kind = kinds.pop()
        if kind is int or (kind is str and "" not in map(str.strip, column)):
            return []
        if kind is float and not any(map(math.isnan, column)):
            return []
    return [i for i, v in enumerate(column) if _is_null(v)]


def _flagged(
    bad: Callable[..., bool],
    passed: dict[tuple[type, ...], set[Any]],
    *columns: list[Any],
    all_good: Callable[[set[str]], bool] | None = None,
    kinds: Sequence[set[type] | None] | None = None,
) -> list[int]:
    """The rows i for which ``bad(*(column[i] for column in columns))`` holds.

    Each distinct value (or tuple of values) is decided once per submission: `passed` keeps the ones found
    good, by the columns' types, across batches, so a batch of known codes costs a set difference. Values are
    told apart by equality only where each column holds one type besides None (1 == 1.0 == True, and a verdict
    may depend on the type: a code given as a number); a column of mixed types is decided row by row.
    `all_good`: for one column of text, a test of a whole set of new values (None left out: `bad` must not hold
    for it) that is True only when `bad` holds for none of them (a vectorised shortcut; False decides them one
    by one). `kinds`: per column, the types it holds when known (`Batch.kinds`; None: looked at).
    """
    rows: list[Any] = columns[0] if len(columns) == 1 else list(zip(*columns))
    decide: Callable[[Any], bool] = bad if len(columns) == 1 else (lambda values: bad(*values))
    one_kinds = []
    for j, column in enumerate(columns):
        given = kinds[j] if kinds is not None else None
        types = set(given) if given is not None else set(map(type, column))
        types.discard(_NONE_TYPE)
        one_kinds.append(types.pop() if types else _NONE_TYPE)
        if types:  # more than one type: row by row
            return [i for i, v in enumerate(rows) if decide(v)]
    try:
        todo = set(rows)
    except TypeError:  # an unhashable value (a list from a JSON source): row by row
        return [i for i, v in enumerate(rows) if decide(v)]
    good = passed.setdefault(tuple(one_kinds), set())
    todo -= good
    if all_good is not None and one_kinds == [str]:
        text = todo - {None}
        if text and all_good(text):
            good |= todo
            return []
    flagged = set()
    for v in todo:
        if decide(v):
            flagged.add(v)
        else:
            good.add(v)
    return [i for i, v in enumerate(rows) if v in flagged] if flagged else []


def _get(props: dict[str, Any], name: str) -> Any:
    """A property by name, tolerating case differences between drivers (shapefile vs GDB)."""
    if name in props:
        return props[name]
    upper = name.upper()
    for k, v in props.items():
        if isinstance(k, str) and k.upper() == upper:
            return v
    return None


def _upper_keys(props: dict[str, Any]) -> dict[str, Any]:
    return {(k.upper() if isinstance(k, str) else k): v for k, v in props.items()}


def _dlbm_hint(value: Any) -> tuple[str, str]:
    if not isinstance(value, str):
        return "（地类编码应为文本）", " (land-use codes are text)"
    v = value.strip()
    if len(v) == 3 and v.isdigit():
        return ("（疑为 GB/T 21010-2007 的三位编码，应使用 2017 版四位编码）",
                " (looks like a 3-digit GB/T 21010-2007 code; use the 4-digit 2017 codes)")
    return "", ""
