"""OGC API – Features Part 4: create, replace, update and delete features — through the one way in.

An edit is a small incremental submission: the changed features are written to a GeoJSON file
and run through the same pipeline as any upload (CRS, rules, overlaps, all or nothing), so each
transaction is a new dataset version and nothing bypasses the checks.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from sqlalchemy.engine import Engine

from landcloud.access import audit, gate
from landcloud.access.policy import Access
from landcloud.access.principal import Principal
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.messages import Conflict, LandcloudError, NotFound
from landcloud.publish.ogc_crs import OutputCRS, from_input

Op = Literal["add", "modify", "delete"]


class Rejected(LandcloudError):
    status = 422


def features_of(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and body.get("type") == "Feature":
        return [body]
    if isinstance(body, dict) and body.get("type") == "FeatureCollection" and isinstance(body.get("features"), list):
        return list(body["features"])
    raise LandcloudError(
        "edit.bad_body", "请求体应为 GeoJSON Feature 或 FeatureCollection", "the body must be a GeoJSON Feature or FeatureCollection"
    )


def _to_storage(geometry: Any, content_crs: OutputCRS) -> dict[str, Any] | None:
    if geometry is None:
        return None
    try:
        geom = shapely.from_geojson(json.dumps(geometry))
    except (shapely.errors.GEOSException, TypeError, ValueError) as exc:
        raise LandcloudError("edit.bad_geometry", f"几何无法解析：{exc}", f"the geometry cannot be parsed: {exc}") from None
    return json.loads(shapely.to_geojson(from_input(np.array([geom], dtype=object), content_crs)[0]))


def apply(
    engine: Engine,
    settings: Settings,
    principal: Principal,
    ds: catalog.Dataset,
    access: Access,
    op: Op,
    features: list[dict[str, Any]],
    content_crs: OutputCRS,
) -> dict[str, Any]:
    """Run one transaction; returns the new version and the keys it touched."""
    unit = gate.submitting_unit(principal, ds.owner_unit)
    catalog.check_owner(ds, unit)
    key = ds.key_field
    if not key:
        raise Conflict(
            "edit.no_key", f"数据集“{ds.id}”没有要素标识字段，不能逐要素编辑", f"dataset '{ds.id}' has no feature key field; it cannot be edited per feature"
        )
    rows = []
    for feat in features:
        props = dict(feat.get("properties") or {})
        fid = props.get(key, feat.get("id"))
        if fid in (None, ""):
            raise LandcloudError("edit.no_id", f"要素缺少标识字段 {key}", f"a feature lacks its key field {key}")
        props[key] = fid
        props["_op"] = op
        rows.append({"type": "Feature", "properties": props, "geometry": _to_storage(feat.get("geometry"), content_crs)})
    with tempfile.TemporaryDirectory(dir=settings.data_dir) as tmp:
        path = Path(tmp) / "edit.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": rows}, ensure_ascii=False), encoding="utf-8")
        result = run_submission(engine, settings, path, SubmitOptions(dataset_id=ds.id, unit=unit, mode="incremental", key=key))
    keys = [str(r["properties"][key]) for r in rows]
    if not result.accepted:
        first = result.findings[0] if result.findings else None
        raise Rejected(
            "edit.rejected",
            f"编辑未通过检查：{first.message_zh if first else ''}",
            f"the edit was rejected by the checks: {first.message_en if first else ''}",
            findings=[f.to_dict() for f in result.findings[:50]],
        )
    audit.record(engine, principal, "data.edit", dataset_id=ds.id, version=result.version, detail={"op": op, "keys": keys[:100], "count": len(keys)})
    return {"version": result.version, "keys": keys}


def current(engine: Engine, principal: Principal, ds: catalog.Dataset, fid: str) -> dict[str, Any]:
    """The feature as stored now, for an editor of the owner unit (404 when there is none)."""
    feat = gate.feature_for_edit(engine, principal, ds, fid)
    if feat is None:
        raise NotFound("feature.not_found", f"要素“{fid}”不存在", f"feature '{fid}' does not exist")
    geometry = json.loads(shapely.to_geojson(shapely.from_wkb(feat.wkb))) if feat.wkb else None
    return {"type": "Feature", "id": feat.fkey, "properties": dict(feat.props), "geometry": geometry}


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396: a null removes a property, anything else replaces it."""
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out
