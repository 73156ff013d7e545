"""Authentication: sign-in (password, TOTP, lockout), bearer tokens, browser sessions, and
turning a request into a Principal.

- Sign-in failures are recorded (signin_failures, and the audit log). An account with
  `lockout_failures` failures within `lockout_window_minutes` — counted since its last
  successful sign-in — is locked until the oldest of those failures leaves the window. An
  unknown username is answered exactly like a wrong password, and can be locked the same way,
  so neither reveals which accounts exist.
- Bearer tokens are short-lived HS256 JWTs signed with a key derived from the platform secret.
  They carry the roles for information only: every request reads the account again, so a
  disabled account or a changed role takes effect at once.
- Browser sessions are random cookie values stored as sha256; a state-changing request made
  with the session cookie must repeat the session's CSRF token in the X-CSRF-Token header
  (double submit: the token is in the sign-in answer and in the readable landcloud_csrf cookie).
- A credential that is present but invalid, expired, forged or revoked is refused (401
  auth.bad_token), never treated as anonymous.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import sqlalchemy as sa
from fastapi import Request, Response
from sqlalchemy.engine import Connection, Engine

from landcloud import clock
from landcloud.access import passwords, tokens, totp
from landcloud.access import users as users_mod
from landcloud.access.principal import ANONYMOUS, Principal
from landcloud.access.roles import needs_totp
from landcloud.access.secrets import derived_key
from landcloud.access.tables import audit_log, sessions, signin_failures, units
from landcloud.access.tables import users as users_table
from landcloud.config import Settings
from landcloud.messages import Forbidden, LandcloudError
from landcloud.store.db import connection

log = logging.getLogger(__name__)

SESSION_COOKIE = "landcloud_session"
CSRF_COOKIE = "landcloud_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JWT_ISSUER = "landcloud"
JWT_ALGORITHM = "HS256"
JWT_LEEWAY_SECONDS = 30  # tolerated clock difference between application servers for "iat"
SIGNIN_ACTION = "auth.signin"
SIGNIN_FAILED_ACTION = "auth.signin_failed"


class Unauthorized(LandcloudError):
    status = 401


def bad_token() -> Unauthorized:
    return Unauthorized(
        "auth.bad_token",
        "访问凭据无效、已过期或已撤销，或其账户已停用；请重新登录",
        "the credential is invalid, expired or revoked, or its account is disabled; sign in again",
    )


def auth_required() -> Unauthorized:
    return Unauthorized("auth.required", "此操作需要登录", "this operation requires signing in")


def _invalid_credentials() -> Unauthorized:
    return Unauthorized("auth.invalid_credentials", "用户名或密码错误", "wrong username or password")


# ---------------------------------------------------------------- helpers


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _clip(value: str | None, length: int = 64) -> str | None:
    return None if value is None else value[:length]


def _unit_kind(conn: Connection, unit: str | None) -> str | None:
    if not unit:
        return None
    return conn.execute(sa.select(units.c.kind).where(units.c.code == unit)).scalar()


def principal_for(
    engine: Engine,
    user: Mapping[str, Any],
    *,
    via: str | None,
    ip: str | None = None,
    scopes: frozenset[str] | None = None,
    unit_kind: str | None | object = ...,
    conn: Connection | None = None,
    until: datetime | None = None,
) -> Principal:
    """The principal of a user row (or public dict); pass `unit_kind` when it was read with the row
    (`conn`: a read connection of the caller's, to read it on)."""
    if unit_kind is ...:
        with connection(conn if conn is not None else engine) as c:
            kind = _unit_kind(c, user["unit"])
    else:
        kind = unit_kind  # type: ignore[assignment]
    return Principal(
        "user",
        user_id=user["id"],
        username=user["username"],
        unit=user["unit"],
        unit_kind=kind,
        roles=frozenset(user["roles"] or []),
        scopes=scopes,
        via=via,
        ip=ip,
        until=until,
    )


def record_event(engine: Engine, principal: Principal, action: str, detail: dict[str, Any], conn: Connection | None = None) -> None:
    """Append an audit entry (imported lazily: the audit module sits beside this one)."""
    from landcloud.access import audit

    audit.record(engine, principal, action, detail=detail, conn=conn)


# ---------------------------------------------------------------- sign-in and lockout


def _last_success(conn: Connection, username: str | None) -> datetime | None:
    if not username:
        return None
    last = conn.execute(
        sa.select(sa.func.max(audit_log.c.at)).where(audit_log.c.actor == username, audit_log.c.action == SIGNIN_ACTION)
    ).scalar()
    return clock.aware(last) if last is not None else None


def locked_until(engine: Engine, settings: Settings, key: str, username: str | None = None) -> datetime | None:
    """When the account (failure key = lower-case username) unlocks, or None if it is not locked."""
    now = clock.now()
    window = timedelta(minutes=settings.lockout_window_minutes)
    limit = max(1, settings.lockout_failures)
    with engine.connect() as conn:
        since = now - window
        last = _last_success(conn, username)
        if last is not None and last > since:
            since = last
        rows = conn.execute(
            sa.select(signin_failures.c.at)
            .where(signin_failures.c.username == key, signin_failures.c.at > since)
            .order_by(signin_failures.c.at.desc())
            .limit(limit)
        ).all()
    if len(rows) < limit:
        return None
    return clock.aware(rows[-1].at) + window


def _locked_error(until: datetime) -> Forbidden:
    local = until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Forbidden(
        "auth.locked",
        f"登录失败次数过多，账户已锁定，{local} 后可再次登录",
        f"too many failed sign-ins: the account is locked until {local}",
        until=until.astimezone(UTC).isoformat(),
    )


def _fail(engine: Engine, key: str, attempted: str, ip: str | None, reason: str, error: LandcloudError | None) -> LandcloudError:
    """Record a failed sign-in (failure table and audit log, one transaction); return the error to raise."""
    with users_mod.write_conn(engine) as conn:
        conn.execute(signin_failures.insert().values(username=key, at=clock.now(), ip=_clip(ip)))
        record_event(engine, Principal("user", username=_clip(attempted) or "?", ip=ip), SIGNIN_FAILED_ACTION,
                {"username": _clip(attempted), "reason": reason}, conn)
    log.info("sign-in failed for %r from %s: %s", _clip(attempted), ip, reason)
    return error or _invalid_credentials()


def sign_in(
    engine: Engine,
    settings: Settings,
    username: str,
    password: str,
    otp: str | None = None,
    ip: str | None = None,
    *,
    method: str = "password",
) -> dict[str, Any]:
    """Check a sign-in and return the user (public form); raise a bilingual refusal otherwise."""
    attempted = (username or "").strip()
    row = users_mod.find_by_username(engine, attempted) if users_mod.USERNAME_RE.fullmatch(attempted) else None
    key = (row["username"] if row else attempted).lower()[:64]
    until = locked_until(engine, settings, key, row["username"] if row else None)
    if until is not None:
        _fail(engine, key, attempted, ip, "locked", None)
        # this refusal counts as a failure too; report the (possibly later) time the account unlocks now
        raise _locked_error(locked_until(engine, settings, key, row["username"] if row else None) or until)
    ok, new_hash = passwords.verify_password(row["password_hash"] if row else None, password or "")
    if row is None or not ok:
        raise _fail(engine, key, attempted, ip, "invalid_credentials", _invalid_credentials())
    if not row["active"]:
        raise _fail(engine, key, attempted, ip, "inactive",
                    Forbidden("auth.inactive", "账户已停用，请联系本单位管理员", "the account is disabled; ask your unit's administrator"))
    second_factor = needs_totp(row["roles"]) or bool(row["totp_secret"])
    if second_factor:
        if not row["totp_secret"]:
            raise _fail(engine, key, attempted, ip, "totp_not_enrolled", Forbidden(
                "auth.totp_not_enrolled",
                "您的角色需要动态口令（TOTP）登录，但尚未登记；请由安全管理员执行 `landcloud users totp` 登记",
                "your roles need a one-time code (TOTP) to sign in, but none is enrolled; ask the security administrator "
                "to enrol one with `landcloud users totp`",
            ))
        if not (otp or "").strip():
            raise _fail(engine, key, attempted, ip, "otp_required", Unauthorized(
                "auth.otp_required", "请输入动态口令（身份验证器中的 6 位数字）",
                "enter the one-time code (the 6 digits in your authenticator app)"))
        if not totp.verify(totp.decrypt_secret(settings, row["totp_secret"]), otp):
            raise _fail(engine, key, attempted, ip, "otp_invalid",
                        Unauthorized("auth.otp_invalid", "动态口令错误或已过期", "the one-time code is wrong or expired"))
    principal = principal_for(engine, row, via=method, ip=ip)
    with users_mod.write_conn(engine) as conn:
        if new_hash:
            conn.execute(users_table.update().where(users_table.c.id == row["id"]).values(password_hash=new_hash))
        record_event(engine, principal, SIGNIN_ACTION, {"method": method, "second_factor": second_factor}, conn)
    log.info("signed in: %s from %s (%s)", row["username"], ip, method)
    return users_mod.user_public(row)


def record_signin(engine: Engine, user: Mapping[str, Any], ip: str | None, method: str) -> None:
    """Audit a sign-in made without a password (the identity system); resets the lockout window too."""
    record_event(engine, principal_for(engine, user, via=method, ip=ip), SIGNIN_ACTION, {"method": method, "second_factor": False})
    log.info("signed in: %s from %s (%s)", user["username"], ip, method)


# ---------------------------------------------------------------- bearer JWTs


def _jwt_key(settings: Settings) -> bytes:
    return derived_key(settings, "jwt")


def issue_access_token(settings: Settings, user: Mapping[str, Any]) -> tuple[str, int]:
    """(HS256 JWT, lifetime in seconds)."""
    ttl = int(settings.token_ttl_minutes) * 60
    now = int(clock.now().timestamp())
    claims = {
        "iss": JWT_ISSUER,
        "sub": user["id"],
        "unit": user["unit"],
        "roles": sorted(user["roles"] or []),
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, _jwt_key(settings), algorithm=JWT_ALGORITHM), ttl


def decode_access_token(settings: Settings, token: str) -> dict[str, Any]:
    """The claims of a valid, unexpired token of this platform; 401 auth.bad_token otherwise.

    The signature and issuer are checked by PyJWT; times against `clock.now()` here, so that
    expiry follows the platform clock.
    """
    try:
        claims = jwt.decode(
            token,
            _jwt_key(settings),
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            options={"require": ["iss", "sub", "iat", "exp", "jti"], "verify_exp": False, "verify_iat": False,
                     "verify_nbf": False},
        )
    except jwt.InvalidTokenError as exc:
        raise bad_token() from exc
    now = clock.now().timestamp()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float) or isinstance(exp, bool):
        raise bad_token()
    if now >= exp or iat > now + JWT_LEEWAY_SECONDS or not isinstance(claims.get("sub"), str):
        raise bad_token()
    return claims


