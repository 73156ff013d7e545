"""Administration over HTTP for the separated roles: units and users (security administrator),
system status (system administrator). Neither role reads data through these routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import make_url

from landcloud import __version__
from landcloud.access import audit, gate, units, users
from landcloud.access.roles import ROLES, SECADMIN, SYSADMIN
from landcloud.catalog.datasets import count_datasets
from landcloud.deps import EngineDep, PrincipalDep, SettingsDep
from landcloud.store.db import backend_of
from landcloud.store.migrate import current_revision

router = APIRouter(tags=["administration"])


class DepartmentIn(BaseModel):
    code: str
    name: str
    region: str


class UserIn(BaseModel):
    username: str
    unit: str
    roles: list[str]
    password: str = Field(min_length=1, max_length=256)
    display_name: str = ""


class UserPatch(BaseModel):
    roles: list[str] | None = None
    active: bool | None = None


@router.get("/api/units")
def list_units(engine: EngineDep, principal: PrincipalDep, kind: str | None = None) -> dict[str, Any]:
    gate.require_signed_in(principal)
    items = units.list_units(engine, kind)
    return {"units": items, "count": len(items)}


@router.post("/api/units", status_code=201)
def add_department(body: DepartmentIn, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_role(principal, SECADMIN)
    unit = units.add_department(engine, body.code, body.name, body.region)
    audit.record(engine, principal, "unit.create", detail={"code": body.code, "name": body.name, "region": body.region})
    return unit


@router.get("/api/roles")
def list_roles() -> dict[str, Any]:
    return {"roles": [{"id": k, "name_zh": zh, "name_en": en} for k, (zh, en) in ROLES.items()]}


@router.get("/api/users")
def list_users(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_role(principal, SECADMIN)
    items = users.list_users(engine)
    return {"users": items, "count": len(items)}


@router.post("/api/users", status_code=201)
def create_user(body: UserIn, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_role(principal, SECADMIN)
    return users.create_user(
        engine, settings, body.username, body.unit, body.roles, body.password, body.display_name, actor=principal
    )


@router.patch("/api/users/{username}")
def update_user(username: str, body: UserPatch, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_role(principal, SECADMIN)
    if (principal.username or "").lower() == username.lower():
        raise gate.forbidden("不能修改自己的角色或状态", "you cannot change your own roles or status")
    result = users.get_user(engine, username)
    if body.roles is not None:
        result = users.set_roles(engine, username, body.roles, actor=principal)
    if body.active is not None:
        result = users.set_active(engine, username, body.active, actor=principal)
    return result


@router.post("/api/users/{username}/totp")
def reset_totp(username: str, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep, response: Response) -> dict[str, Any]:
    """Enrol a new one-time-code secret for an account (a lost phone, a first enrolment), replacing the old one.

    The secret is shown in this answer only, for the security administrator to hand over; it is never
    readable again. One's own second factor cannot be reset this way: a stolen session must not be able
    to replace the factor that protects it.
    """
    gate.require_role(principal, SECADMIN)
    if (principal.username or "").lower() == username.lower():
        raise gate.forbidden("不能重置自己的动态口令", "you cannot reset your own one-time-code (TOTP) secret")
    secret, uri = users.enrol_totp(engine, settings, username, actor=principal)
    response.headers["Cache-Control"] = "no-store"
    return {"username": users.get_user(engine, username)["username"], "secret": secret, "otpauth_uri": uri}


@router.get("/api/system/status")
def system_status(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_role(principal, SYSADMIN)
    return {
        "version": __version__,
        "store": backend_of(engine),
        "schema_revision": current_revision(engine),
        "datasets": count_datasets(engine),
        "units": units.count_units(engine),
        "users": users.count_users(engine),
    }


SECRET_SETTINGS = frozenset({"secret_key", "oidc_client_secret"})


def _shown_setting(name: str, value: Any) -> tuple[Any, bool]:
    """(value as shown, is_secret): secrets only say whether they are set; a database URL loses its password."""
    if name in SECRET_SETTINGS:
        return None, True
    if name == "database_url" and value:
        return make_url(value).render_as_string(hide_password=True), False
    return (str(value) if isinstance(value, Path) else value), False


@router.get("/api/system/settings")
def system_settings(settings: SettingsDep, principal: PrincipalDep) -> dict[str, Any]:
    """The effective settings with their LANDCLOUD_* names, read-only; secrets are never shown, only whether they are set."""
    gate.require_role(principal, SYSADMIN)
    items = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        shown, secret = _shown_setting(name, value)
        items.append({
            "name": name, "env": f"LANDCLOUD_{name.upper()}", "value": shown, "secret": secret, "set": value is not None,
            "default": value == field.default, "description": field.description or "",
            "description_zh": extra.get("description_zh", "") if isinstance(extra := field.json_schema_extra, dict) else "",
        })
    return {"settings": items, "count": len(items)}
