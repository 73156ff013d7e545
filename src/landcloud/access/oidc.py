"""Signing in through the province's identity system (OpenID Connect, authorization-code flow).

Enabled when `oidc_issuer` and `oidc_client_id` are set. The login redirects to the provider
with state, nonce and PKCE (S256); the three travel to the callback in a short-lived cookie
encrypted with a key derived from the platform secret, so the servers keep no state. The ID
token is validated with PyJWT against the provider's JWKS (signature, iss, aud, exp, nonce).

Users are matched by `users.oidc_subject`; on first sign-in an account is created as a viewer
of the unit named in the `oidc_unit_claim` claim, if that unit exists. Roles never come from
the identity system, and accounts holding roles that need our second factor (administrators)
cannot sign in this way: they use password and TOTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import Engine

from landcloud import clock
from landcloud.access import users as users_mod
from landcloud.access.principal import system_principal
from landcloud.access.roles import VIEWER, needs_totp
from landcloud.access.secrets import derived_key
from landcloud.access.units import get_unit
from landcloud.config import Settings
from landcloud.messages import Forbidden, LandcloudError, NotFound

STATE_COOKIE = "landcloud_oidc"
STATE_COOKIE_PATH = "/api/auth/oidc"
STATE_TTL_SECONDS = 600
SCOPE = "openid profile"
HTTP_TIMEOUT = 10.0
DISCOVERY_TTL = timedelta(hours=1)
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 60


class OIDCUnauthorized(LandcloudError):
    status = 401


class ProviderUnavailable(LandcloudError):
    status = 502


def enabled(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id)


def require_enabled(settings: Settings) -> None:
    if not enabled(settings):
        raise NotFound("auth.oidc_disabled", "未启用统一身份认证登录", "signing in through the identity system is not enabled")


def _failed(reason_zh: str, reason_en: str) -> OIDCUnauthorized:
    return OIDCUnauthorized("auth.oidc_failed", f"统一身份认证登录失败：{reason_zh}", f"signing in through the identity system failed: {reason_en}")


# ---------------------------------------------------------------- the provider


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    algorithms: tuple[str, ...]
    token_auth_methods: tuple[str, ...]


_lock = threading.Lock()
_providers: dict[str, tuple[float, Provider]] = {}
_jwk_clients: dict[str, jwt.PyJWKClient] = {}


def _get_json(url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = httpx.get(url, timeout=HTTP_TIMEOUT, **kwargs)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ProviderUnavailable("auth.oidc_unavailable", "无法连接统一身份认证系统", "the identity system cannot be reached",
                                  url=url) from exc
    if not isinstance(data, dict):
        raise ProviderUnavailable("auth.oidc_unavailable", "统一身份认证系统的应答无效", "the identity system answered nonsense", url=url)
    return data


def provider(settings: Settings) -> Provider:
    """The provider's metadata from its discovery document (cached for an hour)."""
    require_enabled(settings)
    issuer = str(settings.oidc_issuer)
    now = time.monotonic()
    with _lock:
        hit = _providers.get(issuer)
    if hit and now - hit[0] < DISCOVERY_TTL.total_seconds():
        return hit[1]
    doc = _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if doc.get("issuer") != issuer:
        raise ProviderUnavailable("auth.oidc_misconfigured", "统一身份认证系统声明的签发者与配置不符",
                                  "the identity system's issuer does not match the configured one",
                                  configured=issuer, announced=str(doc.get("issuer"))[:200])
    try:
        algs = tuple(a for a in doc.get("id_token_signing_alg_values_supported", ["RS256"]) if a in ASYMMETRIC_ALGS)
        p = Provider(
            issuer=issuer,
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
            userinfo_endpoint=doc.get("userinfo_endpoint"),
            algorithms=algs or ("RS256",),
            token_auth_methods=tuple(doc.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])),
        )
    except KeyError as exc:
        raise ProviderUnavailable("auth.oidc_misconfigured", f"统一身份认证系统的发现文档缺少 {exc}",
                                  f"the identity system's discovery document lacks {exc}") from exc
    with _lock:
        _providers[issuer] = (now, p)
    return p


