"""The submission pipeline (汇交): read, convert to CGCS2000, check, and load as one new version.

The whole load is one database transaction: features are staged, checked, merged into a new
version and recorded, and only then committed. A rejected or interrupted submission leaves
the store exactly as it was (the transaction is rolled back, or never committed).
Memory stays bounded: the source is read in batches and nothing holds the whole layer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import operator
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from landcloud.access import units as units_ref
from landcloud.catalog import datasets as catalog
from landcloud.codes.schemas import StandardSchema, get_schema, known_alias
from landcloud.config import Settings
from landcloud.geo.area import survey_areas
from landcloud.geo.crs import GCJ02, CRSRefused, datum_of, make_transformer
from landcloud.ingest import collector, transformations
from landcloud.ingest.after_acceptance import AfterAcceptance
from landcloud.ingest.ahead import read_ahead
from landcloud.ingest.crs_detect import decide_crs
from landcloud.ingest.overlap import find_overlaps
from landcloud.ingest.overlap_stream import StreamedOverlaps
from landcloud.ingest.readers import SourceError, SourceInfo, iter_batches, open_source, sample_coordinates
from landcloud.ingest.report import Finding
from landcloud.ingest.rules import Batch, Prechecks, RuleConfig, RuleRunner
from landcloud.ingest.timing import StageClock
from landcloud.ingest.version_facts import SubmissionFacts, column_kinds
from landcloud.messages import LandcloudError
from landcloud.store import tilegeoms
from landcloud.store.db import backend_of, commit_checkpoint_beside
from landcloud.store.features import StageBatch, StageRow, feature_store_for

Mode = Literal["replace", "incremental"]
OP_VALUES = {
    "add": "add", "a": "add", "i": "add", "insert": "add", "新增": "add",
    "modify": "modify", "m": "modify", "u": "modify", "update": "modify", "修改": "modify", "变更": "modify",
    "delete": "delete", "d": "delete", "删除": "delete", "灭失": "delete",
    "upsert": "upsert", "": "upsert",
}
USAGE_SOURCE_ERRORS = {"source.ambiguous_layer", "source.unknown_layer"}
# one encoder for every feature (json.dumps with options builds a new encoder per call); same text as
# json.dumps(p, ensure_ascii=False, default=str), which the content hashes of stored versions were made from
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)
# ... and the C encoder that `_JSON.encode(props)` makes anew for every call, made once: the same
# arguments (no indent, ": " and ", ", unsorted, no skipped keys, NaN allowed, `str` for other types),
# without the circular-reference markers (a feature's properties are a flat dict of values). 100,000 DLTB
# rows: 0.27 against 0.35 s. None when the interpreter has no C encoder: `_JSON.encode` then.
_C_ENCODE = (
    json.encoder.c_make_encoder(None, str, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
    if json.encoder.c_make_encoder is not None
    else None
)


def _props_json(props: dict[str, Any]) -> str:
    """The JSON text of a feature's properties: exactly `json.dumps(props, ensure_ascii=False, default=str)`."""
    if _C_ENCODE is None:
        return _JSON.encode(props)
    return "".join(_C_ENCODE(props, 0))


_BLAKE2B_16 = functools.partial(hashlib.blake2b, digest_size=16)  # the content hash
_HEXDIGEST = operator.methodcaller("hexdigest")
_NONE_TYPE = type(None)


class SubmissionUsageError(LandcloudError):
    """The request itself is incomplete (exit 2 / HTTP 400): nothing was read or changed."""


@dataclass
class SubmitOptions:
    dataset_id: str
    unit: str | None = None
    layer: str | None = None
    crs: str | None = None
    encoding: str | None = None
    mode: Mode = "replace"
    key: str | None = None
    schema: str | None = None
    repair: bool = False
    title: str | None = None
    theme: str | None = None
    op_field: str = "_op"
    dlbm_system: Literal["any", "gbt21010", "sandiao"] = "any"
    # The overlap rule (图斑不得重叠) holds for every layer of a standard schema (DLTB …); a layer
    # of no standard schema whose polygons overlap by nature (buildings on land-use areas, an OSM
    # extract) may be submitted without it. The choice is the dataset's (`datasets.overlap_check`):
    # None follows it, the first submission sets it, a later one may be stricter (True), never
    # looser (its data administrator turns it off with `datasets set`). The report records the value used.
    overlap_check: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SubmissionResult:
    accepted: bool
    dataset_id: str
    version: int | None
    report: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # StageClock.as_dict(): where the time went
    # accepted with `copies_after`: the tile copies and checkpoint its caller runs once it has said "accepted"
    after: AfterAcceptance | None = None


