"""CRS for the OGC services (OGC API – Features Part 2): which CRSs, their URIs, their axis order.

Inside the platform everything is EPSG:4490 longitude/latitude. On the wire the standard wants
the axis order of the CRS named: CRS84 is lon/lat, but EPSG:4490 and EPSG:4326 are lat/lon and
the CGCS2000 Gauss-Kruger CRSs (EPSG:4491–4554) are northing/easting. This module is the one
place that turns our coordinates into theirs and back.

GCJ-02 (lon/lat with the Chinese web-map offset) has no EPSG code and is never stored: it is an
output only, named by `GCJ02_URI`, and offered only by the public editions whose release profile
asks for it (the caller passes `gcj02=True` once it has checked that); everywhere else asking
for it is a 400 that says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer

from landcloud.geo.gcj02 import geometry_gcj02_to_wgs84, geometry_wgs84_to_gcj02
from landcloud.messages import LandcloudError

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"
STORAGE_CRS = EPSG_URI.format(code=4490)
GK_CODES = range(4491, 4555)
EPSG_CODES = (4490, 4326, 3857, *GK_CODES)
SUPPORTED = [CRS84, *(EPSG_URI.format(code=c) for c in EPSG_CODES)]
_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/EPSG/0/(\d+)$")
_SHORT = re.compile(r"^(?:EPSG|epsg):{1,2}(\d+)$")
_BRACKETED = re.compile(r"^\[?EPSG:(\d+)\]?$")
GCJ02_URI = "urn:landcloud:def:crs:GCJ-02"
GCJ02_NAMES = frozenset({GCJ02_URI.lower(), "gcj02", "gcj-02", "gcj_02", "火星坐标"})


@dataclass(frozen=True)
class OutputCRS:
    uri: str
    crs: CRS
    swap: bool  # the CRS's first axis is northing/latitude
    gcj02: bool = False  # lon/lat shifted to GCJ-02 (output only)

    @property
    def is_storage_lonlat(self) -> bool:
        return self.uri == CRS84


GCJ02_OUTPUT = OutputCRS(GCJ02_URI, CRS.from_user_input("OGC:CRS84"), swap=False, gcj02=True)


def is_gcj02(value: str | None) -> bool:
    """Whether a CRS parameter names GCJ-02 (its URI or a short name such as GCJ02)."""
    return bool(value) and value.strip().strip("[]<>").lower() in GCJ02_NAMES  # type: ignore[union-attr]


def gcj02_not_offered(dataset_id: str) -> LandcloudError:
    """The 400 for GCJ-02 asked of a dataset that does not offer it."""
    return LandcloudError(
        "crs.gcj02_not_offered",
        f"数据集“{dataset_id}”不提供 GCJ-02（火星坐标）：GCJ-02 只由发布配置启用了 GCJ-02 输出的公开版提供",
        f"dataset '{dataset_id}' does not offer GCJ-02: GCJ-02 coordinates are offered only by public editions "
        "whose release profile enables GCJ-02 output",
        crs=GCJ02_URI,
    )


def parse_crs_uri(value: str | None, gcj02: bool = False, dataset_id: str = "") -> OutputCRS:
    """A supported CRS from its URI (or EPSG:n / [EPSG:n] shorthand); 400 with the list otherwise.

    GCJ-02 only with `gcj02=True` (an edition that offers it, see editions.offers_gcj02).
    """
    if is_gcj02(value):
        if not gcj02:
            raise gcj02_not_offered(dataset_id)
        return GCJ02_OUTPUT
    return _parse_standard(value)


@lru_cache(maxsize=128)
def _parse_standard(value: str | None) -> OutputCRS:
    if not value or value.strip() in (CRS84, "CRS84", "OGC:CRS84", "[OGC:CRS84]"):
        return OutputCRS(CRS84, CRS.from_user_input("OGC:CRS84"), swap=False)
    text = value.strip()
    match = _URI.match(text) or _SHORT.match(text) or _BRACKETED.match(text)
    code = int(match.group(1)) if match else None
    if code not in EPSG_CODES:
        raise LandcloudError(
            "crs.unsupported",
            f"不支持的坐标系“{value}”；支持：CRS84、EPSG:4490、EPSG:4326、EPSG:3857、EPSG:4491–4554（CGCS2000 高斯-克吕格）",
            f"unsupported CRS '{value}'; supported: CRS84, EPSG:4490, EPSG:4326, EPSG:3857, EPSG:4491–4554 (CGCS2000 Gauss-Kruger)",
            supported=SUPPORTED,
        )
    crs = CRS.from_epsg(code)
    first = crs.axis_info[0].direction.lower() if crs.axis_info else "east"
    return OutputCRS(EPSG_URI.format(code=code), crs, swap=first in ("north", "south"))


@lru_cache(maxsize=64)
def _to(out_uri: str) -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(4490), parse_crs_uri(out_uri).crs, always_xy=True)


@lru_cache(maxsize=64)
def _from(in_uri: str) -> Transformer:
    return Transformer.from_crs(parse_crs_uri(in_uri).crs, CRS.from_epsg(4490), always_xy=True)


def to_output(geoms: np.ndarray, out: OutputCRS) -> np.ndarray:
    """Geometries (EPSG:4490 lon/lat) in the output CRS and its axis order."""
    if out.is_storage_lonlat:
        return geoms
    if out.gcj02:
        return geometry_wgs84_to_gcj02(geoms)  # CGCS2000 taken as WGS 84 (no datum shift), as on ingest
    tr = _to(out.uri)

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([y, x] if out.swap else [x, y])

    return shapely.transform(geoms, apply)


def from_input(geoms: np.ndarray, inp: OutputCRS) -> np.ndarray:
    """Geometries given in a CRS (its axis order) back to EPSG:4490 lon/lat."""
    if inp.is_storage_lonlat:
        return geoms
    tr = _from(inp.uri)

    def apply(xy: np.ndarray) -> np.ndarray:
        a, b = (xy[:, 1], xy[:, 0]) if inp.swap else (xy[:, 0], xy[:, 1])
        x, y = tr.transform(a, b)
        return np.column_stack([x, y])

    return shapely.transform(geoms, apply)


def bbox_to_storage(bbox: tuple[float, float, float, float], bbox_crs: OutputCRS) -> tuple[float, float, float, float]:
    """A bbox in the axis order of `bbox_crs`, as an EPSG:4490 lon/lat bbox (edges densified)."""
    if bbox_crs.is_storage_lonlat:
        return bbox
    if bbox_crs.gcj02:
        return gcj02_bbox_to_storage(bbox)
    a0, b0, a1, b1 = bbox
    x0, y0, x1, y1 = (b0, a0, b1, a1) if bbox_crs.swap else (a0, b0, a1, b1)
    return tuple(_from(bbox_crs.uri).transform_bounds(x0, y0, x1, y1, densify_pts=21))  # type: ignore[return-value]



GCJ02_MARGIN_DEG = 1e-4  # ~10 m: the inverse of a densified outline, grown a little for the curvature between its points


def gcj02_bbox_to_storage(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A GCJ-02 lon/lat bbox as the EPSG:4490 bbox that holds everything shown in it.

    The offset is up to ~700 m and varies across the box, so the box's densified outline is
    mapped back (iterative inverse) and its bounds grown by a small margin.
    """
    outline = shapely.segmentize(shapely.box(*bbox), max(bbox[2] - bbox[0], bbox[3] - bbox[1]) / 20 or 1.0)
    x0, y0, x1, y1 = shapely.bounds(geometry_gcj02_to_wgs84(outline))
    m = GCJ02_MARGIN_DEG
    return (float(x0) - m, float(y0) - m, float(x1) + m, float(y1) + m)
