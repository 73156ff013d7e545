"""User accounts: who they are, which unit they belong to, which roles they hold.

Usernames are unique without regard to case (Alice and alice are one account) and looked up
so. Passwords are kept as argon2id hashes, TOTP secrets encrypted; `user_public` is the only
form of a user that leaves this package.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from landcloud import clock
from landcloud.access import passwords, totp
from landcloud.access.principal import Principal
from landcloud.access.roles import VIEWER, validate_roles
from landcloud.access.tables import sessions
from landcloud.access.tables import users as users_table
from landcloud.access.units import get_unit
from landcloud.config import Settings
from landcloud.messages import Conflict, LandcloudError, NotFound

# The account columns a request's principal is built from (and the checks on it: active, a bearer
# token's issue time against the last password change). Authentication reads these and nothing
# else on every request: the password hash and the TOTP secret stay in the database.
PRINCIPAL_COLUMNS = (
    users_table.c.id,
    users_table.c.username,
    users_table.c.unit,
    users_table.c.roles,
    users_table.c.active,
    users_table.c.password_changed_at,
)

USERNAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{3,64}$")
DEPARTMENT_ROLES = frozenset({VIEWER})


@contextmanager
def write_conn(engine: Engine) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite, so audit appends never deadlock)."""
    with engine.connect() as conn:
        conn.info["write"] = True
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop("write", None)


def _audit(engine: Engine, conn: Connection | None, actor: Principal | None, action: str, detail: dict[str, Any]) -> None:
    if actor is None:
        return
    from landcloud.access import audit

    audit.record(engine, actor, action, detail=detail, conn=conn)


def validate_username(username: str) -> str:
    name = (username or "").strip()
    if not USERNAME_RE.fullmatch(name):
        raise LandcloudError(
            "user.bad_username",
            "用户名须为 3–64 个字符，只能包含字母、数字、下划线、点和连字符",
            "a username has 3–64 characters: letters, digits, underscore, dot and hyphen only",
            username=username[:80] if isinstance(username, str) else None,
        )
    return name


def check_unit_roles(engine: Engine, unit: str, roles: frozenset[str]) -> dict[str, Any]:
    """The unit (it must exist); a department's users hold the viewer role only."""
    u = get_unit(engine, unit)
    if u.get("kind") == "department" and not roles <= DEPARTMENT_ROLES:
        raise LandcloudError(
            "role.department_viewer_only",
            f"部门单位（{unit}）的用户只能持有查看员角色",
            f"users of a department unit ({unit}) hold the viewer role only",
            unit=unit,
            roles=sorted(roles),
        )
    return u


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):  # already shown (user_public of a public form)
        return value
    return clock.aware(value).isoformat()


def user_public(row: Mapping[str, Any]) -> dict[str, Any]:
    """What may be shown about a user: never the password hash or the TOTP secret."""
    return {
        "id": row["id"],
        "username": row["username"],
        "display_name": row.get("display_name") or "",
        "unit": row["unit"],
        "roles": sorted(row.get("roles") or []),
        "active": bool(row["active"]),
        "totp_enrolled": bool(row.get("totp_secret")),
        "oidc_linked": bool(row.get("oidc_subject")),
        "has_password": bool(row.get("password_hash")),
        "created_at": _iso(row.get("created_at")),
        "updated_at": _iso(row.get("updated_at")),
        "password_changed_at": _iso(row.get("password_changed_at")),
    }


def _row(conn: Connection, username_or_id: str) -> dict[str, Any] | None:
    key = (username_or_id or "").strip()
    if not key:
        return None
    row = conn.execute(sa.select(users_table).where(users_table.c.id == key)).first()
    if row is None:
        row = conn.execute(sa.select(users_table).where(sa.func.lower(users_table.c.username) == key.lower())).first()
    return dict(row._mapping) if row is not None else None


def find_user(engine: Engine, username_or_id: str) -> dict[str, Any] | None:
    """The full row (with hash and encrypted secret: internal use only), or None."""
    with engine.connect() as conn:
        return _row(conn, username_or_id)


def get_user_row(engine: Engine, username_or_id: str) -> dict[str, Any]:
    """The full row (with hash and encrypted secret: internal use only), or NotFound "user.not_found"."""
    row = find_user(engine, username_or_id)
    if row is None:
        raise _not_found(username_or_id)
    return row


def get_user(engine: Engine, username_or_id: str) -> dict[str, Any]:
    """The user in public form (safe to show), or NotFound "user.not_found"."""
    return user_public(get_user_row(engine, username_or_id))


def find_by_username(engine: Engine, username: str) -> dict[str, Any] | None:
    """The full row of the account with this username (any case), or None; never matches an id."""
    name = (username or "").strip()
    if not name:
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.select(users_table).where(sa.func.lower(users_table.c.username) == name.lower())).first()
    return dict(row._mapping) if row is not None else None


def find_by_oidc_subject(engine: Engine, subject: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(users_table).where(users_table.c.oidc_subject == subject)).first()
    return dict(row._mapping) if row is not None else None


def _not_found(name: str) -> NotFound:
    return NotFound("user.not_found", f"用户“{name}”不存在", f"user '{name}' does not exist")