# ---------------------------------------------------------------- browser sessions


def create_session(engine: Engine, settings: Settings, user: Mapping[str, Any]) -> tuple[str, str]:
    """(cookie value, CSRF token) of a new session; only the cookie's sha256 is stored."""
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = clock.now()
    with users_mod.write_conn(engine) as conn:
        conn.execute(sessions.insert().values(
            id_hash=_hash(cookie), user_id=user["id"], csrf_token=csrf, created_at=now,
            expires_at=now + timedelta(hours=settings.session_ttl_hours), revoked_at=None,
        ))
    return cookie, csrf


def revoke_session(engine: Engine, cookie_value: str) -> bool:
    """End a session; False if there was no such live session."""
    with users_mod.write_conn(engine) as conn:
        done = conn.execute(
            sessions.update().where(sessions.c.id_hash == _hash(cookie_value), sessions.c.revoked_at.is_(None))
            .values(revoked_at=clock.now())
        ).rowcount
    return bool(done)


def set_session_cookies(response: Response, settings: Settings, cookie: str, csrf: str) -> None:
    max_age = int(settings.session_ttl_hours) * 3600
    response.set_cookie(SESSION_COOKIE, cookie, max_age=max_age, path="/", secure=settings.cookie_secure, httponly=True,
                        samesite="strict")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/", secure=settings.cookie_secure, httponly=False,
                        samesite="strict")


