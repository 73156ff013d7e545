"""Mapbox Vector Tile 2.1 encoding of one layer, vectorised over the features' coordinates.

The bytes are those mapbox-vector-tile 2.2 writes for the same features (`encode` with `y_coord_down`
and `check_winding_order=False`; a test compares them): coordinates rounded half to even, a point
equal to the one before it in a line or ring dropped, a line or ring left with no segment dropped
(with its polygon's holes when it is the exterior ring), keys and values numbered in order of first
use, a value equal to an earlier one (`1 == 1.0`; booleans apart) sharing its number. What the
Python encoder did per coordinate (rounding, deltas, zig-zag, commands, varints) is done here on
numpy arrays for a whole batch; only the properties and the message framing are per feature.

Rings are written as they come: orient them first (`shapely.orient_polygons(exterior_cw=False)` in
y-down tile units). Nothing here touches a database or the network.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import shapely
from shapely import GeometryType

MOVE_TO, LINE_TO, CLOSE_PATH = 1, 2, 7
POINT, LINESTRING, POLYGON = 1, 2, 3  # the layer's GeomType of a feature
_MOVE_ONE = (1 << 3) | MOVE_TO
_CLOSE = (1 << 3) | CLOSE_PATH
_FAMILY = {
    GeometryType.POINT: POINT, GeometryType.MULTIPOINT: POINT,
    GeometryType.LINESTRING: LINESTRING, GeometryType.MULTILINESTRING: LINESTRING,
    GeometryType.POLYGON: POLYGON, GeometryType.MULTIPOLYGON: POLYGON,
}
_POINTS = [GeometryType.POINT, GeometryType.MULTIPOINT]
_LINES = [GeometryType.LINESTRING, GeometryType.MULTILINESTRING]
_POLYGONS = [GeometryType.POLYGON, GeometryType.MULTIPOLYGON]
_UINT64 = (1 << 64) - 1


def varint(value: int) -> bytes:
    """One protobuf varint (a negative int64 as its 64-bit two's complement, as protobuf writes it)."""
    value &= _UINT64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varints(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Protobuf varints of non-negative integers, concatenated, and the byte length of each."""
    v = np.asarray(values, dtype=np.uint64)
    n = np.ones(len(v), dtype=np.int64)
    for k in range(7, 64, 7):
        n += v >= np.uint64(1 << k)
    width = int(n.max()) if len(n) else 1
    col = np.arange(width)
    groups = ((v[:, None] >> (col.astype(np.uint64) * np.uint64(7))) & np.uint64(0x7F)).astype(np.uint8)
    groups |= np.where(col[None, :] < n[:, None] - 1, np.uint8(0x80), np.uint8(0))
    return groups[col[None, :] < n[:, None]].tobytes(), n


def _zigzag(v: np.ndarray) -> np.ndarray:
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _arcs(xy: np.ndarray, arc_off: np.ndarray, rings: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each arc (line or ring) of a ragged coordinate array: which points are written and how many.

    A ring's closing point is never written; a point equal to the one before it is dropped.
    Returns (per coordinate: written, per coordinate: its arc, per arc: points written).
    """
    lengths = np.diff(arc_off)
    arc = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(xy)) - arc_off[arc]
    same = np.zeros(len(xy), dtype=bool)
    same[1:] = (xy[1:] == xy[:-1]).all(axis=1)
    keep = (pos == 0) | ~same
    if rings:
        keep &= pos != lengths[arc] - 1
    return keep, arc, np.bincount(arc[keep], minlength=len(lengths))


def _commands(xy: np.ndarray, arc: np.ndarray, counts: np.ndarray, arc_geom: np.ndarray, close: bool) -> tuple[np.ndarray, np.ndarray]:
    """The command integers of the written arcs (points xy of arcs `arc`, `counts` points each, in
    geometry order), and where each arc's run starts; deltas restart from (0, 0) at each geometry."""
    first_of_geom = np.ones(len(xy), dtype=bool)
    first_of_geom[1:] = arc_geom[arc[1:]] != arc_geom[arc[:-1]]
    delta = xy.copy()
    delta[1:] -= xy[:-1]
    delta[first_of_geom] = xy[first_of_geom]
    run = 2 * counts + 2 + (1 if close else 0)
    start = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(run[:-1], out=start[1:])
    out = np.empty(int(run.sum()), dtype=np.uint64)
    out[start] = _MOVE_ONE
    out[start + 3] = ((counts - 1) << 3) | LINE_TO
    if close:
        out[start + run - 1] = _CLOSE
    arc_first = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=arc_first[1:])
    j = np.arange(len(xy)) - arc_first[arc]
    at = start[arc] + np.where(j == 0, 1, 2 * j + 2)
    zz = _zigzag(delta)
    out[at] = zz[:, 0]
    out[at + 1] = zz[:, 1]
    return out, start


