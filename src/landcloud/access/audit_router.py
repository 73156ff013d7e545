"""The audit administrator's view of the audit log: query, CSV export, chain verification.

Only the audit administrator (or the local operator, a `system` principal) may use these; every
use is itself recorded in the log ("audit.read", "audit.export", "audit.verify").
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from landcloud import clock
from landcloud.access import audit
from landcloud.access.principal import Principal
from landcloud.access.roles import AUDITADMIN
from landcloud.deps import EngineDep, PrincipalDep
from landcloud.messages import Forbidden, LandcloudError

router = APIRouter(prefix="/api/audit", tags=["audit"])


class AuthRequired(LandcloudError):
    status = 401


def require_auditadmin(principal: PrincipalDep) -> Principal:
    """The caller if it is the audit administrator (or the local system operator); else 401/403."""
    if principal.kind == "anonymous":
        raise AuthRequired("auth.required", "请先登录", "sign-in required")
    if principal.kind == "system" or AUDITADMIN in getattr(principal, "roles", frozenset()):
        return principal
    raise Forbidden("auth.forbidden", "仅审计管理员可查看审计日志", "only the audit administrator may read the audit log")


AuditAdmin = Annotated[Principal, Depends(require_auditadmin)]


def _filters(
    actor: Annotated[str | None, Query(description="Actor (username)")] = None,
    unit: Annotated[str | None, Query(description="Actor's unit code")] = None,
    action: Annotated[str | None, Query(description="Action, e.g. auth.signin; a trailing * matches a prefix (auth.*)")] = None,
    dataset_id: Annotated[str | None, Query(description="Dataset id")] = None,
    since: Annotated[datetime | None, Query(description="From (inclusive), ISO-8601; without an offset, UTC")] = None,
    until: Annotated[datetime | None, Query(description="Until (exclusive), ISO-8601; without an offset, UTC")] = None,
) -> dict[str, Any]:
    return {"actor": actor, "unit": unit, "action": action, "dataset_id": dataset_id, "since": since, "until": until}


Filters = Annotated[dict[str, Any], Depends(_filters)]


def _shown(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters as recorded in the audit entry of this read."""
    return {k: (audit.iso_at(v) if isinstance(v, datetime) else v) for k, v in filters.items() if v is not None}


@router.get("")
def list_entries(
    engine: EngineDep,
    principal: AuditAdmin,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Audit entries, newest first: `{"entries": [...], "count": n}` (n = the entries in this page)."""
    entries = audit.query(engine, **filters, limit=limit, offset=offset)
    audit.record(engine, principal, "audit.read",
                 detail={"filter": _shown(filters), "limit": limit, "offset": offset, "count": len(entries)})
    return {"entries": entries, "count": len(entries)}


@router.get("/export.csv")
def export_csv(engine: EngineDep, principal: AuditAdmin, filters: Filters) -> StreamingResponse:
    """Every matching entry as CSV (UTF-8 with BOM), in seq order."""
    audit.record(engine, principal, "audit.export", detail={"filter": _shown(filters), "format": "csv"})
    name = f"audit-{audit.utc(clock.now()).strftime('%Y%m%dT%H%M%SZ')}.csv"
    return StreamingResponse(
        audit.to_csv_stream(engine, **filters),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/verify")
def verify_chain(engine: EngineDep, principal: AuditAdmin) -> dict[str, Any]:
    """Verify the hash chain: `ok`, `checked`, `first_broken_seq`, `reason_zh`, `reason_en`."""
    result = audit.verify(engine)
    audit.record(engine, principal, "audit.verify",
                 detail={"ok": result.ok, "checked": result.checked, "first_broken_seq": result.first_broken_seq})
    return result.to_dict()
