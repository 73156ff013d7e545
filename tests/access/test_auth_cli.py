"""`landcloud users …` on both stores (typer's CliRunner on users_app)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pyotp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, Type
from typer.testing import CliRunner

from landcloud.access import auth, passwords, users
from landcloud.access.tables import audit_log
from landcloud.access.units import load_divisions
from landcloud.access.users_cli import users_app
from landcloud.config import Settings, get_settings
from landcloud.messages import Forbidden

from conftest import REFERENCE

PASSWORD = "Kraal-Birch-77-Ledger"


@pytest.fixture
def cli(engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID))
    passwords._dummy_hash.cache_clear()
    load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    monkeypatch.setenv("LANDCLOUD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LANDCLOUD_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("LANDCLOUD_SECRET_KEY", settings.secret_key or "")
    get_settings.cache_clear()
    try:
        yield CliRunner()
    finally:
        get_settings.cache_clear()
        passwords._dummy_hash.cache_clear()


def name() -> str:
    return f"cli{uuid.uuid4().hex[:8]}"


def test_add_list_and_sign_in(cli: CliRunner, engine: sa.Engine, settings: Settings) -> None:
    n = name()
    r = cli.invoke(users_app, ["add", n, "--unit", "230100", "--role", "submitter", "--role", "viewer",
                               "--display-name", "王五"], input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    created = json.loads(r.stdout)
    assert created["username"] == n and created["roles"] == ["submitter", "viewer"] and created["display_name"] == "王五"
    assert PASSWORD not in r.output and "argon2" not in r.output
    listed = cli.invoke(users_app, ["list"])
    assert listed.exit_code == 0
    assert [u["username"] for u in json.loads(listed.stdout)] == [n]
    assert "password_hash" not in listed.stdout and "argon2" not in listed.stdout
    assert auth.sign_in(engine, settings, n, PASSWORD, None, None)["id"] == created["id"]
    with engine.connect() as conn:
        actions = conn.execute(sa.select(audit_log.c.action, audit_log.c.actor).where(audit_log.c.action == "user.create")
                               .order_by(audit_log.c.seq.desc()).limit(1)).one()
    assert actions.actor == "system:users-cli"


@pytest.mark.parametrize(
    ("args", "password", "zh", "en"),
    [
        (["add", "ab", "--unit", "230100", "--role", "viewer"], PASSWORD, "用户名", "username"),
        (["add", "okname1", "--unit", "999999", "--role", "viewer"], PASSWORD, "不存在", "does not exist"),
        (["add", "okname2", "--unit", "230100", "--role", "wizard"], PASSWORD, "未知角色", "unknown role"),
        (["add", "okname3", "--unit", "230100"], PASSWORD, "至少需要一个角色", "at least one role"),
        (["add", "okname4", "--unit", "230100", "--role", "sysadmin", "--role", "viewer"], PASSWORD, "三员分立", "separation"),
        (["add", "okname5", "--unit", "230100", "--role", "viewer"], "short", "密码不符合要求", "does not meet the policy"),
        (["add", "okname6", "--unit", "230100", "--role", "viewer"], "", "未提供密码", "no password"),
    ],
)
def test_bad_input_exits_2_bilingual_and_changes_nothing(cli: CliRunner, engine: sa.Engine, args: list[str], password: str,
                                                         zh: str, en: str) -> None:
    r = cli.invoke(users_app, args, input=password + "\n")
    assert r.exit_code == 2, r.output
    assert zh in r.stderr and en in r.stderr
    assert users.list_users(engine) == []


def test_totp_roles_disable_enable_passwd(cli: CliRunner, engine: sa.Engine, settings: Settings) -> None:
    n = name()
    assert cli.invoke(users_app, ["add", n, "--unit", "230100", "--role", "viewer"], input=PASSWORD + "\n").exit_code == 0
    r = cli.invoke(users_app, ["roles", n, "--role", "data_admin"])
    assert r.exit_code == 0 and json.loads(r.stdout)["roles"] == ["data_admin"]
    with pytest.raises(Forbidden) as err:
        auth.sign_in(engine, settings, n, PASSWORD, None, None)
    assert err.value.message.code == "auth.totp_not_enrolled"

    r = cli.invoke(users_app, ["totp", n])
    assert r.exit_code == 0
    secret = next(line.split(": ", 1)[1] for line in r.stdout.splitlines() if line.startswith("secret: "))
    uri = next(line.split(": ", 1)[1] for line in r.stdout.splitlines() if line.startswith("uri: "))
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert auth.sign_in(engine, settings, n, PASSWORD, pyotp.TOTP(secret).now(), None)["roles"] == ["data_admin"]

    r = cli.invoke(users_app, ["disable", n])
    assert r.exit_code == 0 and json.loads(r.stdout)["active"] is False
    with pytest.raises(Forbidden) as err:
        auth.sign_in(engine, settings, n, PASSWORD, pyotp.TOTP(secret).now(), None)
    assert err.value.message.code == "auth.inactive"
    assert json.loads(cli.invoke(users_app, ["enable", n]).stdout)["active"] is True

    new = "Another-Good-Pass-42"
    r = cli.invoke(users_app, ["passwd", n], input=new + "\n")
    assert r.exit_code == 0 and new not in r.output
    assert auth.sign_in(engine, settings, n, new, pyotp.TOTP(secret).now(), None)["id"]
    r = cli.invoke(users_app, ["passwd", n], input="weak\n")
    assert r.exit_code == 2 and "密码不符合要求" in r.stderr

    r = cli.invoke(users_app, ["roles", n, "--role", "secadmin", "--role", "auditadmin"])
    assert r.exit_code == 2 and "三员分立" in r.stderr and "separation of duties" in r.stderr
    assert users.get_user(engine, n)["roles"] == ["data_admin"]
    for args in (["disable", "ghost-user"], ["totp", "ghost-user"], ["passwd", "ghost-user"], ["roles", "ghost-user", "-r", "viewer"]):
        r = cli.invoke(users_app, args, input=new + "\n")
        assert r.exit_code == 2 and "不存在" in r.stderr and "does not exist" in r.stderr


def test_duplicate_name_refused(cli: CliRunner, engine: sa.Engine) -> None:
    n = name()
    assert cli.invoke(users_app, ["add", n, "--unit", "230100", "--role", "viewer"], input=PASSWORD + "\n").exit_code == 0
    r = cli.invoke(users_app, ["add", n.upper(), "--unit", "230100", "--role", "viewer"], input=PASSWORD + "\n")
    assert r.exit_code == 2 and "已被使用" in r.stderr and "is taken" in r.stderr
    assert len(users.list_users(engine)) == 1
