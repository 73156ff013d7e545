"""CRS for the OGC services (OGC API – Features Part 2): which CRSs, their URIs, their axis order.

Inside the platform everything is EPSG:4490 longitude/latitude. On the wire the standard wants
the axis order of the CRS named: CRS84 is lon/lat, but EPSG:4490 and EPSG:4326 are lat/lon and
the CGCS2000 Gauss-Kruger CRSs (EPSG:4491–4554) are northing/easting. This module is the one
place that turns our coordinates into theirs and back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer

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


@dataclass(frozen=True)
class OutputCRS:
    uri: str
    crs: CRS
    swap: bool  # the CRS's first axis is northing/latitude

    @property
    def is_storage_lonlat(self) -> bool:
        return self.uri == CRS84


@lru_cache(maxsize=128)
def parse_crs_uri(value: str | None) -> OutputCRS:
    """A supported CRS from its URI (or EPSG:n / [EPSG:n] shorthand); 400 with the list otherwise."""
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
    a0, b0, a1, b1 = bbox
    x0, y0, x1, y1 = (b0, a0, b1, a1) if bbox_crs.swap else (a0, b0, a1, b1)
    return tuple(_from(bbox_crs.uri).transform_bounds(x0, y0, x1, y1, densify_pts=21))  # type: ignore[return-value]