ProgressFn = Callable[[int], None]


def validate_options(opts: SubmitOptions) -> None:
    catalog.validate_dataset_id(opts.dataset_id)
    if opts.mode not in ("replace", "incremental"):
        raise SubmissionUsageError(
            "submission.bad_mode",
            f"汇交方式“{opts.mode}”无效，应为 replace（整体替换）或 incremental（增量）",
            f"invalid mode '{opts.mode}': use replace or incremental",
        )
    if opts.dlbm_system not in ("any", "gbt21010", "sandiao"):
        raise SubmissionUsageError(
            "submission.bad_dlbm_system",
            f"地类分类“{opts.dlbm_system}”无效，应为 any、gbt21010 或 sandiao",
            f"invalid land-use classification '{opts.dlbm_system}': use any, gbt21010 or sandiao",
        )
    if opts.schema is not None and get_schema(opts.schema) is None:
        raise SubmissionUsageError(
            "submission.unknown_schema", f"未知的标准结构“{opts.schema}”", f"unknown standard schema '{opts.schema}'"
        )


def _choose_schema(opts: SubmitOptions, field_names: set[str], ds: catalog.Dataset | None) -> StandardSchema | None:
    """The named schema, the dataset's, or DLTB when every DLTB required field is present."""
    name = opts.schema or (ds.standard_schema if ds else None)
    if name:
        return get_schema(name)
    dltb = get_schema("DLTB")
    if dltb and all(f.name in field_names for f in dltb.fields if f.required):
        return dltb
    return None


def _sanitize(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, bytes):
        return value.hex()
    return value


_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def _sanitized(props: dict[str, Any]) -> dict[str, Any]:
    """`props` with `_sanitize` applied to every value (a new dict only when a value changes type or may).

    Why not a comprehension calling `_sanitize` on each value: that call per value was most of the
    decode stage (on the read-ahead thread, holding the GIL the checking thread needs); most values
    are text, integers or null, and a float needs a look only when it is not finite.
    """
    if _PLAIN_TYPES.issuperset(map(type, props.values())):
        return props
    plain = _PLAIN_TYPES
    return {k: v if v.__class__ in plain or (v.__class__ is float and v - v == 0.0) else _sanitize(v) for k, v in props.items()}


def _finding_from_error(rule: str, zh: str, en: str) -> Finding:
    return Finding(rule=rule, severity="error", message_zh=zh, message_en=en)


class _Rejected(Exception):
    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings


def run_submission(
    engine: Engine,
    settings: Settings,
    path: str | Path,
    opts: SubmitOptions,
    *,
    submission_id: str | None = None,
    progress: ProgressFn | None = None,
    copies_after: bool = False,
) -> SubmissionResult:
    """Check and load one file as a new version of a dataset; never a partial change.

    `copies_after`: return once the version is committed, its tile copies left to `result.after.run()`, which the
    caller runs after it has said the submission is accepted (`ingest.after_acceptance`)."""
    validate_options(opts)
    workdir = Path(tempfile.mkdtemp(prefix="landcloud-ingest-", dir=settings.data_dir if settings.data_dir.exists() else None))
    try:
        with collector.paused():  # no cyclic GC passes over the stream's per-feature objects (ingest/collector.py)
            result = _run(engine, settings, Path(path), opts, submission_id, progress, workdir, copies_after)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # a new master version makes a new edition, pending approval: the entry points ask for it after this
    # (publish/editions_jobs.py), never inside the submission
    return result


