"""Pairs of shapes a straight line keeps apart: the overlap rule's certificate before GEOS's relate.

Why: deciding the overlap rule (图斑不得重叠) for a million parcels of a tessellation took GEOS's relate
on ~3.3 million envelope pairs, ~4 µs a pair whatever the parcels' size (7.6 points a parcel: the
call's set-up is most of it), ~16 s of CPU: the largest single cost of a submission
(benchmarks/profiles/ingest-sqlite-1m.txt §12). Neighbours that share an edge of both their convex
hulls, one hull on either side of it, lie each in its own closed half-plane of that edge's line, so
their interiors cannot meet. That is found per shape (a hull, ~1.7 µs, and its edges sorted by a hash
of their ends), not per pair, and settles most pairs of parcels that are convex along their common edge.
Everything else still goes to relate, so a verdict never changes: a certificate only says "apart".

Exact by construction: a shape lies within its convex hull (GEOS builds it from the shape's own
points with robust orientation tests); a ring is taken as a hull only when every corner surely turns
the same way (orient2d under Shewchuk's error bound) and it winds round once, which also gives its
orientation, and gives no edges otherwise; the two hulls' edges must have the same end points
(compared as numbers after the hashes meet, so a hash collision cannot settle a pair). Shapes that
are not polygonal, empty or missing give no edges. The claim holds for any shapes; the rule's are
valid (an invalid one is an error or repaired), the only ones relate's verdict speaks for.

Where shapes are not a tessellation (buildings, a layer whose neighbours meet in no common hull edge),
the hulls settle nothing and are pure cost: `Payoff` stops making them after a group of pairs where they
settled less than a quarter, and tries again now and then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import shapely

# Shewchuk's orient2d error bound (Adaptive Precision Floating-Point Arithmetic, 1997): ccwerrboundA
_EPS = np.finfo(np.float64).eps / 2
_CCW_ERR = (3.0 + 16.0 * _EPS) * _EPS
_TINY = 1e-280  # products below this may have lost bits to underflow, which the bound does not cover
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93], dtype=np.uint64)


class HullEdges(NamedTuple):
    """The edges of some shapes' convex hulls, sorted by `key` (a hash of the edge's two ends)."""

    key: np.ndarray  # uint64
    owner: np.ndarray  # int64: the shape's position (plus the offset it was made with)
    left: np.ndarray  # bool: the shape lies on the left of the edge run from its lower end to its higher end
    ends: np.ndarray  # (n, 4) float64: lower end x, y, then higher end x, y (ends ordered by x, then y)


def hull_edges(geoms: np.ndarray, offset: int = 0) -> HullEdges:
    """The convex hull edges of each shape in `geoms`, owners numbered from `offset`.

    A polygon without holes whose every corner turns the same way, surely (Shewchuk's bound), is its own
    hull (a valid ring is simple, so it is convex): its ring is taken as it is, as GEOS would return it
    at ~1.7 µs a shape. Only the others go to GEOS's convex hull.
    """
    kind = shapely.get_type_id(geoms)
    simple = np.flatnonzero((kind == 3) & (shapely.get_num_interior_rings(geoms) == 0))
    xy, idx = shapely.get_coordinates(geoms[simple], return_index=True)
    convex, ccw = _convex_rings(xy, idx, len(simple))
    take = convex[idx]
    parts = [(xy[take], idx[take], simple[convex], ccw[convex])]
    rest = np.ones(len(geoms), dtype=bool)
    rest[simple[convex]] = False
    rest &= kind >= 0
    if rest.any():
        others = np.flatnonzero(rest)
        hulls = shapely.convex_hull(geoms[others])
        polygonal = np.flatnonzero(shapely.get_type_id(hulls) == 3)  # a hull of collinear points is a line
        hxy, hidx = shapely.get_coordinates(hulls[polygonal], return_index=True)
        sure, hccw = _convex_rings(hxy, hidx, len(polygonal))
        keep = sure[hidx]
        parts.append((hxy[keep], hidx[keep], others[polygonal[sure]], hccw[sure]))
    return _edges(parts, offset)


def _edges(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], offset: int) -> HullEdges:
    """The edges of closed convex rings: per part their points, each point's ring (increasing, rings left out
    skipped), each kept ring's shape and whether it runs counter-clockwise."""
    keys, owners, lefts, ends_all = [], [], [], []
    for xy, idx, shape_of, ccw in parts:
        ring = np.cumsum(np.r_[0, idx[1:] != idx[:-1]]) if len(idx) else idx  # the kept rings numbered 0, 1, ...
        same = ring[1:] == ring[:-1]
        p, q, r = xy[:-1][same], xy[1:][same], ring[:-1][same]
        swap = (p[:, 0] > q[:, 0]) | ((p[:, 0] == q[:, 0]) & (p[:, 1] > q[:, 1]))
        ends = np.where(swap[:, None], np.hstack((q, p)), np.hstack((p, q)))
        keys.append(_key(np.ascontiguousarray(ends).view(np.uint64)))
        owners.append(shape_of[r].astype(np.int64) + offset)
        lefts.append(ccw[r] ^ swap)
        ends_all.append(ends)
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    return HullEdges(key[order], np.concatenate(owners)[order], np.concatenate(lefts)[order], np.concatenate(ends_all)[order])


def _key(bits: np.ndarray) -> np.ndarray:
    """A hash of each row of four 64-bit words. Each word's high half is folded into its low one first: a
    coordinate with few mantissa bits (whole metres, round degrees) has its low 52 bits zero, and so would
    every product of it, leaving the keys of a survey grid to a dozen bits."""
    h = np.zeros(len(bits), dtype=np.uint64)
    for k in range(4):
        word = bits[:, k]
        h = (h ^ word ^ (word >> np.uint64(29))) * _MIX[k]
        h ^= h >> np.uint64(32)
    return h