def list_users(engine: Engine) -> list[dict[str, Any]]:
    """Every user, public form, by username."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(users_table).order_by(users_table.c.username)).all()
    return [user_public(dict(r._mapping)) for r in rows]


def count_users(engine: Engine) -> int:
    """How many accounts exist (active or not), counted by the database."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(users_table)).scalar_one())


def create_user(
    engine: Engine,
    settings: Settings,
    username: str,
    unit: str,
    roles: Iterable[str],
    password: str | None,
    display_name: str = "",
    *,
    oidc_subject: str | None = None,
    actor: Principal | None = None,
) -> dict[str, Any]:
    """Create an account and return it (public form).

    `password` None creates an account that cannot sign in with a password (one that signs in
    through the province's identity system, `oidc_subject`). With `actor` the creation is
    audited ("user.create") in the same transaction.
    """
    name = validate_username(username)
    role_set = validate_roles(roles)
    check_unit_roles(engine, unit, role_set)
    password_hash = None
    if password is not None:
        passwords.check_policy(password, name, settings.password_min_length)
        password_hash = passwords.hash_password(password)
    now = clock.now()
    values = {
        "id": str(uuid.uuid4()),
        "username": name,
        "display_name": (display_name or "").strip(),
        "unit": unit,
        "roles": sorted(role_set),
        "password_hash": password_hash,
        "totp_secret": None,
        "oidc_subject": oidc_subject,
        "active": True,
        "created_at": now,
        "updated_at": now,
        "password_changed_at": now if password_hash else None,
    }
    exists = Conflict("user.exists", f"用户名“{name}”已被使用", f"the username '{name}' is taken", username=name)
    try:
        with write_conn(engine) as conn:
            if _row(conn, name) is not None:
                raise exists
            conn.execute(users_table.insert().values(**values))
            _audit(engine, conn, actor, "user.create",
                   {"username": name, "unit": unit, "roles": sorted(role_set), "oidc": oidc_subject is not None})
    except IntegrityError as exc:  # a concurrent creation of the same name (or OIDC subject)
        raise exists from exc
    return user_public(values)


def _update(engine: Engine, username: str, actor: Principal | None, action: str, detail: dict[str, Any],
            **values: Any) -> dict[str, Any]:
    with write_conn(engine) as conn:
        row = _row(conn, username)
        if row is None:
            raise _not_found(username)
        values["updated_at"] = clock.now()
        conn.execute(users_table.update().where(users_table.c.id == row["id"]).values(**values))
        if values.get("active") is False or "password_hash" in values:
            # a disabled account or a new password ends every browser session of the account
            conn.execute(sessions.update().where(sessions.c.user_id == row["id"], sessions.c.revoked_at.is_(None))
                         .values(revoked_at=values["updated_at"]))
        _audit(engine, conn, actor, action, {"username": row["username"], **detail})
        row.update(values)
    return user_public(row)


def set_roles(engine: Engine, username: str, roles: Iterable[str], *, actor: Principal | None = None) -> dict[str, Any]:
    row = get_user(engine, username)
    role_set = validate_roles(roles)
    check_unit_roles(engine, row["unit"], role_set)
    return _update(engine, username, actor, "user.roles", {"roles": sorted(role_set), "previous": sorted(row["roles"])},
                   roles=sorted(role_set))


def set_active(engine: Engine, username: str, active: bool, *, actor: Principal | None = None) -> dict[str, Any]:
    return _update(engine, username, actor, "user.enable" if active else "user.disable", {}, active=bool(active))


def set_password(engine: Engine, settings: Settings, username: str, password: str, *,
                 actor: Principal | None = None) -> dict[str, Any]:
    """A new password (policy checked); ends the account's browser sessions and older bearer tokens."""
    row = get_user(engine, username)
    passwords.check_policy(password, row["username"], settings.password_min_length)
    return _update(engine, username, actor, "user.password", {}, password_hash=passwords.hash_password(password),
                   password_changed_at=clock.now())


def store_rehash(engine: Engine, user_id: str, new_hash: str) -> None:
    """Replace a hash made with older parameters (after a successful verification)."""
    with write_conn(engine) as conn:
        conn.execute(users_table.update().where(users_table.c.id == user_id).values(password_hash=new_hash))


def enrol_totp(engine: Engine, settings: Settings, username: str, *, actor: Principal | None = None) -> tuple[str, str]:
    """A new TOTP secret for the account (replacing any earlier one): (secret, otpauth URI)."""
    row = get_user(engine, username)
    secret = totp.new_secret()
    _update(engine, username, actor, "user.totp_enrol", {}, totp_secret=totp.encrypt_secret(settings, secret))
    return secret, totp.provisioning_uri(secret, row["username"])


def link_oidc(engine: Engine, username: str, subject: str | None, *, actor: Principal | None = None) -> dict[str, Any]:
    """Link (or with None unlink) an account to a subject of the identity system."""
    try:
        return _update(engine, username, actor, "user.oidc_link", {"subject": subject}, oidc_subject=subject)
    except IntegrityError as exc:
        raise Conflict("user.oidc_subject_taken", "该统一身份认证账号已关联到其他用户",
                       "this identity-system subject is already linked to another user") from exc