def _run(
    engine: Engine,
    settings: Settings,
    path: Path,
    opts: SubmitOptions,
    submission_id: str | None,
    progress: ProgressFn | None,
    workdir: Path,
    copies_after: bool = False,
) -> SubmissionResult:
    ds = catalog.get_dataset(engine, opts.dataset_id)
    if ds is not None:
        catalog.check_owner(ds, opts.unit)
        unit = opts.unit or ds.owner_unit
    else:
        if not opts.unit:
            raise SubmissionUsageError(
                "submission.unit_required",
                f"数据集“{opts.dataset_id}”尚不存在：首次汇交必须用 --unit 指明汇交单位（它将成为数据集的唯一权属单位）",
                f"dataset '{opts.dataset_id}' does not exist yet: the first submission must name the submitting unit "
                "with --unit (it becomes the dataset's one owner unit)",
            )
        unit = opts.unit
    if opts.mode == "incremental" and ds is None:
        raise SubmissionUsageError(
            "submission.incremental_new",
            f"数据集“{opts.dataset_id}”尚不存在，首次汇交只能整体替换（replace）",
            f"dataset '{opts.dataset_id}' does not exist yet; its first submission must be a full replacement",
        )
    units_index = units_ref.division_index(engine)
    if units_index is not None and unit not in units_index:
        raise SubmissionUsageError(
            "submission.unknown_unit",
            f"汇交单位代码 {unit} 不在已加载的行政区划/单位列表中",
            f"submitting unit {unit} is not in the loaded division/unit list",
        )
    source: dict[str, Any] = {"filename": path.name}
    try:
        info = open_source(path, layer=opts.layer, encoding=opts.encoding, workdir=workdir)
    except SourceError as exc:
        if exc.message.code in USAGE_SOURCE_ERRORS:
            raise SubmissionUsageError(exc.message.code, exc.message.zh, exc.message.en, **exc.details) from exc
        return _rejected(opts, source, [_finding_from_error(exc.message.code, exc.message.zh, exc.message.en)])
    source.update(_describe_source(info))
    try:
        decision = decide_crs(info, opts.crs, sample_coordinates(info))
        transformation = None
        is_gcj = isinstance(decision.crs, str)  # the GCJ02 sentinel (comparing a CRS to a string parses it: slow)
        if not is_gcj and datum_of(decision.crs) in ("xian80", "beijing54"):
            transformation = transformations.find_for(engine, datum_of(decision.crs), unit)
        transformer = make_transformer(decision.crs, transformation)
    except CRSRefused as exc:
        return _rejected(opts, source, [_finding_from_error(exc.code, exc.message_zh, exc.message_en)])
    source["crs"] = {
        "submitted": GCJ02 if is_gcj else decision.crs.to_string(),
        "submitted_wkt": None if is_gcj else decision.crs.to_wkt(),
        "how": decision.how,
        "message_zh": decision.message_zh,
        "message_en": decision.message_en,
        "transformation": transformer.description,
        "transformation_set": transformation.name if transformation else None,
    }
    field_names = {f.name for f in info.fields}
    schema = _choose_schema(opts, field_names, ds)
    opts = _resolve_overlap_check(opts, ds, schema)
    key_field = opts.key or (ds.key_field if ds else None) or (
        schema.key_field if schema and schema.key_field in field_names else None
    )
    if opts.mode == "incremental" and not key_field:
        raise SubmissionUsageError(
            "submission.key_required",
            "增量汇交需要用 --key 指明稳定的要素标识字段（如 BSM）",
            "an incremental submission needs a stable feature key field given with --key (e.g. BSM)",
        )
    if key_field and key_field not in field_names:
        raise SubmissionUsageError(
            "submission.unknown_key",
            f"标识字段“{key_field}”不在数据的字段中：{', '.join(sorted(field_names))}",
            f"key field '{key_field}' is not among the data's fields: {', '.join(sorted(field_names))}",
        )
    op_field = opts.op_field if opts.mode == "incremental" and opts.op_field in field_names else None
    rules = RuleRunner(
        RuleConfig(
            schema=schema,
            key_field=key_field,
            dlbm_system=opts.dlbm_system,
            divisions=units_index,
            jurisdiction_code=unit if units_index is not None else None,
            jurisdiction_geometry=units_ref.boundary(engine, unit),
            area_tolerance_rel=settings.area_tolerance_rel,
            area_tolerance_abs=settings.area_tolerance_abs_m2,
            repair=opts.repair,
        )
    )
    fields = _dataset_fields(info, schema, op_field)
    if ds is not None:  # a new version keeps the owner's sensitive-field markings
        sensitive = {f["name"] for f in ds.fields if f.get("sensitive")}
        fields = [{**f, "sensitive": True} if f["name"] in sensitive else f for f in fields]
    store = feature_store_for(engine)
    findings: list[Finding] = []
    clock = StageClock()
    streamed: StreamedOverlaps | None = None
    # a replacement's rows are the rows it sends: it notes what they hold (version_facts.py); an incremental one does not
    facts = SubmissionFacts(f["name"] for f in fields) if opts.mode == "replace" else None
    with engine.connect() as conn:
        conn.info["write"] = True
        trans = conn.begin()
        try:
            if ds is None:
                ds = catalog.create_dataset(
                    conn,
                    opts.dataset_id,
                    unit,
                    title=opts.title,
                    fields=fields,
                    standard_schema=schema.id if schema else None,
                    key_field=key_field,
                    jurisdiction_field=schema.jurisdiction_field if schema and schema.jurisdiction_field in field_names else None,
                    theme=opts.theme or ("land_survey" if schema and schema.id == "DLTB" else "other"),
                    overlap_check=bool(opts.overlap_check),
                )
            version = ds.current_version + 1
            # the first rows of a keyed dataset need no merge: they go straight into the store (rolled back if rejected)
            direct = opts.mode == "replace" and key_field is not None and not store.has_current_rows(conn, ds.id)
            store.begin_stage(conn, (ds.id, version) if direct else None, expected_rows=info.feature_count, background=True)
            if direct and opts.overlap_check:  # every current row is new: the rule is decided while they stream in
                large = (info.feature_count or 0) >= settings.overlap_process_min_features
                streamed = StreamedOverlaps(settings.overlap_tolerance_m2, in_process=large)
            envelope = _Envelope()
            # a direct load on SQLite notes which rows need tile copies, so that their build reads those alone
            copy_rows = tilegeoms.StreamedRows() if direct and backend_of(engine) == "sqlite" else None
            polygonal = _stage_all(
                conn, store, info, transformer, rules, key_field, op_field, settings.batch_size, progress, clock, direct, streamed,
                envelope, facts, copy_rows,
            )
            if streamed is not None and not rules.error_count:
                streamed.seal()  # the far pairs searched for beside the last writes and the merge
            with clock.stage("write"):  # PostGIS, first rows: the server finishing the COPY
                store.end_stage(conn)
            rules.finish()
            findings = list(rules.findings)
            if opts.mode == "incremental":
                with clock.stage("incremental_check"):
                    findings += _incremental_findings(store.stage_problems(conn, ds.id))
            if any(f.severity == "error" for f in findings):
                raise _Rejected(findings)
            with clock.stage("merge"):
                counts = store.merge_stage(conn, ds.id, version, opts.mode)
            if polygonal and opts.overlap_check:
                with clock.stage("overlap", all_threads=True):  # GEOS runs on every core
                    overlaps = streamed.finish(conn, store, ds.id, version) if streamed is not None else None
                    if overlaps is None:
                        overlaps = find_overlaps(conn, store, ds.id, version, settings.overlap_tolerance_m2)
                if streamed is not None:
                    clock.add("overlap_stream", streamed.thread_wall_s, streamed.thread_cpu_s)
                findings += overlaps
                if overlaps:
                    raise _Rejected(findings)
            if facts is not None:
                facts.record_into(source)
            with clock.stage("summary"):
                if direct:  # the version is the rows written: counted and measured while they streamed in
                    feature_count, extent = counts.added, envelope.extent()
                else:
                    feature_count, extent = store.summary(conn, ds.id, version)
            report = _report("accepted", opts, source, findings, rules.counts, feature_count, counts.__dict__, version)
            catalog.record_version(
                conn,
                ds,
                version=version,
                mode=opts.mode,
                unit=unit,
                submission_id=submission_id,
                feature_count=feature_count,
                added=counts.added,
                removed=counts.removed,
                changed=counts.changed,
                extent=extent,
                source=source,
                report=report,
                fields=fields,
            )
            with clock.stage("commit"):
                checkpoint = commit_checkpoint_beside(conn, trans)
        except _Rejected as rej:
            store.end_stage(conn, rej)
            trans.rollback()
            rejected = _rejected(opts, source, rej.findings, rules.counts)
            rejected.timings = clock.as_dict()
            return rejected
        except BaseException as exc:
            store.end_stage(conn, exc)
            trans.rollback()
            raise
        finally:
            if streamed is not None:
                streamed.close()
    # the low-zoom tiles' pre-generalised shapes of its rows, with (SQLite) the commit's WAL checkpoint beside them
    after = AfterAcceptance(engine, ds.id, version, copy_rows, checkpoint)
    try:
        with clock.stage("statistics"):  # PostGIS, a large version: the planner's statistics for its rows (committed)
            store.refresh_statistics(counts.added + counts.changed + counts.removed)
    except BaseException:
        after.run()  # the version stands, committed: its copies all the same
        raise
    if copies_after:
        return SubmissionResult(True, ds.id, version, report, findings, clock.as_dict(), after)
    for name, spent in after.run().items():
        clock.add(name, spent["wall_s"], spent["cpu_s"])
    return SubmissionResult(True, ds.id, version, report, findings, clock.as_dict())


