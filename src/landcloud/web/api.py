"""JSON the portal needs besides the data services: map settings and region lookup.

Both are open to everyone (no dataset content): outside clients may use them as the portal does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from landcloud.access.regions import find_regions
from landcloud.codes.landuse import CLASS_FIELDS
from landcloud.deps import EngineDep, PrincipalDep, SettingsDep
from landcloud.messages import LandcloudError

router = APIRouter(tags=["portal"])


@router.get("/api/portal/config", summary="Portal map settings: basemap and land-use colours / 门户地图配置")
def portal_config(request: Request, settings: SettingsDep, principal: PrincipalDep) -> dict[str, Any]:
    return {
        "basemap": {"url": settings.basemap_url, "attribution": settings.basemap_attribution} if settings.basemap_url else None,
        "landuse_legend": request.app.state.landuse_legend,
        "landuse_fields": list(CLASS_FIELDS),  # the fields tiles carry at every zoom
    }


@router.get("/api/regions", summary="Find administrative regions by name or code / 按名称或代码查找行政区")
def regions(
    engine: EngineDep,
    principal: PrincipalDep,
    q: Annotated[str | None, Query(max_length=40, description="name part or code prefix, e.g. 道里 or 2301")] = None,
    level: Annotated[Literal["province", "prefecture", "county"] | None, Query(description="only regions of this level")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 10,
) -> dict[str, Any]:
    if not (q or "").strip() and not level:
        raise LandcloudError("regions.no_query", "请给出行政区名称、代码（q）或级别（level）", "give a region name or code (q) or a level")
    items = find_regions(engine, q, level, limit)
    return {"regions": items, "count": len(items)}
