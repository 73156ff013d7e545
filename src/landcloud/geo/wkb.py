"""Which WKB values GEOS would write back byte for byte: so a submission may store a source's own bytes.

Why: a submission parses each feature's WKB (GDAL's) into a GEOS geometry for the rules, and wrote a new WKB
of it for the store: `shapely.to_wkb` held the GIL ~1 s a million parcels on the submission's busiest thread
(benchmarks/profiles/ingest-sqlite-1m.txt §16). For a geometry nothing changed (no CRS conversion, no repair)
the bytes would be the same whenever they are in the one form GEOS writes: little-endian, a 2-D polygon (type
3, no Z or M, no SRID), each ring's point count followed by exactly its points, and nothing after the last
ring. GEOS reads the doubles as they are and writes them as they are, so for such a value the source's bytes
are the store's. A multipolygon is not taken (its parts carry headers of their own, each of which would need
the same look), nor an empty polygon (GEOS writes it with one empty ring). Anything else is written by GEOS.

Pure numpy over an Arrow binary column's buffers (its offsets and data), no Python object per row.
"""

from __future__ import annotations

import numpy as np

_POLYGON_2D = 3


def plain_polygons(data: np.ndarray, offsets: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """For each value `data[offsets[i]:offsets[i + 1]]`: whether it is a non-empty 2-D polygon in the one form GEOS
    writes (module doc). `data`: uint8; `offsets`: n + 1 integers; `present`: False where the value is null."""
    starts = np.asarray(offsets[:-1], dtype=np.int64)
    ends = np.asarray(offsets[1:], dtype=np.int64)
    ok = ends - starts >= 13  # header (9) + one ring's count (4) at least
    if present is not None:
        ok &= np.asarray(present, dtype=bool)
    rows = np.flatnonzero(ok)
    if not len(rows):
        return ok
    at = starts[rows]
    header = _u32(data, at + 1)
    good = (data[at] == 1) & (header == _POLYGON_2D)
    rings = _u32(data, at + 5)
    good &= rings >= 1
    end = ends[rows]
    good &= rings <= (end - at - 9) // 4  # (a count no value could hold: not walked)
    ptr = at + 9  # the first ring's point count
    left = np.where(good, rings, 0).astype(np.int64)
    walking = np.flatnonzero(left > 0)
    while len(walking):  # one ring of each value still walking per pass: the passes' work is the rings'
        inside = ptr[walking] + 4 <= end[walking]
        stuck, walking = walking[~inside], walking[inside]
        ptr[stuck] = -1  # (a count past the value's end)
        points = _u32(data, ptr[walking])
        ptr[walking] += 4 + 16 * points
        left[walking] -= 1
        walking = walking[left[walking] > 0]
    good &= ptr == end  # every ring read, and nothing after the last
    ok[rows] = good
    return ok


def _u32(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The little-endian unsigned 32-bit integers at byte positions `at` (each with 4 bytes in `data`)."""
    b = data[at[:, None] + np.arange(4)].astype(np.int64)
    return b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)
