"""Signing in through an identity system, end to end against a real in-process OpenID provider.

The provider is a small FastAPI app served by uvicorn on a loopback port in a thread: discovery,
JWKS, an authorize endpoint that approves at once, and a token endpoint that checks the client
secret, the redirect URI and PKCE before it returns an RS256 ID token.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import jwt
import pytest
import sqlalchemy as sa
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.testclient import TestClient

from landcloud import deps
from landcloud.access import auth, users
from landcloud.access.auth_router import router
from landcloud.access.principal import Principal
from landcloud.access.tables import users as users_table
from landcloud.access.units import load_divisions
from landcloud.config import Settings
from landcloud.messages import LandcloudError

from conftest import REFERENCE

CLIENT_ID = "landcloud-test"
CLIENT_SECRET = "idp-client-secret-for-tests"


class Provider:
    """The identity provider's state; tests set `claims` / `tamper` for the next sign-in."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k1"
        self.codes: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, Any] = {}
        self.tamper: dict[str, Any] = {}
        self.token_requests: list[dict[str, Any]] = []
        self.base = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": self.base,
                "authorization_endpoint": f"{self.base}/authorize",
                "token_endpoint": f"{self.base}/token",
                "jwks_uri": f"{self.base}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "code_challenge_methods_supported": ["S256"],
            }

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return {"keys": [jwk | {"kid": self.kid, "use": "sig", "alg": "RS256"}]}

        @app.get("/authorize")
        def authorize(response_type: str, client_id: str, redirect_uri: str, scope: str, state: str, nonce: str,
                      code_challenge: str, code_challenge_method: str) -> RedirectResponse:
            assert response_type == "code" and client_id == CLIENT_ID and "openid" in scope.split()
            assert code_challenge_method == "S256"
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"nonce": nonce, "challenge": code_challenge, "redirect_uri": redirect_uri,
                                "claims": dict(self.claims)}
            return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}", status_code=302)

        @app.post("/token")
        def token(request: Request, grant_type: str = Form(), code: str = Form(), redirect_uri: str = Form(),
                  code_verifier: str = Form(), client_id: str = Form()) -> JSONResponse:
            auth_header = request.headers.get("authorization", "")
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            self.token_requests.append({"auth_ok": auth_header == expected})
            if auth_header != expected:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            grant = self.codes.pop(code, None)  # one use only
            if grant is None or grant_type != "authorization_code" or redirect_uri != grant["redirect_uri"]:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()
            if challenge != grant["challenge"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
            now = int(time.time())
            claims = {"iss": self.base, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                      **grant["claims"]}
            claims.update(self.tamper.get("claims", {}))
            key = self.other_key if self.tamper.get("forge") else self.key
            id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})
            return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "id_token": id_token,
                                 "expires_in": 300})

        return app


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    idp = Provider()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    idp.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(idp.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test identity provider did not start"
        time.sleep(0.02)
    try:
        yield idp
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def oidc_settings(settings: Settings, provider: Provider) -> Settings:
    provider.claims, provider.tamper = {}, {}
    return settings.model_copy(update={"oidc_issuer": provider.base, "oidc_client_id": CLIENT_ID,
                                       "oidc_client_secret": CLIENT_SECRET, "oidc_unit_claim": "org_code"})


def build_app(engine: sa.Engine, settings: Settings) -> FastAPI:
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
    return app


@pytest.fixture
def store(engine: sa.Engine) -> sa.Engine:
    load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    return engine


@pytest.fixture
def client(store: sa.Engine, oidc_settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(store, oidc_settings), base_url="https://testserver") as c:
        yield c


def sign_in(client: TestClient) -> httpx.Response:
    """Browser steps: our login → the provider (approves) → our callback."""
    start = client.get("/api/auth/oidc/login", follow_redirects=False)
    assert start.status_code == 302, start.text
    back = httpx.get(start.headers["location"], follow_redirects=False)
    assert back.status_code == 302 and back.headers["location"].startswith("https://testserver/api/auth/oidc/callback?")
    return client.get(back.headers["location"], follow_redirects=False)


def subject() -> str:
    return f"sub-{uuid.uuid4().hex}"


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["message_zh"] and r.json()["message_en"]


def test_disabled_without_issuer(store: sa.Engine, settings: Settings) -> None:
    with TestClient(build_app(store, settings), base_url="https://testserver") as c:
        assert_error(c.get("/api/auth/oidc/login", follow_redirects=False), 404, "auth.oidc_disabled")
        assert_error(c.get("/api/auth/oidc/callback?code=x&state=y"), 404, "auth.oidc_disabled")


def test_login_redirect_carries_state_nonce_and_pkce(client: TestClient, provider: Provider) -> None:
    r = client.get("/api/auth/oidc/login", follow_redirects=False)
    url = urlparse(r.headers["location"])
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{provider.base}/authorize"
    assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID and q["scope"] == "openid profile"
    assert q["redirect_uri"] == "https://testserver/api/auth/oidc/callback"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert len(q["state"]) >= 32 and len(q["nonce"]) >= 32 and q["state"] != q["nonce"]
    state_cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("landcloud_oidc=")][0].lower()
    assert "httponly" in state_cookie and "samesite=lax" in state_cookie and "path=/api/auth/oidc" in state_cookie
    assert q["state"] not in state_cookie and q["nonce"] not in state_cookie  # encrypted


