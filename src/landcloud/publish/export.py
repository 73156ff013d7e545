"""Export a dataset version to a file, streamed batch by batch (never whole in memory).

GeoJSON is written by our own streaming encoder; GeoPackage and Shapefile are written by GDAL
(pyogrio), appending one batch at a time. Shapefiles carry a .cpg naming their encoding.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyogrio.raw
import shapely

from landcloud.messages import LandcloudError
from landcloud.publish.geojson import feature_collection
from landcloud.store.features import StoredFeature

Format = Literal["geojson", "gpkg", "shp"]
DRIVERS = {"gpkg": "GPKG", "shp": "ESRI Shapefile"}
NUMPY_TYPES = {"integer": "int64", "real": "float64"}


def export_features(
    features: Iterable[StoredFeature],
    fields: list[dict[str, Any]],
    path: Path,
    fmt: Format,
    layer: str,
    encoding: str = "UTF-8",
    batch_size: int = 10_000,
) -> int:
    """Write features to `path`; returns how many were written."""
    if fmt == "geojson":
        count = 0

        def counted() -> Iterable[StoredFeature]:
            nonlocal count
            for f in features:
                count += 1
                yield f

        with path.open("wb") as out:
            for chunk in feature_collection(counted(), {"name": layer, "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4490"}}}):
                out.write(chunk)
        return count
    if fmt not in DRIVERS:
        raise LandcloudError("export.bad_format", f"不支持的导出格式“{fmt}”", f"unsupported export format '{fmt}'")
    names = [f["name"] for f in fields]
    it = iter(features)
    written = 0
    while batch := list(islice(it, batch_size)):
        columns = [_column([f.props.get(n) for f in batch], next((x["type"] for x in fields if x["name"] == n), "string")) for n in names]
        geoms = np.array([f.wkb for f in batch], dtype=object)
        gtype = _geometry_type(geoms)
        pyogrio.raw.write(
            str(path),
            geometry=geoms,
            field_data=columns,
            fields=names,
            crs="EPSG:4490",
            driver=DRIVERS[fmt],
            layer=layer,
            geometry_type=gtype,
            promote_to_multi=gtype.startswith("Multi"),
            encoding=encoding if fmt == "shp" else None,
            append=written > 0,
        )
        written += len(batch)
    return written


def _column(values: list[Any], ftype: str) -> np.ndarray:
    if ftype in NUMPY_TYPES and all(v is not None for v in values):
        try:
            return np.array(values, dtype=NUMPY_TYPES[ftype])
        except (TypeError, ValueError):
            pass
    return np.array([None if v is None else str(v) if not isinstance(v, (int, float)) else v for v in values], dtype=object)


def _geometry_type(wkbs: np.ndarray) -> str:
    geoms = shapely.from_wkb(wkbs, on_invalid="ignore")
    types = {g.geom_type for g in geoms if g is not None}
    if types <= {"Polygon", "MultiPolygon"} and types:
        return "MultiPolygon"
    if types <= {"LineString", "MultiLineString"} and types:
        return "MultiLineString"
    if types <= {"Point", "MultiPoint"} and types:
        return "MultiPoint" if "MultiPoint" in types else "Point"
    return "Unknown"
