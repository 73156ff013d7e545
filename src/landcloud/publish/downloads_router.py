"""GET /api/datasets/{id}/download: a dataset version as a file, streamed, audited, through the gate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from landcloud.deps import EngineDep, PrincipalDep, SettingsDep
from landcloud.publish import downloads

router = APIRouter(prefix="/api/datasets", tags=["downloads"])


@router.get("/{dataset_id}/download")
def download(
    dataset_id: str,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    format: Annotated[str, Query(description="gpkg | geojson | shp | csv | fgb | parquet | kml")] = "gpkg",
    crs: Annotated[str | None, Query(description="EPSG:4490 (default), CRS84, EPSG:4326, EPSG:4491–4554, EPSG:3857")] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
    encoding: Annotated[str | None, Query(description="Shapefile attribute encoding: UTF-8 (default) or GBK")] = None,
) -> StreamingResponse:
    """The rows and fields the caller may see of a version, in the chosen format and CRS (every download is audited)."""
    dl = downloads.prepare(engine, settings, principal, dataset_id, format, crs, version, encoding)
    return StreamingResponse(dl.body, media_type=dl.media_type, headers=dl.headers)