def test_first_sign_in_creates_a_viewer_then_matches_by_subject(client: TestClient, provider: Provider,
                                                                store: sa.Engine) -> None:
    sub = subject()
    name = f"zhang{uuid.uuid4().hex[:6]}"
    provider.claims = {"sub": sub, "preferred_username": name, "name": "张三", "org_code": "230100",
                       "roles": ["sysadmin"], "landcloud_roles": "data_admin"}
    r = sign_in(client)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"
    assert provider.token_requests[-1]["auth_ok"] is True
    assert client.cookies.get("landcloud_session") and client.cookies.get("landcloud_csrf")
    me = client.get("/api/auth/me").json()
    assert me["username"] == name and me["unit"] == "230100" and me["roles"] == ["viewer"] and me["via"] == "session"
    row = users.get_user_row(store, name)
    assert row["oidc_subject"] == sub and row["password_hash"] is None and row["display_name"] == "张三"

    client.cookies.clear()
    provider.claims = {"sub": sub, "preferred_username": "someone-else", "org_code": "230102"}
    assert sign_in(client).status_code == 303
    me2 = client.get("/api/auth/me").json()
    assert me2["user_id"] == row["id"] and me2["unit"] == "230100"  # the unit is kept here, not taken from the claim
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users_table)
                            .where(users_table.c.oidc_subject == sub)).scalar_one() == 1


def test_unknown_unit_is_refused(client: TestClient, provider: Provider, store: sa.Engine) -> None:
    for claims in ({"sub": subject(), "org_code": "999999"}, {"sub": subject()}):
        provider.claims = claims
        assert_error(sign_in(client), 403, "auth.oidc_unknown_unit")
    assert users.list_users(store) == []
    assert not client.cookies.get("landcloud_session")


@pytest.mark.parametrize(
    "tamper",
    [
        {"forge": True},
        {"claims": {"aud": "someone-else"}},
        {"claims": {"iss": "https://evil.example"}},
        {"claims": {"exp": int(time.time()) - 600}},
        {"claims": {"nonce": "replayed"}},
    ],
    ids=["forged-signature", "wrong-audience", "wrong-issuer", "expired", "wrong-nonce"],
)
def test_bad_id_tokens_are_refused(client: TestClient, provider: Provider, store: sa.Engine, tamper: dict) -> None:
    provider.claims = {"sub": subject(), "org_code": "230100"}
    provider.tamper = tamper
    assert_error(sign_in(client), 401, "auth.oidc_failed")
    assert users.list_users(store) == []
    assert not client.cookies.get("landcloud_session")


def test_state_must_match(client: TestClient, provider: Provider, store: sa.Engine) -> None:
    provider.claims = {"sub": subject(), "org_code": "230100"}
    start = client.get("/api/auth/oidc/login", follow_redirects=False)
    back = httpx.get(start.headers["location"], follow_redirects=False)
    q = {k: v[0] for k, v in parse_qs(urlparse(back.headers["location"]).query).items()}
    assert_error(client.get("/api/auth/oidc/callback", params={"code": q["code"], "state": "other"}), 400, "auth.oidc_state")
    client.cookies.clear()  # a callback without the browser's state cookie (login started elsewhere)
    assert_error(client.get("/api/auth/oidc/callback", params=q), 400, "auth.oidc_state")
    assert_error(client.get("/api/auth/oidc/callback", params={"error": "access_denied"}), 401, "auth.oidc_failed")
    assert users.list_users(store) == []


def test_administrators_do_not_sign_in_through_oidc(client: TestClient, provider: Provider, store: sa.Engine,
                                                    settings: Settings) -> None:
    admin = users.create_user(store, settings, f"adm{uuid.uuid4().hex[:6]}", "230100", ["data_admin"], "Kraal-Birch-77-Ledger")
    sub = subject()
    users.link_oidc(store, admin["username"], sub)
    provider.claims = {"sub": sub, "org_code": "230100"}
    assert_error(sign_in(client), 403, "auth.oidc_admin")
    users.set_roles(store, admin["username"], ["viewer"])
    users.set_active(store, admin["username"], False)
    assert_error(sign_in(client), 403, "auth.inactive")
    users.set_active(store, admin["username"], True)
    assert sign_in(client).status_code == 303
    assert client.get("/api/auth/me").json()["username"] == admin["username"]
