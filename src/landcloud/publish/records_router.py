"""OGC API – Records over the catalogue (/ogc/collections/catalog…) and its DCAT JSON-LD (/api/catalog/dcat).

Mount this router before the OGC API – Features router: its /ogc/collections/{collectionId}
would otherwise take "catalog" for a dataset id.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from landcloud.catalog import search as search_mod
from landcloud.deps import EngineDep, PrincipalDep
from landcloud.geo.bbox import parse_bbox
from landcloud.messages import NotFound
from landcloud.publish import records

router = APIRouter(tags=["catalogue records"])


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


class GeoJSONResponse(JSONResponse):
    media_type = records.GEOJSON


class JSONLDResponse(JSONResponse):
    media_type = "application/ld+json"


@router.get(f"/ogc/collections/{records.COLLECTION_ID}")
def catalog_collection(request: Request, _principal: PrincipalDep) -> dict[str, Any]:
    """The record collection (itemType "record")."""
    return records.catalog_collection(base_url(request))


@router.get(f"/ogc/collections/{records.COLLECTION_ID}/items", response_class=GeoJSONResponse)
def catalog_items(
    request: Request,
    engine: EngineDep,
    principal: PrincipalDep,
    q: Annotated[str | None, Query(max_length=200, description="全文检索：空格为“且”，逗号为“或” / spaces AND, commas OR")] = None,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (lon/lat)")] = None,
    type: Annotated[str | None, Query(description="资源类型 / resource type (dataset)")] = None,
    limit: Annotated[int, Query(ge=1, le=search_mod.MAX_LIMIT)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> GeoJSONResponse:
    """Records the caller may see, best match first when `q` is given."""
    types = [t.strip() for t in type.split(",") if t.strip()] if type else None
    body = records.items(
        engine, principal, base_url(request), q=q or None, bbox=parse_bbox(bbox) if bbox else None, types=types,
        limit=limit, offset=offset,
    )
    return GeoJSONResponse(body)


@router.get(f"/ogc/collections/{records.COLLECTION_ID}/items/{{record_id}}", response_class=GeoJSONResponse)
def catalog_item(record_id: str, request: Request, engine: EngineDep, principal: PrincipalDep) -> GeoJSONResponse:
    """One record (404 for an entry the caller may not see, as for a missing one)."""
    return GeoJSONResponse(records.get_record(engine, principal, base_url(request), record_id))


@router.get("/api/catalog/dcat", response_class=JSONLDResponse)
def dcat(
    request: Request,
    engine: EngineDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=search_mod.MAX_LIMIT)] = search_mod.MAX_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONLDResponse:
    """The catalogue entries the caller may see as a DCAT catalogue (JSON-LD)."""
    return JSONLDResponse(records.dcat_catalog(engine, principal, base_url(request), limit=limit, offset=offset))


@router.get("/api/catalog/themes")
def themes(request: Request, _principal: PrincipalDep) -> dict[str, Any]:
    """The theme scheme used by records and DCAT."""
    return records.themes(base_url(request))


@router.get("/api/catalog/terms/{key}", response_class=PlainTextResponse)
def terms(key: str, _principal: PrincipalDep) -> PlainTextResponse:
    """The terms of use of a sharing class (the records' license link)."""
    if key not in records.TERMS:
        raise NotFound("catalog.no_terms", f"没有“{key}”的使用条件", f"no terms named '{key}'")
    zh, en = records.TERMS[key]
    return PlainTextResponse(f"{zh}\n\n{en}\n")
