"""Accounts and sign-in on both stores: validation, lockout, TOTP for administrators, audit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, Type

from landcloud import clock
from landcloud.access import auth, passwords, users
from landcloud.access.tables import audit_log, sessions, signin_failures, units
from landcloud.access.tables import users as users_table
from landcloud.access.units import load_divisions
from landcloud.config import Settings
from landcloud.messages import Conflict, Forbidden, LandcloudError, NotFound

from conftest import REFERENCE

PASSWORD = "Kraal-Birch-77-Ledger"


@pytest.fixture
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters: the real ones (64 MiB, t=3) are tested in test_auth_passwords."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID))
    passwords._dummy_hash.cache_clear()
    yield
    passwords._dummy_hash.cache_clear()


@pytest.fixture
def store(engine: sa.Engine, fast_hashes: None) -> sa.Engine:
    load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    with engine.begin() as conn:
        conn.execute(units.insert().values(code="230000DNR", name="省自然资源厅某部门", level="department", parent="230000",
                                           kind="department", updated_at=datetime.now(UTC)))
    return engine


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


def uname(prefix: str = "user") -> str:
    """A fresh name: the PostGIS test database keeps sign-in failures and the audit log between tests."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def make(engine: sa.Engine, settings: Settings, roles: list[str] | None = None, unit: str = "230100", **kw) -> dict:
    return users.create_user(engine, settings, kw.pop("username", None) or uname(), unit, roles or ["viewer"], PASSWORD, **kw)


def user_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(users_table)).scalar_one()


def failures(engine: sa.Engine, name: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(signin_failures)
                            .where(signin_failures.c.username == name.lower())).scalar_one()


def audit_actions(engine: sa.Engine, actor: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.action, audit_log.c.detail).where(audit_log.c.actor == actor)
                            .order_by(audit_log.c.seq)).all()
    return [(r.action, r.detail) for r in rows]


# ---------------------------------------------------------------- accounts


def test_create_user_public_form(store: sa.Engine, settings: Settings) -> None:
    name = uname("li.wei_")
    user = users.create_user(store, settings, name, "230100", ["submitter", "viewer"], PASSWORD, "李伟")
    assert user["username"] == name and user["unit"] == "230100" and user["display_name"] == "李伟"
    assert user["roles"] == ["submitter", "viewer"] and user["active"] is True and user["totp_enrolled"] is False
    assert "password_hash" not in user and "totp_secret" not in user
    row = users.get_user_row(store, name)
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]
    assert users.get_user(store, user["id"]) == user  # the public form: no hash, no secret
    assert users.get_user(store, name.upper())["id"] == user["id"]
    assert [u["username"] for u in users.list_users(store)] == [name]
    assert all("password_hash" not in u for u in users.list_users(store))


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({"username": "ab"}, LandcloudError, "user.bad_username"),
        ({"username": "bad name!"}, LandcloudError, "user.bad_username"),
        ({"username": "x" * 65}, LandcloudError, "user.bad_username"),
        ({"unit": "999999"}, NotFound, "unit.not_found"),
        ({"roles": ["wizard"]}, LandcloudError, "role.unknown"),
        ({"roles": []}, LandcloudError, "role.none"),
        ({"roles": ["sysadmin", "viewer"]}, LandcloudError, "role.separation"),
        ({"roles": ["sysadmin", "secadmin"]}, LandcloudError, "role.separation"),
        ({"password": "short"}, LandcloudError, "password.weak"),
        ({"unit": "230000DNR", "roles": ["submitter"]}, LandcloudError, "role.department_viewer_only"),
        ({"unit": "230000DNR", "roles": ["viewer", "data_admin"]}, LandcloudError, "role.department_viewer_only"),
    ],
)
def test_create_user_refusals_change_nothing(store: sa.Engine, settings: Settings, kwargs: dict, error: type, code: str) -> None:
    args = {"username": uname(), "unit": "230100", "roles": ["viewer"], "password": PASSWORD} | kwargs
    with pytest.raises(error) as err:
        users.create_user(store, settings, **args)
    assert err.value.message.code == code
    assert err.value.message.zh and err.value.message.en
    assert user_count(store) == 0


def test_department_user_is_a_viewer(store: sa.Engine, settings: Settings) -> None:
    user = make(store, settings, ["viewer"], unit="230000DNR")
    assert user["roles"] == ["viewer"]
    with pytest.raises(LandcloudError) as err:
        users.set_roles(store, user["username"], ["reviewer"])
    assert err.value.message.code == "role.department_viewer_only"
    assert users.get_user(store, user["id"])["roles"] == ["viewer"]


def test_username_taken_regardless_of_case(store: sa.Engine, settings: Settings) -> None:
    name = uname("Alice")
    make(store, settings, username=name)
    with pytest.raises(Conflict) as err:
        make(store, settings, username=name.lower())
    assert err.value.message.code == "user.exists" and err.value.status == 409
    assert user_count(store) == 1