def _resolve_overlap_check(opts: SubmitOptions, ds: catalog.Dataset | None, schema: StandardSchema | None) -> SubmitOptions:
    """The options with the overlap rule this submission runs: the submission's, else the dataset's, else on."""
    wanted = opts.overlap_check
    if wanted is False and ds is not None and ds.overlap_check and schema is None:
        raise SubmissionUsageError(
            "submission.overlap_check_dataset",
            f"数据集“{ds.id}”要求检查图斑重叠：汇交不能关闭；如该图层的图斑本应重叠，请由数据管理员设置 overlap_check=false",
            f"dataset '{ds.id}' requires the overlap check: a submission cannot turn it off; if the layer's polygons overlap "
            "by nature, its data administrator sets overlap_check=false",
            dataset=ds.id,
        )
    if wanted is None:
        wanted = ds.overlap_check if ds is not None else True
    if not wanted and schema is not None:
        raise SubmissionUsageError(
            "submission.overlap_check_required",
            f"标准结构 {schema.id} 的图层必须检查图斑重叠，不能关闭重叠检查",
            f"a layer of the standard schema {schema.id} must pass the overlap check; it cannot be turned off",
            schema=schema.id,
        )
    return dataclasses.replace(opts, overlap_check=wanted)


def _stage_all(
    conn: sa.Connection,
    store: Any,
    info: SourceInfo,
    transformer: Any,
    rules: RuleRunner,
    key_field: str | None,
    op_field: str | None,
    batch_size: int,
    progress: ProgressFn | None,
    clock: StageClock,
    direct: bool = False,
    streamed: StreamedOverlaps | None = None,
    envelope: _Envelope | None = None,
    facts: SubmissionFacts | None = None,
    copy_rows: tilegeoms.StreamedRows | None = None,
) -> bool:
    """Read, convert, check and stage every batch; returns whether the layer is polygonal.

    `direct`: the rows go into the store itself, so none is written once a rule has found an error
    (the submission is rejected, and PostGIS would refuse the geometries GEOS found invalid); the
    rules still run to the end for the report. `streamed`: the overlap rule, fed with each batch's
    stored keys and geometries while no rule has found an error (after one, the submission is rejected
    without it). `envelope`: grown by every batch's stored envelopes. `facts`: told every batch's values.
    `copy_rows`: told every batch's stored shapes and envelopes (which rows need tile copies).
    """
    polygonal = True
    seen_geometry = False
    total = 0
    with read_ahead(_prepared_batches(info, transformer, op_field, batch_size, clock, rules)) as prepared:
        for start, geoms, props, columns, ops, areas, pre, source in prepared:
            with clock.stage("rules"):
                kinds = column_kinds(columns) if columns is not None else None  # (the rules, the texts and the facts')
                geoms = rules.check(
                    Batch(start=start, geometries=geoms, properties=props, areas=areas, prechecked=pre, columns=columns,
                          kinds=kinds)
                )
                present = geoms[~shapely.is_missing(geoms)]
                if len(present):
                    seen_geometry = True
                    polygonal = polygonal and bool(np.all(np.isin(shapely.get_type_id(present), (3, 6))))
            if not (direct and rules.error_count):  # (else rejected: nothing staged, nothing noted)
                with clock.stage("rows"):
                    if facts is not None:
                        facts.see(props, columns, kinds)
                    bounds = shapely.bounds(geoms)
                    rows = _stage_rows(geoms, areas, props, key_field, ops, columns, bounds=bounds, kinds=kinds, source=source)
                    if copy_rows is not None:
                        copy_rows.add(geoms, bounds)
                with clock.stage("write"):
                    store.stage(conn, rows)
                if envelope is not None:
                    envelope.add(bounds)
                if streamed is not None and not rules.error_count:
                    with clock.stage("overlap_feed"):
                        streamed.add(rows.fkeys, geoms, rows.wkbs)
            total += len(props)
            collector.between_batches()
            if progress:
                progress(total)
    if not key_field:
        with clock.stage("number_keys"):
            store.number_duplicate_keys(conn)
    return polygonal and seen_geometry


