"""Deciding how a submission's coordinates reach CGCS2000 geographic (EPSG:4490).

Since 2018-07-01 every dataset in the system is CGCS2000 (DOMAIN.md §3). A
submission may still arrive in another CRS, and the cost of a wrong guess is a
parcel that sits 50-100 m (54/80 vs 2000) or several hundred metres (GCJ-02)
from where it belongs, while looking perfectly plausible. So this module only
does conversions that are exact or known to be harmless, and otherwise
refuses with a message a person can act on:

* CGCS2000 geographic -> identity; CGCS2000 projected -> inverse projection;
* WGS 84 (any) -> WGS 84 lon/lat, taken as CGCS2000 (they agree at the
  decimetre level; no datum shift is applied);
* GCJ-02 -> iterative inverse of the offset, then as WGS 84;
* Xian 1980 / Beijing 1954 -> only with a registered 7- or 4-parameter set
  for the matching datum; PROJ's own "ballpark" shift is a silent no-op and is
  never used;
* anything else -> refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from pyproj import CRS, Transformer
from pyproj.crs import ProjectedCRS
from pyproj.exceptions import CRSError

from landcloud.geo.ellipsoid import CGCS2000_A, CGCS2000_F, EPSG_CGCS2000, geocentric, geodetic
from landcloud.geo.gcj02 import gcj02_to_wgs84
from landcloud.geo.helmert import Helmert4, Helmert7
from landcloud.geo.zones import ZONE_RANGE, gk_epsg, gk_zone_of_epsg

__all__ = [
    "GCJ02",
    "CRSRefused",
    "CoordinateTransformer",
    "DatumName",
    "TransformationSet",
    "datum_of",
    "make_transformer",
    "parse_crs",
]

#: Sentinel for GCJ-02 lon/lat, which is not a CRS PROJ knows.
GCJ02: Final = "GCJ02"

DatumName = Literal["cgcs2000", "wgs84", "xian80", "beijing54", "other"]

_CGCS2000_CRS: Final[CRS] = CRS.from_epsg(EPSG_CGCS2000)
_WGS84_CRS: Final[CRS] = CRS.from_epsg(4326)

_DATUM_LABEL: Final[dict[str, tuple[str, str]]] = {
    "xian80": ("1980西安坐标系", "Xian 1980"),
    "beijing54": ("1954北京坐标系", "Beijing 1954"),
}


class CRSRefused(ValueError):
    """A submission's CRS cannot be brought to CGCS2000 without risking a silent error.

    ``code`` is stable for programs (e.g. "crs.needs_transformation");
    ``message_zh`` / ``message_en`` are for the person who submitted the data
    and say what to do next.
    """

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        super().__init__(message_en)
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message_zh, self.message_en))


# --------------------------------------------------------------------------- parsing

_GCJ_NAMES: Final[frozenset[str]] = frozenset({"gcj02", "gcj-02", "gcj_02", "gcj 02", "火星坐标"})
_ALIASES: Final[dict[str, str]] = {
    "cgcs2000": "EPSG:4490",
    "cgcs 2000": "EPSG:4490",
    "cgcs-2000": "EPSG:4490",
    "china2000": "EPSG:4490",
    "2000国家大地坐标系": "EPSG:4490",
    "wgs84": "EPSG:4326",
    "wgs 84": "EPSG:4326",
    "wgs-84": "EPSG:4326",
    "wgs_84": "EPSG:4326",
    "wgs_1984": "EPSG:4326",
    "crs84": "OGC:CRS84",
    "ogc:crs84": "OGC:CRS84",
    "xian80": "EPSG:4610",
    "xian1980": "EPSG:4610",
    "beijing54": "EPSG:4214",
    "beijing1954": "EPSG:4214",
}

# ESRI-style GK names; PROJ knows them in their usual spelling, this is the fallback
# for other spellings (e.g. all lower case).
_ESRI_GK_RE: Final[re.Pattern[str]] = re.compile(
    r"^(?P<datum>cgcs2000|xian_1980|beijing_1954)_(?:(?P<three>3)_degree_)?gk_"
    r"(?:zone_(?P<zone>\d{1,2})|cm_(?P<cm>\d{2,3})e)$",
    re.IGNORECASE,
)
_ESRI_DATUM: Final[dict[str, Literal["cgcs2000", "xian80", "beijing54"]]] = {
    "cgcs2000": "cgcs2000",
    "xian_1980": "xian80",
    "beijing_1954": "beijing54",
}


def _unknown(text: str, detail: str = "") -> CRSRefused:
    shown = text if len(text) <= 120 else text[:117] + "..."
    extra_en = f" ({detail})" if detail else ""
    return CRSRefused(
        "crs.unknown",
        f"无法识别的坐标参考系：“{shown}”。请提供 EPSG 代码（如 EPSG:4490、EPSG:4530）或完整的 .prj/WKT 定义。",
        f"Unrecognised coordinate reference system: {shown!r}{extra_en}. "
        "Give an EPSG code (e.g. EPSG:4490, EPSG:4530) or a complete .prj/WKT definition.",
    )


def _esri_gk(text: str) -> CRS | None:
    match = _ESRI_GK_RE.match(text)
    if match is None:
        return None
    datum = _ESRI_DATUM[match["datum"].lower()]
    width: Literal[3, 6] = 3 if match["three"] else 6
    if match["zone"] is not None:
        zone, prefixed = int(match["zone"]), True
    else:
        cm = int(match["cm"])
        zone, prefixed = (cm // 3 if width == 3 else (cm + 3) // 6), False
        if (3 * zone if width == 3 else 6 * zone - 3) != cm:
            return None
    try:
        return CRS.from_epsg(gk_epsg(datum, width, zone, prefixed))
    except ValueError:
        return None


def parse_crs(text: str) -> CRS | Literal["GCJ02"]:
    """Turn what a user or a .prj file says into a pyproj CRS, or the GCJ02 sentinel.

    Accepts EPSG codes with or without "EPSG:", common names (CGCS2000,
    WGS84, CRS84, GCJ-02), ESRI GK names such as
    "CGCS2000_3_Degree_GK_Zone_42", and anything PROJ understands (WKT, PROJ
    strings, authority codes, EPSG names). Raises CRSRefused("crs.unknown")
    otherwise, rather than falling back to a default CRS.
    """
    if not isinstance(text, str):
        raise _unknown(repr(text), "not a string")
    stripped = text.strip().lstrip("\ufeff").strip()
    if not stripped:
        raise _unknown(text, "empty")
    lowered = stripped.lower()
    if lowered in _GCJ_NAMES:
        return GCJ02
    key = lowered
    if key in _ALIASES:
        return CRS.from_user_input(_ALIASES[key])
    if re.fullmatch(r"\d{4,6}", stripped):
        stripped = f"EPSG:{stripped}"
    try:
        return CRS.from_user_input(stripped)
    except CRSError as exc:
        esri = _esri_gk(stripped)
        if esri is not None:
            return esri
        raise _unknown(text, str(exc).splitlines()[0][:200]) from exc


# --------------------------------------------------------------------------- datum

def _norm(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (name or "").lower())


_DATUM_PATTERNS: Final[tuple[tuple[str, DatumName], ...]] = (
    ("china2000", "cgcs2000"),
    ("chinageodeticcoordinatesystem2000", "cgcs2000"),
    ("cgcs2000", "cgcs2000"),
    ("newbeijing", "beijing54"),
    ("beijing1954", "beijing54"),
    ("beijing54", "beijing54"),
    ("xian1980", "xian80"),
    ("xian80", "xian80"),
    ("worldgeodeticsystem1984", "wgs84"),
    ("wgs1984", "wgs84"),
    ("wgs84", "wgs84"),
)


def datum_of(crs: CRS) -> DatumName:
    """Classify the geodetic datum of a CRS for the routing in :func:`make_transformer`.

    Decided on the datum name (EPSG or ESRI spelling, e.g. "China 2000",
    "D_China_2000", "Xian_1980", "D_Beijing_1954", "New Beijing",
    "World Geodetic System 1984 ensemble"). The ellipsoid alone is never
    enough - GRS80 is also ETRS89/NAD83 and Krassowsky is also Pulkovo 1942 -
    so a datum PROJ reports as "unknown" is "other" and gets refused.
    Also checks the ellipsoid of a recognised datum, so a mislabelled WKT
    (e.g. "Xian 1980" on the CGCS2000 ellipsoid) is "other" too.
    """
    geodetic_crs = crs.geodetic_crs
    if geodetic_crs is None:
        return "other"
    datum = geodetic_crs.datum
    name = _norm(datum.name) if datum is not None else ""
    if not name or name.startswith("unknown"):
        return "other"
    label: DatumName = "other"
    for pattern, found in _DATUM_PATTERNS:
        if pattern in name:
            label = found
            break
    if label == "other":
        return "other"
    ellipsoid = geodetic_crs.ellipsoid
    if ellipsoid is None:
        return label
    expected = {
        "cgcs2000": (6378137.0, 298.257222101),
        "wgs84": (6378137.0, 298.257223563),
        "xian80": (6378140.0, 298.257),
        "beijing54": (6378245.0, 298.3),
    }[label]
    if abs(ellipsoid.semi_major_metre - expected[0]) > 0.5 or abs(
        ellipsoid.inverse_flattening - expected[1]
    ) > 1e-4:
        return "other"
    return label


# --------------------------------------------------------------------------- transformation sets

_SET_KEYS: Final[frozenset[str]] = frozenset(
    {"name", "source_datum", "region_code", "method", "helmert7", "helmert4"}
)
_H7_KEYS: Final[frozenset[str]] = frozenset({"tx", "ty", "tz", "rx", "ry", "rz", "ds", "convention"})
_H4_KEYS: Final[frozenset[str]] = frozenset({"dx", "dy", "rotation", "ds"})


def _check_keys(data: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(sorted(unknown))}")


@dataclass(frozen=True)
class TransformationSet:
    """Parameters an administrator registered for one region and source datum.

    Stored as JSON (:meth:`to_dict`/:meth:`from_dict`); treat stored sets as
    classified configuration (DOMAIN.md §3.3). ``helmert4`` parameters apply
    to GK plane coordinates without zone prefix (false easting 500 000 m) in
    the zone of the data.
    """

    name: str
    source_datum: Literal["xian80", "beijing54"]
    region_code: str
    method: Literal["helmert7", "helmert4"]
    helmert7: Helmert7 | None = None
    helmert4: Helmert4 | None = None

    def __post_init__(self) -> None:
        if self.source_datum not in ("xian80", "beijing54"):
            raise ValueError(f"source_datum must be 'xian80' or 'beijing54', got {self.source_datum!r}")
        if self.method == "helmert7":
            if self.helmert7 is None:
                raise ValueError("method 'helmert7' needs helmert7 parameters")
        elif self.method == "helmert4":
            if self.helmert4 is None:
                raise ValueError("method 'helmert4' needs helmert4 parameters")
        else:
            raise ValueError(f"method must be 'helmert7' or 'helmert4', got {self.method!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; only the parameters of the chosen method are kept."""
        out: dict[str, Any] = {
            "name": self.name,
            "source_datum": self.source_datum,
            "region_code": self.region_code,
            "method": self.method,
        }
        if self.method == "helmert7" and self.helmert7 is not None:
            h7 = self.helmert7
            out["helmert7"] = {
                "tx": h7.tx, "ty": h7.ty, "tz": h7.tz,
                "rx": h7.rx, "ry": h7.ry, "rz": h7.rz,
                "ds": h7.ds, "convention": h7.convention,
            }
        if self.method == "helmert4" and self.helmert4 is not None:
            h4 = self.helmert4
            out["helmert4"] = {"dx": h4.dx, "dy": h4.dy, "rotation": h4.rotation, "ds": h4.ds}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransformationSet:
        """Inverse of :meth:`to_dict`.

        Unknown keys are rejected (ValueError): a misspelt "convention" silently
        falling back to the default would flip every rotation.
        """
        _check_keys(data, _SET_KEYS, "transformation set")
        h7_data = data.get("helmert7")
        h4_data = data.get("helmert4")
        if h7_data is not None:
            _check_keys(h7_data, _H7_KEYS, "helmert7")
        if h4_data is not None:
            _check_keys(h4_data, _H4_KEYS, "helmert4")
        h7 = None
        if h7_data is not None:
            h7 = Helmert7(
                tx=float(h7_data["tx"]), ty=float(h7_data["ty"]), tz=float(h7_data["tz"]),
                rx=float(h7_data["rx"]), ry=float(h7_data["ry"]), rz=float(h7_data["rz"]),
                ds=float(h7_data["ds"]),
                convention=h7_data.get("convention", "position_vector"),
            )
        h4 = None
        if h4_data is not None:
            h4 = Helmert4(
                dx=float(h4_data["dx"]), dy=float(h4_data["dy"]),
                rotation=float(h4_data["rotation"]), ds=float(h4_data["ds"]),
            )
        return cls(
            name=str(data["name"]),
            source_datum=data["source_datum"],
            region_code=str(data["region_code"]),
            method=data["method"],
            helmert7=h7,
            helmert4=h4,
        )


