"""Downloads of a dataset version in the formats desktop GIS and data tools read.

Only the rows and fields the caller may see leave, through gate.read_features; every download
is written to the audit chain (action "data.download", with format, CRS and feature count),
public data included (the gate audits non-public reads itself; public ones are recorded here).

Nothing is built whole in memory:
- GeoJSON and CSV are encoded batch by batch straight into the response;
- GeoPackage, Shapefile (zip), FlatGeobuf, KML and GeoParquet are written batch by batch to a
  temporary file under the data folder (GDAL consumes an Arrow stream fed by a generator;
  GeoParquet is one row group per batch), which is then opened, unlinked and streamed — so a
  dropped connection leaves nothing behind.

Coordinates are stored in CGCS2000 lon/lat (EPSG:4490). A download may ask for CRS84 /
EPSG:4326 (taken as equal to CGCS2000 at the decimetre level, no shift applied, like ingest),
a CGCS2000 Gauss-Krüger zone (EPSG:4491–4554) or Web Mercator (EPSG:3857); coordinates are
transformed with pyproj, always x = easting/longitude. GCJ-02 (`crs=GCJ02`) is offered only by
the public editions whose release profile enables it (the files name it: a geographic CRS
called GCJ-02 on the WGS 84 datum, and the URN `urn:landcloud:def:crs:GCJ-02`); asking it of any
other dataset is a 400.

Filenames and metadata record dataset, version and CRS: `{id}_v{N}_{EPSG}.{ext}` (CRS84 for
CRS84), GeoJSON top-level members "dataset", "version", "crs", GeoPackage/FlatGeobuf layer
metadata, a metadata JSON and README inside the Shapefile zip, GeoParquet schema metadata.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio.raw
import shapely
from pyproj import CRS, Transformer
from sqlalchemy.engine import Engine

from landcloud.access import gate
from landcloud.access.policy import Access
from landcloud.access.principal import Principal
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.geo.gcj02 import geometry_wgs84_to_gcj02
from landcloud.messages import LandcloudError
from landcloud.publish import editions, fingerprints, ogc_crs
from landcloud.publish.fingerprints import Marker
from landcloud.publish.geojson import feature_collection
from landcloud.store.features import StoredFeature

ACTION = "data.download"
SLICE = 500  # features per response chunk of the streamed formats
STREAM_BATCH = 1000  # features transformed and encoded together in the streamed formats
FILE_CHUNK = 1 << 20
FGB_INDEX_MAX_FEATURES = 100_000  # above this FlatGeobuf is written without its spatial index (GDAL keeps the index in memory)


@dataclass(frozen=True)
class FormatSpec:
    key: str
    ext: str
    media_type: str
    name: str
    streamed: bool


FORMATS: dict[str, FormatSpec] = {
    "gpkg": FormatSpec("gpkg", "gpkg", "application/geopackage+sqlite3", "GeoPackage", False),
    "geojson": FormatSpec("geojson", "geojson", "application/geo+json", "GeoJSON", True),
    "shp": FormatSpec("shp", "shp.zip", "application/zip", "ESRI Shapefile (zip)", False),
    "csv": FormatSpec("csv", "csv", "text/csv; charset=utf-8", "CSV (WKT)", True),
    "fgb": FormatSpec("fgb", "fgb", "application/flatgeobuf", "FlatGeobuf", False),
    "parquet": FormatSpec("parquet", "parquet", "application/vnd.apache.parquet", "GeoParquet", False),
    "kml": FormatSpec("kml", "kml", "application/vnd.google-earth.kml+xml", "KML", False),
}
ENCODINGS = {"UTF-8": "UTF-8", "UTF8": "UTF-8", "GBK": "GBK", "CP936": "GBK"}


# ---------------------------------------------------------------- coordinate systems


@dataclass(frozen=True)
class OutputCRS:
    srs: str  # "EPSG:4490" | "OGC:CRS84"
    label: str  # in file names: "4490" | "CRS84"
    urn: str  # GeoJSON "crs" member
    uri: str  # OGC http URI (Content-Crs)
    geographic: bool
    gcj02: bool = False

    @property
    def identity(self) -> bool:
        return self.srs in ("EPSG:4490", "EPSG:4326", "OGC:CRS84")

    def transformer(self) -> Transformer | None:
        return None if self.identity or self.gcj02 else _transformer(self.srs)

    @property
    def file_crs(self) -> str:
        """What GDAL writes into the file: the CRS itself, or for GCJ-02 a WKT that names it."""
        return _gcj02_wkt() if self.gcj02 else self.srs

    def apply(self, geoms: np.ndarray) -> np.ndarray:
        """Stored (EPSG:4490) geometries in this CRS."""
        return geometry_wgs84_to_gcj02(geoms) if self.gcj02 else _transform_geoms(geoms, self.transformer())


@lru_cache(maxsize=1)
def _gcj02_json() -> dict[str, Any]:
    """GCJ-02 as a CRS a file can carry: WGS 84 lon/lat by its datum and axes, named GCJ-02 (no EPSG code)."""
    doc = CRS.from_user_input("OGC:CRS84").to_json_dict()
    doc.pop("id", None)
    doc["name"] = "GCJ-02 (WGS 84 longitude/latitude with the Chinese web-map offset, 火星坐标)"
    return doc


@lru_cache(maxsize=1)
def _gcj02_wkt() -> str:
    return str(CRS.from_json_dict(_gcj02_json()).to_wkt())


@lru_cache(maxsize=32)
def _transformer(srs: str) -> Transformer:
    return Transformer.from_crs("EPSG:4490", srs, always_xy=True)


CRS84 = OutputCRS(
    "OGC:CRS84", "CRS84", "urn:ogc:def:crs:OGC:1.3:CRS84", "http://www.opengis.net/def/crs/OGC/1.3/CRS84", True
)
GCJ02 = OutputCRS("GCJ-02", "GCJ02", ogc_crs.GCJ02_URI, ogc_crs.GCJ02_URI, True, gcj02=True)
_CRS84_NAMES = {"crs84", "ogc:crs84", "urn:ogc:def:crs:ogc:1.3:crs84", "http://www.opengis.net/def/crs/ogc/1.3/crs84"}
_EPSG_FORMS = (
    re.compile(r"^(?:epsg:)?(\d{4,5})$"),
    re.compile(r"^urn:ogc:def:crs:epsg:[\d.]*:(\d{4,5})$"),
    re.compile(r"^https?://www\.opengis\.net/def/crs/epsg/0/(\d{4,5})$"),
)
OFFERED_EPSG = frozenset({4490, 4326, 3857, *range(4491, 4555)})
OFFERED_TEXT = "EPSG:4490（默认/default）, CRS84, EPSG:4326, EPSG:4491–4554 (CGCS2000 Gauss-Krüger), EPSG:3857, GCJ02（仅限启用的公开版/editions that offer it）"


def _epsg(code: int) -> OutputCRS:
    return OutputCRS(
        f"EPSG:{code}", str(code), f"urn:ogc:def:crs:EPSG::{code}", f"http://www.opengis.net/def/crs/EPSG/0/{code}", code in (4490, 4326)
    )


def parse_crs(text: str | None) -> OutputCRS:
    """The output CRS a download asks for (default EPSG:4490); 400 for anything not offered."""
    value = (text or "").strip().lower()
    if not value:
        return _epsg(4490)
    if value in _CRS84_NAMES:
        return CRS84
    if ogc_crs.is_gcj02(value):
        return GCJ02  # only for an edition that offers it: `prepare` checks
    for form in _EPSG_FORMS:
        m = form.match(value)
        if m and int(m.group(1)) in OFFERED_EPSG:
            return _epsg(int(m.group(1)))
    raise LandcloudError(
        "download.bad_crs",
        f"不支持的坐标参考系“{text}”；可选：{OFFERED_TEXT}",
        f"unsupported CRS '{text}'; offered: {OFFERED_TEXT}",
        offered=OFFERED_TEXT,
    )


def _transform_geoms(geoms: np.ndarray, tr: Transformer | None) -> np.ndarray:
    if tr is None:
        return geoms

    def fn(coords: np.ndarray) -> np.ndarray:
        if coords.shape[1] == 3:
            x, y, z = tr.transform(coords[:, 0], coords[:, 1], coords[:, 2])
            return np.column_stack([x, y, z])
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, fn, include_z=None)


# ---------------------------------------------------------------- a prepared download


@dataclass
class Download:
    filename: str
    media_type: str
    body: Iterator[bytes]
    length: int | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Job:
    engine: Engine
    principal: Principal
    ds: catalog.Dataset
    access: Access
    version: int
    fmt: FormatSpec
    crs: OutputCRS
    encoding: str
    fields: list[dict[str, Any]]
    batch_size: int
    marker: Marker | None = None  # data handed over under a grant: watermark and fingerprint
    action: str = ACTION

    @property
    def stem(self) -> str:
        return f"{self.ds.id}_v{self.version}_{self.crs.label}"

    @property
    def layer(self) -> str:
        return f"{self.ds.id}_v{self.version}"

    def detail(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": self.fmt.key, "crs": self.crs.srs}
        if self.fmt.key == "shp":
            d["encoding"] = self.encoding
        if self.marker is not None:
            d["fingerprint"] = {"recipient": self.marker.recipient, "grants": self.marker.grants}
        return d

    def metadata(self) -> dict[str, Any]:
        return {
            "dataset": self.ds.id,
            "title": self.ds.title,
            "title_en": self.ds.title_en,
            "version": self.version,
            "crs": self.crs.srs,
            "crs_uri": self.crs.uri,
            "format": self.fmt.name,
            "encoding": self.encoding if self.fmt.key == "shp" else "UTF-8",
            "owner_unit": self.ds.owner_unit,
            "sharing_class": self.ds.sharing_class,
            "security_level": self.ds.security_level,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "fields": [
                {k: f.get(k) for k in ("name", "type", "alias_zh", "masked") if f.get(k) is not None} for f in self.fields
            ],
            **(self.marker.watermark() if self.marker is not None else {}),
        }

    def features(self) -> Iterator[StoredFeature]:
        return gate.read_features(
            self.engine, self.principal, self.ds, self.access, self.version, action=self.action, detail=self.detail(), audit_public=True
        )

    def batches(self) -> Iterator[list[StoredFeature]]:
        it = self.features()
        try:
            while batch := list(islice(it, self.batch_size)):
                yield batch
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def geometries(self, batch: list[StoredFeature]) -> np.ndarray:
        geoms = shapely.from_wkb(np.array([f.wkb for f in batch], dtype=object), on_invalid="ignore")
        return self.geometries_out(geoms)

    def mark(self, geoms: np.ndarray) -> np.ndarray:
        return self.marker(geoms) if self.marker is not None else geoms

    def geometries_out(self, geoms: np.ndarray) -> np.ndarray:
        return self.crs.apply(self.mark(geoms))


def prepare(
    engine: Engine,
    settings: Settings,
    principal: Principal,
    dataset_id: str,
    fmt: str = "gpkg",
    crs: str | None = None,
    version: int | None = None,
    encoding: str | None = None,
    *,
    action: str = ACTION,
) -> Download:
    """Check the request, then build the download (file formats are written completely here).

    `action` names the audit entry: a download over HTTP, or the operator's export from the command line."""
    spec = FORMATS.get((fmt or "").lower())
    if spec is None:
        raise LandcloudError(
            "download.bad_format",
            f"不支持的下载格式“{fmt}”；可选：{', '.join(FORMATS)}",
            f"unsupported download format '{fmt}'; choose one of: {', '.join(FORMATS)}",
            allowed=list(FORMATS),
        )
    enc = ENCODINGS.get((encoding or "UTF-8").strip().upper())
    if enc is None:
        raise LandcloudError(
            "download.bad_encoding", f"不支持的编码“{encoding}”；可选：UTF-8、GBK", f"unsupported encoding '{encoding}'; choose UTF-8 or GBK"
        )
    if enc != "UTF-8" and spec.key != "shp":
        raise LandcloudError(
            "download.encoding_shp_only",
            "只有 Shapefile 可选 GBK 编码，其他格式一律为 UTF-8",
            "only Shapefile downloads may be GBK-encoded; every other format is UTF-8",
        )
    out_crs = parse_crs(crs)
    if spec.key == "kml":
        if not out_crs.geographic and out_crs.srs != "OGC:CRS84":
            raise LandcloudError(
                "download.kml_lonlat_only",
                "KML 只能使用经纬度坐标（CRS84），不能投影到其他坐标系",
                "KML is always longitude/latitude (CRS84); it cannot be projected",
            )
        out_crs = GCJ02 if out_crs.gcj02 else CRS84
    ds, access = gate.dataset_for_read(engine, principal, dataset_id)
    v = gate.readable_version(ds, access, version)
    if out_crs.gcj02 and not editions.offers_gcj02(engine, ds, v):
        raise ogc_crs.gcj02_not_offered(ds.id)
    fields = gate.dataset_metadata(ds, access)["fields"]
    batch = max(100, min(settings.batch_size, STREAM_BATCH) if spec.streamed else settings.batch_size)
    marker = fingerprints.marker_for(engine, principal, ds, v, access, settings.fingerprint_tolerance_m)
    job = _Job(engine, principal, ds, access, v, spec, out_crs, enc, fields, batch, marker, action)
    headers = {
        "Content-Disposition": content_disposition(f"{job.stem}.{spec.ext}"),
        "Content-Crs": f"<{out_crs.uri}>",
        "X-Landcloud-Dataset": ds.id,
        "X-Landcloud-Version": str(v),
        "X-Landcloud-CRS": out_crs.srs,
    }
    if spec.key == "geojson":
        return Download(f"{job.stem}.geojson", spec.media_type, _geojson_body(job), None, headers)
    if spec.key == "csv":
        return Download(f"{job.stem}.csv", spec.media_type, _csv_body(job), None, headers)
    work = Path(settings.data_dir) / "downloads"
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{ds.id}-", dir=work))
    try:
        path = WRITERS[spec.key](job, tmp)
        body, size = _open_and_unlink(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    headers["Content-Length"] = str(size)
    return Download(f"{job.stem}.{spec.ext}", spec.media_type, body, size, headers)


def format_for_path(path: Path, fmt: str | None = None) -> str:
    """The format asked for, else the one a file name's suffix names (a Shapefile export is a .zip)."""
    if fmt:
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    by_suffix = {spec.ext.rsplit(".", 1)[-1]: key for key, spec in FORMATS.items()} | {"json": "geojson"}
    if suffix == "shp":
        raise LandcloudError("download.shp_zipped", "Shapefile 导出为 zip 压缩包：请以 .zip 命名输出文件",
                             "a Shapefile export is a zip archive: name the output file .zip")
    return by_suffix.get(suffix, "gpkg")


def save(dl: Download, path: Path) -> int:
    """Write a prepared download to a file (the command line's export); returns its size in bytes.

    Written beside the target and renamed at the end, so a failed export leaves no half-written file."""
    tmp = path.with_name(f".{path.name}.part")
    size = 0
    try:
        with tmp.open("wb") as fh:
            for chunk in dl.body:
                fh.write(chunk)
                size += len(chunk)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def content_disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _open_and_unlink(path: Path) -> tuple[Iterator[bytes], int]:
    fh = path.open("rb")
    size = os.fstat(fh.fileno()).st_size
    path.unlink()

    def body() -> Iterator[bytes]:
        try:
            while chunk := fh.read(FILE_CHUNK):
                yield chunk
        finally:
            fh.close()

    return body(), size


# ---------------------------------------------------------------- streamed formats


def _geojson_body(job: _Job) -> Iterator[bytes]:
    """A FeatureCollection streamed batch by batch, in the requested CRS."""
    members = {
        "name": job.layer,
        "dataset": job.ds.id,
        "title": job.ds.title,
        "version": job.version,
        "crs": {"type": "name", "properties": {"name": job.crs.urn}},
        **(job.marker.watermark() if job.marker is not None else {}),
    }
    feats = (feat for batch in job.batches() for feat in batch)
    yield from feature_collection(feats, members, transform=job.geometries_out, per_chunk=SLICE)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _csv_body(job: _Job) -> Iterator[bytes]:
    names = [f["name"] for f in job.fields]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["WKT", *names])
    yield b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")
    for batch in job.batches():
        wkts = shapely.to_wkt(job.geometries(batch), rounding_precision=-1)
        for start in range(0, len(batch), SLICE):
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\r\n")
            for feat, wkt in zip(batch[start : start + SLICE], wkts[start : start + SLICE]):
                writer.writerow([wkt or "", *(_csv_value(feat.props.get(n)) for n in names)])
            yield buf.getvalue().encode("utf-8")