def clear_session_cookies(response: Response, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=settings.cookie_secure, httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=settings.cookie_secure, httponly=False, samesite="strict")


# The account behind a credential, with its unit's kind, in one statement (authentication runs on every request).
_ACCOUNT = (
    sa.select(*users_mod.PRINCIPAL_COLUMNS, units.c.kind.label("unit_kind"))
    .outerjoin(units, units.c.code == users_table.c.unit)
)
_BY_ID = _ACCOUNT.where(users_table.c.id == sa.bindparam("user_id"))
_BY_SESSION = _ACCOUNT.add_columns(
    sessions.c.csrf_token.label("session_csrf"),
    sessions.c.revoked_at.label("session_revoked_at"),
    sessions.c.expires_at.label("session_expires_at"),
).join(sessions, sessions.c.user_id == users_table.c.id).where(sessions.c.id_hash == sa.bindparam("id_hash"))


def _account(row: Any) -> dict[str, Any]:
    """An active account's principal columns and unit kind, from a row of `_ACCOUNT`; a bad token otherwise."""
    if row is None or not row.active:
        raise bad_token()
    m = row._mapping
    return {c.name: m[c.name] for c in users_mod.PRINCIPAL_COLUMNS} | {"unit_kind": m["unit_kind"]}


def _active_user(bind: Engine | Connection, user_id: str) -> dict[str, Any]:
    with connection(bind) as conn:
        return _account(conn.execute(_BY_ID, {"user_id": user_id}).first())


