"""Sharing applications (数据共享申请) and the grants they become.

A user of another unit or department applies for a dataset: fields, region, purpose, period.
The owner unit's data administrator decides; sensitive data needs the level above too. An
approved application is a grant with an expiry, visible to both sides, revocable, and applied
by the gate. Unconditionally shared datasets need no application; not-shared ones refuse one.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from landcloud import clock
from landcloud.access import audit
from landcloud.access import units as units_mod
from landcloud.access.principal import Principal
from landcloud.access.roles import DATA_ADMIN, SECADMIN
from landcloud.access.tables import applications, grants
from landcloud.catalog import datasets as catalog
from landcloud.messages import Conflict, Forbidden, LandcloudError, NotFound
from landcloud.store.db import connection

MAX_PERIOD = timedelta(days=3 * 366)


def _iso(value: datetime | None) -> str | None:
    return clock.aware(value).isoformat() if value else None


def _app_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    for key in ("period_start", "period_end", "created_at", "decided_at"):
        data[key] = _iso(data[key])
    return data


def _grant_dict(row: Any) -> dict[str, Any]:
    return _grant_data(dict(row._mapping))


def _grant_data(raw: dict[str, Any]) -> dict[str, Any]:
    data = dict(raw)
    for key in ("starts_at", "expires_at", "created_at", "revoked_at"):
        data[key] = _iso(data[key])
    now = clock.now()
    data["active"] = (
        raw["revoked_at"] is None and clock.aware(raw["starts_at"]) <= now < clock.aware(raw["expires_at"])
    )
    return data


def _parse_time(value: str | datetime | None, default: datetime) -> datetime:
    if value is None or value == "":
        return default
    if isinstance(value, datetime):
        return clock.aware(value)
    try:
        return clock.aware(datetime.fromisoformat(value))
    except ValueError:
        raise LandcloudError(
            "application.bad_time", f"时间“{value}”格式无效，应为 ISO 8601", f"invalid time '{value}': use ISO 8601"
        ) from None


def apply(
    engine: Engine,
    principal: Principal,
    dataset_id: str,
    *,
    purpose: str,
    fields: list[str] | None = None,
    region: str | None = None,
    period_start: str | datetime | None = None,
    period_end: str | datetime | None = None,
    already_visible: bool = False,
) -> dict[str, Any]:
    """File an application; refused when it is not needed, not allowed or malformed."""
    if principal.kind != "user" or not principal.unit:
        raise Forbidden("application.not_user", "只有登录用户可以申请数据", "only signed-in users may apply for data")
    ds = catalog.require_dataset(engine, dataset_id)
    if ds.sharing_class == "not_shared":
        raise Forbidden(
            "application.not_shared", f"数据集“{ds.id}”不予共享，不能申请", f"dataset '{ds.id}' is not shared; it cannot be applied for"
        )
    if ds.sharing_class == "unconditional" and ds.security_level != "sensitive":
        raise Conflict(
            "application.not_needed", f"数据集“{ds.id}”无条件共享，无需申请", f"dataset '{ds.id}' is shared unconditionally; no application needed"
        )
    if principal.unit == ds.owner_unit:
        raise Conflict("application.own_data", "不能申请本单位自己的数据", "you cannot apply for your own unit's data")
    if not purpose or not purpose.strip():
        raise LandcloudError("application.no_purpose", "必须说明用途", "a purpose is required")
    names = {f["name"] for f in ds.fields}
    unknown = sorted(set(fields or []) - names)
    if unknown:
        raise LandcloudError(
            "application.unknown_fields",
            f"数据集没有字段：{', '.join(unknown)}",
            f"the dataset has no field(s): {', '.join(unknown)}",
            fields=unknown,
        )
    if region:
        index = units_mod.division_index(engine)
        if index is None or region not in index:
            raise LandcloudError("application.unknown_region", f"区域代码 {region} 不存在", f"unknown region code {region}")
    now = clock.now()
    start = _parse_time(period_start, now)
    end = _parse_time(period_end, start + timedelta(days=365))
    if end <= start or end - start > MAX_PERIOD or end <= now:
        raise LandcloudError(
            "application.bad_period",
            "使用期限无效：结束须晚于开始和当前时间，且不超过三年",
            "invalid period: it must end after its start and after now, and last at most three years",
        )
    if already_visible and not fields and not region:
        raise Conflict("application.not_needed", "你已能访问该数据集的全部内容", "you can already read this dataset in full")
    app_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            applications.insert().values(
                id=app_id,
                dataset_id=ds.id,
                applicant_id=principal.user_id,
                applicant_unit=principal.unit,
                fields=sorted(fields) if fields else None,
                region=region or None,
                purpose=purpose.strip(),
                period_start=start,
                period_end=end,
                status="pending",
                stage="owner",
                decisions=[],
                created_at=now,
            )
        )
        audit.record(
            engine, principal, "application.create", dataset_id=ds.id,
            detail={"application": app_id, "fields": fields, "region": region, "purpose": purpose}, conn=conn,
        )
    return get_application(engine, app_id)


def get_application(engine: Engine, app_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(applications).where(applications.c.id == app_id)).first()
    if row is None:
        raise NotFound("application.not_found", f"申请 {app_id} 不存在", f"application {app_id} does not exist")
    return _app_dict(row)


def _decider_unit(engine: Engine, ds: catalog.Dataset, stage: str) -> str | None:
    if stage == "owner":
        return ds.owner_unit
    index = units_mod.division_index(engine)
    if index is None or ds.owner_unit not in index:
        return None
    parent = index.get(ds.owner_unit).parent
    return parent


def decide(engine: Engine, principal: Principal, app_id: str, approve: bool, comment: str = "") -> dict[str, Any]:
    """One decision at the application's current stage; the last approval creates the grant."""
    app = get_application(engine, app_id)
    if app["status"] != "pending":
        raise Conflict("application.decided", f"申请已处理（{app['status']}）", f"the application was already decided ({app['status']})")
    ds = catalog.require_dataset(engine, app["dataset_id"])
    decider = _decider_unit(engine, ds, app["stage"])
    if principal.kind != "system" and (
        not principal.has_role(DATA_ADMIN) or not principal.allows("manage") or principal.unit != decider
    ):
        raise Forbidden(
            "application.not_decider",
            f"此申请当前须由单位 {decider} 的数据管理员审批",
            f"this application must now be decided by a data administrator of unit {decider}",
        )
    now = clock.now()
    decisions = [*app["decisions"], {"stage": app["stage"], "by": principal.actor, "unit": principal.unit,
                                     "approve": approve, "comment": comment, "at": now.isoformat()}]
    needs_parent = ds.security_level == "sensitive" and app["stage"] == "owner"
    if not approve:
        values: dict[str, Any] = {"status": "rejected", "stage": "done", "decided_at": now}
    elif needs_parent:
        if _decider_unit(engine, ds, "parent") is None:
            raise Conflict(
                "application.no_parent", "敏感数据需上级审批，但权属单位没有上级单位", "sensitive data needs the level above, but the owner unit has none"
            )
        values = {"stage": "parent"}
    else:
        values = {"status": "approved", "stage": "done", "decided_at": now}
    with engine.begin() as conn:
        conn.execute(applications.update().where(applications.c.id == app_id).values(decisions=decisions, **values))
        audit.record(
            engine, principal, "application.decision", dataset_id=ds.id,
            detail={"application": app_id, "approve": approve, "stage": app["stage"], "comment": comment}, conn=conn,
        )
        if values.get("status") == "approved":
            grant_id = str(uuid.uuid4())
            conn.execute(
                grants.insert().values(
                    id=grant_id,
                    dataset_id=ds.id,
                    grantee_unit=app["applicant_unit"],
                    fields=app["fields"],
                    region=app["region"],
                    application_id=app_id,
                    purpose=app["purpose"],
                    starts_at=_parse_time(app["period_start"], now),
                    expires_at=_parse_time(app["period_end"], now),
                    created_at=now,
                    created_by=principal.user_id,
                )
            )
            audit.record(
                engine, principal, "grant.create", dataset_id=ds.id,
                detail={"grant": grant_id, "unit": app["applicant_unit"], "fields": app["fields"], "region": app["region"],
                        "expires_at": app["period_end"]}, conn=conn,
            )
    return get_application(engine, app_id)


