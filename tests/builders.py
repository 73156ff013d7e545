"""Small, exact test inputs: DLTB parcels around Harbin written in the formats bureaus submit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

from landcloud.geo.area import survey_areas

HARBIN = (126.60, 45.74)


def grid_parcels(n: int = 3, size: float = 0.002, origin: tuple[float, float] = HARBIN, county: str = "230102") -> list[dict[str, Any]]:
    """n×n adjacent squares (they tile, never overlap) with consistent DLTB attributes."""
    feats = []
    codes = ["0101", "0103", "0301", "0702", "1006", "1101", "0601", "0404", "1202"]
    names = ["水田", "旱地", "乔木林地", "农村宅基地", "农村道路", "河流水面", "工业用地", "其他草地", "设施农用地"]
    for i in range(n):
        for j in range(n):
            k = i * n + j
            geom = shapely.box(origin[0] + i * size, origin[1] + j * size, origin[0] + (i + 1) * size, origin[1] + (j + 1) * size)
            area = float(survey_areas(np.array([geom]))[0])
            feats.append({
                "type": "Feature",
                "properties": {
                    "BSM": f"{county}{k + 1:06d}", "TBBH": str(k + 1), "DLBM": codes[k % 9], "DLMC": names[k % 9],
                    "QSXZ": "30", "QSDWDM": f"{county}101201", "QSDWMC": "测试村", "ZLDWDM": f"{county}101201",
                    "ZLDWMC": "测试村", "TBMJ": round(area, 2),
                },
                "geometry": shapely.geometry.mapping(geom),
            })
    return feats


def write_geojson(path: Path, features: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), encoding="utf-8")
    return path


def to_frame(features: list[dict[str, Any]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    geoms = np.array([shapely.geometry.shape(f["geometry"]) for f in features], dtype=object)
    names = list(features[0]["properties"])
    cols = {n: np.array([f["properties"][n] for f in features], dtype=object) for n in names}
    return geoms, cols


def write_shapefile(path: Path, features: list[dict[str, Any]], *, encoding: str = "UTF-8", crs: str | None = "EPSG:4490",
                    project_to: str | None = None, keep_cpg: bool = True) -> Path:
    """A shapefile; `project_to` reprojects the coordinates (from EPSG:4490), `crs=None` leaves out the .prj."""
    geoms, cols = to_frame(features)
    if project_to:
        tr = Transformer.from_crs("EPSG:4490", project_to, always_xy=True)
        geoms = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    field_data = []
    for name, values in cols.items():
        field_data.append(np.array(values.tolist(), dtype=float) if name == "TBMJ" else values.astype(str).astype(object))
    _write_raw(path, geoms, field_data, list(cols), project_to or crs, encoding)
    if crs is None:
        path.with_suffix(".prj").unlink(missing_ok=True)
    if not keep_cpg:
        path.with_suffix(".cpg").unlink(missing_ok=True)
    return path


def _write_raw(path: Path, geoms: np.ndarray, field_data: list[np.ndarray], fields: list[str], crs: str | None, encoding: str) -> None:
    import pyogrio.raw

    pyogrio.raw.write(
        str(path), geometry=shapely.to_wkb(geoms), field_data=field_data, fields=fields, geometry_type="Polygon",
        crs=crs, driver="ESRI Shapefile", encoding=encoding,
    )


def publish_edition(engine: Any, settings: Any, dataset_id: str, **profile: Any) -> str:
    """Set a release profile on a master (every non-sensitive field kept unless `fields` is given), build
    an edition of its newest version and approve it, as the local operator; returns the edition's id."""
    from landcloud.access.principal import system_principal
    from landcloud.catalog import datasets as catalog
    from landcloud.publish import editions

    me = system_principal()
    ds = catalog.require_dataset(engine, dataset_id)
    profile.setdefault("fields", [f["name"] for f in ds.fields if not f.get("sensitive")])
    editions.set_profile(engine, me, dataset_id, profile)
    edition = editions.build(engine, settings, me, dataset_id)
    assert edition["report"]["passed"], edition["report"]
    editions.approve(engine, me, edition["id"])
    return str(edition["dataset_id"])
