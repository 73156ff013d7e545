"""Public editions: release profiles, building, listing and approving editions (all through the gate)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from landcloud.deps import EngineDep, PrincipalDep, SettingsDep
from landcloud.publish import editions, editions_jobs

router = APIRouter(prefix="/api", tags=["editions"])
EditionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/datasets/{dataset_id}/release-profile")
def get_profile(dataset_id: str, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The dataset's release profile (its data administrator)."""
    return editions.get_profile(engine, principal, dataset_id)


@router.put("/datasets/{dataset_id}/release-profile")
def put_profile(dataset_id: str, engine: EngineDep, principal: PrincipalDep, profile: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Set the release profile: fields kept, classes/values removed, tolerance (m), GCJ-02, aggregation, attribution, 审图号."""
    return editions.set_profile(engine, principal, dataset_id, profile)


@router.post("/datasets/{dataset_id}/editions", status_code=201)
def build_edition(
    dataset_id: str, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep,
    version: Annotated[int | None, Query(ge=1, description="source version (default: the newest)")] = None,
) -> dict[str, Any]:
    """Apply the profile to a version: a new edition with its check report, pending approval."""
    return editions.build(engine, settings, principal, dataset_id, version)


@router.get("/datasets/{dataset_id}/editions")
def list_editions(dataset_id: str, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Editions of a master, newest first (others than the owner unit see the published one), and for the owner unit
    the state of the latest rebuild a new version asked for (queued, building, built, failed with its error)."""
    listed = editions.list_editions(engine, principal, dataset_id)
    return {"dataset_id": dataset_id, "editions": listed, "build": editions_jobs.state_for(engine, principal, dataset_id)}


@router.get("/editions/{edition_id}")
def get_edition(edition_id: EditionId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """One edition with its check report."""
    return editions.edition_for(engine, principal, edition_id)


@router.post("/editions/{edition_id}/approve")
def approve(edition_id: EditionId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Publish a pending edition (the owner unit's data administrator); the previous one is superseded."""
    return editions.approve(engine, principal, edition_id)
