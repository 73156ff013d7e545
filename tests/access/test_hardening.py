"""Transport hardening over real HTTP handling: headers, body limits, rate limits."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from landcloud.app import create_app
from landcloud.config import Settings


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
