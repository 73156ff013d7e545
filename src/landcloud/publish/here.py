"""What is here (此处是什么): every layer the caller may read that has features at one point.

The point may be given in CGCS2000 lon/lat or in any CRS the platform converts (a Gauss-Krüger
x/y read off a map sheet, WGS 84, GCJ-02 …). The report names the point's 3° Gauss-Krüger zone
and plane coordinates, the administrative division whose boundary holds it, and for each layer
its features as the caller may see them, with ellipsoidal areas and the land-use class. Reads
go through the gate (access.gate.features_at), which audits the request once.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from sqlalchemy.engine import Connection, Engine

from landcloud import clock
from landcloud.access import gate
from landcloud.access import units as units_mod
from landcloud.access.decisions import RememberedLayers
from landcloud.catalog.datasets import THEMES
from landcloud.codes import landuse
from landcloud.geo.area import survey_areas, to_hectares, to_mu
from landcloud.geo.crs import CoordinateTransformer, CRSRefused, make_transformer, parse_crs
from landcloud.geo.zones import cgcs2000_zone_for_point
from landcloud.messages import LandcloudError

STORAGE = "EPSG:4490"
TOLERANCE_M = 2.0  # points and lines count as "here" within this distance
_POLYGONAL = (3, 6)  # shapely type ids of Polygon, MultiPolygon


def _bad_point(code: str, zh: str, en: str) -> LandcloudError:
    return LandcloudError(code, zh, en)


@lru_cache(maxsize=32)
def _to_storage(crs_text: str) -> tuple[CoordinateTransformer, bool]:
    """The conversion of coordinates in `crs_text` to CGCS2000 lon/lat, and whether the CRS is projected."""
    crs = parse_crs(crs_text)
    projected = isinstance(crs, CRS) and crs.is_projected
    return make_transformer(crs), projected


@lru_cache(maxsize=64)
def _gk_transformer(epsg: int) -> Transformer:
    return Transformer.from_crs("EPSG:4490", f"EPSG:{epsg}", always_xy=True)


def resolve_point(
    lon: float | None, lat: float | None, x: float | None, y: float | None, crs: str | None
) -> tuple[float, float, dict[str, Any]]:
    """The CGCS2000 lon/lat of the point asked for, and the input as given.

    `lon`/`lat` are geographic coordinates (in `crs`, default CGCS2000); `x`/`y` are coordinates
    in `crs` in east, north order (a prefixed Gauss-Krüger easting such as 42 500 000 is x).
    """
    crs_text = (crs or STORAGE).strip() or STORAGE
    try:
        transformer, projected = _to_storage(crs_text)
    except CRSRefused as exc:
        raise LandcloudError(exc.code, exc.message_zh, exc.message_en, crs=crs_text[:120]) from exc
    if lon is not None and lat is not None:
        if projected:
            raise _bad_point(
                "here.projected_lonlat",
                f"坐标系 {crs_text} 是投影坐标系，请用 x、y 参数给出平面坐标（x 为东坐标）",
                f"{crs_text} is a projected CRS: give plane coordinates as x and y (x = easting)",
            )
        a, b = lon, lat
    elif x is not None and y is not None:
        a, b = x, y
    else:
        raise _bad_point(
            "here.no_point",
            "请给出查询点：lon、lat（经纬度），或 x、y 与 crs（平面坐标）",
            "give the point: lon and lat, or x and y with crs",
        )
    if not (math.isfinite(a) and math.isfinite(b)):
        raise _out_of_range()
    if not projected and not (-180.0 <= a <= 180.0 and -90.0 <= b <= 90.0):
        raise _out_of_range()
    out_x, out_y = transformer.transform_xy(np.array([a], dtype=np.float64), np.array([b], dtype=np.float64))
    plon, plat = float(out_x[0]), float(out_y[0])
    if not (math.isfinite(plon) and math.isfinite(plat) and -180.0 <= plon <= 180.0 and -90.0 <= plat <= 90.0):
        raise _out_of_range()
    given = {"crs": crs_text, "x": a, "y": b}
    return plon, plat, given


def _out_of_range() -> LandcloudError:
    return _bad_point(
        "here.out_of_range",
        "查询点坐标超出范围：经度应在 −180～180，纬度应在 −90～90",
        "the point is out of range: longitude must be within -180..180 and latitude within -90..90",
    )


def gauss_kruger(lon: float, lat: float) -> dict[str, Any] | None:
    """The point's CGCS2000 3° Gauss-Krüger zone (with zone prefix) and plane coordinates.

    x is the prefixed easting, y the northing (east, north order, as the input's x/y); None
    outside the zones EPSG defines for China (CM 75°E–135°E).
    """
    try:
        zone = cgcs2000_zone_for_point(lon, lat, 3, prefixed=True)
    except ValueError:
        return None
    east, north = _gk_transformer(zone.epsg).transform(lon, lat)
    if not (math.isfinite(east) and math.isfinite(north)):
        return None
    return {
        "zone": zone.zone,
        "width": zone.width,
        "central_meridian": zone.central_meridian,
        "x": round(float(east), 3),
        "y": round(float(north), 3),
        "epsg": zone.epsg,
    }


def _prop(props: dict[str, Any], name: str) -> Any:
    if name in props:
        return props[name]
    lowered = name.lower()
    return next((v for k, v in props.items() if k.lower() == lowered), None)


def _landuse(props: dict[str, Any]) -> dict[str, Any] | None:
    code = _prop(props, "DLBM")
    found = landuse.lookup(str(code).strip()) if code not in (None, "") else None
    if found is None:
        return None
    return {"code": found.code, "name_zh": found.name_zh, "name_en": found.name_en}


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _feature(feat: Any, geom: shapely.Geometry, aliases: dict[str, str]) -> dict[str, Any]:
    props = feat.props
    area: float | None = None
    if shapely.get_type_id(geom) in _POLYGONAL:
        area = feat.area_m2 if feat.area_m2 is not None else float(survey_areas(np.array([geom], dtype=object))[0])
    return {
        "id": feat.fkey,
        "geometry_type": geom.geom_type,
        "properties": props,
        "aliases": {k: aliases[k] for k in props if aliases.get(k)},
        "area_m2": round(area, 2) if area is not None else None,
        "area_mu": round(float(to_mu(area)), 2) if area is not None else None,
        "area_ha": round(float(to_hectares(area)), 4) if area is not None else None,
        "tbmj_m2": _number(_prop(props, "TBMJ")),
        "landuse": _landuse(props),
    }


def what_is_here(
    engine: Engine,
    decided: RememberedLayers,
    *,
    lon: float | None = None,
    lat: float | None = None,
    x: float | None = None,
    y: float | None = None,
    crs: str | None = None,
    conn: Connection | None = None,
    defer: gate.Defer | None = None,
) -> dict[str, Any]:
    """The report for one point (see the module docstring) for the caller of `decided`: its readable datasets and
    division index key as `access.decisions.decide_layers` gave them for this request. `conn`: the request's read
    connection, `defer`: where the audit entry waits for it to be back in the pool (`gate.read_features`)."""
    plon, plat, given = resolve_point(lon, lat, x, y, crs)
    layers, checked = gate.features_at(
        engine, decided.principal, plon, plat, decided.layers, tolerance_m=TOLERANCE_M, conn=conn, defer=defer
    )
    out_layers = []
    for layer in layers:
        ds = layer.dataset
        aliases = {str(f.get("name")): str(f.get("alias_zh") or "") for f in ds.fields}
        out_layers.append(
            {
                "dataset": ds.id,
                "title": ds.title,
                "theme": ds.theme,
                "theme_zh": THEMES.get(ds.theme, ("", ""))[0],
                "version": layer.version,
                "features": [_feature(feat, geom, aliases) for feat, geom in layer.features],
            }
        )
    return {
        "point": {"lon": plon, "lat": plat, "crs": STORAGE},
        "input": given,
        "gauss_kruger": gauss_kruger(plon, plat),
        "division": units_mod.division_at(engine, plon, plat, decided.index_key),  # (the key: whether its boundaries are current)
        "layers": out_layers,
        "checked": checked,
        "generated_at": clock.now().isoformat(),
    }