def _lineal_or_polygonal(geoms: np.ndarray, polygons: bool) -> list[np.ndarray]:
    """Command integers of each geometry of one family (lines or polygons), an empty array where nothing is written."""
    _, coords, offsets = shapely.to_ragged_array(geoms)
    xy = np.rint(coords[:, :2]).astype(np.int64)
    if polygons:
        ring_off, poly_off = offsets[0], offsets[1]
        geom_off = offsets[2] if len(offsets) > 2 else np.arange(len(poly_off))
    else:
        ring_off, poly_off = offsets[0], np.arange(len(offsets[0]))  # one "polygon" per line
        geom_off = offsets[1] if len(offsets) > 1 else np.arange(len(ring_off))
    keep, arc, counts = _arcs(xy, ring_off, polygons)
    ok = counts >= 2
    arc_poly = np.repeat(np.arange(len(poly_off) - 1), np.diff(poly_off))
    if polygons:  # a polygon whose exterior ring is not written is not written at all
        has_ring = np.diff(poly_off) > 0
        shell_ok = np.zeros(len(poly_off) - 1, dtype=bool)
        shell_ok[has_ring] = ok[poly_off[:-1][has_ring]]
        ok &= shell_ok[arc_poly]
    arc_geom = np.repeat(np.arange(len(geom_off) - 1), np.diff(geom_off))[arc_poly]
    written = np.flatnonzero(ok)
    renumber = np.full(len(ok), -1, dtype=np.int64)
    renumber[written] = np.arange(len(written))
    sel = keep & ok[arc]
    out, start = _commands(xy[sel], renumber[arc[sel]], counts[written], arc_geom[written], polygons)
    bounds = np.searchsorted(arc_geom[written], np.arange(len(geom_off)))
    ends = np.append(start, len(out))
    return [out[ends[a]:ends[b]] for a, b in zip(bounds[:-1], bounds[1:])]


def _puntal(geom: shapely.Geometry) -> np.ndarray:
    xy = np.rint(shapely.get_coordinates(geom)).astype(np.int64)
    delta = xy.copy()
    delta[1:] -= xy[:-1]
    zz = _zigzag(delta)
    out = np.empty(1 + 2 * len(xy), dtype=np.uint64)
    out[0] = (len(xy) << 3) | MOVE_TO
    out[1::2], out[2::2] = zz[:, 0], zz[:, 1]
    return out


def geometry_commands(geoms: Sequence[shapely.Geometry]) -> list[tuple[int, bytes]]:
    """(GeomType, packed command integers) of each geometry; (0, b"") where nothing would be written
    (missing, empty, a collection, or no line or ring left with a segment)."""
    arr = np.asarray(geoms, dtype=object)
    types = shapely.get_type_id(arr)
    present = ~shapely.is_missing(arr)
    present[present] = ~shapely.is_empty(arr[present])
    cmds: list[np.ndarray | None] = [None] * len(arr)
    for family, polygons in ((_LINES, False), (_POLYGONS, True)):
        idx = np.flatnonzero(np.isin(types, family) & present)
        if len(idx):
            for i, c in zip(idx.tolist(), _lineal_or_polygonal(arr[idx], polygons)):
                cmds[i] = c
    for i in np.flatnonzero(np.isin(types, _POINTS) & present).tolist():
        cmds[i] = _puntal(arr[i])
    lengths = np.array([0 if c is None else len(c) for c in cmds], dtype=np.int64)
    written = [c for c in cmds if c is not None and len(c)]
    blob, nbytes = varints(np.concatenate(written)) if written else (b"", np.zeros(0, dtype=np.int64))
    at = np.concatenate([[0], np.cumsum(nbytes)])
    end = np.cumsum(lengths)
    begins, ends = at[end - lengths].tolist(), at[end].tolist()
    return [
        (_FAMILY[GeometryType(t)], blob[b:e]) if e > b else (0, b"")
        for t, b, e in zip(types.tolist(), begins, ends)
    ]


def _value(v: str | bool | int | float) -> bytes:
    if isinstance(v, bool):
        return b"\x38\x01" if v else b"\x38\x00"
    if isinstance(v, str):
        s = v.encode()
        return b"\x0a" + varint(len(s)) + s
    if isinstance(v, int):
        return b"\x20" + varint(v)
    return b"\x19" + struct.pack("<d", v)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


class LayerEncoder:
    """One layer, fed in batches: `add(geometries, features)`, then `tile()` for the tile's bytes."""

    def __init__(self, name: str, extent: int = 4096) -> None:
        self.name = name
        self.extent = extent
        self.features: list[bytes] = []
        self.keys: dict[str, int] = {}
        self.values: dict[Any, int] = {}
        self.bools: dict[bool, int] = {}
        self.value_msgs: list[bytes] = []

    def add(self, geoms: Sequence[shapely.Geometry], features: Iterable[tuple[int | None, dict[str, Any]]]) -> None:
        """Features (id or None, properties) with their tile geometries (y-down integer tile units)."""
        for (gtype, cmds), (fid, props) in zip(geometry_commands(geoms), features):
            if not cmds:
                continue
            tags = []
            for k, v in props.items():
                if not isinstance(k, str) or not isinstance(v, str | bool | int | float):
                    continue
                ki = self.keys.get(k)
                if ki is None:
                    ki = self.keys[k] = len(self.keys)
                table = self.bools if isinstance(v, bool) else self.values
                vi = table.get(v)
                if vi is None:
                    vi = table[v] = len(self.value_msgs)
                    self.value_msgs.append(_field(b"\x22", _value(v)))
                tags += (ki, vi)
            msg = b"\x08" + varint(fid) if fid is not None and fid >= 0 else b""
            if tags:
                msg += _field(b"\x12", bytes(tags) if max(tags) < 0x80 else b"".join(map(varint, tags)))
            msg += b"\x18" + bytes((gtype,)) + _field(b"\x22", cmds)
            self.features.append(_field(b"\x12", msg))

    def tile(self) -> bytes:
        layer = b"".join([
            _field(b"\x0a", self.name.encode()),
            *self.features,
            *(_field(b"\x1a", k.encode()) for k in self.keys),
            *self.value_msgs,
            b"\x28" + varint(self.extent),
            b"\x78\x02",  # version 2
        ])
        return _field(b"\x1a", layer)
