"""Synthetic zoning layers for the demo: spatial-planning zones and hazard-susceptibility zones.

They give "what is here" (此处是什么) and the one map several themes at one point, as a bureau's
own layers would. Like the parcels they tile real district boundaries (a coarser Voronoi
tessellation) and are labelled synthetic by the loader; the zone names are the categories of the
municipal spatial master-plan guide (规划分区) and the usual susceptibility grades (易发程度).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import shapely

from landcloud.demo.parcels import tessellate

# 市县国土空间总体规划 规划分区 (an urban district leans to 城镇发展区)
PLANNING_ZONES: dict[str, float] = {
    "城镇发展区": 0.40, "农田保护区": 0.22, "乡村发展区": 0.18, "生态控制区": 0.12, "生态保护区": 0.06, "矿产能源发展区": 0.02,
}
SUSCEPTIBILITY: dict[str, float] = {"高易发区": 0.10, "中易发区": 0.25, "低易发区": 0.40, "不易发区": 0.25}


def _zones(boundary: shapely.Geometry, county_code: str, n: int, seed: int, classes: dict[str, float], prefix: str
           ) -> Iterator[tuple[str, str, shapely.Geometry]]:
    rng = np.random.default_rng(seed + 7)
    polys = tessellate(boundary, n, seed + 1000)
    names = list(classes)
    weights = np.array([classes[c] for c in names])
    picks = rng.choice(len(names), size=len(polys), p=weights / weights.sum())
    for i, poly in enumerate(polys):
        yield f"{prefix}{county_code}{i + 1:04d}", names[picks[i]], poly


def planning_zone_features(boundary: shapely.Geometry, county_code: str, n: int, seed: int) -> Iterator[dict[str, Any]]:
    """规划分区 polygons of one district: BSM, GHFQMC (zone), XZQDM (district)."""
    for bsm, name, poly in _zones(boundary, county_code, n, seed, PLANNING_ZONES, "GH"):
        yield {"type": "Feature", "properties": {"BSM": bsm, "GHFQMC": name, "XZQDM": county_code, "GHQJ": "2021-2035"},
               "geometry": shapely.geometry.mapping(poly)}


def susceptibility_features(boundary: shapely.Geometry, county_code: str, n: int, seed: int) -> Iterator[dict[str, Any]]:
    """地质灾害易发区 polygons of one district: BSM, YFCD (grade), XZQDM (district)."""
    for bsm, name, poly in _zones(boundary, county_code, n, seed, SUSCEPTIBILITY, "YF"):
        yield {"type": "Feature", "properties": {"BSM": bsm, "YFCD": name, "XZQDM": county_code},
               "geometry": shapely.geometry.mapping(poly)}
