"""Open a submitted file and stream its features, geometry untouched.

A submission may be a Shapefile (as .zip, folder or .shp), GeoPackage, GeoJSON, FlatGeobuf, KML,
CSV (lon/lat or WKT columns) or GeoParquet. `open_source` looks at it without reading the
features (layers, fields, declared CRS, attribute encoding); `iter_batches` streams the features
in bounded batches as WKB + plain Python attribute values. Geometry is never parsed here: broken
geometry must reach the rules, which report it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import decimal
import json
import math
import re
import shutil
import stat
import struct
import tempfile
import weakref
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from landcloud.geo.wkb import plain_polygons
from landcloud.ingest.encoding import (
    EncodingDecision,
    _find_sidecar,
    decide_shapefile_encoding,
    detect_text_encoding,
)
from landcloud.messages import LandcloudError, Message

__all__ = [
    "FieldInfo",
    "RawBatch",
    "SourceError",
    "SourceInfo",
    "iter_batches",
    "open_source",
    "sample_coordinates",
]


class SourceError(LandcloudError):
    """The submitted file cannot be read as given (unreadable, unsupported or ambiguous)."""


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str  # "string" | "integer" | "real" | "date" | "datetime" | "boolean" | "binary"


@dataclass
class SourceInfo:
    path: Path
    format: str  # "shapefile" | "gpkg" | "geojson" | "fgb" | "kml" | "csv" | "geoparquet"
    layer: str | None
    layers: list[str]
    encoding: EncodingDecision | None
    crs_wkt: str | None
    fields: list[FieldInfo]
    geometry_type: str | None
    feature_count: int | None
    total_bounds: tuple[float, float, float, float] | None
    notes: list[Message]
    # additions: where a zip was extracted, and format-specific details the readers need
    workdir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _finalizer: Any = field(default=None, init=False, repr=False, compare=False)

    def close(self) -> None:
        """Remove the temporary extraction folder, if `open_source` created one."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> SourceInfo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ColumnRows(Sequence[dict[str, Any]]):
    """A batch's rows as dicts made from its columns when asked for, each access a new dict (mutating one changes
    nothing here).

    Why: the pipeline checks and stores a plain batch column by column (`RawBatch.columns`); making a dict of every
    row up front cost ~1 s of the reading thread per million rows, under the GIL the checking thread needs. A row is
    made only where one is still read row by row (a finding's values, a layer whose columns need sanitising).
    """

    __slots__ = ("_columns", "_n")

    def __init__(self, columns: dict[str, list[Any]], n: int) -> None:
        self._columns = columns
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        j = i + self._n if i < 0 else i
        if not 0 <= j < self._n:
            raise IndexError(i)
        return {name: column[j] for name, column in self._columns.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self._columns:
            return ({} for _ in range(self._n))
        names = list(self._columns)
        return (dict(zip(names, row)) for row in zip(*self._columns.values()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == self._n and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]


@dataclass
class RawBatch:
    start: int
    wkb: list[bytes | None]
    properties: Sequence[dict[str, Any]]  # a list, or `ColumnRows` over `columns`
    # addition: batch-relative index → raw text of a geometry that could not be turned into WKB
    # (CSV only: non-numeric lon/lat, unparseable WKT), so the rules can report it
    geometry_errors: dict[int, str] = field(default_factory=dict)
    # every property value is text, an integer, a boolean, None or a finite float, as the reader knows
    # from the columns' types (GDAL/arrow): the pipeline's sanitising would return each row unchanged
    plain: bool = False
    # the same values by field, when the reader has them as columns (every row has exactly these fields):
    # the rules check column by column, and need not take them out of the rows again
    columns: dict[str, list[Any]] | None = None
    # per row, whether its WKB is in the one form GEOS writes back byte for byte (`geo.wkb.plain_polygons`): the
    # store may keep it as it is where nothing changes the geometry; None when the reader did not look
    plain_wkb: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.wkb)


# --------------------------------------------------------------------------- formats

_EXT_FORMAT = {
    ".shp": "shapefile",
    ".gpkg": "gpkg",
    ".geojson": "geojson",
    ".json": "geojson",
    ".fgb": "fgb",
    ".kml": "kml",
    ".kmz": "kml",
    ".csv": "csv",
    ".parquet": "geoparquet",
    ".geoparquet": "geoparquet",
}
# inside a zip or folder, these are datasets in their own right; .json and .csv only count
# when nothing else is there (they are often side tables or metadata)
_PRIMARY_EXT = {".shp", ".gpkg", ".geojson", ".fgb", ".kml", ".kmz", ".parquet", ".geoparquet"}
_SECONDARY_EXT = {".json", ".csv"}
_GDAL_FORMATS = {"shapefile", "gpkg", "geojson", "fgb", "kml"}

MAX_EXTRACT_BYTES = 20 * 1024**3
MAX_ZIP_MEMBERS = 200_000
_SKIP_PARTS = {"__MACOSX"}


def _unreadable(path: Path, exc: BaseException) -> SourceError:
    return SourceError(
        "source.unreadable",
        f"无法读取文件 {path.name}：文件可能已损坏或不是声明的格式",
        f"cannot read {path.name}: the file may be damaged or not in the format its name says",
        path=str(path),
        gdal_message=str(exc),
    )


def _unsupported(path: Path, what: str | None = None) -> SourceError:
    kinds = "Shapefile（.shp/.zip/文件夹）、GeoPackage、GeoJSON、FlatGeobuf、KML/KMZ、CSV、GeoParquet"
    kinds_en = "Shapefile (.shp/.zip/folder), GeoPackage, GeoJSON, FlatGeobuf, KML/KMZ, CSV, GeoParquet"
    return SourceError(
        "source.unsupported_format",
        f"不支持的文件格式：{path.name}{'（' + what + '）' if what else ''}；支持 {kinds}",
        f"unsupported file format: {path.name}{' (' + what + ')' if what else ''}; supported: {kinds_en}",
        path=str(path),
        supported=sorted(set(_EXT_FORMAT) | {".zip"}),
    )


# --------------------------------------------------------------------------- zip and folders


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    """The member name, repairing GBK names that Python decoded as CP437 (no UTF-8 flag)."""
    name = info.filename
    if info.flag_bits & 0x800:
        return name
    try:
        raw = name.encode("cp437")
    except UnicodeEncodeError:
        return name
    for enc in ("utf-8", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return name


def _safe_extract(zip_path: Path, dest: Path, max_bytes: int) -> None:
    """Extract `zip_path` into `dest`, refusing path traversal, links and oversized content."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _unreadable(zip_path, exc) from exc
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise SourceError(
                "source.zip_unsafe",
                f"压缩包内文件过多（{len(members)} 个）",
                f"the zip holds too many files ({len(members)})",
                members=len(members),
                limit=MAX_ZIP_MEMBERS,
            )
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise SourceError(
                "source.zip_too_large",
                f"压缩包解压后大小 {declared} 字节超过上限 {max_bytes} 字节",
                f"the zip would extract to {declared} bytes, over the limit of {max_bytes}",
                size=declared,
                limit=max_bytes,
            )
        root = dest.resolve()
        written = 0
        for m in members:
            name = _zip_member_name(m).replace("\\", "/")
            mode = m.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise SourceError(
                    "source.zip_unsafe",
                    f"压缩包含符号链接 {name}，已拒绝",
                    f"the zip contains a symbolic link ({name}); refused",
                    member=name,
                )
            parts = PurePosixPath(name).parts
            if (
                name.startswith("/")
                or re.match(r"^[A-Za-z]:", name)
                or any(p == ".." for p in parts)
            ):
                raise SourceError(
                    "source.zip_unsafe",
                    f"压缩包内路径 {name} 试图写到解压目录之外，已拒绝",
                    f"the zip member {name!r} would be written outside the extraction folder; refused",
                    member=name,
                )
            if not parts or any(p in _SKIP_PARTS for p in parts):
                continue
            target = (root.joinpath(*parts)).resolve()
            if root != target and root not in target.parents:
                raise SourceError(
                    "source.zip_unsafe",
                    f"压缩包内路径 {name} 试图写到解压目录之外，已拒绝",
                    f"the zip member {name!r} would be written outside the extraction folder; refused",
                    member=name,
                )
            if m.is_dir() or name.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(m) as src, open(target, "wb") as out:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > max_bytes:
                            raise SourceError(
                                "source.zip_too_large",
                                f"压缩包解压后超过上限 {max_bytes} 字节",
                                f"the zip extracts to more than the limit of {max_bytes} bytes",
                                limit=max_bytes,
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise _unreadable(zip_path, exc) from exc


def _find_datasets(root: Path) -> list[Path]:
    """Candidate datasets under `root` (recursive), primary formats first."""
    primary: list[Path] = []
    secondary: list[Path] = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part in _SKIP_PARTS or part.startswith(".") for part in rel.parts):
            continue
        if not p.is_file():
            continue
        ext = p.suffix.lower()
        if ext in _PRIMARY_EXT:
            primary.append(p)
        elif ext in _SECONDARY_EXT:
            secondary.append(p)
    return primary or secondary


def _choose_dataset(root: Path, candidates: list[Path], layer: str | None, container: Path) -> tuple[Path, str | None, list[str]]:
    """Pick one dataset from a zip/folder. Returns (path, layer left for the dataset, names)."""
    names = [c.relative_to(root).as_posix() for c in candidates]
    if not candidates:
        found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())[:50]
        raise SourceError(
            "source.no_dataset",
            f"{container.name} 中没有可读取的空间数据文件（.shp、.gpkg、.geojson、.fgb、.kml、.csv、.parquet）",
            f"{container.name} holds no readable spatial data file (.shp, .gpkg, .geojson, .fgb, .kml, .csv, .parquet)",
            files=found,
        )
    if len(candidates) == 1:
        return candidates[0], layer, names
    if layer:
        want = layer.strip().lower()
        for c, n in zip(candidates, names):
            if want in (n.lower(), c.stem.lower(), PurePosixPath(n).with_suffix("").as_posix().lower()):
                return c, None, names
        raise SourceError(
            "source.unknown_layer",
            f"{container.name} 中没有名为“{layer}”的数据，可选：{'、'.join(names)}",
            f"{container.name} has no dataset named {layer!r}; choose one of: {', '.join(names)}",
            layer=layer,
            layers=names,
        )
    raise SourceError(
        "source.ambiguous_layer",
        f"{container.name} 中有多个数据文件：{'、'.join(names)}；请用 --layer 指定其中一个",
        f"{container.name} holds several datasets: {', '.join(names)}; give --layer to choose one",
        layers=names,
    )


# --------------------------------------------------------------------------- open


def open_source(
    path: str | Path,
    *,
    layer: str | None = None,
    encoding: str | None = None,
    workdir: Path | None = None,
    max_extract_bytes: int = MAX_EXTRACT_BYTES,
) -> SourceInfo:
    """Look at a submitted file (or .zip, or folder) without reading its features."""
    path = Path(path)
    if not path.exists():
        raise SourceError(
            "source.not_found",
            f"找不到文件：{path}",
            f"file not found: {path}",
            path=str(path),
        )
    notes: list[Message] = []
    tmp_created: Path | None = None
    extracted: Path | None = None
    try:
        target = path
        if path.is_dir() or path.suffix.lower() == ".zip":
            if path.is_dir():
                root = path
            else:
                if workdir is None:
                    tmp_created = Path(tempfile.mkdtemp(prefix="landcloud-src-"))
                    base = tmp_created
                else:
                    base = Path(workdir)
                    base.mkdir(parents=True, exist_ok=True)
                root = Path(tempfile.mkdtemp(prefix="unzip-", dir=base))
                extracted = root
                _safe_extract(path, root, max_extract_bytes)
            candidates = _find_datasets(root)
            target, layer, names = _choose_dataset(root, candidates, layer, path)
            if len(names) > 1:
                rel = target.relative_to(root).as_posix()
                notes.append(Message("source.dataset_chosen", f"选用 {path.name} 中的 {rel}", f"using {rel} from {path.name}"))
        info = _open_file(target, layer=layer, encoding=encoding, notes=notes)
    except BaseException:
        if tmp_created is not None:
            shutil.rmtree(tmp_created, ignore_errors=True)
        elif extracted is not None:
            shutil.rmtree(extracted, ignore_errors=True)
        raise
    info.workdir = extracted
    if tmp_created is not None:
        info._finalizer = weakref.finalize(info, shutil.rmtree, str(tmp_created), True)
    return info


def _open_file(path: Path, *, layer: str | None, encoding: str | None, notes: list[Message]) -> SourceInfo:
    ext = path.suffix.lower()
    fmt = _EXT_FORMAT.get(ext)
    if fmt is None:
        raise _unsupported(path)
    if fmt == "csv":
        return _open_csv(path, layer=layer, encoding=encoding, notes=notes)
    if fmt == "geoparquet":
        return _open_geoparquet(path, layer=layer, notes=notes)
    return _open_gdal(path, fmt, layer=layer, encoding=encoding, notes=notes)


# --------------------------------------------------------------------------- GDAL-backed formats

_OGR_TYPES = {
    "OFTString": "string",
    "OFTWideString": "string",
    "OFTInteger": "integer",
    "OFTInteger64": "integer",
    "OFTReal": "real",
    "OFTDate": "date",
    "OFTDateTime": "datetime",
    "OFTTime": "string",
    "OFTBinary": "binary",
}


def _field_type(ogr_type: str | None, subtype: str | None, dtype: Any) -> str:
    if subtype == "OFSTBoolean":
        return "boolean"
    if ogr_type in _OGR_TYPES:
        return _OGR_TYPES[ogr_type]
    if ogr_type and ogr_type.endswith("List"):
        return "string"
    d = str(dtype)
    if d.startswith("int"):
        return "integer"
    if d.startswith("float"):
        return "real"
    if d.startswith("datetime"):
        return "datetime"
    if d == "bool":
        return "boolean"
    return "string"


def _crs_to_wkt(crs: str | None) -> str | None:
    if not crs:
        return None
    try:
        from pyproj import CRS

        return CRS.from_user_input(crs).to_wkt()
    except Exception:  # noqa: BLE001 — keep what GDAL said when pyproj cannot parse it
        return crs


def _geojson_declares_crs(path: Path, head_bytes: int = 256 * 1024) -> bool:
    """Whether the GeoJSON has a top-level "crs" member before its features (cheap peek)."""
    try:
        with open(path, "rb") as f:
            head = f.read(head_bytes)
    except OSError:
        return False
    feat = head.find(b'"features"')
    scope = head if feat < 0 else head[:feat]
    return re.search(rb'"crs"\s*:', scope) is not None


def _is_wgs84_lonlat(crs: str | None) -> bool:
    if not crs:
        return True
    if crs.upper() in ("EPSG:4326", "OGC:CRS84"):
        return True
    try:
        from pyproj import CRS

        c = CRS.from_user_input(crs)
        return c.to_epsg() == 4326 or c.to_string() == "OGC:CRS84"
    except Exception:  # noqa: BLE001
        return False


def _open_gdal(path: Path, fmt: str, *, layer: str | None, encoding: str | None, notes: list[Message]) -> SourceInfo:
    import pyogrio

    enc_decision: EncodingDecision | None = None
    gdal_encoding: str | None = None
    if fmt == "shapefile":
        try:
            enc_decision = decide_shapefile_encoding(path, encoding)
        except ValueError as exc:
            raise SourceError(
                "source.unknown_encoding",
                f"无法识别指定的编码“{encoding}”",
                f"unknown encoding {encoding!r}",
                encoding=encoding,
            ) from exc
        gdal_encoding = enc_decision.encoding
        notes.append(enc_decision.to_message())
        if _find_sidecar(path, ".dbf") is None:
            notes.append(Message("source.no_dbf", "缺少 .dbf 属性文件，要素将没有属性", "the .dbf attribute file is missing; features have no attributes"))
    elif encoding:
        notes.append(
            Message(
                "encoding.ignored",
                f"{fmt} 格式的文本按其规范编码（UTF-8）读取，忽略指定的编码 {encoding}",
                f"{fmt} text is read in the encoding its format prescribes (UTF-8); the given encoding {encoding} is ignored",
            )
        )

    try:
        listed = pyogrio.list_layers(path)
    except Exception as exc:  # noqa: BLE001 — pyogrio raises several error types
        raise _unreadable(path, exc) from exc
    layer_names = [str(row[0]) for row in listed]
    spatial = [str(row[0]) for row in listed if row[1] is not None]

    if fmt == "shapefile":
        chosen = layer_names[0] if layer_names else path.stem
        if layer and layer.strip().lower() not in (chosen.lower(), path.stem.lower(), path.name.lower()):
            raise SourceError(
                "source.unknown_layer",
                f"{path.name} 中没有名为“{layer}”的图层，只有：{chosen}",
                f"{path.name} has no layer named {layer!r}; it has: {chosen}",
                layer=layer,
                layers=[chosen],
            )
    elif layer:
        exact = [n for n in layer_names if n == layer]
        ci = [n for n in layer_names if n.lower() == layer.strip().lower()]
        if exact:
            chosen = exact[0]
        elif len(ci) == 1:
            chosen = ci[0]
        else:
            raise SourceError(
                "source.unknown_layer",
                f"{path.name} 中没有名为“{layer}”的图层，可选：{'、'.join(layer_names)}",
                f"{path.name} has no layer named {layer!r}; choose one of: {', '.join(layer_names)}",
                layer=layer,
                layers=layer_names,
            )
    else:
        if len(layer_names) == 1:
            chosen = layer_names[0]
        elif len(spatial) == 1:
            chosen = spatial[0]
            notes.append(
                Message(
                    "source.layer_chosen",
                    f"{path.name} 中只有图层“{chosen}”带几何，已选用（其余为属性表：{'、'.join(n for n in layer_names if n != chosen)}）",
                    f"{path.name}: using {chosen!r}, its only layer with geometry "
                    f"(the others are attribute tables: {', '.join(n for n in layer_names if n != chosen)})",
                )
            )
        elif not layer_names:
            raise SourceError(
                "source.no_dataset",
                f"{path.name} 中没有图层",
                f"{path.name} has no layers",
                path=str(path),
            )
        else:
            names = spatial or layer_names
            raise SourceError(
                "source.ambiguous_layer",
                f"{path.name} 中有多个图层：{'、'.join(names)}；请用 --layer 指定其中一个",
                f"{path.name} has several layers: {', '.join(names)}; give --layer to choose one",
                layers=names,
                path=str(path),
            )

    try:
        meta = pyogrio.read_info(path, layer=chosen, encoding=gdal_encoding)
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, exc) from exc

    names = [str(n) for n in meta.get("fields", [])]
    ogr_types = list(meta.get("ogr_types") or [None] * len(names))
    ogr_subtypes = list(meta.get("ogr_subtypes") or [None] * len(names))
    dtypes = list(meta.get("dtypes", [None] * len(names)))
    fields = [FieldInfo(n, _field_type(t, s, d)) for n, t, s, d in zip(names, ogr_types, ogr_subtypes, dtypes)]

    gdal_crs = meta.get("crs")
    if fmt == "shapefile":
        prj = _find_sidecar(path, ".prj")
        crs_wkt = _read_prj(prj) if prj is not None else None
        if crs_wkt is None and prj is None and gdal_crs:
            crs_wkt = _crs_to_wkt(gdal_crs)
    elif fmt == "kml":
        crs_wkt = None  # KML is WGS84 lon/lat by its specification; the file declares nothing
    elif fmt == "geojson" and _is_wgs84_lonlat(gdal_crs) and not _geojson_declares_crs(path):
        crs_wkt = None  # RFC 7946: no "crs" member means CRS84; GDAL reports that as EPSG:4326
    else:
        crs_wkt = _crs_to_wkt(gdal_crs)

    count = meta.get("features")
    count = int(count) if count is not None and int(count) >= 0 else None
    bounds = meta.get("total_bounds")
    if bounds is not None:
        bounds = tuple(float(b) for b in bounds)
        if not all(math.isfinite(b) for b in bounds):
            bounds = None

    return SourceInfo(
        path=path,
        format=fmt,
        layer=chosen,
        layers=layer_names if fmt != "shapefile" else [chosen],
        encoding=enc_decision,
        crs_wkt=crs_wkt,
        fields=fields,
        geometry_type=meta.get("geometry_type"),
        feature_count=count,
        total_bounds=bounds,  # type: ignore[arg-type]
        notes=notes,
        extra={"driver": meta.get("driver"), "geometry_name": meta.get("geometry_name") or None},
    )


def _read_prj(prj: Path) -> str | None:
    try:
        data = prj.read_bytes()[:64 * 1024]
    except OSError:
        return None
    for enc in ("utf-8-sig", "gb18030", "latin1"):
        try:
            text = data.decode(enc).strip()
            break
        except UnicodeDecodeError:
            continue
    return text or None


# --------------------------------------------------------------------------- arrow → Python


def _to_python_column(arr: pa.Array | pa.ChunkedArray) -> list[Any]:
    """Convert one arrow column to plain Python values (str/int/float/bool/None, ISO dates)."""
    if isinstance(arr, pa.ChunkedArray):
        out: list[Any] = []
        for chunk in arr.chunks:
            out.extend(_to_python_column(chunk))
        return out
    t = arr.type
    if pa.types.is_dictionary(t):
        return _to_python_column(arr.dictionary_decode())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _t: False)(t):
        try:
            return arr.to_pylist()
        except UnicodeDecodeError:
            # bytes that are not valid in the decided encoding (GDAL passes them through)
            raw = arr.cast(pa.large_binary() if pa.types.is_large_string(t) else pa.binary()).to_pylist()
            return [None if v is None else v.decode("utf-8", errors="replace") for v in raw]
    if pa.types.is_date(t) or pa.types.is_time(t):
        return [None if v is None else v.isoformat() for v in arr.to_pylist()]
    if pa.types.is_timestamp(t):
        try:
            return [None if v is None else v.isoformat() for v in arr.to_pylist()]
        except (ValueError, OverflowError):
            return arr.cast(pa.string()).to_pylist()
    if pa.types.is_decimal(t):
        return [None if v is None else float(v) for v in arr.to_pylist()]
    if pa.types.is_nested(t):
        return [None if v is None else json.dumps(v, ensure_ascii=False, default=_json_default) for v in arr.to_pylist()]
    return arr.to_pylist()


def _json_default(v: Any) -> Any:
    if isinstance(v, (_dt.date, _dt.datetime, _dt.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def _arrow_field_type(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "real"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "datetime"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_dictionary(t):
        return _arrow_field_type(t.value_type)
    return "string"


def _find_geometry_column(schema: pa.Schema, preferred: str | None) -> int:
    if preferred:
        idx = schema.get_field_index(preferred)
        if idx >= 0:
            return idx
    for i, f in enumerate(schema):
        md = f.metadata or {}
        if md.get(b"ARROW:extension:name", b"").startswith(b"geoarrow.wkb") or md.get(b"ARROW:extension:name") == b"ogc.wkb":
            return i
    for name in ("wkb_geometry", "geometry", "geom"):
        idx = schema.get_field_index(name)
        if idx >= 0:
            return idx
    return -1


def _batch_to_raw(batch: pa.RecordBatch, start: int, geom_idx: int, drop: set[int]) -> RawBatch:
    n = batch.num_rows
    wkb: list[bytes | None] = batch.column(geom_idx).to_pylist() if geom_idx >= 0 else [None] * n
    names: list[str] = []
    cols: list[list[Any]] = []
    for i, f in enumerate(batch.schema):
        if i == geom_idx or i in drop:
            continue
        names.append(f.name)
        cols.append(_to_python_column(batch.column(i)))
    columns = dict(zip(names, cols))
    plain = all(_plain_column(batch.column(i)) for i in range(batch.num_columns) if i != geom_idx and i not in drop)
    plain_wkb = _plain_wkb(batch.column(geom_idx)) if geom_idx >= 0 else None
    return RawBatch(start=start, wkb=wkb, properties=ColumnRows(columns, n), plain=plain, columns=columns, plain_wkb=plain_wkb)


def _plain_wkb(arr: pa.Array) -> np.ndarray | None:
    """`geo.wkb.plain_polygons` over a WKB column's own buffers (binary or large binary, an extension's storage)."""
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if pa.types.is_binary(arr.type):
        width = np.int32
    elif pa.types.is_large_binary(arr.type):
        width = np.int64
    else:
        return None
    validity, offsets, data = arr.buffers()[:3]
    n = len(arr)
    offs = np.frombuffer(offsets, dtype=width)[arr.offset : arr.offset + n + 1]
    present = np.asarray(arr.is_valid()) if validity is not None else None
    return plain_polygons(np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8), offs, present)


def _plain_column(arr: pa.Array | pa.ChunkedArray) -> bool:
    """Whether `_to_python_column(arr)` gives only text, integers, booleans, None and finite floats.

    Why: the pipeline then skips its per-row sanitising (`pipeline._sanitized`), which looks at every
    value of every row for a NaN, an infinity or bytes: 0.18 s of the read-ahead thread per 100,000
    DLTB rows, against one vectorised look at each float column here.
    """
    t = arr.type
    if pa.types.is_dictionary(t):
        return _plain_column(arr.dictionary_decode() if isinstance(arr, pa.Array) else arr.cast(t.value_type))
    if (
        pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _t: False)(t)
        or pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_null(t)
        or pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_timestamp(t) or pa.types.is_nested(t)
    ):
        return True
    if pa.types.is_float32(t) or pa.types.is_float64(t):
        import pyarrow.compute as pc

        finite = pc.is_finite(arr)  # null where the value is null
        return bool(pc.all(pc.fill_null(finite, True)).as_py() is not False)
    return False  # decimals (a NaN becomes a float NaN), binary, half floats, others: sanitised row by row


def _iter_gdal(info: SourceInfo, batch_size: int) -> Iterator[RawBatch]:
    from pyogrio.raw import open_arrow

    kwargs: dict[str, Any] = {}
    if info.format == "shapefile" and info.encoding is not None:
        kwargs["encoding"] = info.encoding.encoding
    try:
        ctx = open_arrow(
            info.path,
            layer=info.layer,
            batch_size=batch_size,
            use_pyarrow=True,
            datetime_as_string=True,
            **kwargs,
        )
        meta, reader = ctx.__enter__()
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(info.path, exc) from exc
    try:
        geom_idx = _find_geometry_column(reader.schema, meta.get("geometry_name") or "wkb_geometry")
        start = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 — GDAL error mid-stream
                raise _unreadable(info.path, exc) from exc
            if batch.num_rows == 0:
                continue
            yield _batch_to_raw(batch, start, geom_idx, set())
            start += batch.num_rows
    finally:
        ctx.__exit__(None, None, None)


# --------------------------------------------------------------------------- GeoParquet


def _open_geoparquet(path: Path, *, layer: str | None, notes: list[Message]) -> SourceInfo:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, exc) from exc
    if layer and layer.strip().lower() not in (path.stem.lower(), path.name.lower()):
        raise SourceError(
            "source.unknown_layer",
            f"{path.name} 中没有名为“{layer}”的图层，只有：{path.stem}",
            f"{path.name} has no layer named {layer!r}; it has: {path.stem}",
            layer=layer,
            layers=[path.stem],
        )
    schema = pf.schema_arrow
    md = schema.metadata or {}
    if b"geo" not in md:
        raise _unsupported(path, "Parquet 文件缺少 GeoParquet 的 geo 元数据 / Parquet without GeoParquet 'geo' metadata")
    try:
        geo = json.loads(md[b"geo"])
        primary = geo["primary_column"]
        colmeta = geo["columns"][primary]
    except (ValueError, KeyError, TypeError) as exc:
        raise _unreadable(path, exc) from exc
    enc = str(colmeta.get("encoding", "WKB"))
    if enc.upper() != "WKB":
        raise _unsupported(
            path,
            f"GeoParquet 几何编码 {enc}，目前只支持 WKB / GeoParquet geometry encoding {enc}; only WKB is supported",
        )
    if schema.get_field_index(primary) < 0:
        raise _unreadable(path, KeyError(f"geometry column {primary!r} not in the Parquet schema"))

    extra: dict[str, Any] = {"geometry_name": primary, "geoparquet_version": geo.get("version")}
    if "crs" not in colmeta:
        crs_wkt = None
        extra["geoparquet_crs"] = "absent"  # OGC:CRS84 by the GeoParquet specification
    elif colmeta["crs"] is None:
        crs_wkt = None
        extra["geoparquet_crs"] = "null"  # explicitly unknown
        notes.append(
            Message(
                "source.crs_unknown",
                "GeoParquet 元数据声明坐标系为未知（crs: null）",
                "the GeoParquet metadata declares the CRS unknown (crs: null)",
            )
        )
    else:
        from pyproj import CRS

        raw = colmeta["crs"]
        try:
            crs_obj = CRS.from_json_dict(raw) if isinstance(raw, dict) else CRS.from_user_input(raw)
            crs_wkt = crs_obj.to_wkt()
        except Exception as exc:  # noqa: BLE001
            raise SourceError(
                "source.unreadable",
                f"{path.name} 的 GeoParquet 坐标系元数据无法解析",
                f"cannot parse the GeoParquet CRS metadata of {path.name}",
                path=str(path),
                gdal_message=str(exc),
            ) from exc
        extra["geoparquet_crs"] = "declared"
    if colmeta.get("edges") == "spherical":
        notes.append(
            Message(
                "source.spherical_edges",
                "GeoParquet 声明边为球面大圆弧（edges: spherical），平台按平面直线处理",
                "the GeoParquet declares spherical edges; the platform treats edges as planar",
            )
        )

    drop = {primary}
    covering = colmeta.get("covering") or {}
    bbox_cov = covering.get("bbox") if isinstance(covering, dict) else None
    if isinstance(bbox_cov, dict):
        for v in bbox_cov.values():
            if isinstance(v, list) and v:
                drop.add(v[0])
    extra["drop_columns"] = sorted(drop - {primary})

    fields = [FieldInfo(f.name, _arrow_field_type(f.type)) for f in schema if f.name not in drop]
    types = colmeta.get("geometry_types") or []
    gtype = types[0] if len(types) == 1 else "Unknown"
    bbox = colmeta.get("bbox")
    bounds: tuple[float, float, float, float] | None = None
    if isinstance(bbox, list) and len(bbox) == 4:
        bounds = tuple(float(b) for b in bbox)  # type: ignore[assignment]
    elif isinstance(bbox, list) and len(bbox) == 6:
        bounds = (float(bbox[0]), float(bbox[1]), float(bbox[3]), float(bbox[4]))
    return SourceInfo(
        path=path,
        format="geoparquet",
        layer=path.stem,
        layers=[path.stem],
        encoding=None,
        crs_wkt=crs_wkt,
        fields=fields,
        geometry_type=gtype,
        feature_count=pf.metadata.num_rows,
        total_bounds=bounds,
        notes=notes,
        extra=extra,
    )


def _iter_geoparquet(info: SourceInfo, batch_size: int) -> Iterator[RawBatch]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(info.path)
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(info.path, exc) from exc
    with pf:
        schema = pf.schema_arrow
        geom_idx = schema.get_field_index(info.extra["geometry_name"])
        drop = {schema.get_field_index(n) for n in info.extra.get("drop_columns", [])} - {-1}
        start = 0
        for batch in pf.iter_batches(batch_size=batch_size):
            if batch.num_rows == 0:
                continue
            yield _batch_to_raw(batch, start, geom_idx, drop)
            start += batch.num_rows


# --------------------------------------------------------------------------- CSV

_WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "shape", "geometry_wkt")
_X_NAMES = ("lon", "lng", "long", "longitude", "经度", "x")
_Y_NAMES = ("lat", "latitude", "纬度", "y")
_WKT_RE = re.compile(
    r"^\s*(SRID=\d+\s*;\s*)?(MULTI)?(POINT|LINESTRING|POLYGON|CURVEPOLYGON|GEOMETRYCOLLECTION|MULTISURFACE|MULTICURVE)\b",
    re.IGNORECASE,
)
_SRID_RE = re.compile(r"^\s*SRID=\d+\s*;\s*", re.IGNORECASE)


def _csv_python_encoding(dec: EncodingDecision) -> str:
    return "utf-8-sig" if dec.encoding.upper() == "UTF-8" else dec.encoding


def _open_csv_text(path: Path, dec: EncodingDecision):  # noqa: ANN202
    return open(path, encoding=_csv_python_encoding(dec), errors="replace", newline="")


def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _parse_number(text: str | None) -> float | None:
    if text is None:
        return None
    s = text.strip()
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _open_csv(path: Path, *, layer: str | None, encoding: str | None, notes: list[Message]) -> SourceInfo:
    if layer and layer.strip().lower() not in (path.stem.lower(), path.name.lower()):
        raise SourceError(
            "source.unknown_layer",
            f"{path.name} 中没有名为“{layer}”的图层，只有：{path.stem}",
            f"{path.name} has no layer named {layer!r}; it has: {path.stem}",
            layer=layer,
            layers=[path.stem],
        )
    try:
        dec = detect_text_encoding(path, encoding)
    except ValueError as exc:
        raise SourceError(
            "source.unknown_encoding",
            f"无法识别指定的编码“{encoding}”",
            f"unknown encoding {encoding!r}",
            encoding=encoding,
        ) from exc
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    notes.append(dec.to_message())
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    try:
        with _open_csv_text(path, dec) as f:
            first = f.readline()
            delimiter = _sniff_delimiter(first)
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            sample_rows = [row for _, row in zip(range(100), reader)]
    except (OSError, csv.Error, UnicodeError) as exc:
        raise _unreadable(path, exc) from exc
    if not header:
        raise SourceError(
            "source.csv_no_geometry",
            f"{path.name} 是空文件或没有表头",
            f"{path.name} is empty or has no header row",
            columns=[],
        )
    header = [h.lstrip("\ufeff") for h in header]
    lower = [h.strip().lower() for h in header]

    def find(cands: tuple[str, ...]) -> int | None:
        for c in cands:
            if c in lower:
                return lower.index(c)
        return None

    extra: dict[str, Any] = {"delimiter": delimiter}
    wkt_idx = None
    for c in _WKT_NAMES:
        if c in lower:
            idx = lower.index(c)
            first_value = next((r[idx] for r in sample_rows if idx < len(r) and r[idx].strip()), None)
            if first_value is None or _WKT_RE.match(first_value):
                wkt_idx = idx
                break
    x_idx = y_idx = None
    if wkt_idx is None:
        x_idx, y_idx = find(_X_NAMES), find(_Y_NAMES)
        if x_idx is None or y_idx is None:
            raise SourceError(
                "source.csv_no_geometry",
                f"{path.name} 中找不到几何列：需要 WKT 列（wkt/geometry/geom）或经纬度列（lon/lng/longitude/x/经度 与 lat/latitude/y/纬度）；"
                f"文件中的列为：{'、'.join(header)}",
                f"{path.name} has no geometry columns: need a WKT column (wkt/geometry/geom) or coordinate columns "
                f"(lon/lng/longitude/x/经度 and lat/latitude/y/纬度); the columns are: {', '.join(header)}",
                columns=header,
            )
        # Chinese surveying convention: X is the northing, Y the easting (8 digits with zone prefix)
        if lower[x_idx] == "x" and lower[y_idx] == "y":
            pairs = [
                (_parse_number(r[x_idx]) if x_idx < len(r) else None, _parse_number(r[y_idx]) if y_idx < len(r) else None)
                for r in sample_rows
            ]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if pairs and all(1e6 <= abs(a) < 1e7 and 1e7 <= abs(b) < 1e8 for a, b in pairs):
                x_idx, y_idx = y_idx, x_idx
                extra["xy_swapped"] = True
                notes.append(
                    Message(
                        "source.csv_xy_swapped",
                        "X 列为 7 位北坐标、Y 列为 8 位带带号的东坐标（测量习惯），已按 Y 为东、X 为北读取",
                        "column X holds 7-digit northings and Y 8-digit eastings with zone prefix (surveying order); "
                        "reading Y as easting and X as northing",
                    )
                )
        extra.update({"geometry": "xy", "x_column": header[x_idx], "y_column": header[y_idx]})
        notes.append(
            Message(
                "source.csv_geometry",
                f"按列 {header[x_idx]}（东/经度）与 {header[y_idx]}（北/纬度）生成点几何",
                f"building points from columns {header[x_idx]} (x/longitude) and {header[y_idx]} (y/latitude)",
            )
        )
        geom_cols = {x_idx, y_idx}
    else:
        extra.update({"geometry": "wkt", "wkt_column": header[wkt_idx]})
        notes.append(
            Message(
                "source.csv_geometry",
                f"按 WKT 列 {header[wkt_idx]} 读取几何",
                f"reading geometry from the WKT column {header[wkt_idx]}",
            )
        )
        geom_cols = {wkt_idx}
    extra["x_index"], extra["y_index"], extra["wkt_index"] = x_idx, y_idx, wkt_idx
    extra["header"] = header
    fields = [FieldInfo(h, "string") for i, h in enumerate(header) if i not in geom_cols]
    return SourceInfo(
        path=path,
        format="csv",
        layer=path.stem,
        layers=[path.stem],
        encoding=dec,
        crs_wkt=None,
        fields=fields,
        geometry_type="Point" if wkt_idx is None else None,
        feature_count=None,
        total_bounds=None,
        notes=notes,
        extra=extra,
    )


_POINT_WKB = struct.Struct("<BIdd")


def _csv_wkb(rows: list[list[str]], info: SourceInfo) -> tuple[list[bytes | None], dict[int, str]]:
    ex = info.extra
    errors: dict[int, str] = {}
    out: list[bytes | None] = []
    if ex["geometry"] == "xy":
        xi, yi = ex["x_index"], ex["y_index"]
        for k, r in enumerate(rows):
            xs = r[xi] if xi < len(r) else ""
            ys = r[yi] if yi < len(r) else ""
            if not xs.strip() and not ys.strip():
                out.append(None)
                continue
            x, y = _parse_number(xs), _parse_number(ys)
            if x is None or y is None:
                out.append(None)
                errors[k] = f"{xs},{ys}"
                continue
            out.append(_POINT_WKB.pack(1, 1, x, y))
        return out, errors
    import shapely

    wi = ex["wkt_index"]
    texts = [(r[wi] if wi < len(r) else "") for r in rows]
    cleaned = [_SRID_RE.sub("", t) if t.strip() else None for t in texts]
    geoms = shapely.from_wkt(np.array(cleaned, dtype=object), on_invalid="ignore")
    wkbs = shapely.to_wkb(geoms, flavor="iso")
    for k, (t, g, b) in enumerate(zip(cleaned, geoms, wkbs)):
        if t is None:
            out.append(None)
        elif g is None:
            out.append(None)
            errors[k] = t[:2000]
        else:
            out.append(bytes(b))
    return out, errors


def _iter_csv(info: SourceInfo, batch_size: int) -> Iterator[RawBatch]:
    assert info.encoding is not None
    ex = info.extra
    header: list[str] = ex["header"]
    geom_cols = {i for i in (ex.get("x_index"), ex.get("y_index"), ex.get("wkt_index")) if i is not None}
    keep = [(i, h) for i, h in enumerate(header) if i not in geom_cols]
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    try:
        f = _open_csv_text(info.path, info.encoding)
    except OSError as exc:
        raise _unreadable(info.path, exc) from exc
    with f:
        reader = csv.reader(f, delimiter=ex["delimiter"])
        next(reader, None)
        start = 0
        rows: list[list[str]] = []

        def flush() -> RawBatch:
            wkb, errors = _csv_wkb(rows, info)
            props = [
                {h: ((r[i] if r[i] != "" else None) if i < len(r) else None) for i, h in keep}
                for r in rows
            ]
            return RawBatch(start=start, wkb=wkb, properties=props, geometry_errors=errors)

        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                rows.append(row)
                if len(rows) >= batch_size:
                    yield flush()
                    start += len(rows)
                    rows = []
        except csv.Error as exc:
            raise _unreadable(info.path, exc) from exc
        if rows:
            yield flush()


# --------------------------------------------------------------------------- streaming API


def iter_batches(info: SourceInfo, batch_size: int = 10_000) -> Iterator[RawBatch]:
    """Stream the features of `info` in batches of at most `batch_size`."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    if info.format == "geoparquet":
        yield from _iter_geoparquet(info, batch_size)
    elif info.format == "csv":
        yield from _iter_csv(info, batch_size)
    elif info.format in _GDAL_FORMATS:
        yield from _iter_gdal(info, batch_size)
    else:
        raise _unsupported(info.path, info.format)


def sample_coordinates(info: SourceInfo, n: int = 1000) -> np.ndarray:
    """Up to `n` (x, y) vertex coordinates from the first features, in source coordinates.

    At most n // 10 vertices are taken from one feature, so the sample spans several features.
    Geometry that cannot be parsed is skipped. Shape (m, 2), m ≤ n.
    """
    import shapely

    if n <= 0:
        return np.empty((0, 2), dtype=float)
    per_feature = max(1, n // 10)
    parts: list[np.ndarray] = []
    total = 0
    scanned = 0
    batches = iter_batches(info, batch_size=min(max(n, 64), 2048))
    try:
        for batch in batches:
            present = [w for w in batch.wkb if w is not None]
            scanned += len(batch.wkb)
            if present:
                geoms = shapely.from_wkb(np.array(present, dtype=object), on_invalid="ignore")
                for g in geoms:
                    if g is None:
                        continue
                    xy = shapely.get_coordinates(g)[:per_feature]
                    xy = xy[np.isfinite(xy).all(axis=1)]
                    if len(xy):
                        parts.append(xy)
                        total += len(xy)
                        if total >= n:
                            break
            if total >= n or scanned >= 100 * n:
                break
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    if not parts:
        return np.empty((0, 2), dtype=float)
    return np.concatenate(parts)[:n]
