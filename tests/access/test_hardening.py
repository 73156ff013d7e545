"""Transport hardening over real HTTP handling: headers, body limits, rate limits."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from landcloud.access import units, users
from landcloud.app import create_app
from landcloud.config import Settings
from landcloud.publish import tiles_router

from conftest import REFERENCE
from world import PASSWORD, sign_in


def client_with(settings: Settings, **changes: object) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=changes)))


def test_security_headers_on_every_response(engine: sa.Engine, settings: Settings) -> None:
    client = client_with(settings)
    for resp in (client.get("/healthz"), client.get("/api/datasets/nope"), client.post("/api/auth/token", data={})):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
        assert resp.headers["referrer-policy"] == "same-origin"
    assert client.post("/api/auth/token", data={"username": "x", "password": "y"}).headers["cache-control"] == "no-store"


def test_request_bodies_over_the_limit_are_refused(engine: sa.Engine, settings: Settings) -> None:
    client = client_with(settings, max_request_mb=1)
    big = "x" * (2 * 1024 * 1024)
    resp = client.post("/api/applications", content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == "request.too_large"
    # chunked (no Content-Length) is counted as it arrives
    resp = client.post("/api/applications", content=iter([b"x" * 600_000, b"x" * 600_000]), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    small = client.post("/api/applications", json={"dataset_id": "d", "purpose": "p"})
    assert small.status_code == 401  # under the limit it reaches the route (which wants a signed-in caller)


def test_sign_in_and_public_requests_are_rate_limited(engine: sa.Engine, settings: Settings) -> None:
    client = client_with(settings, rate_limit_signin_per_minute=3, rate_limit_public_per_minute=5)
    codes = [client.post("/api/auth/token", data={"username": "nobody", "password": "wrong"}).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    limited = client.post("/api/auth/token", data={"username": "nobody", "password": "wrong"})
    assert limited.json()["error"] == "request.rate_limited" and int(limited.headers["retry-after"]) >= 1
    public = [client.get("/api/datasets").status_code for _ in range(6)]
    assert public == [200] * 5 + [429]
    assert client.get("/healthz").status_code == 200  # health checks are not API calls
    # a caller presenting credentials is not counted as the anonymous public (a bad one is refused, not limited)
    assert client.get("/api/datasets", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_server_errors_carry_the_security_headers(engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hardening layer is outermost (`app.LandcloudApp.edge`): FastAPI's own 500 passes through it, and a failure
    in the tile layers outside FastAPI's error handling is answered with the same JSON 500, both with the headers."""
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/api/boom", boom)
    client = TestClient(app, raise_server_exceptions=False)
    resp = client.get("/api/boom")
    assert resp.status_code == 500 and resp.json()["error"] == "server.error"
    assert resp.headers["x-frame-options"] == "DENY" and resp.headers["x-content-type-options"] == "nosniff"

    async def broken(scope: object, params: object) -> None:
        raise RuntimeError("a bug in the lane")

    monkeypatch.setattr(tiles_router, "remembered_tile", broken)
    resp = client.get("/ogc/collections/any/tiles/WebMercatorQuad/1/0/0")
    assert resp.status_code == 500 and resp.json()["error"] == "server.error" and resp.json()["message_zh"]
    assert resp.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in resp.headers["content-security-policy"]


def test_a_nul_character_is_refused_with_a_clear_error_and_nothing_written(
    engine: sa.Engine, settings: Settings, cheap_passwords: None, backend: str
) -> None:
    """U+0000 in a URL is refused at the edge (both stores); in a body, PostgreSQL cannot hold it (psycopg refuses it
    before the statement is sent): a 400 in our words, never a 500, and the store as it was."""
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    users.create_user(engine, settings, "nul", "230102", ["viewer", "submitter"], PASSWORD)
    client = client_with(settings)
    auth = {"Authorization": f"Bearer {sign_in(client, 'nul')}"}
    for path in ("/api/datasets/a%00b", "/ogc/collections/a%00b/items", "/api/search?q=%E8%80%95%00"):
        resp = client.get(path, headers=auth)
        assert resp.status_code == 400 and resp.json()["error"] == "request.nul_character", path
        assert resp.json()["message_zh"] and resp.headers["x-frame-options"] == "DENY"
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM applications")).scalar_one()
    resp = client.post("/api/applications", json={"dataset_id": "a\u0000b", "purpose": "p"}, headers=auth)
    if backend == "postgis":
        assert resp.status_code == 400 and resp.json()["error"] == "request.nul_character"
    else:  # SQLite holds such a text: no dataset has that id
        assert resp.status_code == 404
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM applications")).scalar_one() == before