def test_roles_active_password_and_totp_changes(store: sa.Engine, settings: Settings) -> None:
    user = make(store, settings)
    name = user["username"]
    assert users.set_roles(store, name, ["reviewer", "viewer"])["roles"] == ["reviewer", "viewer"]
    with pytest.raises(LandcloudError):
        users.set_roles(store, name, ["auditadmin", "viewer"])
    assert users.get_user(store, name)["roles"] == ["reviewer", "viewer"]
    assert users.set_active(store, name, False)["active"] is False
    assert users.set_active(store, name, True)["active"] is True
    with pytest.raises(LandcloudError) as err:
        users.set_password(store, settings, name, "weak")
    assert err.value.message.code == "password.weak"
    users.set_password(store, settings, name, "Another-Good-Pass-42")
    assert passwords.verify_password(users.get_user_row(store, name)["password_hash"], "Another-Good-Pass-42")[0]
    secret, uri = users.enrol_totp(store, settings, name)
    row = users.get_user_row(store, name)
    assert row["totp_secret"] and secret not in row["totp_secret"]
    assert users.user_public(row)["totp_enrolled"] is True and "totp_secret" not in users.user_public(row)
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    with pytest.raises(NotFound):
        users.set_active(store, "nobody-here", False)


def test_new_password_ends_sessions(store: sa.Engine, settings: Settings) -> None:
    user = make(store, settings)
    cookie, _csrf = auth.create_session(store, settings, user)
    users.set_password(store, settings, user["username"], "Another-Good-Pass-42")
    with store.connect() as conn:
        revoked = conn.execute(sa.select(sessions.c.revoked_at).where(sessions.c.user_id == user["id"])).scalar_one()
    assert revoked is not None


# ---------------------------------------------------------------- sign-in


def test_sign_in_and_no_user_enumeration(store: sa.Engine, settings: Settings) -> None:
    user = make(store, settings)
    name = user["username"]
    assert auth.sign_in(store, settings, name, PASSWORD, None, "10.0.0.1")["id"] == user["id"]
    assert auth.sign_in(store, settings, name.upper(), PASSWORD, None, "10.0.0.1")["id"] == user["id"]
    with pytest.raises(auth.Unauthorized) as wrong:
        auth.sign_in(store, settings, name, "Wrong-Password-99", None, "10.0.0.2")
    ghost = uname("ghost")
    with pytest.raises(auth.Unauthorized) as unknown:
        auth.sign_in(store, settings, ghost, PASSWORD, None, "10.0.0.3")
    assert wrong.value.status == unknown.value.status == 401
    assert wrong.value.to_dict() == unknown.value.to_dict()
    assert wrong.value.message.code == "auth.invalid_credentials"
    assert failures(store, name) == 1 and failures(store, ghost) == 1
    with pytest.raises(auth.Unauthorized):
        auth.sign_in(store, settings, user["id"], PASSWORD, None, "10.0.0.1")  # the id is not a username
    acts = audit_actions(store, name)
    assert [a for a, _ in acts].count("auth.signin") == 2
    assert ("auth.signin_failed", {"reason": "invalid_credentials", "username": name}) in [(a, json.loads(d)) for a, d in acts]
    assert all(PASSWORD not in d for _, d in acts)
    with store.connect() as conn:
        ip = conn.execute(sa.select(audit_log.c.ip).where(audit_log.c.actor == ghost)).scalar_one()
    assert ip == "10.0.0.3"


def test_lockout_after_five_failures_and_unlock_after_window(store: sa.Engine, settings: Settings, moved: Clock) -> None:
    user = make(store, settings)
    name = user["username"]
    for _ in range(5):
        moved.advance(seconds=30)
        with pytest.raises(auth.Unauthorized):
            auth.sign_in(store, settings, name, "Wrong-Password-99", None, "10.0.0.9")
    first_failure = moved.now - timedelta(seconds=120)
    moved.advance(minutes=1)
    with pytest.raises(Forbidden) as err:  # even the right password while locked
        auth.sign_in(store, settings, name, PASSWORD, None, "10.0.0.9")
    assert err.value.message.code == "auth.locked" and err.value.status == 403
    until = datetime.fromisoformat(err.value.details["until"])
    assert abs((until - (first_failure + timedelta(seconds=30) + timedelta(minutes=15))).total_seconds()) < 1
    assert "锁定" in err.value.message.zh and "locked until" in err.value.message.en
    assert failures(store, name) == 6  # the refusal while locked is recorded as well
    moved.now = until + timedelta(seconds=1)
    assert auth.sign_in(store, settings, name, PASSWORD, None, "10.0.0.9")["id"] == user["id"]


def test_failures_spread_beyond_the_window_do_not_lock(store: sa.Engine, settings: Settings, moved: Clock) -> None:
    user = make(store, settings)
    for _ in range(8):
        moved.advance(minutes=4)
        with pytest.raises(auth.Unauthorized):
            auth.sign_in(store, settings, user["username"], "Wrong-Password-99", None, None)
    moved.advance(seconds=1)
    assert auth.sign_in(store, settings, user["username"], PASSWORD, None, None)["id"] == user["id"]


