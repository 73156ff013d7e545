"""A dataset version as one PMTiles file (vector tiles, Web Mercator), for offline or CDN maps.

Written by the local operator (the CLI): the version's features are read through the gate as
`system_principal()` — so the read is audited like any export — and streamed, batch by batch,
as an Arrow stream into GDAL's PMTiles driver (pyogrio.write_arrow), which reprojects to
EPSG:3857, builds every tile from `minzoom` to `maxzoom` and packs the archive on close.

A file leaves the gate for good and cannot mask anything, so sensitive fields are left out
unless asked for. It is meant for static hosting behind a CDN, i.e. for the public, who see
editions only (invariant 5): an edition exports its published (approved) version, and a master
is refused unless `master=True` says the file is for internal hosting. Attributes follow the dataset's tile settings (`extra["tiles"]["attributes"]`)
or else every field; each feature also carries its key as `_key`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import shapely
from pyogrio.raw import write_arrow
from sqlalchemy.engine import Engine

from landcloud.access import gate
from landcloud.access.principal import system_principal
from landcloud.catalog import datasets as catalog
from landcloud.messages import LandcloudError
from landcloud.publish import editions
from landcloud.publish.tiles import KEY_PROPERTY, tile_config
from landcloud.store.features import StoredFeature

MAX_PMTILES_ZOOM = 22  # GDAL's PMTiles/MVT writer limit
_ARROW_TYPES = {"integer": pa.int64(), "real": pa.float64(), "boolean": pa.bool_()}
_BATCH = 5000


def _check_zooms(minzoom: int, maxzoom: int) -> None:
    if not (0 <= minzoom <= maxzoom <= MAX_PMTILES_ZOOM):
        raise LandcloudError(
            "tiles.bad_zoom_range",
            f"层级范围无效：应满足 0 ≤ minzoom ≤ maxzoom ≤ {MAX_PMTILES_ZOOM}（收到 {minzoom}–{maxzoom}）",
            f"invalid zoom range: need 0 ≤ minzoom ≤ maxzoom ≤ {MAX_PMTILES_ZOOM} (got {minzoom}–{maxzoom})",
        )


def _master_version(ds: catalog.Dataset, version: int | None, master: bool) -> int:
    if not master:
        raise LandcloudError(
            "tiles.export_master",
            f"“{ds.id}”是主数据集：PMTiles 文件用于公开的静态托管，公众只能看到公开版；请导出其公开版"
            f"（{editions.edition_id(ds.id)}），仅供内部托管时加 --master",
            f"'{ds.id}' is a master dataset: PMTiles files are for public static hosting and the public sees editions only; "
            f"export its public edition ({editions.edition_id(ds.id)}), or add --master for internal hosting only",
            dataset=ds.id,
        )
    return catalog.resolve_version(ds, version)


def _export_version(ds: catalog.Dataset, version: int | None) -> int:
    """An edition's published version: what the public may read."""
    if not ds.published_version:
        raise LandcloudError(
            "tiles.edition_not_published", f"公开版“{ds.id}”尚未批准发布，不能导出", f"edition '{ds.id}' has no approved version to export",
            dataset=ds.id,
        )
    if version is not None and version != ds.published_version:
        raise LandcloudError(
            "tiles.edition_version_not_published",
            f"公开版“{ds.id}”只能导出已发布的版本 {ds.published_version}（请求的是版本 {version}）",
            f"edition '{ds.id}' exports only its published version {ds.published_version} (asked for version {version})",
            dataset=ds.id, published_version=ds.published_version,
        )
    return ds.published_version


def export_fields(ds: catalog.Dataset, include_sensitive: bool = False) -> list[dict[str, Any]]:
    """The fields written to the file: tile attributes if configured, else all; no sensitive ones unless asked."""
    cfg = tile_config(ds)
    fields = [f for f in ds.fields if f["name"] != KEY_PROPERTY]
    if cfg.attributes is not None:
        fields = [f for f in fields if f["name"] in cfg.attributes]
    if not include_sensitive:
        fields = [f for f in fields if not f.get("sensitive")]
    return fields


def _value(value: Any, ftype: str) -> Any:
    if value is None:
        return None
    try:
        if ftype == "integer":
            return int(value) if not isinstance(value, float) or value.is_integer() else None
        if ftype == "real":
            return float(value)
        if ftype == "boolean":
            return value if isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None
    return value if isinstance(value, str) else str(value)


def _batches(features: Iterator[StoredFeature], fields: list[dict[str, Any]], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    while batch := [f for f in islice(features, _BATCH) if f.wkb is not None]:
        columns: list[pa.Array] = [pa.array([f.fkey for f in batch], pa.string())]
        for field in fields:
            ftype = field.get("type", "string")
            arrow_type = _ARROW_TYPES.get(ftype, pa.string())
            kind = ftype if ftype in _ARROW_TYPES else "string"
            columns.append(pa.array([_value(f.props.get(field["name"]), kind) for f in batch], arrow_type))
        geoms = shapely.from_wkb([f.wkb for f in batch], on_invalid="ignore")
        columns.append(pa.array(shapely.to_wkb(geoms).tolist(), pa.binary()))
        yield pa.record_batch(columns, schema=schema)


def export_pmtiles(
    engine: Engine,
    dataset_id: str,
    version: int | None,
    out_path: str | Path,
    minzoom: int = 0,
    maxzoom: int = 14,
    *,
    include_sensitive: bool = False,
    master: bool = False,
) -> int:
    """Write a version of a dataset to a PMTiles file as the local operator; returns the features written.

    An edition: its published version (`version`, when given, must be that one). A master only with `master=True`.
    """
    _check_zooms(minzoom, maxzoom)
    out = Path(out_path)
    me = system_principal("tiles-cli")
    ds, access = gate.dataset_for_read(engine, me, dataset_id)
    v = _export_version(ds, version) if ds.edition_of is not None else _master_version(ds, version, master)
    fields = export_fields(ds, include_sensitive)
    if ds.edition_of is not None:  # the published version's own fields (a newer pending build may have others)
        fields = [f for f in editions.version_fields(engine, ds, v) if not f.get("sensitive") or include_sensitive]
    schema = pa.schema(
        [pa.field(KEY_PROPERTY, pa.string())]
        + [pa.field(f["name"], _ARROW_TYPES.get(f.get("type", "string"), pa.string())) for f in fields]
        + [pa.field("geometry", pa.binary(), metadata={"ARROW:extension:name": "geoarrow.wkb"})]
    )
    written = 0
    feats = gate.read_features(
        engine, me, ds, access, v, action="data.export",
        detail={"format": "pmtiles", "file": str(out), "minzoom": minzoom, "maxzoom": maxzoom},
    )

    def counted() -> Iterator[StoredFeature]:
        nonlocal written
        for f in feats:
            if f.wkb is not None:
                written += 1
            yield f

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.pmtiles")
    tmp.unlink(missing_ok=True)
    try:
        reader = pa.RecordBatchReader.from_batches(schema, _batches(counted(), fields, schema))
        write_arrow(
            reader,
            str(tmp),
            layer=ds.id,
            driver="PMTiles",
            geometry_name="geometry",
            geometry_type="Unknown",
            crs="EPSG:4490",
            dataset_options={
                "NAME": ds.title or ds.id,
                "DESCRIPTION": f"{ds.id} v{v}",
                "MINZOOM": str(minzoom),
                "MAXZOOM": str(maxzoom),
            },
            layer_options={"MINZOOM": str(minzoom), "MAXZOOM": str(maxzoom), "NAME": ds.id},
        )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        close = getattr(feats, "close", None)
        if close is not None:
            close()
    return written
