"""HTTP routes of sign-in, sessions, personal API tokens and the identity system (OIDC)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from landcloud.access import auth, oidc, tokens
from landcloud.access.principal import Principal
from landcloud.config import Settings
from landcloud.deps import EngineDep, PrincipalDep, SettingsDep

router = APIRouter(tags=["auth"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _signed_in(principal: Principal) -> Principal:
    if principal.kind != "user" or not principal.user_id:
        raise auth.auth_required()
    return principal


@router.post("/api/auth/token", summary="Sign in for a bearer token (OAuth2 password form) / 登录获取访问令牌")
def token(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    otp: Annotated[str | None, Form()] = None,
    grant_type: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    user = auth.sign_in(engine, settings, username, password, otp, auth.client_ip(request), method="bearer")
    access_token, expires_in = auth.issue_access_token(settings, user)
    return JSONResponse({"access_token": access_token, "token_type": "bearer", "expires_in": expires_in}, headers=NO_STORE)


@router.post("/api/auth/session", summary="Sign in for a browser session / 浏览器登录")
def session(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    otp: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    user = auth.sign_in(engine, settings, username, password, otp, auth.client_ip(request), method="session")
    cookie, csrf = _start_session(request, engine, settings, user)
    response = JSONResponse({"csrf_token": csrf, "user": user}, headers=NO_STORE)
    auth.set_session_cookies(response, settings, cookie, csrf)
    return response


def _start_session(request: Request, engine: Engine, settings: Settings, user: dict[str, Any]) -> tuple[str, str]:
    old = request.cookies.get(auth.SESSION_COOKIE)
    if old:
        auth.revoke_session(engine, old)  # a new sign-in replaces the browser's earlier session
    return auth.create_session(engine, settings, user)


@router.post("/api/auth/logout", status_code=204, summary="End the browser session / 退出登录")
def logout(request: Request, engine: EngineDep, settings: SettingsDep) -> Response:
    response = Response(status_code=204)
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    if cookie:
        try:
            principal = auth.authenticate(engine, settings, request)  # the CSRF header is required here too
        except auth.Unauthorized:
            principal = None  # an expired or revoked session: only the cookies are left to clear
        if principal is not None and principal.via == "session":
            auth.revoke_session(engine, cookie)
            auth.record_event(engine, principal, "auth.signout", {})
    auth.clear_session_cookies(response, settings)
    return response


@router.get("/api/auth/me", summary="Who am I / 当前用户")
def me(principal: PrincipalDep) -> dict[str, Any]:
    p = _signed_in(principal)
    return {
        "user_id": p.user_id,
        "username": p.username,
        "unit": p.unit,
        "unit_kind": p.unit_kind,
        "roles": sorted(p.roles),
        "scopes": None if p.scopes is None else sorted(p.scopes),
        "via": p.via,
    }


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=tokens.NAME_MAX)
    scopes: list[str] = Field(min_length=1)
    expires_days: int | None = None


@router.post("/api/tokens", status_code=201, summary="Create a personal API token (shown once) / 创建 API 令牌")
def create_token(body: TokenRequest, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep) -> JSONResponse:
    plaintext, record = tokens.create_token(engine, settings, _signed_in(principal), body.name, body.scopes, body.expires_days)
    return JSONResponse(status_code=201, content={"token": plaintext, **record}, headers=NO_STORE)


@router.get("/api/tokens", summary="My personal API tokens / 我的 API 令牌")
def list_tokens(engine: EngineDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    return tokens.list_tokens(engine, _signed_in(principal))


@router.delete("/api/tokens/{token_id}", status_code=204, summary="Revoke a personal API token / 撤销 API 令牌")
def revoke_token(token_id: str, engine: EngineDep, principal: PrincipalDep) -> Response:
    tokens.revoke_token(engine, _signed_in(principal), token_id)
    return Response(status_code=204)


@router.get("/api/auth/oidc/login", summary="Sign in through the identity system / 统一身份认证登录")
def oidc_login(request: Request, settings: SettingsDep) -> Response:
    oidc.require_enabled(settings)
    url, state_cookie = oidc.login_redirect(settings, str(request.url_for("oidc_callback")))
    response = RedirectResponse(url, status_code=302, headers=NO_STORE)
    # Lax, not Strict: the provider's redirect back to us is a cross-site navigation
    response.set_cookie(oidc.STATE_COOKIE, state_cookie, max_age=oidc.STATE_TTL_SECONDS, path=oidc.STATE_COOKIE_PATH,
                        secure=settings.cookie_secure, httponly=True, samesite="lax")
    return response


@router.get("/api/auth/oidc/callback", name="oidc_callback", summary="Identity-system callback / 统一身份认证回调")
def oidc_callback(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    user = oidc.complete(engine, settings, code=code, state=state, state_cookie=request.cookies.get(oidc.STATE_COOKIE),
                         error=error)
    auth.record_signin(engine, user, auth.client_ip(request), "oidc")
    cookie, csrf = _start_session(request, engine, settings, user)
    response = RedirectResponse("/", status_code=303, headers=NO_STORE)
    auth.set_session_cookies(response, settings, cookie, csrf)
    response.delete_cookie(oidc.STATE_COOKIE, path=oidc.STATE_COOKIE_PATH, secure=settings.cookie_secure, httponly=True,
                           samesite="lax")
    return response
