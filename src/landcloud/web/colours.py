"""The land-use colour table of the portal map.

The defaults follow the colours land-survey maps commonly use for the GB/T 21010 first-level
classes (yellow cultivated land, green forest, red commercial, blue water …); no colour
standard is pinned down in our reference, so a deployment may replace any entry with its own
table (`LANDCLOUD_LANDUSE_COLOURS_FILE`, JSON {code: "#rrggbb"}).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from landcloud.codes import landuse
from landcloud.messages import LandcloudError

DEFAULT_COLOURS: dict[str, str] = {
    "00": "#e6e6e6",  # 湿地 (三调) shares 其他 in GB; kept apart for 三调 maps
    "01": "#f5e663",  # 耕地
    "0101": "#e8d24a",  # 水田
    "0102": "#f2e27a",  # 水浇地
    "0103": "#f7ec9a",  # 旱地
    "02": "#e6a23c",  # 园地
    "03": "#3d9b35",  # 林地
    "0301": "#2e8b2e",  # 乔木林地
    "04": "#a6d96a",  # 草地
    "05": "#e53935",  # 商服用地
    "06": "#a67c52",  # 工矿仓储用地
    "07": "#f4a582",  # 住宅用地
    "0702": "#f7c3a6",  # 农村宅基地
    "08": "#d95fb4",  # 公共管理与公共服务用地
    "09": "#7f5539",  # 特殊用地
    "10": "#9e9e9e",  # 交通运输用地
    "11": "#6fb7e9",  # 水域及水利设施用地
    "12": "#cfcfc2",  # 其他土地
}
HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def load_overrides(path: Path | None) -> dict[str, str]:
    """A deployment's colour entries; a wrong file stops the start with a clear message, not a grey map."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LandcloudError(
            "config.colours", f"无法读取地类颜色表 {path}：{exc}", f"cannot read the land-use colour table {path}: {exc}"
        ) from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and HEX.match(v) for k, v in data.items()):
        raise LandcloudError(
            "config.colours", f"地类颜色表 {path} 应为 {{地类编码: \"#rrggbb\"}}", f"the colour table {path} must be {{code: '#rrggbb'}}"
        )
    return data


def legend(overrides: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Legend entries in code order: the first-level classes and every second-level class with its own colour."""
    table = {**DEFAULT_COLOURS, **(overrides or {})}
    out = []
    for code in sorted(table, key=lambda c: (c[:2], len(c), c)):
        cls = landuse.lookup(code)
        out.append({
            "code": code,
            "colour": table[code],
            "name_zh": cls.name_zh if cls else ("湿地" if code == "00" else code),
            "name_en": cls.name_en if cls and cls.name_en else ("Wetland" if code == "00" else code),
        })
    return out
