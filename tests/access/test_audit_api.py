"""`/api/audit`: the audit administrator's query, CSV export and verification — and nobody else's."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from test_audit_chain import ALICE, BOB, fresh_audit, tamper

from landcloud.access import audit
from landcloud.access.audit_router import router
from landcloud.access.principal import ANONYMOUS, Principal, system_principal
from landcloud.config import Settings
from landcloud.deps import get_principal
from landcloud.messages import LandcloudError

AUDITOR = Principal("user", username="aud", unit="230000", roles=frozenset({"auditadmin"}), ip="10.1.1.1")
DATA_ADMIN = Principal("user", username="da", unit="230000", roles=frozenset({"data_admin"}))


@pytest.fixture
def audit_engine(engine: sa.Engine) -> Iterator[sa.Engine]:
    yield from fresh_audit(engine)


class Caller:
    """Who the test client is; switch by assigning `.principal`."""

    principal: Principal = AUDITOR


@pytest.fixture
def client(audit_engine: sa.Engine, settings: Settings) -> Iterator[tuple[TestClient, Caller]]:
    app = FastAPI()
    app.state.engine = audit_engine
    app.state.settings = settings

    @app.exception_handler(LandcloudError)
    async def landcloud_error(_request: Request, exc: LandcloudError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.to_dict())

    caller = Caller()
    app.dependency_overrides[get_principal] = lambda: caller.principal
    app.include_router(router)
    audit.record(audit_engine, ALICE, "data.read", dataset_id="dltb", version=3,
                 detail={"filter": {"DLMC": "水田"}, "features": 42, "fields": ["DLBM", "DLMC", "QSDWMC"]})
    audit.record(audit_engine, BOB, "grant.create", dataset_id="dltb", detail={"grantee_unit": "230100", "备注": "黑龙江省测试"})
    with TestClient(app) as tc:
        yield tc, caller


def test_only_the_audit_administrator(client: tuple[TestClient, Caller]) -> None:
    tc, caller = client
    paths = ("/api/audit", "/api/audit/export.csv", "/api/audit/verify")
    for principal, status, code in ((DATA_ADMIN, 403, "auth.forbidden"), (ANONYMOUS, 401, "auth.required"),
                                    (Principal("user", username="sa", roles=frozenset({"sysadmin"})), 403, "auth.forbidden")):
        caller.principal = principal
        for path in paths:
            r = tc.get(path)
            assert r.status_code == status, (principal, path, r.text)
            assert r.json()["error"] == code and r.json()["message_zh"] and r.json()["message_en"]
    caller.principal = system_principal()
    assert all(tc.get(path).status_code == 200 for path in paths)
    caller.principal = AUDITOR
    assert all(tc.get(path).status_code == 200 for path in paths)


def test_query_entries_and_reading_is_audited(client: tuple[TestClient, Caller], audit_engine: sa.Engine) -> None:
    tc, _ = client
    r = tc.get("/api/audit")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 2 and [e["seq"] for e in body["entries"]] == [2, 1]
    first = body["entries"][1]
    assert first["actor"] == "张三" and first["actor_unit"] == "230000" and first["dataset_id"] == "dltb" and first["version"] == 3
    assert first["detail"] == {"filter": {"DLMC": "水田"}, "features": 42, "fields": ["DLBM", "DLMC", "QSDWMC"]}
    assert first["at"].endswith("Z") and len(first["hash"]) == 64
    r = tc.get("/api/audit", params={"action": "audit.read"})
    (read,) = r.json()["entries"]
    assert read["actor"] == "aud" and read["ip"] == "10.1.1.1" and read["detail"] == {"filter": {}, "limit": 100, "offset": 0, "count": 2}
    r = tc.get("/api/audit", params={"actor": "张三", "dataset_id": "dltb", "since": "2000-01-01T00:00:00+08:00", "limit": 5})
    assert [e["seq"] for e in r.json()["entries"]] == [1]
    assert tc.get("/api/audit", params={"until": "2000-01-01"}).json() == {"entries": [], "count": 0}
    assert tc.get("/api/audit", params={"limit": 0}).status_code == 422
    assert tc.get("/api/audit", params={"since": "yesterday"}).status_code == 422
    logged = audit.query(audit_engine, action="audit.read")[0]["detail"]
    assert logged["filter"] == {"until": "2000-01-01T00:00:00.000000Z"} and logged["count"] == 0  # naive: UTC


def test_csv_export(client: tuple[TestClient, Caller], audit_engine: sa.Engine) -> None:
    tc, _ = client
    r = tc.get("/api/audit/export.csv")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith('attachment; filename="audit-') and r.headers["content-disposition"].endswith('.csv"')
    assert r.content.startswith(b"\xef\xbb\xbfseq,at,actor,")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [r["seq"] for r in rows] == ["1", "2", "3"]  # 3: this export, recorded before it streamed
    assert rows[0]["actor"] == "张三" and "水田" in rows[0]["detail"] and "黑龙江省测试" in rows[1]["detail"]
    assert rows[2]["action"] == "audit.export" and rows[2]["actor"] == "aud"
    r = tc.get("/api/audit/export.csv", params={"actor": "bob"})
    assert [row["seq"] for row in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig")))] == ["2"]
    assert audit.verify(audit_engine).ok


def test_verify_endpoint(client: tuple[TestClient, Caller], audit_engine: sa.Engine) -> None:
    tc, _ = client
    r = tc.get("/api/audit/verify")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "checked": 2, "first_broken_seq": None,
                        "reason_zh": "审计链完整：2 条记录", "reason_en": "audit chain intact: 2 entries"}
    tamper(audit_engine, "UPDATE audit_log SET detail = '{}' WHERE seq = 2")
    body = tc.get("/api/audit/verify").json()
    assert body["ok"] is False and body["first_broken_seq"] == 2 and "entry 2 was altered" in body["reason_en"]
    assert audit.query(audit_engine, action="audit.verify")[0]["detail"] == {"ok": False, "checked": 1, "first_broken_seq": 2}
