"""GET /api/here: what is at a point (此处是什么), for the calling principal, through the one gate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from landcloud.access.decisions import decide_layers
from landcloud.deps import EngineDep, ReadsDep
from landcloud.publish.here import what_is_here

router = APIRouter(prefix="/api/here", tags=["map"])


@router.get("", response_model=dict[str, Any])
def here(
    request: Request,
    engine: EngineDep,
    reads: ReadsDep,
    lon: Annotated[float | None, Query(description="经度 / longitude (CGCS2000 unless crs says otherwise)")] = None,
    lat: Annotated[float | None, Query(description="纬度 / latitude")] = None,
    x: Annotated[float | None, Query(description="平面坐标 x（东坐标，含带号）/ x in crs (easting)")] = None,
    y: Annotated[float | None, Query(description="平面坐标 y（北坐标）/ y in crs (northing)")] = None,
    crs: Annotated[
        str | None, Query(max_length=200, description="坐标系，如 EPSG:4530 / CRS of the point, e.g. EPSG:4530 (default EPSG:4490)")
    ] = None,
) -> JSONResponse:
    """Every layer the caller may read with features at the point: {"point", "input", "gauss_kruger",
    "division", "layers", "checked", "generated_at"}; a point outside every layer gives `layers: []`."""
    # a JSONResponse straight away: the report is plain JSON already, and FastAPI's validation and
    # jsonable_encoder pass over it cost ~10% of the request (benchmarks/profiles/here-*.txt)
    # the access generation, then (unless the caller's readable datasets are remembered under it: access.decisions)
    # authentication, the caller's facts and the dataset list, then the features: one connection, in this worker
    # thread (deps.Reads)
    decided = decide_layers(request.app.state.layer_decisions, engine, request, reads.conn, lambda: reads.principal)
    report = what_is_here(engine, decided, lon=lon, lat=lat, x=x, y=y, crs=crs, conn=reads.conn, defer=reads.after_close)
    reads.close()  # back to the pool (then the audit entry) before the report is written and sent
    return JSONResponse(report)
