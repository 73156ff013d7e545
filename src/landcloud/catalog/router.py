"""JSON API of the catalogue: datasets, their metadata, versions, differences, features, rollback.

Every handler asks the gate: what the caller may see (datasets, rows, fields) and whether it
may change something. Nothing here reads the store directly.
"""

from __future__ import annotations

from typing import Annotated, Any

import shapely
import shapely.geometry
from fastapi import APIRouter, BackgroundTasks, Body, Query
from fastapi.responses import StreamingResponse

from landcloud.access import audit, gate
from landcloud.access.policy import Access
from landcloud.catalog import datasets as catalog
from landcloud.catalog import history
from landcloud.deps import EngineDep, PrincipalDep, SettingsDep
from landcloud.geo.bbox import parse_bbox
from landcloud.publish import editions_jobs, fingerprints
from landcloud.publish.geojson import feature_collection
from landcloud.store.features import DiffEntry, DiffKind, StoredFeature

router = APIRouter(prefix="/api/datasets", tags=["datasets"])
DIFF_KINDS: tuple[DiffKind, ...] = ("added", "removed", "changed")


@router.get("")
def list_datasets(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    items = [gate.dataset_metadata(ds, access) for ds, access in gate.visible_datasets(engine, principal)]
    return {"datasets": items, "count": len(items)}


@router.get("/{dataset_id}")
def get_dataset(dataset_id: str, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    ds, access = gate.dataset_for_catalogue(engine, principal, dataset_id)
    return gate.dataset_metadata(ds, access)


@router.patch("/{dataset_id}")
def patch_dataset(
    dataset_id: str, engine: EngineDep, principal: PrincipalDep, changes: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    ds, _ = gate.dataset_for_catalogue(engine, principal, dataset_id)
    gate.require_dataset_admin(principal, ds)
    updated = catalog.update_metadata(
        engine, dataset_id, changes,
        lambda conn: audit.record(engine, principal, "dataset.update", dataset_id=dataset_id, detail={"changes": changes}, conn=conn),
    )
    return gate.dataset_metadata(updated, gate.access_for(engine, principal, updated))


@router.get("/{dataset_id}/versions")
def list_versions(dataset_id: str, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    _, access = gate.dataset_for_catalogue(engine, principal, dataset_id)
    versions = [v.to_dict() for v in catalog.list_versions(engine, dataset_id) if access.version in (None, v.version)]
    if not access.visible:  # listed only: the history, not where the data lies
        for v in versions:
            v["extent"] = None
    return {"dataset_id": dataset_id, "versions": versions}


@router.get("/{dataset_id}/versions/{version}")
def get_version(dataset_id: str, version: int, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """A version; its quality report (feature keys and locations) only for the owner unit's staff."""
    ds, access = gate.dataset_for_read(engine, principal, dataset_id)
    full = gate.may_see_submissions_of(principal, ds.owner_unit)
    return catalog.get_version(engine, dataset_id, gate.readable_version(ds, access, version)).to_dict(with_report=full)


Pair = tuple[DiffEntry, StoredFeature | None, StoredFeature | None]


def _shaped_pair(access: Access, entry: DiffEntry) -> Pair | None:
    """The entry's before/after as the caller may see them; None when it may see neither."""
    before_f = gate.shape_feature(access, entry.before) if entry.before else None
    after_f = gate.shape_feature(access, entry.after) if entry.after else None
    return None if before_f is None and after_f is None else (entry, before_f, after_f)


def _marked_pairs(pairs: list[Pair], marker: fingerprints.Marker | None) -> list[Pair]:
    """The page's geometries with a grantee's fingerprint, marked in one batch (one projection per 500, not per feature)."""
    if marker is None:
        return pairs
    present = [f for _, b, a in pairs for f in (b, a) if f is not None]
    marked = iter(list(fingerprints.marked(present, marker)))
    return [(e, next(marked) if b is not None else None, next(marked) if a is not None else None) for e, b, a in pairs]


def _entry_dict(pair: Pair, geometry: bool) -> dict[str, Any]:
    entry, before_f, after_f = pair
    before = before_f.props if before_f else None
    after = after_f.props if after_f else None
    changed = [f for f in history.changed_fields(entry) if f == "geometry" or f in (before or {}) or f in (after or {})]
    out = {"kind": entry.kind, "key": entry.fkey, "changed_fields": changed, "before": before, "after": after}
    if geometry:  # for drawing the changes on a map
        out["geometry_before"] = _geojson(before_f)
        out["geometry_after"] = _geojson(after_f)
    return out


def _geojson(feat: StoredFeature | None) -> dict[str, Any] | None:
    if feat is None or feat.wkb is None:
        return None
    return shapely.geometry.mapping(shapely.from_wkb(feat.wkb))


@router.get("/{dataset_id}/versions/{a}/diff/{b}")
def diff_versions(
    dataset_id: str,
    a: int,
    b: int,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    geometry: Annotated[bool, Query(description="include the geometries before/after as GeoJSON / 附带变化前后的几何")] = False,
) -> dict[str, Any]:
    """Counts of added, removed and changed features, and the first `limit` of them (rows the caller may see)."""
    ds, access = gate.dataset_for_read(engine, principal, dataset_id)
    a, b = gate.readable_version(ds, access, a), gate.readable_version(ds, access, b)
    marker = fingerprints.api_marker(engine, settings, principal, ds, b, access) if geometry else None
    page: list[Pair] = []
    if access.rows is None:
        counts = history.diff_counts(engine, ds, a, b)
        page = [p for p in (_shaped_pair(access, x) for x in history.iter_diff(engine, ds, a, b, limit=limit, offset=offset)) if p]
    else:  # restricted rows: count what the caller may see, one streamed pass
        counts = {k: 0 for k in DIFF_KINDS}
        seen = 0
        for x in history.iter_diff(engine, ds, a, b):
            shaped = _shaped_pair(access, x)
            if shaped is None:
                continue
            counts[x.kind] += 1
            if offset <= seen < offset + limit:
                page.append(shaped)
            seen += 1
    entries = [_entry_dict(p, geometry) for p in _marked_pairs(page, marker)]
    if access.audited:
        audit.record(engine, principal, "data.diff", dataset_id=ds.id, detail={"from": a, "to": b, "count": sum(counts.values())})
    return {"dataset_id": dataset_id, "from": a, "to": b, "counts": counts, "entries": entries, "limit": limit, "offset": offset}


@router.post("/{dataset_id}/rollback")
def rollback(
    dataset_id: str, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep, to: Annotated[int, Body(embed=True)],
    background: BackgroundTasks,
) -> dict[str, Any]:
    ds, _ = gate.dataset_for_catalogue(engine, principal, dataset_id)
    gate.require_dataset_admin(principal, ds)
    result = history.rollback(
        engine, dataset_id, to,
        in_transaction=lambda conn, result: audit.record(
            engine, principal, "dataset.rollback", dataset_id=dataset_id, version=result["version"], detail=result, conn=conn
        ),
    )
    build = editions_jobs.schedule(background, engine, settings, dataset_id)  # after the response, never inside it
    return {**result, "edition_build": build} if build is not None else result


@router.get("/{dataset_id}/features")
def features(
    dataset_id: str,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    version: int | None = None,
    bbox: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """A version's features as GeoJSON (EPSG:4490 lon/lat), streamed; only the rows and fields the caller may see."""
    ds, access = gate.dataset_for_read(engine, principal, dataset_id)
    v = gate.readable_version(ds, access, version)
    marker = fingerprints.api_marker(engine, settings, principal, ds, v, access)
    feats = fingerprints.marked(gate.read_features(engine, principal, ds, access, v, bbox=parse_bbox(bbox), limit=limit, offset=offset),
                                marker)
    return StreamingResponse(feature_collection(feats, {"dataset": ds.id, "version": v}), media_type="application/geo+json")
