"""Incoming features on their way into the store: one row (`StageRow`) or a batch by column (`StageBatch`).

A submission makes its rows column by column (`ingest.pipeline._stage_rows`) and the stores write them so: SQLite
binds each column as one parameter (`sqlite_columns`), PostGIS streams them into a binary COPY. Rows made one at a
time (editions, tests) go in as a list of `StageRow`, turned into a batch at the store's door (`StageBatch.of`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

BBox = tuple[float, float, float, float]


class StageRow(NamedTuple):
    """One incoming feature, ready to be staged: geometry as WKB in EPSG:4490.

    A named tuple, not a dataclass: a province stages millions of them, and a frozen dataclass's
    constructor costs several times a tuple's.
    """

    fkey: str
    props_json: str
    wkb: bytes | None
    bbox: BBox | None
    area_m2: float | None
    chash: str
    op: str = "upsert"  # upsert | add | modify | delete


@dataclass(frozen=True)
class StageBatch:
    """Incoming features by column: no Python object per row beyond the values themselves.

    `props`: each feature's properties as the UTF-8 of its JSON text (the bytes its content hash was made of).
    `bounds`: (n, 4) minx, miny, maxx, maxy, NaN where a feature has no box (a missing or empty geometry);
    `areas`: NaN where it has no area. `ops`: None for all "upsert".
    """

    fkeys: list[str]
    props: list[bytes]
    wkbs: list[bytes | None]
    bounds: np.ndarray
    areas: np.ndarray
    chashes: list[str]
    ops: list[str] | None = None

    def __len__(self) -> int:
        return len(self.fkeys)

    def __iter__(self) -> Iterator[StageRow]:
        return iter(self.rows())

    def boxes(self) -> list[BBox | None]:
        """Each feature's box, None where it has none."""
        return _none_where(list(map(tuple, self.bounds.tolist())), np.isnan(self.bounds[:, 0]))

    def area_values(self) -> list[float | None]:
        """Each feature's area, None where it has none."""
        return _none_where(self.areas.tolist(), np.isnan(self.areas))

    def op_values(self) -> list[str]:
        return self.ops if self.ops is not None else ["upsert"] * len(self)

    def rows(self) -> list[StageRow]:
        """The batch row by row (the JSON as text again)."""
        texts = [p.decode() for p in self.props]
        return list(map(StageRow._make, zip(self.fkeys, texts, self.wkbs, self.boxes(), self.area_values(), self.chashes, self.op_values())))

    @classmethod
    def of(cls, rows: Sequence[StageRow] | StageBatch) -> StageBatch:
        """A batch of `rows` (itself if it is one)."""
        if isinstance(rows, StageBatch):
            return rows
        n = len(rows)
        bounds = np.full((n, 4), np.nan)
        for i, r in enumerate(rows):
            if r.bbox is not None:
                bounds[i] = r.bbox
        areas = np.array([np.nan if r.area_m2 is None else r.area_m2 for r in rows], dtype=np.float64)
        ops = [r.op for r in rows]
        return cls(
            [r.fkey for r in rows], [r.props_json.encode() for r in rows], [r.wkb for r in rows], bounds, areas,
            [r.chash for r in rows], None if all(op == "upsert" for op in ops) else ops,
        )


def _none_where(values: list[Any], missing: np.ndarray) -> list[Any]:
    """`values` with None where `missing` (a few NaN among many: set one by one, not compared one by one)."""
    for i in np.flatnonzero(missing).tolist():
        values[i] = None
    return values
