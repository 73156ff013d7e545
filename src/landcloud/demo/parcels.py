"""Synthetic land-survey parcels (地类图斑, DLTB schema) that tile real boundaries.

Demo and benchmark data must look like a county's survey layer: polygons that tile the
county without gaps or overlaps (a Voronoi tessellation clipped to the boundary), GB/T 21010
codes in realistic proportions, ZLDWDM codes under the real county code, TBMJ equal to the
ellipsoidal area. Deterministic by seed. Everything generated here is labelled synthetic by
whoever loads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import shapely

from landcloud.codes.landuse import name_zh
from landcloud.geo.area import survey_areas

# Rough class mix of a Heilongjiang county: dry land dominates, then forest, paddy, settlements.
CLASS_WEIGHTS: dict[str, float] = {
    "0103": 0.34, "0101": 0.10, "0301": 0.14, "0305": 0.02, "0404": 0.03, "0702": 0.07, "0701": 0.06,
    "0601": 0.03, "0602": 0.005, "0508": 0.0, "1006": 0.04, "1003": 0.02, "1004": 0.02, "1101": 0.02,
    "1104": 0.02, "1107": 0.02, "1202": 0.02, "0810": 0.01, "0809": 0.005, "0803": 0.005, "1201": 0.005,
    "1206": 0.01, "0102": 0.015,
}
STATE_OWNED = ("05", "06", "07", "08", "09", "10")


def random_points_in(boundary: shapely.Geometry, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points uniformly inside the boundary (rejection sampling, vectorised)."""
    shapely.prepare(boundary)
    minx, miny, maxx, maxy = boundary.bounds
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        need = max(int((n - have) * 1.6), 64)
        pts = shapely.points(rng.uniform(minx, maxx, need), rng.uniform(miny, maxy, need))
        pts = pts[shapely.contains_xy(boundary, shapely.get_x(pts), shapely.get_y(pts))]
        out.append(pts)
        have += len(pts)
    return np.concatenate(out)[:n]


def tessellate(boundary: shapely.Geometry, n: int, seed: int) -> np.ndarray:
    """Polygons tiling `boundary`: a Voronoi diagram of n random points, clipped."""
    rng = np.random.default_rng(seed)
    points = random_points_in(boundary, n, rng)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(points), extend_to=boundary.envelope))
    clipped = shapely.intersection(cells, boundary, grid_size=1e-9)
    polys = []
    for geom in clipped:
        parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]
        if parts:
            polys.append(parts[0] if len(parts) == 1 else shapely.multipolygons(parts))
    return np.array(polys, dtype=object)


def dltb_features(boundary: shapely.Geometry, county_code: str, n: int, seed: int, year: int = 2024) -> Iterator[dict[str, Any]]:
    """GeoJSON-like features in the DLTB schema tiling one county (EPSG:4490 lon/lat)."""
    rng = np.random.default_rng(seed + 1)
    polys = tessellate(boundary, n, seed)
    areas = survey_areas(polys)
    codes = list(CLASS_WEIGHTS)
    weights = np.array([CLASS_WEIGHTS[c] for c in codes])
    chosen = rng.choice(len(codes), size=len(polys), p=weights / weights.sum())
    towns = rng.integers(1, 12, size=len(polys))
    villages = rng.integers(1, 30, size=len(polys))
    for i, (poly, area) in enumerate(zip(polys, areas)):
        dlbm = codes[chosen[i]]
        unit = f"{county_code}{100 + towns[i]:03d}{200 + villages[i]:03d}"
        state = dlbm.startswith(STATE_OWNED)
        yield {
            "type": "Feature",
            "properties": {
                "BSM": f"{county_code}{i + 1:010d}",
                "YSDM": "2001010100",
                "TBBH": str(i + 1),
                "DLBM": dlbm,
                "DLMC": name_zh(dlbm),
                "QSXZ": "20" if state else "30",
                "QSDWDM": unit,
                "QSDWMC": f"{'国有' if state else '集体'}{unit[-6:]}",
                "ZLDWDM": unit,
                "ZLDWMC": f"坐落单位{unit[-6:]}",
                "TBMJ": round(float(area), 2),
                "SJNF": year,
            },
            "geometry": shapely.geometry.mapping(poly),
        }
