"""The auth routes over HTTP on both stores: bearer JWTs, sessions with CSRF, personal API tokens."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import jwt
import pyotp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, Type
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from landcloud import clock, deps
from landcloud.access import auth, passwords, users
from landcloud.access.auth_router import router
from landcloud.access.principal import Principal
from landcloud.access.secrets import derived_key
from landcloud.access.tables import api_tokens
from landcloud.access.units import load_divisions
from landcloud.config import Settings
from landcloud.messages import LandcloudError

from conftest import REFERENCE

PASSWORD = "Kraal-Birch-77-Ledger"


@pytest.fixture
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID))
    passwords._dummy_hash.cache_clear()
    yield
    passwords._dummy_hash.cache_clear()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def moved() -> Iterator[Clock]:
    c = Clock()
    clock.set_clock(lambda: c.now)
    try:
        yield c
    finally:
        clock.set_clock(None)


def build_app(engine: sa.Engine, settings: Settings) -> FastAPI:
    """The auth router on its own, as app.py will mount it."""
    app = FastAPI()
    app.state.engine = engine
    app.state.settings = settings

    @app.exception_handler(LandcloudError)
    async def landcloud_error(_request: Request, exc: LandcloudError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.to_dict())

    def principal(request: Request) -> Principal:
        return auth.authenticate(request.app.state.engine, request.app.state.settings, request)

    app.dependency_overrides[deps.get_principal] = principal
    app.include_router(router)

    @app.post("/probe")
    def probe(p: deps.PrincipalDep) -> dict:  # a state-changing route of some other router
        return {"actor": p.actor, "via": p.via}

    return app


@pytest.fixture
def store(engine: sa.Engine, fast_hashes: None) -> sa.Engine:
    load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    return engine


@pytest.fixture
def client(store: sa.Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(store, settings), base_url="https://testserver") as c:
        yield c


def new_user(engine: sa.Engine, settings: Settings, roles: list[str] | None = None, unit: str = "230100") -> dict:
    return users.create_user(engine, settings, f"u{uuid.uuid4().hex[:8]}", unit, roles or ["viewer"], PASSWORD)


def bearer(client: TestClient, user: dict, otp: str | None = None) -> dict[str, str]:
    form = {"username": user["username"], "password": PASSWORD} | ({"otp": otp} if otp else {})
    r = client.post("/api/auth/token", data=form)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def assert_error(r, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and body["message_zh"] and body["message_en"]


# ---------------------------------------------------------------- bearer JWTs


def test_token_and_me(client: TestClient, store: sa.Engine, settings: Settings) -> None:
    user = new_user(store, settings, ["submitter", "viewer"])
    r = client.post("/api/auth/token", data={"username": user["username"], "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == settings.token_ttl_minutes * 60
    assert r.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], derived_key(settings, "jwt"), algorithms=["HS256"], issuer="landcloud")
    assert claims["sub"] == user["id"] and claims["unit"] == "230100" and claims["roles"] == ["submitter", "viewer"]
    assert claims["exp"] - claims["iat"] == settings.token_ttl_minutes * 60 and len(claims["jti"]) == 32
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {"user_id": user["id"], "username": user["username"], "unit": "230100",
                         "unit_kind": "administrative", "roles": ["submitter", "viewer"], "scopes": None, "via": "bearer"}


def test_bad_sign_in_answers(client: TestClient, store: sa.Engine, settings: Settings) -> None:
    user = new_user(store, settings)
    assert_error(client.post("/api/auth/token", data={"username": user["username"], "password": "nope"}), 401,
                 "auth.invalid_credentials")
    assert_error(client.post("/api/auth/token", data={"username": "nobody-x", "password": "nope"}), 401,
                 "auth.invalid_credentials")
    assert client.post("/api/auth/token", data={"username": user["username"]}).status_code == 422
    assert_error(client.get("/api/auth/me"), 401, "auth.required")


def test_jwt_expiry_follows_the_clock(client: TestClient, store: sa.Engine, settings: Settings, moved: Clock) -> None:
    headers = bearer(client, new_user(store, settings))
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    moved.advance(minutes=settings.token_ttl_minutes - 1)
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    moved.advance(minutes=1, seconds=1)
    assert_error(client.get("/api/auth/me", headers=headers), 401, "auth.bad_token")


def test_forged_and_malformed_credentials(client: TestClient, store: sa.Engine, settings: Settings) -> None:
    user = new_user(store, settings, ["data_admin"])
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "landcloud", "sub": user["id"], "unit": "230100", "roles": ["sysadmin"], "iat": now, "exp": now + 600,
              "jti": "x" * 32}
    forged = jwt.encode(claims, b"k" * 32, algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    right_key_wrong_issuer = jwt.encode(claims | {"iss": "elsewhere"}, derived_key(settings, "jwt"), algorithm="HS256")
    for credential in [f"Bearer {forged}", f"Bearer {unsigned}", f"Bearer {right_key_wrong_issuer}", "Bearer not-a-jwt",
                       "Bearer lct_unknown", "Basic dXNlcjpwYXNz", "Bearer"]:
        assert_error(client.get("/api/auth/me", headers={"Authorization": credential}), 401, "auth.bad_token")
    # a bad credential is refused even where anonymous callers are welcome: never silently anonymous
    with pytest.raises(auth.Unauthorized):
        auth.decode_access_token(settings, forged)
    claims_ok = auth.decode_access_token(settings, auth.issue_access_token(settings, user)[0])
    assert claims_ok["sub"] == user["id"]


def test_deactivated_users_credentials_are_refused(client: TestClient, store: sa.Engine, settings: Settings) -> None:
    user = new_user(store, settings)
    headers = bearer(client, user)
    created = client.post("/api/tokens", headers=headers, json={"name": "qgis", "scopes": ["read"]})
    api = {"Authorization": f"Bearer {created.json()['token']}"}
    r = client.post("/api/auth/session", data={"username": user["username"], "password": PASSWORD})
    assert r.status_code == 200
    for h in (headers, api, {}):
        assert client.get("/api/auth/me", headers=h).status_code == 200
    users.set_active(store, user["username"], False)
    for h in (headers, api, {}):
        assert_error(client.get("/api/auth/me", headers=h), 401, "auth.bad_token")
    users.set_active(store, user["username"], True)
    assert client.get("/api/auth/me", headers=headers).status_code == 200  # bearer and API tokens live on
    assert client.get("/api/auth/me", headers=api).status_code == 200
    assert_error(client.get("/api/auth/me"), 401, "auth.bad_token")  # the session was ended for good


def test_password_change_ends_earlier_bearer_tokens(client: TestClient, store: sa.Engine, settings: Settings,
                                                    moved: Clock) -> None:
    user = new_user(store, settings)
    headers = bearer(client, user)
    moved.advance(seconds=2)
    users.set_password(store, settings, user["username"], "Another-Good-Pass-42")
    assert_error(client.get("/api/auth/me", headers=headers), 401, "auth.bad_token")


def test_admin_bearer_needs_totp(client: TestClient, store: sa.Engine, settings: Settings) -> None:
    admin = new_user(store, settings, ["secadmin"])
    assert_error(client.post("/api/auth/token", data={"username": admin["username"], "password": PASSWORD}), 403,
                 "auth.totp_not_enrolled")
    secret, _ = users.enrol_totp(store, settings, admin["username"])
    assert_error(client.post("/api/auth/token", data={"username": admin["username"], "password": PASSWORD}), 401,
                 "auth.otp_required")
    assert_error(client.post("/api/auth/token", data={"username": admin["username"], "password": PASSWORD, "otp": "000000"
                                                      if pyotp.TOTP(secret).now() != "000000" else "111111"}),
                 401, "auth.otp_invalid")
    headers = bearer(client, admin, pyotp.TOTP(secret).now())
    assert client.get("/api/auth/me", headers=headers).json()["roles"] == ["secadmin"]


# ---------------------------------------------------------------- sessions and CSRF


def test_session_cookies_and_csrf(client: TestClient, store: sa.Engine, settings: Settings) -> None:
    user = new_user(store, settings)
    r = client.post("/api/auth/session", data={"username": user["username"], "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    csrf = body["csrf_token"]
    assert body["user"]["username"] == user["username"] and "password_hash" not in body["user"]
    cookies = {c.split("=", 1)[0]: c.lower() for c in r.headers.get_list("set-cookie")}
    assert set(cookies) == {"landcloud_session", "landcloud_csrf"}
    for name in cookies:
        assert "samesite=strict" in cookies[name] and "path=/" in cookies[name]
        assert ("; secure" in cookies[name]) == settings.cookie_secure
    assert "httponly" in cookies["landcloud_session"] and "httponly" not in cookies["landcloud_csrf"]
    assert client.cookies.get("landcloud_csrf") == csrf
    session_cookie = client.cookies.get("landcloud_session")

    me = client.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["via"] == "session"
    assert_error(client.post("/probe"), 403, "auth.csrf")
    assert_error(client.post("/probe", headers={"X-CSRF-Token": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}), 403, "auth.csrf")
    assert_error(client.post("/api/tokens", json={"name": "x", "scopes": ["read"]}), 403, "auth.csrf")
    ok = client.post("/probe", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json() == {"actor": user["username"], "via": "session"}
    # a bearer header needs no CSRF token (a browser never adds it by itself)
    assert client.post("/probe", headers=bearer(client, user)).json()["via"] == "bearer"

    assert_error(client.post("/api/auth/logout"), 403, "auth.csrf")
    out = client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert not client.cookies.get("landcloud_session")
    assert_error(client.get("/api/auth/me"), 401, "auth.required")
    # the old cookie is dead for good
    old = {"Cookie": f"landcloud_session={session_cookie}"}
    assert_error(client.get("/api/auth/me", headers=old), 401, "auth.bad_token")
    assert client.post("/api/auth/logout", headers=old).status_code == 204  # and logging out again just clears it


def test_secure_cookies_when_configured(store: sa.Engine, settings: Settings) -> None:
    secure = settings.model_copy(update={"cookie_secure": True})
    user = new_user(store, secure)
    with TestClient(build_app(store, secure), base_url="https://testserver") as c:
        r = c.post("/api/auth/session", data={"username": user["username"], "password": PASSWORD})
        assert r.status_code == 200
        set_cookies = r.headers.get_list("set-cookie")
        assert len(set_cookies) == 2 and all("; secure" in h.lower() for h in set_cookies)
        assert c.get("/api/auth/me").json()["via"] == "session"


def test_session_expires(client: TestClient, store: sa.Engine, settings: Settings, moved: Clock) -> None:
    user = new_user(store, settings)
    assert client.post("/api/auth/session", data={"username": user["username"], "password": PASSWORD}).status_code == 200
    moved.advance(hours=settings.session_ttl_hours, seconds=-5)
    assert client.get("/api/auth/me").status_code == 200
    moved.advance(seconds=10)
    assert_error(client.get("/api/auth/me"), 401, "auth.bad_token")


def test_new_session_replaces_the_old_one(client: TestClient, store: sa.Engine, settings: Settings) -> None:
    user = new_user(store, settings)
    client.post("/api/auth/session", data={"username": user["username"], "password": PASSWORD})
    first = client.cookies.get("landcloud_session")
    client.post("/api/auth/session", data={"username": user["username"], "password": PASSWORD})
    assert client.cookies.get("landcloud_session") != first
    assert client.get("/api/auth/me").status_code == 200
    assert_error(client.get("/api/auth/me", headers={"Cookie": f"landcloud_session={first}"}), 401, "auth.bad_token")


# ---------------------------------------------------------------- personal API tokens


def test_api_token_lifecycle(client: TestClient, store: sa.Engine, settings: Settings, moved: Clock) -> None:
    user = new_user(store, settings, ["submitter", "viewer"])
    headers = bearer(client, user)
    r = client.post("/api/tokens", headers=headers, json={"name": "nightly upload", "scopes": ["submit", "read"],
                                                          "expires_days": 30})
    assert r.status_code == 201
    created = r.json()
    plaintext = created["token"]
    assert plaintext.startswith("lct_") and len(plaintext) > 40
    assert created["scopes"] == ["read", "submit"] and created["name"] == "nightly upload" and created["active"] is True
    assert datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(created["created_at"]) == timedelta(days=30)
    with store.connect() as conn:
        row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == created["id"])).one()
    assert row.token_hash != plaintext and plaintext not in row.token_hash and len(row.token_hash) == 64
    assert row.last_used_at is None

    api = {"Authorization": f"Bearer {plaintext}"}
    me = client.get("/api/auth/me", headers=api).json()
    assert me["via"] == "api_token" and me["scopes"] == ["read", "submit"] and me["username"] == user["username"]
    with store.connect() as conn:
        assert conn.execute(sa.select(api_tokens.c.last_used_at).where(api_tokens.c.id == created["id"])).scalar() is not None

    listed = client.get("/api/tokens", headers=headers)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()] == [created["id"]]
    assert plaintext not in listed.text and row.token_hash not in listed.text
    assert_error(client.post("/api/tokens", headers=api, json={"name": "child", "scopes": ["read"]}), 403, "token.needs_signin")

    moved.advance(days=30, seconds=1)
    assert_error(client.get("/api/auth/me", headers=api), 401, "auth.bad_token")
    assert client.get("/api/tokens", headers=bearer(client, user)).json()[0]["active"] is False


def test_api_token_revocation_and_ownership(client: TestClient, store: sa.Engine, settings: Settings) -> None:
    alice, bob = new_user(store, settings), new_user(store, settings)
    ha, hb = bearer(client, alice), bearer(client, bob)
    token = client.post("/api/tokens", headers=ha, json={"name": "a", "scopes": ["read"]}).json()
    api = {"Authorization": f"Bearer {token['token']}"}
    assert client.get("/api/auth/me", headers=api).status_code == 200
    assert_error(client.delete(f"/api/tokens/{token['id']}", headers=hb), 404, "token.not_found")
    assert client.get("/api/tokens", headers=hb).json() == []
    assert client.get("/api/auth/me", headers=api).status_code == 200
    assert_error(client.delete("/api/tokens/no-such-id", headers=ha), 404, "token.not_found")
    assert client.delete(f"/api/tokens/{token['id']}", headers=ha).status_code == 204
    assert_error(client.get("/api/auth/me", headers=api), 401, "auth.bad_token")
    listed = client.get("/api/tokens", headers=ha).json()
    assert listed[0]["revoked_at"] is not None and listed[0]["active"] is False
    assert_error(client.delete(f"/api/tokens/{token['id']}", headers=api), 401, "auth.bad_token")


def test_api_token_scopes_never_widen_roles(client: TestClient, store: sa.Engine, settings: Settings) -> None:
    viewer = new_user(store, settings, ["viewer"])
    hv = bearer(client, viewer)
    r = client.post("/api/tokens", headers=hv, json={"name": "x", "scopes": ["read", "submit"]})
    assert_error(r, 403, "token.scope_exceeds_roles")
    assert r.json()["details"] == {"scopes": ["submit"], "allowed": ["read"]}
    assert_error(client.post("/api/tokens", headers=hv, json={"name": "x", "scopes": ["manage"]}), 403, "token.scope_exceeds_roles")
    assert_error(client.post("/api/tokens", headers=hv, json={"name": "x", "scopes": ["root"]}), 400, "token.bad_scope")
    assert client.post("/api/tokens", headers=hv, json={"name": "x", "scopes": []}).status_code == 422
    assert_error(client.post("/api/tokens", headers=hv, json={"name": "x", "scopes": ["read"],
                                                              "expires_days": settings.api_token_max_days + 1}), 400,
                 "token.bad_expiry")
    assert_error(client.post("/api/tokens", headers=hv, json={"name": "x", "scopes": ["read"], "expires_days": 0}), 400,
                 "token.bad_expiry")
    assert_error(client.post("/api/tokens", json={"name": "x", "scopes": ["read"]}), 401, "auth.required")
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(api_tokens)
                            .where(api_tokens.c.user_id == viewer["id"])).scalar_one() == 0

    submitter = new_user(store, settings, ["submitter", "viewer"])
    token = client.post("/api/tokens", headers=bearer(client, submitter), json={"name": "s", "scopes": ["read", "submit"]}).json()
    users.set_roles(store, submitter["username"], ["viewer"])  # the roles shrink: so does the token
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token['token']}"}).json()
    assert me["roles"] == ["viewer"] and me["scopes"] == ["read"]

    sysadmin = new_user(store, settings, ["sysadmin"])
    secret, _ = users.enrol_totp(store, settings, sysadmin["username"])
    hs = bearer(client, sysadmin, pyotp.TOTP(secret).now())
    assert_error(client.post("/api/tokens", headers=hs, json={"name": "x", "scopes": ["read"]}), 403, "token.scope_exceeds_roles")
    assert client.post("/api/tokens", headers=hs, json={"name": "x", "scopes": ["manage"]}).status_code == 201


# ---------------------------------------------------------------- no secret ever leaves


def test_no_password_or_secret_in_responses_or_logs(client: TestClient, store: sa.Engine, settings: Settings,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    def keep(r):
        texts.append(r.text + json.dumps(dict(r.headers)))
        return r

    admin = new_user(store, settings, ["data_admin", "viewer"])
    secret, _ = users.enrol_totp(store, settings, admin["username"])
    row = users.get_user_row(store, admin["id"])
    code = pyotp.TOTP(secret).now()
    keep(client.post("/api/auth/token", data={"username": admin["username"], "password": PASSWORD}))
    keep(client.post("/api/auth/token", data={"username": admin["username"], "password": PASSWORD + "x", "otp": code}))
    keep(client.post("/api/auth/token", data={"username": "nobody-z", "password": PASSWORD}))
    token = keep(client.post("/api/auth/token", data={"username": admin["username"], "password": PASSWORD, "otp": code}))
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    created = client.post("/api/tokens", headers=headers, json={"name": "n", "scopes": ["read", "manage"]})
    plaintext = created.json()["token"]
    keep(client.get("/api/tokens", headers=headers))
    keep(client.get("/api/auth/me", headers=headers))
    keep(client.get("/api/auth/me", headers={"Authorization": f"Bearer {plaintext}"}))
    session = keep(client.post("/api/auth/session", data={"username": admin["username"], "password": PASSWORD, "otp": code}))
    keep(client.get("/api/auth/me"))
    keep(client.post("/api/auth/logout", headers={"X-CSRF-Token": session.json()["csrf_token"]}))

    secrets_ = [PASSWORD, secret, row["password_hash"], row["totp_secret"], plaintext]
    for text in texts:
        for s in secrets_:
            assert s not in text
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "signed in" in logged and "sign-in failed" in logged  # the log does record sign-ins …
    for s in [*secrets_, code, token.json()["access_token"], session.json()["csrf_token"]]:
        assert s not in logged  # … but never a secret


def test_authentication_never_reads_the_password_hash_or_totp_secret(
    client: TestClient, store: sa.Engine, settings: Settings
) -> None:
    """Every request authenticates: it reads the account's principal columns, not its secrets."""
    admin = new_user(store, settings, ["data_admin", "viewer"])
    secret, _ = users.enrol_totp(store, settings, admin["username"])
    code = pyotp.TOTP(secret).now()
    token = client.post("/api/auth/token", data={"username": admin["username"], "password": PASSWORD, "otp": code})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    plaintext = client.post("/api/tokens", headers=headers, json={"name": "n", "scopes": ["read"]}).json()["token"]
    session = client.post("/api/auth/session", data={"username": admin["username"], "password": PASSWORD, "otp": code})
    assert session.status_code == 200
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many) -> None:  # noqa: ANN001
        statements.append(statement)

    sa.event.listen(store, "before_cursor_execute", seen)
    try:
        via = {
            "bearer": client.get("/api/auth/me", headers=headers, cookies={}),
            "api_token": client.get("/api/auth/me", headers={"Authorization": f"Bearer {plaintext}"}),
            "session": client.get("/api/auth/me"),
        }
    finally:
        sa.event.remove(store, "before_cursor_execute", seen)
    for name, r in via.items():
        assert r.status_code == 200 and r.json()["via"] == name and r.json()["unit_kind"] == "administrative", r.text
    reads = [s for s in statements if "users" in s]
    assert len(reads) >= 3  # each credential read its account
    assert not [s for s in reads if "password_hash" in s or "totp_secret" in s]


def test_mounted_in_the_platform_app(store: sa.Engine, settings: Settings) -> None:
    from landcloud.app import create_app

    user = new_user(store, settings)
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        r = c.post("/api/auth/token", data={"username": user["username"], "password": PASSWORD})
        assert r.status_code == 200, r.text
        me = c.get("/api/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
        assert me.status_code == 200 and me.json()["username"] == user["username"]
        assert_error(c.get("/api/auth/me", headers={"Authorization": "Bearer forged"}), 401, "auth.bad_token")
