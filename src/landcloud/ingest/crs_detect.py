"""Which CRS a submission is in.

Order: what the user declares (--crs) > what the file declares (.prj, GeoPackage, …) > what the
format prescribes (GeoJSON, KML, GeoParquet without CRS = OGC:CRS84) > what the coordinates show
(degrees → CGCS2000 geographic; 8-digit eastings with zone prefix → CGCS2000 Gauss-Kruger zone).
Anything else is refused with a message that says how to fix it: a projected file without a CRS
cannot be placed on the map by guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyproj

from landcloud.geo.crs import CRSRefused, parse_crs
from landcloud.geo.zones import gk_zone_of_epsg, infer_cgcs2000_gk_from_eastings
from landcloud.ingest.readers import SourceInfo

__all__ = ["CRSDecision", "CRSRefused", "decide_crs"]

CRSHow = Literal["declared", "file", "inferred_gk_zone", "assumed_geographic", "default_crs84"]


@dataclass(frozen=True)
class CRSDecision:
    crs: pyproj.CRS | Literal["GCJ02"]
    how: CRSHow
    message_zh: str
    message_en: str

    @property
    def epsg(self) -> int | None:
        if isinstance(self.crs, str):
            return None
        return self.crs.to_epsg()


_SPEC_DEFAULT = {
    "geojson": ("GeoJSON 未声明坐标系，按 RFC 7946 规范为 WGS84 经纬度（OGC:CRS84）", "the GeoJSON declares no CRS; WGS84 longitude/latitude (OGC:CRS84) per RFC 7946"),
    "kml": ("KML 规范规定坐标为 WGS84 经纬度（OGC:CRS84）", "KML coordinates are WGS84 longitude/latitude (OGC:CRS84) by the KML specification"),
    "geoparquet": ("GeoParquet 未声明坐标系，按规范为 OGC:CRS84", "the GeoParquet declares no CRS; OGC:CRS84 per the GeoParquet specification"),
}

_OPTIONS_ZH = (
    "请任选其一：① 用 --crs 指定 EPSG 代码（CGCS2000 高斯-克吕格投影为 EPSG:4491–4554，"
    "例如 CGCS2000 3 度带中央经线 126°E 不加带号为 EPSG:4551）；② 补上 .prj 文件；③ 提交东坐标加带号（8 位）的数据"
)
_OPTIONS_EN = (
    "either give --crs with an EPSG code (CGCS2000 Gauss-Kruger zones are EPSG:4491-4554, "
    "e.g. EPSG:4551 for CGCS2000 3-degree CM 126E without zone prefix), add a .prj file, "
    "or submit data whose eastings carry the zone prefix (8 digits)"
)


def _refuse(code: str, zh: str, en: str) -> CRSRefused:
    return CRSRefused(code, zh, en)


def _crs_label(crs: pyproj.CRS) -> str:
    epsg = crs.to_epsg()
    return f"{crs.name}（EPSG:{epsg}）" if epsg else crs.name


def _crs_label_en(crs: pyproj.CRS) -> str:
    epsg = crs.to_epsg()
    return f"{crs.name} (EPSG:{epsg})" if epsg else crs.name


def _looks_geographic(xy: np.ndarray) -> bool:
    return bool(np.all(np.abs(xy[:, 0]) <= 180.0) and np.all(np.abs(xy[:, 1]) <= 90.0))


def _clean(sample_xy: np.ndarray | None) -> np.ndarray:
    if sample_xy is None:
        return np.empty((0, 2))
    arr = np.asarray(sample_xy, dtype=float).reshape(-1, 2)
    return arr[np.isfinite(arr).all(axis=1)]


def _gk_text(zone) -> tuple[str, str]:  # noqa: ANN001 — GKZone
    zh = f"CGCS2000 {zone.width} 度带高斯-克吕格投影第 {zone.zone} 带（中央经线 {zone.central_meridian:g}°E，EPSG:{zone.epsg}）"
    en = f"CGCS2000 {zone.width}-degree Gauss-Kruger zone {zone.zone} (CM {zone.central_meridian:g}E, EPSG:{zone.epsg})"
    return zh, en


def _check_file_crs_against_coordinates(crs: pyproj.CRS, xy: np.ndarray, source_zh: str, source_en: str) -> None:
    """Refuse a declared CRS that the coordinates plainly contradict (a wrong .prj)."""
    if len(xy) == 0:
        return
    if crs.is_geographic and not _looks_geographic(xy):
        zone = infer_cgcs2000_gk_from_eastings(xy[:, 0])
        hint_zh = hint_en = ""
        if zone is not None:
            z_zh, z_en = _gk_text(zone)
            hint_zh, hint_en = f"；坐标看起来是{z_zh}", f"; the coordinates look like {z_en}"
        raise _refuse(
            "crs.file_mismatch",
            f"{source_zh}声明的坐标系 {_crs_label(crs)} 是经纬度，但坐标（如 {xy[0, 0]:.3f}, {xy[0, 1]:.3f}）不是经纬度{hint_zh}；"
            "请修正 .prj 或用 --crs 指定正确的坐标系",
            f"{source_en[0].upper()}{source_en[1:]} declares the geographic CRS {_crs_label_en(crs)}, but the coordinates "
            f"(e.g. {xy[0, 0]:.3f}, {xy[0, 1]:.3f}) are not degrees{hint_en}; fix the .prj or give the right --crs",
        )
    epsg = crs.to_epsg()
    gk = gk_zone_of_epsg(epsg) if epsg else None
    if gk is None:
        return
    xs = xy[:, 0]
    inferred = infer_cgcs2000_gk_from_eastings(xs)
    if gk.prefixed:
        low = gk.zone * 1_000_000.0
        ok = bool(np.all((xs >= low) & (xs < low + 1_000_000.0)))
    else:
        ok = bool(np.all((xs > 0) & (xs < 1_000_000.0)))
    if ok:
        return
    hint_zh = hint_en = ""
    if inferred is not None:
        z_zh, z_en = _gk_text(inferred)
        hint_zh, hint_en = f"；东坐标看起来是{z_zh}", f"; the eastings look like {z_en}"
    raise _refuse(
        "crs.file_mismatch",
        f"{source_zh}声明的坐标系 {_crs_label(crs)} 与坐标不符：东坐标（如 {xs[0]:.2f}）"
        f"{'不在该带的带号范围内' if gk.prefixed else '带有带号或超出范围'}{hint_zh}；请修正 .prj 或用 --crs 指定正确的坐标系",
        f"{source_en[0].upper()}{source_en[1:]} declares {_crs_label_en(crs)}, but the eastings (e.g. {xs[0]:.2f}) "
        f"{'do not carry that zone prefix' if gk.prefixed else 'carry a zone prefix or are out of range'}{hint_en}; "
        "fix the .prj or give the right --crs",
    )


def decide_crs(info: SourceInfo, declared: str | None, sample_xy: np.ndarray) -> CRSDecision:
    """Decide the source CRS of a submission; raises CRSRefused when it cannot be known."""
    xy = _clean(sample_xy)

    # 1. the user's --crs
    if declared is not None and str(declared).strip():
        parsed = parse_crs(declared)
        if isinstance(parsed, str):  # "GCJ02"
            return CRSDecision(
                "GCJ02",
                "declared",
                "按指定的坐标系 GCJ-02（火星坐标）读取，入库前将反算为 CGCS2000",
                "using the CRS given: GCJ-02; coordinates will be converted back to CGCS2000 before storing",
            )
        return CRSDecision(
            parsed,
            "declared",
            f"按指定的坐标系 {_crs_label(parsed)} 读取",
            f"using the CRS given: {_crs_label_en(parsed)}",
        )

    # 2. what the file declares
    if info.crs_wkt:
        source_zh = ".prj 文件" if info.format == "shapefile" else "文件"
        source_en = "the .prj file" if info.format == "shapefile" else "the file"
        try:
            file_crs = pyproj.CRS.from_user_input(info.crs_wkt)
        except pyproj.exceptions.CRSError as exc:
            raise _refuse(
                "crs.unreadable",
                f"{source_zh}中的坐标系定义无法解析（{exc}）；请修正它或用 --crs 指定 EPSG 代码",
                f"cannot parse the CRS in {source_en} ({exc}); fix it or give --crs with an EPSG code",
            ) from exc
        epsg = file_crs.to_epsg(min_confidence=70)
        crs = pyproj.CRS.from_epsg(epsg) if epsg is not None else file_crs
        auth = None if epsg is not None else file_crs.to_authority(min_confidence=70)
        if auth is not None:  # e.g. OGC:CRS84
            crs = pyproj.CRS.from_user_input(f"{auth[0]}:{auth[1]}")
        _check_file_crs_against_coordinates(crs, xy, source_zh, source_en)
        if auth is not None:
            label = f"{crs.name}（{auth[0]}:{auth[1]}）", f"{crs.name} ({auth[0]}:{auth[1]})"
            return CRSDecision(crs, "file", f"按{source_zh}中的坐标系 {label[0]} 读取", f"using the CRS of {source_en}: {label[1]}")
        if epsg is not None:
            return CRSDecision(crs, "file", f"按{source_zh}中的坐标系 {_crs_label(crs)} 读取", f"using the CRS of {source_en}: {_crs_label_en(crs)}")
        return CRSDecision(
            crs,
            "file",
            f"按{source_zh}中的坐标系“{crs.name}”读取（未能对应到 EPSG 代码）",
            f"using the CRS of {source_en}: {crs.name!r} (no matching EPSG code)",
        )

    # 3. formats whose specification fixes the CRS
    spec_default = info.format in ("geojson", "kml") or (
        info.format == "geoparquet" and info.extra.get("geoparquet_crs", "absent") == "absent"
    )
    if spec_default and (len(xy) == 0 or _looks_geographic(xy)):
        zh, en = _SPEC_DEFAULT[info.format]
        return CRSDecision(pyproj.CRS.from_user_input("OGC:CRS84"), "default_crs84", zh, en)

    # 4. coordinates in degrees
    if len(xy) == 0 or _looks_geographic(xy):
        return CRSDecision(
            pyproj.CRS.from_epsg(4490),
            "assumed_geographic",
            "文件未带坐标系，坐标均在经纬度范围内，按 CGCS2000 地理坐标系（EPSG:4490）读取；如不是，请用 --crs 指定",
            "no CRS in the file and all coordinates are within degree ranges; assuming CGCS2000 geographic "
            "(EPSG:4490) — give --crs if that is wrong",
        )

    # 5. zone-prefixed Gauss-Kruger eastings
    zone = infer_cgcs2000_gk_from_eastings(xy[:, 0])
    if zone is not None:
        z_zh, z_en = _gk_text(zone)
        return CRSDecision(
            pyproj.CRS.from_epsg(zone.epsg),
            "inferred_gk_zone",
            f"文件未带坐标系；根据 8 位带带号的东坐标推断为{z_zh}",
            f"no CRS in the file; inferred {z_en} from the 8-digit eastings with zone prefix",
        )

    # 6. a projected file we cannot place
    swapped = infer_cgcs2000_gk_from_eastings(xy[:, 1])
    extra_zh = extra_en = ""
    if swapped is not None:
        extra_zh = "（Y 值像带带号的东坐标，X/Y 可能颠倒了）"
        extra_en = " (the y values look like zone-prefixed eastings: x and y may be swapped)"
    raise _refuse(
        "crs.missing_projected",
        f"文件未带坐标系，坐标是平面坐标（如 {xy[0, 0]:.2f}, {xy[0, 1]:.2f}）且东坐标不带带号，无法确定投影{extra_zh}。{_OPTIONS_ZH}",
        f"no CRS in the file and the coordinates are projected (e.g. {xy[0, 0]:.2f}, {xy[0, 1]:.2f}) "
        f"without a zone prefix, so the projection cannot be known{extra_en}. {_OPTIONS_EN[0].upper()}{_OPTIONS_EN[1:]}",
    )
