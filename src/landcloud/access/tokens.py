"""Personal API tokens: how a user's machines (scripts, desktop GIS) call the platform.

A token is shown once ("lct_" + 256 random bits) and stored only as its sha256. Its scopes
narrow what it may do ("read", "submit", "manage"); they never widen the user's roles: a
scope the roles do not allow is refused at creation and dropped at use if the roles changed
since. Tokens are created by a signed-in person (session or bearer), never by another token.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from landcloud import clock
from landcloud.access.principal import Principal
from landcloud.access.roles import DATA_ADMIN, DATA_ROLES, REVIEWER, SEPARATED, SUBMIT_ROLES
from landcloud.access.tables import api_tokens, units, users
from landcloud.access.users import PRINCIPAL_COLUMNS, find_user, write_conn
from landcloud.config import Settings
from landcloud.messages import Forbidden, LandcloudError, NotFound
from landcloud.store.db import connection

PREFIX = "lct_"
SCOPES: dict[str, tuple[str, str]] = {
    "read": ("读取数据", "read data"),
    "submit": ("汇交数据", "submit data"),
    "manage": ("管理（审核、数据集、用户等）", "manage (review, datasets, users …)"),
}
SCOPE_ROLES: dict[str, frozenset[str]] = {
    "read": DATA_ROLES,
    "submit": SUBMIT_ROLES,
    "manage": frozenset({REVIEWER, DATA_ADMIN}) | SEPARATED,
}
NAME_MAX = 100
LAST_USED_RESOLUTION = timedelta(minutes=1)  # fewer writes: last use is kept to the minute


def token_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def allowed_scopes(roles: Iterable[str]) -> frozenset[str]:
    """The scopes a user with these roles may give a token."""
    held = set(roles)
    return frozenset(s for s, needs in SCOPE_ROLES.items() if held & needs)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else clock.aware(value).isoformat()


def token_public(row: Mapping[str, Any]) -> dict[str, Any]:
    """A token as shown in lists: never the hash."""
    now = clock.now()
    expires = clock.aware(row["expires_at"])
    return {
        "id": row["id"],
        "name": row["name"],
        "scopes": sorted(row["scopes"] or []),
        "created_at": _iso(row["created_at"]),
        "expires_at": _iso(expires),
        "revoked_at": _iso(row["revoked_at"]),
        "last_used_at": _iso(row["last_used_at"]),
        "active": row["revoked_at"] is None and expires > now,
    }


def _owner_id(user: Principal | Mapping[str, Any]) -> str:
    uid = user.user_id if isinstance(user, Principal) else user.get("id")
    if not uid:
        raise Forbidden("auth.required", "此操作需要登录", "this operation requires signing in")
    return str(uid)


def create_token(
    engine: Engine,
    settings: Settings,
    user: Principal | Mapping[str, Any],
    name: str,
    scopes: Iterable[str],
    expires_days: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """(plaintext token — shown this once, public record)."""
    if isinstance(user, Principal) and (user.via == "api_token" or user.scopes is not None):
        raise Forbidden("token.needs_signin", "只能在登录后创建 API 令牌，不能用另一个令牌创建",
                        "API tokens are created by a signed-in person, not by another token")
    row = find_user(engine, _owner_id(user))
    if row is None or not row["active"]:
        raise Forbidden("auth.inactive", "账户不存在或已停用", "the account does not exist or is disabled")
    label = (name or "").strip()
    if not label or len(label) > NAME_MAX:
        raise LandcloudError("token.bad_name", f"令牌名称须为 1–{NAME_MAX} 个字符", f"a token name has 1–{NAME_MAX} characters")
    requested = sorted({(s or "").strip() for s in scopes} - {""})
    unknown = [s for s in requested if s not in SCOPES]
    if not requested or unknown:
        raise LandcloudError(
            "token.bad_scope",
            f"令牌权限范围须取自：{', '.join(SCOPES)}" + (f"（未知：{', '.join(unknown)}）" if unknown else ""),
            f"token scopes are chosen from: {', '.join(SCOPES)}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
            scopes=unknown,
        )
    allowed = allowed_scopes(row["roles"])
    exceeding = [s for s in requested if s not in allowed]
    if exceeding:
        raise Forbidden(
            "token.scope_exceeds_roles",
            f"您的角色不允许令牌具有以下权限范围：{', '.join(exceeding)}",
            f"your roles do not allow a token with the scope(s): {', '.join(exceeding)}",
            scopes=exceeding,
            allowed=sorted(allowed),
        )
    max_days = settings.api_token_max_days
    days = min(90, max_days) if expires_days is None else expires_days
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= max_days:
        raise LandcloudError("token.bad_expiry", f"令牌有效期须为 1–{max_days} 天", f"a token lives 1–{max_days} days",
                             max_days=max_days)
    plaintext = PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    values = {
        "id": str(uuid.uuid4()),
        "user_id": row["id"],
        "name": label,
        "token_hash": token_hash(plaintext),
        "scopes": requested,
        "created_at": now,
        "expires_at": now + timedelta(days=days),
        "revoked_at": None,
        "last_used_at": None,
    }
    from landcloud.access import audit

    actor = user if isinstance(user, Principal) else Principal("user", user_id=row["id"], username=row["username"], unit=row["unit"])
    with write_conn(engine) as conn:
        conn.execute(api_tokens.insert().values(**values))
        audit.record(engine, actor, "token.create",
                     detail={"id": values["id"], "name": label, "scopes": requested, "days": days}, conn=conn)
    return plaintext, token_public(values)


def list_tokens(engine: Engine, user: Principal | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The user's own tokens (revoked and expired ones too, marked inactive), newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(api_tokens).where(api_tokens.c.user_id == _owner_id(user)).order_by(api_tokens.c.created_at.desc())
        ).all()
    return [token_public(dict(r._mapping)) for r in rows]


def revoke_token(engine: Engine, user: Principal | Mapping[str, Any], token_id: str) -> dict[str, Any]:
    """Revoke one of the user's own tokens; someone else's is answered like a missing one (404)."""
    owner = _owner_id(user)
    with write_conn(engine) as conn:
        row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.user_id == owner)).first()
        if row is None:
            raise NotFound("token.not_found", "API 令牌不存在", "the API token does not exist", token_id=str(token_id)[:64])
        record = dict(row._mapping)
        if record["revoked_at"] is None:
            record["revoked_at"] = clock.now()
            conn.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(revoked_at=record["revoked_at"]))
            if isinstance(user, Principal):
                from landcloud.access import audit

                audit.record(engine, user, "token.revoke", detail={"id": token_id, "name": record["name"]}, conn=conn)
    return token_public(record)


# What authentication needs of the token (is it live, what may it do, when was it last used) and of its
# account (PRINCIPAL_COLUMNS): not the whole rows, so the password hash and TOTP secret are never read.
_TOKEN_COLUMNS = (api_tokens.c.id, api_tokens.c.scopes, api_tokens.c.revoked_at, api_tokens.c.expires_at, api_tokens.c.last_used_at)
_TOKEN_USER = (  # built once: it runs on every request that carries a token
    sa.select(*_TOKEN_COLUMNS, *[c.label(f"u__{c.name}") for c in PRINCIPAL_COLUMNS], units.c.kind.label("u__unit_kind"))
    .join(users, users.c.id == api_tokens.c.user_id)
    .outerjoin(units, units.c.code == users.c.unit)
    .where(api_tokens.c.token_hash == sa.bindparam("digest"))
)


def lookup_token_user(
    engine: Engine, plaintext: str, conn: Connection | None = None
) -> tuple[dict[str, Any], frozenset[str], dict[str, Any], str | None] | None:
    """(the token's live facts, its scopes, its account's principal columns, the account unit's kind) or None.

    None for an unknown, revoked or expired token. Records the use (last_used_at, to the minute).
    The token, the account and the unit kind are read in one query (authentication runs on every
    request); the caller checks that the account is active, narrows the scopes to what the roles
    still allow, and builds the principal. `conn`: a read connection of the caller's to read on (the
    use is written through `engine`).
    """
    if not plaintext.startswith(PREFIX):
        return None
    with connection(conn if conn is not None else engine) as c:
        row = c.execute(_TOKEN_USER, {"digest": token_hash(plaintext)}).first()
    if row is None or not _use(engine, row):
        return None
    m = row._mapping
    token = {c.name: m[c.name] for c in _TOKEN_COLUMNS}
    user = {c.name: m[f"u__{c.name}"] for c in PRINCIPAL_COLUMNS}
    kind = m["u__unit_kind"] if user["unit"] else None
    return token, frozenset(row.scopes or []), user, kind


def _use(engine: Engine, row: Any) -> bool:
    """Whether the token row is live (not revoked, not expired); records its use, to the minute."""
    now = clock.now()
    if row.revoked_at is not None or clock.aware(row.expires_at) <= now:
        return False
    if row.last_used_at is None or now - clock.aware(row.last_used_at) >= LAST_USED_RESOLUTION:
        with write_conn(engine) as conn:
            conn.execute(api_tokens.update().where(api_tokens.c.id == row.id).values(last_used_at=now))
    return True
