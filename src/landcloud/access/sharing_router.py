"""HTTP API of sharing applications and grants."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from landcloud.access import gate, sharing
from landcloud.deps import EngineDep, PrincipalDep
from landcloud.messages import NotFound

router = APIRouter(tags=["sharing"])


class ApplicationIn(BaseModel):
    dataset_id: str
    purpose: str = Field(min_length=1, max_length=2000)
    fields: list[str] | None = None
    region: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None


class DecisionIn(BaseModel):
    approve: bool
    comment: str = Field(default="", max_length=2000)


@router.post("/api/applications", status_code=201)
def create_application(body: ApplicationIn, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_signed_in(principal)
    ds, access = gate.dataset_for_catalogue(engine, principal, body.dataset_id)
    return sharing.apply(
        engine, principal, ds.id, purpose=body.purpose, fields=body.fields, region=body.region,
        period_start=body.period_start, period_end=body.period_end,
        already_visible=access.visible and access.unrestricted,
    )


@router.get("/api/applications")
def list_applications(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_signed_in(principal)
    return sharing.list_applications(engine, principal)


@router.get("/api/applications/{application_id}")
def get_application(application_id: str, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_signed_in(principal)
    lists = sharing.list_applications(engine, principal)
    for app in [*lists["mine"], *lists["inbox"]]:
        if app["id"] == application_id:
            return app
    raise NotFound("application.not_found", f"申请 {application_id} 不存在", f"application {application_id} does not exist")


@router.post("/api/applications/{application_id}/decision")
def decide_application(
    application_id: str, body: Annotated[DecisionIn, Body()], engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    gate.require_signed_in(principal)
    return sharing.decide(engine, principal, application_id, body.approve, body.comment)


@router.get("/api/grants")
def list_grants(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_signed_in(principal)
    return sharing.list_grants(engine, principal)


@router.post("/api/grants/{grant_id}/revoke")
def revoke_grant(grant_id: str, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.require_signed_in(principal)
    return sharing.revoke(engine, principal, grant_id)
