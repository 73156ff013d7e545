"""Datasets and versions: what a dataset is, who owns it, and how its metadata may change.

One data, one source (一数一源): a dataset has exactly one owner unit, set by its first
submission; every later submission must come from that unit. New datasets are secure by
default (not open, internal) until their owner says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from landcloud.catalog.tables import dataset_versions, datasets
from landcloud.messages import Conflict, Forbidden, LandcloudError, NotFound
from landcloud.store.db import connection

THEMES: dict[str, tuple[str, str]] = {
    "land_survey": ("国土调查", "land-use survey"),
    "planning": ("国土空间规划", "spatial planning"),
    "mining": ("矿业权", "mining rights"),
    "geology": ("地质", "geology"),
    "real_estate": ("不动产", "real estate"),
    "hazards": ("地质灾害", "geological hazards"),
    "boundaries": ("行政区划", "administrative boundaries"),
    "other": ("其他", "other"),
}
SHARING_CLASSES = {"unconditional": "无条件共享", "conditional": "有条件共享", "not_shared": "不予共享"}
OPENNESS = {"open": "开放", "not_open": "不开放"}
SECURITY_LEVELS = {"public": "公开", "internal": "内部", "sensitive": "敏感"}
UPDATE_FREQUENCIES = {
    "realtime": "实时",
    "daily": "每日",
    "monthly": "每月",
    "quarterly": "每季度",
    "yearly": "每年",
    "irregular": "不定期",
}
DATASET_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,63}$")
RESERVED_IDS = {"catalog"}  # /ogc/collections/catalog is the catalogue itself

# Metadata a data administrator may set with `datasets set` / PATCH; everything else is derived.
EDITABLE: dict[str, Any] = {
    "title": str,
    "title_en": str,
    "description": str,
    "theme": THEMES,
    "update_frequency": UPDATE_FREQUENCIES,
    "sharing_class": SHARING_CLASSES,
    "openness": OPENNESS,
    "security_level": SECURITY_LEVELS,
    "keywords": list,
    "jurisdiction_field": "field",
    "key_field": "field",
    "standard_schema": str,
    "sensitive_fields": "fields",
    "overlap_check": bool,
}
_TRUE = {"true", "yes", "on", "1", "是"}
_FALSE = {"false", "no", "off", "0", "否"}


@dataclass
class Dataset:
    id: str
    title: str
    title_en: str
    description: str
    theme: str
    owner_unit: str
    standard_schema: str | None
    fields: list[dict[str, Any]]
    update_frequency: str
    sharing_class: str
    openness: str
    security_level: str
    keywords: list[str]
    key_field: str | None
    jurisdiction_field: str | None
    extent: list[float] | None
    feature_count: int
    current_version: int
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    edition_of: str | None = None  # a public edition: the master dataset it is derived from
    published_version: int | None = None  # a public edition: the approved version the public reads
    # Every submission (incremental ones and OGC API transactions too) checks that polygons do not overlap;
    # off only for a layer of no standard schema whose polygons overlap by nature (buildings on land use)
    overlap_check: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        data["theme_zh"] = THEMES.get(self.theme, ("", ""))[0]
        return data


@dataclass
class Version:
    dataset_id: str
    version: int
    mode: str
    created_at: datetime
    unit: str | None
    submission_id: str | None
    based_on: int | None
    feature_count: int
    added: int
    removed: int
    changed: int
    extent: list[float] | None
    source: dict[str, Any]
    report: dict[str, Any]
    note: str

    def to_dict(self, with_report: bool = False) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "report" or with_report}
        data["created_at"] = self.created_at.isoformat()
        if not with_report:
            data["report_summary"] = self.report.get("summary", {})
        return data


def now() -> datetime:
    return datetime.now(UTC)


def validate_dataset_id(dataset_id: str) -> None:
    if not DATASET_ID.match(dataset_id or "") or dataset_id in RESERVED_IDS:
        raise LandcloudError(
            "dataset.bad_id",
            f"数据集标识“{dataset_id}”无效：只能使用小写字母、数字、- 和 _，长度 2–64，以字母或数字开头",
            f"invalid dataset id '{dataset_id}': use 2–64 lowercase letters, digits, - and _, starting with a letter or digit",
        )


def _row_to_dataset(row: Any, prefix: str = "") -> Dataset:
    m = row._mapping
    return Dataset(**{k: m[prefix + k] for k in Dataset.__dataclass_fields__})


_DATASET_BY_ID = sa.select(datasets).where(datasets.c.id == sa.bindparam("dataset_id"))  # built once: read on every request
_DATASET_LABELS = [c.label(f"d__{c.name}") for c in datasets.c]


def with_dataset(facts: sa.Select[Any]) -> sa.Select[Any]:
    """The select `facts` with the row of the dataset `:dataset_id` beside each of its rows (NULL
    columns when there is no such dataset). Lets the gate read a dataset and its caller's facts in
    one round trip; read the dataset back with `dataset_of`."""
    sub = facts.subquery()
    row = sa.select(*_DATASET_LABELS).where(datasets.c.id == sa.bindparam("dataset_id")).subquery()
    return sa.select(sub, row).select_from(sub.outerjoin(row, sa.true()))


def dataset_of(row: Any) -> Dataset | None:
    """The dataset of a row of `with_dataset`, or None."""
    return None if row._mapping["d__id"] is None else _row_to_dataset(row, "d__")


def get_dataset(conn: Connection | Engine, dataset_id: str) -> Dataset | None:
    with connection(conn) as c:
        row = c.execute(_DATASET_BY_ID, {"dataset_id": dataset_id}).first()
    return _row_to_dataset(row) if row else None


def require_dataset(conn: Connection | Engine, dataset_id: str) -> Dataset:
    ds = get_dataset(conn, dataset_id)
    if ds is None:
        raise NotFound("dataset.not_found", f"数据集“{dataset_id}”不存在", f"dataset '{dataset_id}' does not exist")
    return ds


def list_datasets(engine: Engine | Connection) -> list[Dataset]:
    with connection(engine) as c:
        return [_row_to_dataset(r) for r in c.execute(sa.select(datasets).order_by(datasets.c.id))]


def count_datasets(engine: Engine) -> int:
    """How many datasets (masters and editions) the catalogue holds, counted by the database."""
    with engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(datasets)).scalar_one())


def check_writable(ds: Dataset) -> None:
    """A public edition is written only by building it from its master: no submission, edit or rollback."""
    if ds.edition_of is not None:
        raise Conflict(
            "dataset.read_only_edition",
            f"数据集“{ds.id}”是“{ds.edition_of}”的公开版，只读：请修改主数据并重新生成公开版",
            f"dataset '{ds.id}' is a public edition of '{ds.edition_of}' and read-only: change the master and build a new edition",
            edition_of=ds.edition_of,
        )


def check_owner(ds: Dataset, unit: str | None) -> None:
    """一数一源: only the owner unit may submit to a dataset (and never to a read-only edition)."""
    check_writable(ds)
    if unit is not None and unit != ds.owner_unit:
        raise Forbidden(
            "dataset.not_owner",
            f"数据集“{ds.id}”属于单位 {ds.owner_unit}，单位 {unit} 不能向其汇交（一数一源）",
            f"dataset '{ds.id}' is owned by unit {ds.owner_unit}; unit {unit} may not submit to it (one data, one source)",
            owner_unit=ds.owner_unit,
            unit=unit,
        )


def create_dataset(
    conn: Connection,
    dataset_id: str,
    owner_unit: str,
    *,
    title: str | None = None,
    fields: list[dict[str, Any]] | None = None,
    standard_schema: str | None = None,
    key_field: str | None = None,
    jurisdiction_field: str | None = None,
    theme: str = "other",
    extra: Mapping[str, Any] | None = None,
    overlap_check: bool = True,
) -> Dataset:
    """A new dataset, secure by default: not open, internal, conditional sharing."""
    validate_dataset_id(dataset_id)
    check_overlap_setting(standard_schema, overlap_check)
    if get_dataset(conn, dataset_id) is not None:
        raise Conflict("dataset.exists", f"数据集“{dataset_id}”已存在", f"dataset '{dataset_id}' already exists")
    ts = now()
    conn.execute(
        datasets.insert().values(
            id=dataset_id,
            title=title or dataset_id,
            title_en="",
            description="",
            theme=theme if theme in THEMES else "other",
            owner_unit=owner_unit,
            standard_schema=standard_schema,
            fields=fields or [],
            update_frequency="irregular",
            sharing_class="conditional",
            openness="not_open",
            security_level="internal",
            keywords=[],
            key_field=key_field,
            jurisdiction_field=jurisdiction_field,
            extent=None,
            feature_count=0,
            current_version=0,
            extra=dict(extra or {}),
            created_at=ts,
            updated_at=ts,
            overlap_check=overlap_check,
        )
    )
    _reindex(conn, dataset_id)
    return require_dataset(conn, dataset_id)


def check_overlap_setting(standard_schema: str | None, overlap_check: bool) -> None:
    """The overlap rule holds for every layer of a standard schema (DLTB …): it cannot be off there."""
    if standard_schema and not overlap_check:
        raise LandcloudError(
            "dataset.overlap_check_required",
            f"标准结构 {standard_schema} 的图层必须检查图斑重叠，不能关闭重叠检查",
            f"a layer of the standard schema {standard_schema} must pass the overlap check; it cannot be turned off",
            schema=standard_schema,
        )


def _coerce(ds: Dataset, key: str, value: Any) -> Any:
    kind = EDITABLE.get(key)
    if kind is None:
        raise LandcloudError(
            "dataset.bad_key",
            f"不能修改元数据项“{key}”；可修改：{', '.join(sorted(EDITABLE))}",
            f"metadata key '{key}' cannot be set; settable keys: {', '.join(sorted(EDITABLE))}",
            key=key,
        )
    if isinstance(kind, dict):
        if value not in kind:
            raise LandcloudError(
                "dataset.bad_value",
                f"元数据项“{key}”的值“{value}”无效；可选：{', '.join(kind)}",
                f"invalid value '{value}' for '{key}'; choose one of: {', '.join(kind)}",
                key=key,
                allowed=list(kind),
            )
        return value
    if kind is list:
        if isinstance(value, str):
            return [v.strip() for v in re.split(r"[,，;；]", value) if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    if kind == "fields":
        names = [v.strip() for v in (re.split(r"[,，;；]", value) if isinstance(value, str) else value or []) if v.strip()]
        known = {f["name"] for f in ds.fields}
        unknown = sorted(set(names) - known)
        if unknown:
            raise LandcloudError(
                "dataset.unknown_field",
                f"数据集“{ds.id}”没有字段：{', '.join(unknown)}",
                f"dataset '{ds.id}' has no field(s): {', '.join(unknown)}",
                key=key,
                fields=unknown,
            )
        return names
    if kind == "field":
        if value in (None, ""):
            return None
        names = {f["name"] for f in ds.fields}
        if names and value not in names:
            raise LandcloudError(
                "dataset.unknown_field",
                f"数据集“{ds.id}”没有字段“{value}”",
                f"dataset '{ds.id}' has no field '{value}'",
                key=key,
                fields=sorted(names),
            )
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    raise LandcloudError(
        "dataset.bad_value", f"元数据项“{key}”的值类型无效", f"invalid value type for '{key}'", key=key
    )


def update_metadata(
    engine: Engine, dataset_id: str, changes: Mapping[str, Any], in_transaction: Callable[[Connection], None] | None = None
) -> Dataset:
    """Validate every change first, then apply them together (all or nothing).

    `in_transaction` runs before the commit (the caller's audit entry), so a change is never
    kept without its record.
    """
    with engine.begin() as conn:
        ds = require_dataset(conn, dataset_id)
        values = {key: _coerce(ds, key, value) for key, value in changes.items()}
        if not values:
            return ds
        check_overlap_setting(values.get("standard_schema", ds.standard_schema), values.get("overlap_check", ds.overlap_check))
        if "sensitive_fields" in values:
            marked = set(values.pop("sensitive_fields"))
            values["fields"] = [{**f, "sensitive": f["name"] in marked} for f in ds.fields]
        conn.execute(datasets.update().where(datasets.c.id == dataset_id).values(**values, updated_at=now()))
        _reindex(conn, dataset_id)
        if in_transaction is not None:
            in_transaction(conn)
        return require_dataset(conn, dataset_id)


def record_version(
    conn: Connection,
    ds: Dataset,
    *,
    version: int,
    mode: str,
    unit: str | None,
    submission_id: str | None,
    feature_count: int,
    added: int,
    removed: int,
    changed: int,
    extent: tuple[float, float, float, float] | None,
    source: dict[str, Any],
    report: dict[str, Any],
    fields: list[dict[str, Any]] | None = None,
    note: str = "",
) -> None:
    """Write the version row and move the dataset's current version forward (same transaction)."""
    ts = now()
    conn.execute(
        dataset_versions.insert().values(
            dataset_id=ds.id,
            version=version,
            mode=mode,
            created_at=ts,
            unit=unit,
            submission_id=submission_id,
            based_on=ds.current_version or None,
            feature_count=feature_count,
            added=added,
            removed=removed,
            changed=changed,
            extent=list(extent) if extent else None,
            source=source,
            report=report,
            note=note,
        )
    )
    values: dict[str, Any] = dict(
        current_version=version, feature_count=feature_count, extent=list(extent) if extent else None, updated_at=ts
    )
    if fields is not None:
        values["fields"] = fields
    updated = conn.execute(
        datasets.update()
        .where(datasets.c.id == ds.id, datasets.c.current_version == ds.current_version)
        .values(**values)
    ).rowcount
    if updated != 1:
        raise Conflict(
            "dataset.concurrent_version",
            f"数据集“{ds.id}”在本次汇交期间已有新版本，请重新提交",
            f"dataset '{ds.id}' received another version while this one was loading; submit again",
        )
    _reindex(conn, ds.id)


def _row_to_version(row: Any) -> Version:
    m = row._mapping
    return Version(**{k: m[k] for k in Version.__dataclass_fields__})


def list_versions(engine: Engine, dataset_id: str) -> list[Version]:
    with engine.connect() as c:
        require_dataset(c, dataset_id)
        rows = c.execute(
            sa.select(dataset_versions)
            .where(dataset_versions.c.dataset_id == dataset_id)
            .order_by(dataset_versions.c.version)
        )
        return [_row_to_version(r) for r in rows]


def get_version(engine: Engine | Connection, dataset_id: str, version: int) -> Version:
    def run(c: Connection) -> Version:
        row = c.execute(
            sa.select(dataset_versions).where(
                dataset_versions.c.dataset_id == dataset_id, dataset_versions.c.version == version
            )
        ).first()
        if row is None:
            raise NotFound(
                "version.not_found",
                f"数据集“{dataset_id}”没有版本 {version}",
                f"dataset '{dataset_id}' has no version {version}",
            )
        return _row_to_version(row)

    if isinstance(engine, Engine):
        with engine.connect() as c:
            return run(c)
    return run(engine)


def version_created_at(bind: Engine | Connection, dataset_id: str, version: int) -> datetime | None:
    """When a version was made (None if it does not exist): one column, not the version's report and fields."""
    with connection(bind) as c:
        return c.execute(
            sa.select(dataset_versions.c.created_at).where(
                dataset_versions.c.dataset_id == dataset_id, dataset_versions.c.version == version
            )
        ).scalar()


def resolve_version(ds: Dataset, version: int | None) -> int:
    """The version to read: the given one (validated) or the current one."""
    if ds.current_version == 0:
        raise NotFound("dataset.empty", f"数据集“{ds.id}”还没有任何版本", f"dataset '{ds.id}' has no version yet")
    if version is None:
        return ds.current_version
    if not 1 <= version <= ds.current_version:
        raise NotFound(
            "version.not_found",
            f"数据集“{ds.id}”没有版本 {version}（现有 1–{ds.current_version}）",
            f"dataset '{ds.id}' has no version {version} (it has 1–{ds.current_version})",
        )
    return version


def set_extra(engine: Engine, dataset_id: str, extra: Mapping[str, Any]) -> None:
    """Merge provenance notes (e.g. `synthetic: true`) into a dataset's extra metadata."""
    with engine.begin() as conn:
        ds = require_dataset(conn, dataset_id)
        conn.execute(datasets.update().where(datasets.c.id == dataset_id).values(extra={**ds.extra, **extra}, updated_at=now()))
        _reindex(conn, dataset_id)


def _reindex(conn: Connection, dataset_id: str) -> None:
    """Keep the catalogue's search index in step, in the same transaction as the change."""
    from landcloud.catalog import search  # search builds on this module

    search.reindex(conn, dataset_id)
