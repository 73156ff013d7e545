"""JSON API of the catalogue: datasets, their metadata, versions, differences, features, rollback."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import StreamingResponse

from landcloud.access import gate
from landcloud.catalog import datasets as catalog
from landcloud.catalog import history
from landcloud.deps import EngineDep, PrincipalDep
from landcloud.messages import LandcloudError
from landcloud.publish.geojson import feature_collection
from landcloud.store.features import BBox

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


def parse_bbox(bbox: str | None) -> BBox | None:
    if bbox is None:
        return None
    try:
        parts = [float(x) for x in bbox.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4 or parts[0] > parts[2] or parts[1] > parts[3]:
        raise LandcloudError(
            "request.bad_bbox",
            "bbox 应为 minx,miny,maxx,maxy 四个数（经度、纬度，CGCS2000）",
            "bbox must be four numbers minx,miny,maxx,maxy (longitude, latitude, CGCS2000)",
        )
    return parts[0], parts[1], parts[2], parts[3]


@router.get("")
def list_datasets(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    items = [ds.to_dict() for ds in gate.visible_datasets(engine, principal)]
    return {"datasets": items, "count": len(items)}


@router.get("/{dataset_id}")
def get_dataset(dataset_id: str, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    return gate.dataset_for_read(engine, principal, dataset_id).to_dict()


@router.patch("/{dataset_id}")
def patch_dataset(
    dataset_id: str, engine: EngineDep, principal: PrincipalDep, changes: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    gate.dataset_for_write(engine, principal, dataset_id)
    return catalog.update_metadata(engine, dataset_id, changes).to_dict()


@router.get("/{dataset_id}/versions")
def list_versions(dataset_id: str, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.dataset_for_read(engine, principal, dataset_id)
    versions = [v.to_dict() for v in catalog.list_versions(engine, dataset_id)]
    return {"dataset_id": dataset_id, "versions": versions}


@router.get("/{dataset_id}/versions/{version}")
def get_version(dataset_id: str, version: int, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    gate.dataset_for_read(engine, principal, dataset_id)
    return catalog.get_version(engine, dataset_id, version).to_dict(with_report=True)


@router.get("/{dataset_id}/versions/{a}/diff/{b}")
def diff_versions(
    dataset_id: str,
    a: int,
    b: int,
    engine: EngineDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Counts of added, removed and changed features, and the first `limit` of them."""
    ds = gate.dataset_for_read(engine, principal, dataset_id)
    counts = history.diff_counts(engine, ds, a, b)
    entries = []
    for e in history.iter_diff(engine, ds, a, b, limit=limit, offset=offset):
        entries.append(
            {
                "kind": e.kind,
                "key": e.fkey,
                "changed_fields": history.changed_fields(e),
                "before": e.before.props if e.before else None,
                "after": e.after.props if e.after else None,
            }
        )
    return {"dataset_id": dataset_id, "from": a, "to": b, "counts": counts, "entries": entries, "limit": limit, "offset": offset}


@router.post("/{dataset_id}/rollback")
def rollback(
    dataset_id: str, engine: EngineDep, principal: PrincipalDep, to: Annotated[int, Body(embed=True)]
) -> dict[str, Any]:
    gate.dataset_for_write(engine, principal, dataset_id)
    return history.rollback(engine, dataset_id, to)


@router.get("/{dataset_id}/features")
def features(
    dataset_id: str,
    engine: EngineDep,
    principal: PrincipalDep,
    version: int | None = None,
    bbox: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """A version's features as GeoJSON (EPSG:4490 lon/lat), streamed."""
    ds = gate.dataset_for_read(engine, principal, dataset_id)
    v = catalog.resolve_version(ds, version)
    feats = gate.read_features(engine, principal, ds, v, bbox=parse_bbox(bbox), limit=limit, offset=offset)
    return StreamingResponse(feature_collection(feats, {"dataset": ds.id, "version": v}), media_type="application/geo+json")