def _jwk_client(uri: str) -> jwt.PyJWKClient:
    with _lock:
        client = _jwk_clients.get(uri)
        if client is None:
            client = _jwk_clients[uri] = jwt.PyJWKClient(uri, cache_keys=True, lifespan=300, timeout=int(HTTP_TIMEOUT))
    return client


# ---------------------------------------------------------------- login: state, nonce, PKCE


def _state_fernet(settings: Settings) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derived_key(settings, "oidc-state")))


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def login_redirect(settings: Settings, redirect_uri: str) -> tuple[str, str]:
    """(the provider's authorization URL, the encrypted state cookie value)."""
    p = provider(settings)
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    params = {
        "response_type": "code",
        "client_id": settings.oidc_client_id,
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "state": state,
        "nonce": nonce,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    sep = "&" if "?" in p.authorization_endpoint else "?"
    payload = json.dumps({"state": state, "nonce": nonce, "verifier": verifier, "redirect_uri": redirect_uri}).encode()
    cookie = _state_fernet(settings).encrypt_at_time(payload, int(clock.now().timestamp())).decode()
    return p.authorization_endpoint + sep + urlencode(params), cookie


def _open_state(settings: Settings, cookie: str | None, state: str | None) -> dict[str, str]:
    bad = LandcloudError("auth.oidc_state", "登录请求已失效或不匹配（超过 10 分钟或在其他窗口发起）；请重新登录",
                         "the sign-in request expired or does not match (older than 10 minutes or started elsewhere); sign in again")
    if not cookie or not state:
        raise bad
    try:
        data = json.loads(_state_fernet(settings).decrypt_at_time(cookie.encode(), STATE_TTL_SECONDS, int(clock.now().timestamp())))
    except (InvalidToken, ValueError) as exc:
        raise bad from exc
    if not isinstance(data, dict) or not hmac.compare_digest(str(data.get("state", "")).encode(), state.encode()):
        raise bad
    return data


# ---------------------------------------------------------------- callback: code exchange and ID token


def _exchange(settings: Settings, p: Provider, code: str, saved: dict[str, str]) -> dict[str, Any]:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": saved["redirect_uri"],
        "code_verifier": saved["verifier"],
        "client_id": str(settings.oidc_client_id),
    }
    auth: tuple[str, str] | None = None
    if settings.oidc_client_secret:
        if "client_secret_basic" in p.token_auth_methods or "client_secret_post" not in p.token_auth_methods:
            auth = (str(settings.oidc_client_id), settings.oidc_client_secret)
        else:
            data["client_secret"] = settings.oidc_client_secret
    try:
        response = httpx.post(p.token_endpoint, data=data, auth=auth, timeout=HTTP_TIMEOUT,
                              headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise ProviderUnavailable("auth.oidc_unavailable", "无法连接统一身份认证系统", "the identity system cannot be reached") from exc
    if response.status_code != 200:
        raise _failed(f"授权码兑换被拒绝（HTTP {response.status_code}）", f"the code exchange was refused (HTTP {response.status_code})")
    try:
        body = response.json()
    except ValueError as exc:
        raise _failed("令牌应答无效", "the token answer is not JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
        raise _failed("令牌应答中没有 ID 令牌", "the token answer holds no ID token")
    return body


def validate_id_token(settings: Settings, p: Provider, id_token: str, nonce: str) -> dict[str, Any]:
    """The claims of an ID token signed by the provider for us, unexpired, with our nonce."""
    try:
        header = jwt.get_unverified_header(id_token)
        alg = header.get("alg")
        if alg not in p.algorithms:
            raise _failed(f"不接受的签名算法 {alg}", f"signature algorithm {alg} is not accepted")
        key = _jwk_client(p.jwks_uri).get_signing_key_from_jwt(id_token)
        claims = jwt.decode(
            id_token,
            key.key,
            algorithms=[alg],
            audience=str(settings.oidc_client_id),
            issuer=p.issuer,
            options={"require": ["iss", "aud", "exp", "iat", "sub"], "verify_exp": False, "verify_iat": False,
                     "verify_nbf": False},
        )
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
        raise _failed("ID 令牌无效（签名、签发者或受众不符）", "the ID token is invalid (signature, issuer or audience)") from exc
    now = clock.now().timestamp()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or now > exp + LEEWAY_SECONDS:
        raise _failed("ID 令牌已过期", "the ID token has expired")
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != settings.oidc_client_id:
        raise _failed("ID 令牌的授权方不符", "the ID token's authorised party does not match")
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise _failed("ID 令牌的 nonce 不符（可能是重放）", "the ID token's nonce does not match (a replay?)")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise _failed("ID 令牌没有主体标识", "the ID token has no subject")
    return claims


def _userinfo(p: Provider, access_token: str | None, sub: str) -> dict[str, Any]:
    if not p.userinfo_endpoint or not access_token:
        return {}
    info = _get_json(p.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"})
    return info if info.get("sub") == sub else {}


# ---------------------------------------------------------------- the account


def _new_username(engine: Engine, claims: dict[str, Any]) -> str:
    preferred = str(claims.get("preferred_username") or "")
    if users_mod.USERNAME_RE.fullmatch(preferred) and users_mod.find_by_username(engine, preferred) is None:
        return preferred
    return "oidc-" + hashlib.sha256(str(claims["sub"]).encode()).hexdigest()[:16]


def account_for(engine: Engine, settings: Settings, claims: dict[str, Any]) -> dict[str, Any]:
    """The account of the subject (created as a viewer of the claimed unit on first sign-in); full row."""
    sub = str(claims["sub"])
    row = users_mod.find_by_oidc_subject(engine, sub)
    if row is None:
        unit = claims.get(settings.oidc_unit_claim)
        unit = unit.strip() if isinstance(unit, str) else ""
        try:
            if not unit or len(unit) > 32:
                raise NotFound("unit.not_found", "", "")
            get_unit(engine, unit)
        except NotFound as exc:
            raise Forbidden(
                "auth.oidc_unknown_unit",
                f"统一身份认证系统给出的单位（{unit or '无'}）在本平台不存在；请联系系统管理员",
                f"the unit given by the identity system ({unit or 'none'}) does not exist on this platform; ask the "
                "system administrator",
                unit=unit[:32] or None,
            ) from exc
        name = str(claims.get("name") or "")[:200]
        try:
            users_mod.create_user(engine, settings, _new_username(engine, claims), unit, [VIEWER], None, name,
                                  oidc_subject=sub, actor=system_principal("oidc"))
        except LandcloudError:
            if users_mod.find_by_oidc_subject(engine, sub) is None:  # not a concurrent first sign-in of the same subject
                raise
        row = users_mod.find_by_oidc_subject(engine, sub)
        assert row is not None
    if not row["active"]:
        raise Forbidden("auth.inactive", "账户已停用，请联系本单位管理员", "the account is disabled; ask your unit's administrator")
    if needs_totp(row["roles"]):
        raise Forbidden(
            "auth.oidc_admin",
            "管理员账户不能通过统一身份认证登录；请使用用户名、密码和动态口令登录",
            "administrator accounts cannot sign in through the identity system; sign in with username, password and TOTP",
        )
    return row


def complete(
    engine: Engine,
    settings: Settings,
    *,
    code: str | None,
    state: str | None,
    state_cookie: str | None,
    error: str | None = None,
) -> dict[str, Any]:
    """Finish the flow at the callback: the signed-in account (full row)."""
    require_enabled(settings)
    if error:
        clean = re.sub(r"[^A-Za-z0-9_.-]", "", error)[:64]
        raise _failed(f"统一身份认证系统拒绝了登录（{clean}）", f"the identity system refused the sign-in ({clean})")
    saved = _open_state(settings, state_cookie, state)
    if not code:
        raise _failed("回调中没有授权码", "the callback carries no authorization code")
    p = provider(settings)
    body = _exchange(settings, p, code, saved)
    claims = validate_id_token(settings, p, body["id_token"], saved["nonce"])
    if settings.oidc_unit_claim not in claims:
        info = _userinfo(p, body.get("access_token"), claims["sub"])
        if settings.oidc_unit_claim in info:
            claims = {**claims, settings.oidc_unit_claim: info[settings.oidc_unit_claim]}
    return account_for(engine, settings, claims)