@dataclass
class SourceWkb:
    """A batch's WKB as the reader gave it, the rows in the one form GEOS writes (`RawBatch.plain_wkb`), and the
    geometries parsed from it (before any CRS conversion).

    Why: writing a WKB for each row to store held the GIL ~1 s a million parcels on the submission's busiest
    thread; for a row whose geometry nothing replaced (no conversion, no repair) and whose bytes are in that
    form, the source's bytes are GEOS's (`geo.wkb`), so they are stored as they are.
    """

    wkb: list[bytes | None]
    plain: np.ndarray
    parsed: np.ndarray

    def stored(self, geoms: np.ndarray) -> list[bytes | None]:
        """The WKB each of `geoms` (the batch's, after the rules) is stored as: GEOS's (2-D and Z kept:
        output_dimension 3), the source's own where they are the same bytes."""
        same = np.fromiter(map(operator.is_, geoms.tolist(), self.parsed.tolist()), dtype=bool, count=len(geoms))
        kept = self.plain & same & ~shapely.is_missing(geoms)  # (a value GEOS refused parses as None)
        redo = np.flatnonzero(~kept)
        if len(redo) == len(geoms):
            return shapely.to_wkb(geoms, output_dimension=3).tolist()
        wkbs = list(self.wkb)
        for i, wkb in zip(redo.tolist(), shapely.to_wkb(geoms[redo], output_dimension=3).tolist()):
            wkbs[i] = wkb
        return wkbs


