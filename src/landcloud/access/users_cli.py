"""`landcloud users …`: manage accounts at the server's shell (the local operator).

Passwords are read from standard input when it is not a terminal (one line), otherwise
prompted twice without echo; they never appear on the command line. Every change is audited
as the local operator (system:users-cli). Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Optional

import typer

from landcloud.messages import Conflict, LandcloudError

users_app = typer.Typer(help="Users: add, list, roles, TOTP, enable/disable, password / 用户管理", no_args_is_help=True,
                        add_completion=False)

RoleOpt = Annotated[Optional[list[str]], typer.Option("--role", "-r", help="Role (repeat for several) / 角色（可重复）")]


def _context() -> tuple[Any, Any]:
    from landcloud.config import get_settings
    from landcloud.store.engine import get_engine
    from landcloud.store.migrate import upgrade

    settings = get_settings()
    engine = get_engine(settings)
    upgrade(engine)
    return engine, settings


def _actor() -> Any:
    from landcloud.access.principal import system_principal

    return system_principal("users-cli")


def _fail(exc: LandcloudError) -> None:
    typer.echo(f"错误 error: {exc.message.zh}\n{exc.message.en}", err=True)
    if exc.details:
        typer.echo(json.dumps(exc.details, ensure_ascii=False, default=str), err=True)
    raise typer.Exit(2)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _read_password() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    else:
        password = typer.prompt("密码 password", hide_input=True, confirmation_prompt="再次输入 repeat")
    if not password:
        raise LandcloudError("password.missing", "未提供密码（从标准输入读取一行，或在终端中输入）",
                             "no password given (one line on standard input, or typed at the terminal)")
    return password


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Username / 用户名")],
    unit: Annotated[str, typer.Option("--unit", help="Unit code / 单位代码")] = "",
    role: RoleOpt = None,
    display_name: Annotated[str, typer.Option("--display-name", help="Display name / 姓名")] = "",
) -> None:
    """Create an account (password from stdin or prompt) / 新建用户。"""
    from landcloud.access import users
    from landcloud.access.roles import needs_totp, validate_roles

    try:
        engine, settings = _context()
        # check everything but the password before asking for it
        users.validate_username(name)
        users.check_unit_roles(engine, unit, validate_roles(role or []))
        if users.find_by_username(engine, name) is not None:
            raise Conflict("user.exists", f"用户名“{name}”已被使用", f"the username '{name}' is taken", username=name)
        user = users.create_user(engine, settings, name, unit, role or [], _read_password(), display_name, actor=_actor())
    except LandcloudError as exc:
        _fail(exc)
        return
    _echo_json(user)
    if needs_totp(user["roles"]):
        typer.echo(f"注意：该账户的角色需要动态口令，请运行 `landcloud users totp {user['username']}` 登记\n"
                   f"note: this account's roles need TOTP; run `landcloud users totp {user['username']}` to enrol it", err=True)


@users_app.command("list")
def list_() -> None:
    """List accounts / 列出用户。"""
    from landcloud.access import users

    engine, _settings = _context()
    _echo_json(users.list_users(engine))


@users_app.command("totp")
def totp_(name: Annotated[str, typer.Argument(help="Username / 用户名")]) -> None:
    """Enrol (or replace) the account's TOTP secret; prints the otpauth URI and the secret once / 登记动态口令。"""
    from landcloud.access import users

    try:
        engine, settings = _context()
        secret, uri = users.enrol_totp(engine, settings, name, actor=_actor())
    except LandcloudError as exc:
        _fail(exc)
        return
    typer.echo("请在身份验证器中扫描或输入以下内容（仅显示一次）/ add this to the authenticator app (shown once):")
    typer.echo(f"uri: {uri}")
    typer.echo(f"secret: {secret}")


@users_app.command("roles")
def roles(name: Annotated[str, typer.Argument(help="Username / 用户名")], role: RoleOpt = None) -> None:
    """Replace the account's roles / 设置角色。"""
    from landcloud.access import users

    try:
        engine, _settings = _context()
        user = users.set_roles(engine, name, role or [], actor=_actor())
    except LandcloudError as exc:
        _fail(exc)
        return
    _echo_json(user)


@users_app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="Username / 用户名")]) -> None:
    """Disable the account (its sessions and tokens stop working) / 停用用户。"""
    _set_active(name, False)


@users_app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="Username / 用户名")]) -> None:
    """Enable the account again / 启用用户。"""
    _set_active(name, True)


def _set_active(name: str, active: bool) -> None:
    from landcloud.access import users

    try:
        engine, _settings = _context()
        user = users.set_active(engine, name, active, actor=_actor())
    except LandcloudError as exc:
        _fail(exc)
        return
    _echo_json(user)


@users_app.command("passwd")
def passwd(name: Annotated[str, typer.Argument(help="Username / 用户名")]) -> None:
    """Set a new password (stdin or prompt); ends the account's sessions / 重设密码。"""
    from landcloud.access import users

    try:
        engine, settings = _context()
        users.get_user(engine, name)
        user = users.set_password(engine, settings, name, _read_password(), actor=_actor())
    except LandcloudError as exc:
        _fail(exc)
        return
    typer.echo(f"密码已更新 password changed: {user['username']}")
