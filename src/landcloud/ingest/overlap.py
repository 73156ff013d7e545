"""The overlap rule: polygons of one layer must not overlap (图斑不得重叠).

It needs the whole layer, so it runs after the new version is merged (inside the still-open
transaction): the store's spatial index proposes pairs whose envelopes meet, and shapely
decides exactly, in chunks, so memory stays bounded on a province.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np
import shapely
from sqlalchemy.engine import Connection

from landcloud.geo.area import survey_areas
from landcloud.ingest.report import Finding

CHUNK = 20_000
MAX_FINDINGS = 1000


def _chunks(pairs: Iterator[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    while chunk := list(islice(pairs, size)):
        yield chunk


def find_overlaps(conn: Connection, store: Any, dataset_id: str, version: int, tolerance_m2: float) -> list[Finding]:
    """Overlaps larger than `tolerance_m2` between current polygons, one of them new in `version`."""
    findings: list[Finding] = []
    for chunk in _chunks(store.overlap_candidates(conn, dataset_id, version), CHUNK):
        geoms = store.fetch_geometries(conn, {i for pair in chunk for i in pair})
        a_ids = [a for a, _ in chunk]
        b_ids = [b for _, b in chunk]
        ga = shapely.from_wkb([geoms[i][1] for i in a_ids], on_invalid="ignore")
        gb = shapely.from_wkb([geoms[i][1] for i in b_ids], on_invalid="ignore")
        interior = shapely.relate_pattern(ga, gb, "T********")
        idx = np.flatnonzero(interior)
        if not len(idx):
            continue
        inter = shapely.intersection(ga[idx], gb[idx])
        areas = survey_areas(inter)
        for pos, (j, area) in enumerate(zip(idx, areas)):
            if area <= tolerance_m2:
                continue
            ka, kb = geoms[a_ids[j]][0], geoms[b_ids[j]][0]
            point = shapely.point_on_surface(inter[pos])
            findings.append(
                Finding(
                    rule="topology.overlap",
                    severity="error",
                    message_zh=f"图斑 {_label(ka)} 与 {_label(kb)} 重叠 {area:.2f} 平方米",
                    message_en=f"polygon {_label(ka)} overlaps {_label(kb)} by {area:.2f} m²",
                    feature_key=ka,
                    location=(float(point.x), float(point.y)) if not point.is_empty else None,
                    details={"other_key": kb, "overlap_m2": round(float(area), 2)},
                )
            )
            if len(findings) >= MAX_FINDINGS:
                return findings
    return findings


def _label(fkey: str) -> str:
    """Generated keys (no key field) are content hashes: show them short."""
    return fkey[2:14] if fkey.startswith("h:") else fkey