def _session_user(bind: Engine | Connection, cookie_value: str) -> tuple[str, dict[str, Any], datetime]:
    """(the session's CSRF token, its active account, its expiry) for a live session cookie; a bad token otherwise."""
    with connection(bind) as conn:
        row = conn.execute(_BY_SESSION, {"id_hash": _hash(cookie_value)}).first()
    if row is None or row.session_revoked_at is not None or clock.aware(row.session_expires_at) <= clock.now():
        raise bad_token()
    return str(row.session_csrf), _account(row), clock.aware(row.session_expires_at)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def authenticate(engine: Engine, settings: Settings, request: Request, conn: Connection | None = None) -> Principal:
    """Who is asking: a bearer JWT, a personal API token ("lct_…"), the session cookie, or the public.

    `conn`: the request's read connection (`deps.Reads`), to read the credential and account on; the
    writes (a token's last use) still go through `engine`.
    """
    ip = client_ip(request)
    bind: Engine | Connection = conn if conn is not None else engine
    header = (request.headers.get("authorization") or "").strip()
    if header:
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise bad_token()
        if credential.startswith(tokens.PREFIX):
            found = tokens.lookup_token_user(engine, credential, conn)  # token, account and unit kind in one query
            if found is None:
                raise bad_token()
            token, scopes, user, unit_kind = found
            if not user["active"]:
                raise bad_token()
            scopes = scopes & tokens.allowed_scopes(user["roles"])  # roles may have shrunk since
            return principal_for(engine, user, via="api_token", ip=ip, scopes=frozenset(scopes), unit_kind=unit_kind,
                                 until=clock.aware(token["expires_at"]))
        claims = decode_access_token(settings, credential)
        user = _active_user(bind, claims["sub"])
        changed = user.get("password_changed_at")
        if changed is not None and clock.aware(changed).timestamp() >= float(claims["iat"]) + 1:
            raise bad_token()  # issued before the password was changed
        return principal_for(engine, user, via="bearer", ip=ip, unit_kind=user["unit_kind"],
                             until=datetime.fromtimestamp(float(claims["exp"]), UTC))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        csrf, user, expires = _session_user(bind, cookie)
        if request.method.upper() not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER) or ""
            if not sent or not hmac.compare_digest(sent.encode(), csrf.encode()):
                raise Forbidden(
                    "auth.csrf",
                    "缺少或错误的 CSRF 令牌（请求头 X-CSRF-Token）；请刷新页面后重试",
                    "missing or wrong CSRF token (header X-CSRF-Token); reload the page and try again",
                )
        return principal_for(engine, user, via="session", ip=ip, unit_kind=user["unit_kind"], until=expires)
    return dataclasses.replace(ANONYMOUS, ip=ip)  # the public: its address is what the audit log can name