class _Envelope:
    """The extent of the envelopes added so far (NaN ones — missing and empty geometries — left out, as the store
    leaves them): what `FeatureStore.summary` would read back for a version that is exactly these rows."""

    def __init__(self) -> None:
        self._min = np.full(2, np.inf)
        self._max = np.full(2, -np.inf)

    def add(self, bounds: np.ndarray) -> None:
        """`bounds`: (n, 4) minx, miny, maxx, maxy (`shapely.bounds`); fmin/fmax pass over NaN."""
        if len(bounds):
            self._min = np.fmin(self._min, np.fmin.reduce(bounds[:, :2]))
            self._max = np.fmax(self._max, np.fmax.reduce(bounds[:, 2:]))

    def extent(self) -> tuple[float, float, float, float] | None:
        if np.isinf(self._min[0]):
            return None
        return (float(self._min[0]), float(self._min[1]), float(self._max[0]), float(self._max[1]))


def _prepared_batches(
    info: SourceInfo, transformer: Any, op_field: str | None, batch_size: int, clock: StageClock, rules: RuleRunner
) -> Iterator[
    tuple[int, np.ndarray, list[dict[str, Any]], dict[str, list[Any]] | None, list[str] | None, np.ndarray, Prechecks]
]:
    """Batches read, parsed, converted to CGCS2000, measured and put to the rules' GEOS tests:
    (start, geometries, properties, the properties by field when the rows are the reader's as they are (`Batch.columns`),
    operations, areas, prechecks)."""
    batches = iter_batches(info, batch_size=batch_size)
    try:
        while True:
            with clock.stage("read"):
                raw = next(batches, None)
            if raw is None:
                return
            with clock.stage("decode"):
                geoms = shapely.from_wkb(np.array(raw.wkb, dtype=object), on_invalid="ignore")
                props = raw.properties if raw.plain else [_sanitized(p) for p in raw.properties]
                columns = raw.columns if raw.plain else None
                ops = None
                if op_field:
                    props = list(props)  # (rows made from columns on demand: made once here, the operation taken out)
                    ops = [OP_VALUES.get(str(p.pop(op_field, "") or "").strip().lower(), "upsert") for p in props]
                    columns = {k: v for k, v in columns.items() if k != op_field} if columns is not None else None
            parsed = geoms
            with clock.stage("crs"):
                geoms = transformer.transform_geometries(geoms)
            with clock.stage("areas"):
                areas = survey_areas(geoms)  # once: the area rule compares them with TBMJ, the store keeps them
            with clock.stage("prechecks"):  # validity and jurisdiction (GEOS, beside the per-feature rules)
                pre = rules.prechecks(geoms)
            plain = raw.plain_wkb
            source = SourceWkb(raw.wkb, plain, parsed) if plain is not None and plain.any() else None
            yield raw.start, geoms, props, columns, ops, areas, pre, source
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # the reader's file, on the thread that read it


