"""GET /api/search: the catalogue's full-text search (Chinese bigrams), only what the caller may see."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from landcloud.catalog import search as search_mod
from landcloud.deps import EngineDep, PrincipalDep
from landcloud.geo.bbox import parse_bbox

router = APIRouter(prefix="/api/search", tags=["catalog"])


@router.get("")
def search_catalogue(
    engine: EngineDep,
    principal: PrincipalDep,
    q: Annotated[str | None, Query(max_length=200, description="全文检索词 / search text (Chinese or English)")] = None,
    theme: Annotated[str | None, Query(description="主题 / theme code")] = None,
    unit: Annotated[str | None, Query(max_length=32, description="权属单位代码（精确）/ owner unit code (exact)")] = None,
    region: Annotated[str | None, Query(max_length=12, description="区域代码：权属单位在其内 / region code containing the owner unit")] = None,
    sharing_class: Annotated[str | None, Query(description="共享类型 / sharing class")] = None,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (CGCS2000 lon/lat)")] = None,
    limit: Annotated[int, Query(ge=0, le=search_mod.MAX_LIMIT)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Catalogue entries matching `q` and the filters, best first; {"total", "limit", "offset", "items"}."""
    return search_mod.search(
        engine,
        principal,
        q,
        theme=theme or None,
        unit=unit or None,
        region=region or None,
        sharing_class=sharing_class or None,
        bbox=parse_bbox(bbox) if bbox else None,
        limit=limit,
        offset=offset,
    )
