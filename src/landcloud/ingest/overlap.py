"""The overlap rule: polygons of one layer must not overlap (图斑不得重叠).

It needs the whole layer, so it runs after the new version is merged (inside the still-open
transaction): the store finds the pairs whose interiors meet (a spatial index proposes pairs whose
envelopes meet, shapely's GEOS decides exactly) and hands over
their intersections in chunks, so memory stays bounded on a province; the areas are measured here,
the survey way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from sqlalchemy.engine import Connection

from landcloud.geo.area import survey_areas
from landcloud.ingest.report import Finding

CHUNK = 20_000
MAX_FINDINGS = 1000


def find_overlaps(conn: Connection, store: Any, dataset_id: str, version: int, tolerance_m2: float) -> list[Finding]:
    """Overlaps larger than `tolerance_m2` between current polygons, one of them new in `version`."""
    findings: list[Finding] = []
    for keys_a, keys_b, inter in store.overlapping_pairs(conn, dataset_id, version, CHUNK):
        findings += overlap_findings(keys_a, keys_b, inter, tolerance_m2, MAX_FINDINGS - len(findings))
        if len(findings) >= MAX_FINDINGS:
            return findings
    return findings


def overlap_findings(
    keys_a: list[str], keys_b: list[str], inter: np.ndarray, tolerance_m2: float, limit: int = MAX_FINDINGS
) -> list[Finding]:
    """Findings for the pairs (in order) whose intersection's survey area is above the tolerance, at most `limit`."""
    findings: list[Finding] = []
    if not len(inter) or limit <= 0:
        return findings
    areas = survey_areas(inter)
    for pos in np.flatnonzero(areas > tolerance_m2).tolist():
        ka, kb, area = keys_a[pos], keys_b[pos], float(areas[pos])
        point = shapely.point_on_surface(inter[pos])
        findings.append(
            Finding(
                rule="topology.overlap",
                severity="error",
                message_zh=f"图斑 {_label(ka)} 与 {_label(kb)} 重叠 {area:.2f} 平方米",
                message_en=f"polygon {_label(ka)} overlaps {_label(kb)} by {area:.2f} m²",
                feature_key=ka,
                location=(float(point.x), float(point.y)) if not point.is_empty else None,
                details={"other_key": kb, "overlap_m2": round(area, 2)},
            )
        )
        if len(findings) >= limit:
            break
    return findings


def _label(fkey: str) -> str:
    """Generated keys (no key field) are content hashes: show them short."""
    return fkey[2:14] if fkey.startswith("h:") else fkey