# ---------------------------------------------------------------- typed columns


ARROW_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "real": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("ms"),
}
_TRUE = {"true", "t", "yes", "y", "1", "是"}
_FALSE = {"false", "f", "no", "n", "0", "否"}


def _to_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        out = v
    elif isinstance(v, float) and math.isfinite(v) and v.is_integer():
        out = int(v)
    elif isinstance(v, str) and re.fullmatch(r"\s*[-+]?\d+\s*", v):
        out = int(v)
    else:
        return None
    return out if -(2**63) <= out < 2**63 else None


def _to_float(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _to_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        t = v.strip().lower()
        return True if t in _TRUE else False if t in _FALSE else None
    return None


def _to_datetime(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        d = v
    elif isinstance(v, date):
        d = datetime(v.year, v.month, v.day)
    elif isinstance(v, str):
        try:
            d = datetime.fromisoformat(v.strip().replace("/", "-"))
        except ValueError:
            return None
    else:
        return None
    return d.astimezone(UTC).replace(tzinfo=None) if d.tzinfo else d


def _to_date(v: Any) -> date | None:
    if isinstance(v, str) and re.fullmatch(r"\s*\d{4}[-/]\d{2}[-/]\d{2}.*", v):
        try:
            return date.fromisoformat(v.strip()[:10].replace("/", "-"))
        except ValueError:
            return None
    d = _to_datetime(v)
    return d.date() if d else None


def _to_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


COERCE: dict[str, Callable[[Any], Any]] = {
    "integer": _to_int,
    "real": _to_float,
    "boolean": _to_bool,
    "date": _to_date,
    "datetime": _to_datetime,
}


def _gbk_safe(v: str | None) -> str | None:
    """GDAL drops characters GBK cannot encode; mark them with "?" instead of losing them silently."""
    if v is None:
        return None
    try:
        v.encode("gbk")
        return v
    except UnicodeEncodeError:
        return v.encode("gbk", errors="replace").decode("gbk")


def _geometry_kind(job: _Job) -> tuple[str, int | None]:
    """The layer's declared geometry type and the single-part type id to promote (None: none)."""
    try:
        source = catalog.get_version(job.engine, job.ds.id, job.version).source or {}
    except LandcloudError:
        source = {}
    text = str(source.get("geometry_type") or "").strip()
    z = " Z" if text.startswith("3D ") or text.endswith(" Z") else ""
    base = text.removeprefix("3D ").removesuffix(" Z")
    if base in ("Polygon", "MultiPolygon"):
        return "MultiPolygon" + z, 3
    if base in ("LineString", "MultiLineString"):
        return "MultiLineString" + z, 1
    if base == "MultiPoint":
        return "MultiPoint" + z, 0
    if base == "Point":
        return "Point" + z, None
    return "Unknown", None


_MULTI = {3: shapely.multipolygons, 1: shapely.multilinestrings, 0: shapely.multipoints}


def _promote(geoms: np.ndarray, single_type: int | None) -> np.ndarray:
    if single_type is None or len(geoms) == 0:
        return geoms
    idx = shapely.get_type_id(geoms) == single_type
    if idx.any():
        geoms = geoms.copy()
        geoms[idx] = _MULTI[single_type](geoms[idx][:, np.newaxis])
    return geoms


class _ArrowLayer:
    """The download's rows as Arrow record batches: WKB geometry plus the typed visible fields."""

    def __init__(self, job: _Job, gbk: bool = False, geometry_field_metadata: dict[bytes, bytes] | None = None) -> None:
        self.job = job
        self.gbk = gbk
        taken = {f["name"].lower() for f in job.fields}
        self.geometry_name = "geometry" if "geometry" not in taken else "_geometry"
        self.gtype, self.single = _geometry_kind(job)
        self.types = [(f["name"], str(f.get("type") or "string")) for f in job.fields]
        self.schema = pa.schema(
            [pa.field(self.geometry_name, pa.binary(), metadata=geometry_field_metadata)]
            + [pa.field(name, ARROW_TYPES.get(ftype, pa.string())) for name, ftype in self.types]
        )
        self.count = 0
        self.bounds: list[float] | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self.job.batches():
            geoms = _promote(self.job.geometries(batch), self.single)
            b = shapely.total_bounds(geoms)
            if not np.isnan(b).any():
                self.bounds = (
                    [float(x) for x in b]
                    if self.bounds is None
                    else [min(self.bounds[0], b[0]), min(self.bounds[1], b[1]), max(self.bounds[2], b[2]), max(self.bounds[3], b[3])]
                )
            columns = [pa.array(shapely.to_wkb(geoms).tolist(), pa.binary())]
            for name, ftype in self.types:
                coerce = COERCE.get(ftype, _to_text)
                values = [coerce(f.props.get(name)) if f.props.get(name) is not None else None for f in batch]
                if self.gbk and coerce is _to_text:
                    values = [_gbk_safe(v) for v in values]
                columns.append(pa.array(values, ARROW_TYPES.get(ftype, pa.string())))
            self.count += len(batch)
            yield pa.record_batch(columns, schema=self.schema)

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())


def _strings(meta: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in meta.items()}


def _description(job: _Job) -> str:
    return f"{job.ds.title} — dataset {job.ds.id}, version {job.version}, CRS {job.crs.srs}"


# ---------------------------------------------------------------- file formats


def _write_gdal(job: _Job, path: Path, driver: str, *, gbk: bool = False, layer_options: dict[str, str] | None = None,
                dataset_options: dict[str, str] | None = None, metadata: bool = True, layer: str | None = None) -> _ArrowLayer:
    arrow = _ArrowLayer(job, gbk=gbk)
    pyogrio.raw.write_arrow(
        arrow.reader(),
        str(path),
        layer=layer or job.layer,
        driver=driver,
        geometry_name=arrow.geometry_name,
        geometry_type=arrow.gtype,
        crs=job.crs.file_crs,
        encoding=job.encoding if driver == "ESRI Shapefile" else None,
        layer_metadata=_strings(job.metadata()) if metadata else None,
        layer_options=layer_options,
        dataset_options=dataset_options,
    )
    return arrow


def _write_gpkg(job: _Job, tmp: Path) -> Path:
    path = tmp / f"{job.stem}.gpkg"
    _write_gdal(job, path, "GPKG", layer_options={"IDENTIFIER": job.ds.title or job.ds.id, "DESCRIPTION": _description(job)})
    return path


def _write_fgb(job: _Job, tmp: Path) -> Path:
    path = tmp / f"{job.stem}.fgb"
    index = "YES" if job.ds.feature_count <= FGB_INDEX_MAX_FEATURES else "NO"
    _write_gdal(job, path, "FlatGeobuf", layer_options={"TITLE": job.ds.title or job.ds.id, "DESCRIPTION": _description(job),
                                                        "SPATIAL_INDEX": index})
    return path


def _write_kml(job: _Job, tmp: Path) -> Path:
    path = tmp / f"{job.stem}.kml"
    # every attribute stays in ExtendedData: no field is taken as the placemark's name or description
    _write_gdal(job, path, "KML", dataset_options={"NameField": "landcloud_no_name", "DescriptionField": "landcloud_no_description"},
                metadata=False, layer=job.layer.replace("-", "_"))
    return path


README = """{title}

数据集 / dataset: {dataset}
版本 / version: {version}
坐标参考系 / CRS: {crs}
属性编码 / attribute encoding: {encoding} (.cpg)
要素数 / features: {count}
导出时间 / exported at: {exported_at}

本压缩包由国土资源云导出，仅含下载者有权查看的要素和字段；敏感字段已按权限脱敏。
Exported by landcloud: only the features and fields the downloader may see; sensitive fields masked as the policy requires.
{note}"""


def _write_shp(job: _Job, tmp: Path) -> Path:
    folder = tmp / "shp"
    folder.mkdir()
    shp = folder / f"{job.stem}.shp"
    layer = _write_gdal(job, shp, "ESRI Shapefile", gbk=job.encoding == "GBK", metadata=False)
    shp.with_suffix(".cpg").write_text(job.encoding, encoding="ascii")  # always, naming the DBF's real encoding
    meta = {**job.metadata(), "feature_count": layer.count, "bounds": layer.bounds}
    note = ""
    if job.encoding == "GBK":
        note = "GBK 无法表示的字符以“?”代替。Characters GBK cannot represent are written as '?'.\n"
    if job.marker is not None:
        note += job.marker.watermark()["watermark"] + "\n"
    (folder / f"{job.stem}.metadata.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "README.txt").write_text(
        README.format(
            title=job.ds.title, dataset=job.ds.id, version=job.version, crs=job.crs.srs, encoding=job.encoding,
            count=layer.count, exported_at=meta["exported_at"], note=note,
        ),
        encoding="utf-8",
    )
    path = tmp / f"{job.stem}.shp.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for part in sorted(folder.iterdir()):
            zf.write(part, part.name)
            part.unlink()
    return path


def _write_parquet(job: _Job, tmp: Path) -> Path:
    path = tmp / f"{job.stem}.parquet"
    layer = _ArrowLayer(job)
    crs_json = _gcj02_json() if job.crs.gcj02 else None if job.crs.srs == "OGC:CRS84" else CRS.from_user_input(job.crs.srs).to_json_dict()
    geo_types = {"MultiPolygon": ["MultiPolygon"], "MultiLineString": ["MultiLineString"], "MultiPoint": ["MultiPoint"],
                 "Point": ["Point"]}.get(layer.gtype, [])
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": geo_types}
    if crs_json is not None:
        column["crs"] = crs_json
    geo = {"version": "1.1.0", "primary_column": layer.geometry_name, "columns": {layer.geometry_name: column}}
    schema = layer.schema.with_metadata({b"geo": json.dumps(geo).encode(), b"landcloud": json.dumps(job.metadata(), ensure_ascii=False).encode()})
    with pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
        for batch in layer.batches():
            writer.write_batch(batch.replace_schema_metadata(schema.metadata))
    return path


WRITERS: dict[str, Callable[[_Job, Path], Path]] = {
    "gpkg": _write_gpkg,
    "shp": _write_shp,
    "fgb": _write_fgb,
    "parquet": _write_parquet,
    "kml": _write_kml,
}