def _stage_rows(
    geoms: np.ndarray,
    areas: np.ndarray,
    props: Sequence[dict[str, Any]],
    key_field: str | None,
    ops: list[str] | None,
    columns: dict[str, list[Any]] | None = None,
    bounds: np.ndarray | None = None,
    kinds: dict[str, set[type]] | None = None,
    source: SourceWkb | None = None,
) -> StageBatch:
    """The batch for the stage; without a key field a feature is identified by its content hash.

    Column by column where it can (`columns`: the properties by field, every row with exactly these fields in this
    order): the JSON texts from one format string per batch (`_props_jsons`), the hashes and keys through C-level
    maps, no tuple per row (the stores take the columns as they are: `StageBatch`). The same rows as row by row
    (`_stage_row`, and the tests' reference: json.dumps text, blake2b over it and the WKB). `bounds`:
    `shapely.bounds(geoms)`, when the caller has them; `kinds`: `version_facts.column_kinds(columns)`, likewise.
    `source`: the batch's WKB as read, kept where it is what GEOS would write (`SourceWkb`).
    """
    wkbs = source.stored(geoms) if source is not None else shapely.to_wkb(geoms, output_dimension=3).tolist()
    if bounds is None:
        bounds = shapely.bounds(geoms)
    jsons = _props_jsons(props, columns, kinds)
    if None in wkbs:  # a feature without geometry (rejected later, or a table without one): row by row
        return StageBatch.of([
            _stage_row(p, text, wkb, box, area, op, key_field)
            for p, text, wkb, box, area, op in zip(
                props, jsons, wkbs, bounds.tolist(), areas.tolist(), ops or repeat("upsert"), strict=False
            )
        ])
    texts = list(map(str.encode, jsons))
    chashes = list(map(_HEXDIGEST, map(_BLAKE2B_16, map(bytes.__add__, texts, wkbs))))
    if not key_field:
        fkeys = list(map("h:".__add__, chashes))
    else:
        values = columns[key_field] if columns is not None and key_field in columns else [p.get(key_field) for p in props]
        if set(map(type, values)) == {str}:
            fkeys = list(map(str.strip, values))
        else:
            fkeys = ["" if v is None else str(v).strip() for v in values]
    return StageBatch(fkeys, texts, wkbs, bounds, np.asarray(areas, dtype=np.float64), chashes, ops)


def _stage_row(
    p: dict[str, Any], text: str, wkb: bytes | None, box: list[float], area: float, op: str, key_field: str | None
) -> StageRow:
    """One row as the content hashes of stored versions were made (`_stage_rows` for a batch with a missing geometry)."""
    if wkb is None:
        chash = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        bbox, area_m2 = None, None
    else:
        chash = hashlib.blake2b(text.encode() + wkb, digest_size=16).hexdigest()
        bbox, area_m2 = (None if math.isnan(box[0]) else tuple(box)), area
    if key_field:
        value = p.get(key_field)
        fkey = "" if value is None else str(value).strip()
    else:
        fkey = f"h:{chash}"
    return StageRow(fkey, text, wkb, bbox, area_m2, chash, op)


def _props_jsons(
    props: Sequence[dict[str, Any]], columns: dict[str, list[Any]] | None, kinds: dict[str, set[type]] | None = None
) -> list[str]:
    """Each row's `_props_json` text. Where every column is text that JSON writes as it is (no quote, backslash or
    control character), finite floats, integers or None throughout, the texts come from one %-format string per
    batch (`_json_format`), made by C code row by row; otherwise from the encoder, row by row."""
    made = _json_format(columns, len(props), kinds) if columns else None
    if made is None:
        return list(map(_props_json, props))
    fmt, args = made
    return [fmt % values for values in zip(*args)] if args else [fmt % ()] * len(props)


_ENCODE_TEXT = json.encoder.encode_basestring  # (C) the encoder's text escaping, ensure_ascii=False