def list_applications(engine: Engine, principal: Principal) -> dict[str, list[dict[str, Any]]]:
    """Mine (as applicant) and my inbox (pending at a stage my unit decides)."""
    with engine.connect() as conn:
        mine = [_app_dict(r) for r in conn.execute(
            sa.select(applications).where(applications.c.applicant_id == principal.user_id).order_by(applications.c.created_at.desc())
        )] if principal.user_id else []
        pending = conn.execute(sa.select(applications).where(applications.c.status == "pending")).all()
    inbox = []
    if principal.kind == "system" or principal.has_role(DATA_ADMIN):
        for row in pending:
            ds = catalog.get_dataset(engine, row.dataset_id)
            if ds is not None and (principal.kind == "system" or _decider_unit(engine, ds, row.stage) == principal.unit):
                inbox.append(_app_dict(row))
    return {"mine": mine, "inbox": inbox}


def active_grants(bind: Engine | Connection, unit: str) -> list[dict[str, Any]]:
    with connection(bind) as conn:
        rows = conn.execute(
            sa.select(grants).where(grants.c.grantee_unit == unit, grants.c.revoked_at.is_(None))
        ).all()
    return _active([dict(r._mapping) for r in rows])


def _active(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now = clock.now()
    return [_grant_data(r) for r in rows if clock.aware(r["starts_at"]) <= now < clock.aware(r["expires_at"])]


_GRANT_LABELS = [c.label(f"g__{c.name}") for c in grants.c]


def with_grants_of(facts: sa.Select[Any]) -> sa.Select[Any]:
    """The one-row select `facts` with the unrevoked grants of the unit `:grantee` beside it: a row
    per grant, or one row of NULL grant columns (a NULL grantee matches none). Lets the gate read a
    caller's facts and grants in one round trip; read the grants back with `active_grants_of`."""
    sub = facts.subquery()
    on = sa.and_(grants.c.grantee_unit == sa.bindparam("grantee"), grants.c.revoked_at.is_(None))
    return sa.select(sub, *_GRANT_LABELS).select_from(sub.outerjoin(grants, on))


def active_grants_of(rows: Any) -> list[dict[str, Any]]:
    """The grants in force now, from rows of `with_grants_of` (as `active_grants` gives them)."""
    return _active([{c.name: r._mapping[f"g__{c.name}"] for c in grants.c} for r in rows if r._mapping["g__id"] is not None])


def grants_change_at(rows: Any) -> datetime | None:
    """When the set of grants in force changes by the clock alone, from rows of `with_grants_of`: the
    earliest start or end of an unrevoked grant still ahead (None: none is ahead). A decision remembered
    past it would keep an ended grant's rows, or miss a begun one's."""
    now = clock.now()
    ahead = [
        t for r in rows if r._mapping["g__id"] is not None
        for t in (clock.aware(r._mapping["g__starts_at"]), clock.aware(r._mapping["g__expires_at"])) if t > now
    ]
    return min(ahead, default=None)


def list_grants(engine: Engine, principal: Principal) -> dict[str, list[dict[str, Any]]]:
    """Grants my unit holds, and grants on my unit's datasets."""
    with engine.connect() as conn:
        held = [_grant_dict(r) for r in conn.execute(sa.select(grants).where(grants.c.grantee_unit == principal.unit))]
        owned_ids = [d.id for d in catalog.list_datasets(engine) if d.owner_unit == principal.unit]
        given = [_grant_dict(r) for r in conn.execute(sa.select(grants).where(grants.c.dataset_id.in_(owned_ids)))] if owned_ids else []
    return {"held": held, "given": given}


def revoke(engine: Engine, principal: Principal, grant_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(grants).where(grants.c.id == grant_id)).first()
    if row is None:
        raise NotFound("grant.not_found", f"授权 {grant_id} 不存在", f"grant {grant_id} does not exist")
    ds = catalog.require_dataset(engine, row.dataset_id)
    allowed = principal.kind == "system" or (principal.has_role(SECADMIN) and principal.allows("manage")) or (
        principal.has_role(DATA_ADMIN) and principal.allows("manage") and principal.unit == ds.owner_unit
    )
    if not allowed:
        raise Forbidden("grant.not_revoker", "只有权属单位的数据管理员或安全管理员可以撤销授权", "only the owner unit's data administrator or the security administrator may revoke a grant")
    if row.revoked_at is not None:
        raise Conflict("grant.revoked", "授权已撤销", "the grant was already revoked")
    with engine.begin() as conn:
        conn.execute(grants.update().where(grants.c.id == grant_id).values(revoked_at=clock.now(), revoked_by=principal.user_id))
        audit.record(engine, principal, "grant.revoke", dataset_id=ds.id, detail={"grant": grant_id, "unit": row.grantee_unit}, conn=conn)
    with engine.connect() as conn:
        return _grant_dict(conn.execute(sa.select(grants).where(grants.c.id == grant_id)).one())