# --------------------------------------------------------------------------- transformer

XYFunc = Callable[[NDArray[np.float64], NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]]


class CoordinateTransformer:
    """Converts coordinates of one source CRS to CGCS2000 lon/lat (EPSG:4490, x = lon).

    Build with :func:`make_transformer`. ``description`` records what was done,
    for the quality report of the submission.
    """

    def __init__(self, func: XYFunc, description: str, source: CRS | str) -> None:
        self._func = func
        self.description = description
        self.source = source

    def __repr__(self) -> str:
        return f"CoordinateTransformer({self.description!r})"

    def transform_xy(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Source x/y (easting/lon, northing/lat) -> CGCS2000 lon, lat; shape preserved."""
        x_a, y_a = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        shape = x_a.shape
        lon, lat = self._func(np.ascontiguousarray(x_a).reshape(-1), np.ascontiguousarray(y_a).reshape(-1))
        return (
            np.asarray(lon, dtype=np.float64).reshape(shape),
            np.asarray(lat, dtype=np.float64).reshape(shape),
        )

    def transform_geometries(self, geoms: Any) -> Any:
        """Transform shapely geometries (array or single) in one vectorised call.

        None stays None; Z values are carried over unchanged (heights are not
        transformed - the platform's data are 2-D). Already CGCS2000 (or WGS 84)
        lon/lat: the same geometries (an array: a new array of them), not each one
        rebuilt from its own coordinates (~0.8 s of CPU a million parcels).
        """
        if self._func is _identity:
            return np.array(geoms, dtype=object, copy=True) if isinstance(geoms, np.ndarray) else geoms

        def apply(coords: NDArray[np.float64]) -> NDArray[np.float64]:
            out = np.array(coords, dtype=np.float64, copy=True)
            if out.shape[0]:
                lon, lat = self.transform_xy(out[:, 0], out[:, 1])
                out[:, 0] = lon
                out[:, 1] = lat
            return out

        return shapely.transform(geoms, apply, include_z=None)


def _crs_label(crs: CRS) -> str:
    auth = crs.to_authority(min_confidence=90)
    code = f" ({auth[0]}:{auth[1]})" if auth else ""
    epsg = crs.to_epsg(min_confidence=90)
    zone = gk_zone_of_epsg(epsg) if epsg is not None else None
    if zone is not None:
        datum = {"cgcs2000": "CGCS2000", "xian80": "Xian 1980", "beijing54": "Beijing 1954"}[zone.datum]
        variant = f"zone {zone.zone}" if zone.prefixed else f"CM {zone.central_meridian:g}E"
        return f"{datum} {zone.width}° GK {variant}{code}"
    return f"{crs.name}{code}"


def _pyproj_xy(source: CRS, target: CRS) -> XYFunc:
    transformer = Transformer.from_crs(source, target, always_xy=True)

    def func(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        out_x, out_y = transformer.transform(x, y, errcheck=False)
        return np.asarray(out_x, dtype=np.float64), np.asarray(out_y, dtype=np.float64)

    return func


def _identity(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return x.copy(), y.copy()


def _needs_transformation(datum: str, crs_label: str, detail_zh: str = "", detail_en: str = "") -> CRSRefused:
    zh_name, en_name = _DATUM_LABEL[datum]
    return CRSRefused(
        "crs.needs_transformation",
        f"数据采用{zh_name}（{crs_label}）。PROJ 中没有{zh_name}到 2000 国家大地坐标系（CGCS2000）的实际转换参数，"
        f"只有不改变坐标的粗略近似，因此系统不会自动转换。{detail_zh}"
        "请管理员为该地区登记七参数或四参数转换参数后再提交，或提交 CGCS2000 成果。",
        f"The data are in {en_name} ({crs_label}). PROJ has no real transformation from {en_name} "
        "to CGCS2000 (only a 'ballpark' zero shift), so the platform will not convert them silently. "
        f"{detail_en}An administrator must register a 7- or 4-parameter transformation set for the "
        "region before the data can be accepted, or submit the CGCS2000 version of the data.",
    )


def _cgcs2000_plane_twin(source: CRS) -> tuple[CRS, str]:
    """CGCS2000 CRS with the same projection (zone, CM, false easting) as a 54/80 plane CRS."""
    epsg = source.to_epsg(min_confidence=90)
    zone = gk_zone_of_epsg(epsg) if epsg is not None else None
    if zone is not None:
        code = gk_epsg("cgcs2000", zone.width, zone.zone, zone.prefixed)
        twin = CRS.from_epsg(code)
        return twin, _crs_label(twin)
    conversion = source.coordinate_operation
    twin = ProjectedCRS(conversion=conversion, geodetic_crs=_CGCS2000_CRS, name=f"CGCS2000 twin of {source.name}")
    return twin, f"CGCS2000 with the projection of {source.name}"


def _false_easting_prefix(crs: CRS) -> float:
    """The zone-prefix part (zone*1e6) of a GK false easting; 0 for unprefixed CRSs.

    Only false eastings of the form zone*1e6 + 500 000 m with a Chinese GK zone
    number count as prefixed, so unusual local false eastings are left alone.
    """
    op = crs.coordinate_operation
    if op is None:
        return 0.0
    for param in op.params:
        if param.name.lower() != "false easting":
            continue
        unit = (param.unit_name or "metre").lower()
        if unit not in ("metre", "meter", "m"):
            return 0.0
        prefix = float(param.value) - 500_000.0
        zone = prefix / 1_000_000.0
        if zone == int(zone) and any(lo <= zone <= hi for lo, hi in ZONE_RANGE.values()):
            return prefix
        return 0.0
    return 0.0


def _helmert7_path(source: CRS, params: Helmert7, label: str, tset: TransformationSet) -> CoordinateTransformer:
    geodetic_src = source.geodetic_crs
    assert geodetic_src is not None
    ellipsoid = geodetic_src.ellipsoid
    assert ellipsoid is not None
    a_src = float(ellipsoid.semi_major_metre)
    f_src = 1.0 / float(ellipsoid.inverse_flattening)
    to_geographic = _pyproj_xy(source, geodetic_src) if source.is_projected else None

    def func(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        lon, lat = to_geographic(x, y) if to_geographic is not None else (x, y)
        # 2-D data: heights taken as 0 on the source ellipsoid (a 100 m height
        # error moves points by ~1 mm through the rotations).
        ex, ey, ez = geocentric(lon, lat, 0.0, a_src, f_src)
        tx, ty, tz = params.apply(ex, ey, ez)
        out_lon, out_lat, _ = geodetic(tx, ty, tz, CGCS2000_A, CGCS2000_F)
        return out_lon, out_lat

    step1 = "inverse projection to geographic, " if source.is_projected else ""
    description = (
        f"{label} → {step1}ECEF on {ellipsoid.name} → 7-parameter Helmert "
        f"({params.convention.replace('_', ' ')}) from set {tset.name!r} (region {tset.region_code}) "
        f"→ CGCS2000 geodetic (EPSG:4490)"
    )
    return CoordinateTransformer(func, description, source)


def _helmert4_path(source: CRS, params: Helmert4, label: str, tset: TransformationSet) -> CoordinateTransformer:
    twin, twin_label = _cgcs2000_plane_twin(source)
    prefix_src = _false_easting_prefix(source)
    prefix_twin = _false_easting_prefix(twin)
    to_lonlat = _pyproj_xy(twin, _CGCS2000_CRS)

    def func(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        e, n = params.apply(x - prefix_src, y)
        return to_lonlat(e + prefix_twin, n)

    description = (
        f"{label} → 4-parameter plane transformation from set {tset.name!r} (region {tset.region_code}) "
        f"→ {twin_label} → EPSG:4490 inverse projection"
    )
    return CoordinateTransformer(func, description, source)


def make_transformer(
    source: CRS | Literal["GCJ02"] | str,
    transformation: TransformationSet | None = None,
) -> CoordinateTransformer:
    """Choose the conversion of ``source`` coordinates to CGCS2000 lon/lat, or refuse.

    ``source`` is a pyproj CRS or the :data:`GCJ02` sentinel (other strings
    are passed through :func:`parse_crs`). ``transformation`` is only used
    for Xian 1980 / Beijing 1954 data and must be for the same datum. Raises
    CRSRefused with codes "crs.needs_transformation", "crs.unsupported_datum",
    "crs.helmert4_needs_plane" or "crs.unknown".
    """
    if isinstance(source, str):
        source = parse_crs(source)
    if isinstance(source, str):
        if source != GCJ02:  # pragma: no cover - parse_crs only returns the sentinel
            raise _unknown(source)
        return CoordinateTransformer(
            lambda x, y: cast(tuple[NDArray[np.float64], NDArray[np.float64]], gcj02_to_wgs84(x, y)),
            "GCJ-02 lon/lat → WGS 84 by iterative inverse of the GCJ-02 offset (points outside mainland "
            "China unchanged) → treated as CGCS2000 (WGS 84 and CGCS2000 agree at the decimetre level; "
            "no datum shift applied)",
            GCJ02,
        )
    if not isinstance(source, CRS):
        source = CRS.from_user_input(source)
    label = _crs_label(source)
    datum = datum_of(source)

    if datum == "cgcs2000":
        if source.is_geographic and source.equals(_CGCS2000_CRS, ignore_axis_order=True):
            return CoordinateTransformer(_identity, f"{label}: already CGCS2000 lon/lat, unchanged", source)
        if source.is_projected:
            what = "inverse projection"
        else:
            what = "conversion"
        return CoordinateTransformer(_pyproj_xy(source, _CGCS2000_CRS), f"{label} → EPSG:4490 {what}", source)

    if datum == "wgs84":
        if source.is_geographic and source.equals(_WGS84_CRS, ignore_axis_order=True):
            func: XYFunc = _identity
            step = ""
        else:
            func = _pyproj_xy(source, _WGS84_CRS)
            step = " → WGS 84 lon/lat" + (" (inverse projection)" if source.is_projected else "")
        return CoordinateTransformer(
            func,
            f"{label}{step} → treated as CGCS2000 (EPSG:4490): WGS 84 and CGCS2000 agree at the "
            "decimetre level, no datum shift applied",
            source,
        )

    if datum in ("xian80", "beijing54"):
        if transformation is None:
            raise _needs_transformation(datum, label)
        if transformation.source_datum != datum:
            other_zh, other_en = _DATUM_LABEL[transformation.source_datum]
            raise _needs_transformation(
                datum,
                label,
                f"所选转换参数“{transformation.name}”适用于{other_zh}，不能用于本数据。",
                f"The selected set {transformation.name!r} is for {other_en}, not for this data. ",
            )
        if transformation.method == "helmert7":
            assert transformation.helmert7 is not None
            return _helmert7_path(source, transformation.helmert7, label, transformation)
        assert transformation.helmert4 is not None
        if not source.is_projected:
            zh_name, en_name = _DATUM_LABEL[datum]
            raise CRSRefused(
                "crs.helmert4_needs_plane",
                f"四参数转换只适用于高斯-克吕格平面坐标，而数据为{zh_name}经纬度（{label}）。"
                "请提交平面坐标数据，或由管理员登记七参数转换参数。",
                f"A 4-parameter transformation works on Gauss-Krüger plane coordinates, but the data are "
                f"{en_name} longitude/latitude ({label}). Submit plane coordinates, or have an administrator "
                "register a 7-parameter set.",
            )
        return _helmert4_path(source, transformation.helmert4, label, transformation)

    datum_name = source.geodetic_crs.datum.name if source.geodetic_crs and source.geodetic_crs.datum else "unknown"
    raise CRSRefused(
        "crs.unsupported_datum",
        f"不支持的大地基准“{datum_name}”（{label}）。平台只接收 2000 国家大地坐标系（CGCS2000）数据；"
        "WGS 84、GCJ-02，以及已登记转换参数的西安80/北京54数据可以自动转换。",
        f"Unsupported geodetic datum {datum_name!r} ({label}). The platform stores CGCS2000 only; "
        "WGS 84, GCJ-02, and Xian 1980 / Beijing 1954 data with a registered transformation set "
        "can be converted.",
    )