def test_success_resets_the_counting_window(store: sa.Engine, settings: Settings, moved: Clock) -> None:
    user = make(store, settings)
    name = user["username"]
    for _ in range(4):
        moved.advance(seconds=5)
        with pytest.raises(auth.Unauthorized):
            auth.sign_in(store, settings, name, "Wrong-Password-99", None, None)
    moved.advance(seconds=5)
    auth.sign_in(store, settings, name, PASSWORD, None, None)
    for _ in range(4):
        moved.advance(seconds=5)
        with pytest.raises(auth.Unauthorized):
            auth.sign_in(store, settings, name, "Wrong-Password-99", None, None)
    moved.advance(seconds=5)
    assert auth.sign_in(store, settings, name, PASSWORD, None, None)["id"] == user["id"]
    assert failures(store, name) == 8  # history is kept
    for _ in range(5):
        moved.advance(seconds=5)
        with pytest.raises(auth.Unauthorized):
            auth.sign_in(store, settings, name, "Wrong-Password-99", None, None)
    with pytest.raises(Forbidden) as err:
        auth.sign_in(store, settings, name, PASSWORD, None, None)
    assert err.value.message.code == "auth.locked"


def test_unknown_names_lock_like_real_ones(store: sa.Engine, settings: Settings) -> None:
    ghost = uname("ghost")
    for _ in range(5):
        with pytest.raises(auth.Unauthorized):
            auth.sign_in(store, settings, ghost, PASSWORD, None, None)
    with pytest.raises(Forbidden) as err:
        auth.sign_in(store, settings, ghost, PASSWORD, None, None)
    assert err.value.message.code == "auth.locked"


def test_inactive_account(store: sa.Engine, settings: Settings) -> None:
    user = make(store, settings)
    users.set_active(store, user["username"], False)
    with pytest.raises(auth.Unauthorized) as err:  # a wrong password reveals nothing about the account
        auth.sign_in(store, settings, user["username"], "Wrong-Password-99", None, None)
    assert err.value.message.code == "auth.invalid_credentials"
    with pytest.raises(Forbidden) as err:
        auth.sign_in(store, settings, user["username"], PASSWORD, None, None)
    assert err.value.message.code == "auth.inactive"


@pytest.mark.parametrize("role", ["sysadmin", "secadmin", "auditadmin", "data_admin"])
def test_administrator_needs_totp(store: sa.Engine, settings: Settings, role: str) -> None:
    admin = make(store, settings, [role])
    name = admin["username"]
    with pytest.raises(Forbidden) as err:
        auth.sign_in(store, settings, name, PASSWORD, "123456", None)
    assert err.value.message.code == "auth.totp_not_enrolled"
    secret, _uri = users.enrol_totp(store, settings, name)
    with pytest.raises(auth.Unauthorized) as err:
        auth.sign_in(store, settings, name, PASSWORD, None, None)
    assert err.value.message.code == "auth.otp_required"
    good = pyotp.TOTP(secret).now()
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    with pytest.raises(auth.Unauthorized) as err:
        auth.sign_in(store, settings, name, PASSWORD, wrong, None)
    assert err.value.message.code == "auth.otp_invalid"
    with pytest.raises(auth.Unauthorized) as err:  # a valid code never rescues a wrong password
        auth.sign_in(store, settings, name, "Wrong-Password-99", good, None)
    assert err.value.message.code == "auth.invalid_credentials"
    assert failures(store, name) == 4
    assert auth.sign_in(store, settings, name, PASSWORD, good, None)["roles"] == [role]


def test_enrolled_totp_is_required_even_for_a_viewer(store: sa.Engine, settings: Settings) -> None:
    user = make(store, settings)
    secret, _ = users.enrol_totp(store, settings, user["username"])
    with pytest.raises(auth.Unauthorized) as err:
        auth.sign_in(store, settings, user["username"], PASSWORD, "", None)
    assert err.value.message.code == "auth.otp_required"
    assert auth.sign_in(store, settings, user["username"], PASSWORD, pyotp.TOTP(secret).now(), None)["id"] == user["id"]


def test_old_hash_is_replaced_at_sign_in(store: sa.Engine, settings: Settings) -> None:
    user = make(store, settings)
    old = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1, type=Type.ID).hash(PASSWORD)
    with store.begin() as conn:
        conn.execute(users_table.update().where(users_table.c.id == user["id"]).values(password_hash=old))
    auth.sign_in(store, settings, user["username"], PASSWORD, None, None)
    new = users.get_user_row(store, user["id"])["password_hash"]
    assert new != old and new.startswith("$argon2id$v=19$m=1024,t=1,p=1$")


def test_account_without_password_cannot_sign_in(store: sa.Engine, settings: Settings) -> None:
    name = uname()
    users.create_user(store, settings, name, "230100", ["viewer"], None)
    with pytest.raises(auth.Unauthorized) as err:
        auth.sign_in(store, settings, name, "", None, None)
    assert err.value.message.code == "auth.invalid_credentials"