def _convex_rings(xy: np.ndarray, idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(convex, counter-clockwise) per closed ring `0..n-1` (points `xy`, ring of each point `idx`, increasing):
    convex when every corner surely turns the same way (orient2d with Shewchuk's error bound)."""
    convex = np.zeros(n, dtype=bool)
    if not len(idx):
        return convex, convex.copy()
    starts = np.searchsorted(idx, np.arange(n))
    stops = np.append(starts[1:], len(idx))  # one past the closing point
    size = stops - starts
    # corners at points 1 .. closing-1 (inside each ring's run), then the first point's (last, first, second)
    inner = np.flatnonzero(idx[1:-1] == idx[2:]) + 1
    inner = inner[idx[inner - 1] == idx[inner]]
    wrap = np.flatnonzero(size >= 4)
    a = np.concatenate((xy[inner - 1], xy[stops[wrap] - 2]))
    b = np.concatenate((xy[inner], xy[starts[wrap]]))
    c = np.concatenate((xy[inner + 1], xy[starts[wrap] + 1]))
    ring = np.concatenate((idx[inner], wrap))
    detleft = (a[:, 0] - c[:, 0]) * (b[:, 1] - c[:, 1])
    detright = (a[:, 1] - c[:, 1]) * (b[:, 0] - c[:, 0])
    det = detleft - detright
    spread = np.abs(detleft) + np.abs(detright)
    sure = (np.abs(det) > _CCW_ERR * spread) & (spread > _TINY)
    left = np.bincount(ring, sure & (det > 0), n)
    right = np.bincount(ring, sure & (det < 0), n)
    corners = size - 1  # a closed ring of k distinct points has k corners
    convex = (size >= 4) & ((left == corners) | (right == corners)) & (_x_turns(xy, idx, n) == 2)
    return convex, left == corners


def _x_turns(xy: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Per closed ring, how often its edges' run in x changes sign, round the ring (vertical edges skipped).

    A ring turning one way throughout winds k times round and changes 2k times: 2 tells a convex ring from
    a star (a pentagram turns one way too), which a shape not known to be valid could be.
    """
    along = np.flatnonzero(idx[1:] == idx[:-1])
    dx = np.sign(xy[along + 1, 0] - xy[along, 0])
    moving = dx != 0
    dx, ring = dx[moving], idx[along[moving]]
    if not len(ring):
        return np.zeros(n, dtype=np.int64)
    changes = np.bincount(ring[1:], (dx[1:] != dx[:-1]) & (ring[1:] == ring[:-1]), n)
    first = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    last = np.r_[first[1:] - 1, len(ring) - 1]
    changes[ring[first]] += dx[first] != dx[last]
    return changes.astype(np.int64)


def apart_codes(a: HullEdges, b: HullEdges, nb: int, offset_a: int = 0) -> np.ndarray:
    """Codes `(offset_a + owner_a) * nb + owner_b` of the shapes of `a` and of `b` (owners below `nb`) that share a
    hull edge, one on either side of it: a line keeps each pair's interiors apart.

    Each of `b`'s edges walks the run of `a`'s edges with its key, a step for all at once (one search, then as
    many steps as the longest run: two in a tessellation, where an edge is two shapes')."""
    found = []
    live = np.arange(len(b.key))
    at = np.searchsorted(a.key, b.key)
    while len(live):
        live, at = live[at < len(a.key)], at[at < len(a.key)]
        same = a.key[at] == b.key[live]
        live, at = live[same], at[same]
        apart = (a.left[at] != b.left[live]) & (a.ends[at] == b.ends[live]).all(axis=1)
        found.append((a.owner[at[apart]] + offset_a) * nb + b.owner[live[apart]])
        at = at + 1
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def kept_apart(codes: Sequence[np.ndarray], ia: np.ndarray, ib: np.ndarray, nb: int) -> np.ndarray:
    """Per pair (ia[i], ib[i]): whether one of the `apart_codes` arrays holds it."""
    found = np.sort(np.concatenate(codes)) if codes else np.empty(0, dtype=np.int64)
    if not len(found):
        return np.zeros(len(ia), dtype=bool)
    wanted = ia.astype(np.int64) * nb + ib
    return found[np.minimum(np.searchsorted(found, wanted), len(found) - 1)] == wanted


def apart_pairs(geoms: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Per pair (geoms[ia[i]], geoms[ib[i]]): whether a shared hull edge keeps the two apart."""
    edges = hull_edges(geoms)
    return kept_apart([apart_codes(edges, edges, len(geoms))], ia, ib, len(geoms))


class Payoff:
    """Whether hulls are worth making for the next group of pairs.

    They are while they settle at least `MIN_SHARE` of a group's pairs; after a group where they settle
    less (a layer that is not a tessellation) they are left out, and tried again every `PROBE` groups.
    """

    MIN_SHARE = 0.25
    PROBE = 16

    def __init__(self) -> None:
        self._off_for = 0

    def wanted(self) -> bool:
        if self._off_for == 0:
            return True
        self._off_for -= 1
        return self._off_for == 0

    def settle(self, geoms: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray | None:
        """`apart_pairs` for a group of pairs, or None when hulls are left out for it."""
        if not self.wanted():
            return None
        apart = apart_pairs(geoms, ia, ib)
        self.record(int(apart.sum()), len(apart))
        return apart

    def record(self, settled: int, pairs: int) -> None:
        """A group decided with hulls: `settled` of its `pairs` needed no relate."""
        if pairs and settled < self.MIN_SHARE * pairs:
            self._off_for = self.PROBE