def _json_format(columns: dict[str, list[Any]], n: int, kinds_of: dict[str, set[type]] | None = None) -> tuple[str, list[list[Any]]] | None:
    """A %-format string and its argument columns giving json.dumps(row, ensure_ascii=False) for each row, or None
    when a column holds anything else than the plain kinds `_props_jsons` names."""
    pieces: list[str] = []
    args: list[list[Any]] = []
    for name, column in columns.items():
        if len(column) != n:
            return None
        key = _ENCODE_TEXT(name).replace("%", "%%")  # the name as json writes a key
        kinds = kinds_of[name] if kinds_of is not None else set(map(type, column))
        if kinds == {str}:
            joined = "".join(column)
            if len(_ENCODE_TEXT(joined)) != len(joined) + 2:  # json's own text encoder escaped something
                return None
            pieces.append(f'{key}: "%s"')
        elif kinds == {float}:
            if not all(map(math.isfinite, column)):  # json writes NaN, Infinity
                return None
            pieces.append(f"{key}: %r")
        elif kinds == {int}:
            pieces.append(f"{key}: %d")
        elif kinds == {_NONE_TYPE}:
            pieces.append(f"{key}: null")
            continue
        else:
            return None
        args.append(column)
    return "{" + ", ".join(pieces) + "}", args


def _incremental_findings(problems: list[tuple[str, str]]) -> list[Finding]:
    out = []
    for op, key in problems:
        if op == "add":
            zh, en = f"新增的要素标识“{key}”已存在", f"feature key '{key}' to add already exists"
        else:
            zh, en = f"要{op == 'delete' and '删除' or '修改'}的要素标识“{key}”在当前版本中不存在", f"feature key '{key}' to {op} is not in the current version"
        out.append(Finding(rule=f"incremental.{op}_conflict", severity="error", message_zh=zh, message_en=en, feature_key=key))
    return out


def _describe_source(info: SourceInfo) -> dict[str, Any]:
    enc = info.encoding
    return {
        "format": info.format,
        "layer": info.layer,
        "layers": info.layers,
        "geometry_type": info.geometry_type,
        "feature_count": info.feature_count,
        "encoding": None
        if enc is None
        else {"encoding": enc.encoding, "how": enc.how, "message_zh": enc.message_zh, "message_en": enc.message_en},
        "notes": [n.to_dict() for n in info.notes],
    }


def _dataset_fields(info: SourceInfo, schema: StandardSchema | None, op_field: str | None) -> list[dict[str, Any]]:
    aliases = {f.name: f.alias_zh for f in schema.fields} if schema else {}
    return [
        {"name": f.name, "type": f.type, "alias_zh": aliases.get(f.name) or known_alias(f.name)}
        for f in info.fields
        if f.name != op_field
    ]


def _summary(findings: list[Finding], counts: dict[tuple[str, str], int] | None) -> dict[str, Any]:
    by_rule: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    if counts:
        for (rule, severity), n in counts.items():
            by_rule[f"{severity}:{rule}"] += n
            totals[severity] += n
    listed = Counter(f"{f.severity}:{f.rule}" for f in findings)
    for name, n in listed.items():
        if name not in by_rule:
            by_rule[name] = n
            totals[name.split(":", 1)[0]] += n
    return {"errors": totals["error"], "warnings": totals["warning"], "by_rule": dict(sorted(by_rule.items()))}


def _report(
    status: str,
    opts: SubmitOptions,
    source: dict[str, Any],
    findings: list[Finding],
    counts: dict[tuple[str, str], int] | None,
    feature_count: int | None,
    changes: dict[str, int] | None,
    version: int | None,
) -> dict[str, Any]:
    summary = _summary(findings, counts)
    summary.update(status=status, feature_count=feature_count, version=version)
    if changes:
        summary.update(changes)
    return {
        "status": status,
        "dataset_id": opts.dataset_id,
        "options": opts.to_dict(),
        "summary": summary,
        "source": source,
        "findings": [f.to_dict() for f in findings],
    }


def _rejected(
    opts: SubmitOptions,
    source: dict[str, Any],
    findings: list[Finding],
    counts: dict[tuple[str, str], int] | None = None,
) -> SubmissionResult:
    report = _report("rejected", opts, source, findings, counts, None, None, None)
    return SubmissionResult(False, opts.dataset_id, None, report, findings)


def stderr_progress(total: int) -> None:
    print(f"… {total} features read / 已读取 {total} 个要素", file=sys.stderr, flush=True)
