"""Mapbox Vector Tile 2.1 encoding of one layer, vectorised over the features' coordinates.

The bytes are those mapbox-vector-tile 2.2 writes for the same features (`encode` with `y_coord_down`
and `check_winding_order=False`; a test compares them): coordinates rounded half to even, a point
equal to the one before it in a line or ring dropped, a line or ring left with no segment dropped
(with its polygon's holes when it is the exterior ring), keys and values numbered in order of first
use, a value equal to an earlier one (`1 == 1.0`; booleans apart) sharing its number. What the
Python encoder did per coordinate (rounding, deltas, zig-zag, commands, varints) is done here on
numpy arrays for a whole batch; only the properties and the message framing are per feature.

Rings are written as they come: orient them first (`shapely.orient_polygons(exterior_cw=False)` in
y-down tile units), or let the encoder orient the rings of valid polygons in integer coordinates
(`orient=True`, the same rings in numpy). Nothing here touches a database or the network.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import shapely
from shapely import GeometryType

MOVE_TO, LINE_TO, CLOSE_PATH = 1, 2, 7
POINT, LINESTRING, POLYGON = 1, 2, 3  # the layer's GeomType of a feature
_MOVE_ONE = (1 << 3) | MOVE_TO
_CLOSE = (1 << 3) | CLOSE_PATH
_UINT64 = (1 << 64) - 1


def varint(value: int) -> bytes:
    """One protobuf varint (a negative int64 as its 64-bit two's complement, as protobuf writes it)."""
    if 0 <= value < 0x4000:  # lengths, ids, tags of a tile: one or two bytes without the loop
        return bytes((value,)) if value < 0x80 else bytes(((value & 0x7F) | 0x80, value >> 7))
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
    if not len(v):
        return b"", np.zeros(0, dtype=np.int64)
    # as many 7-bit groups as the largest value needs (a tile's commands: 2-3), not all ten
    width = max(1, (int(v.max()).bit_length() + 6) // 7)
    n = np.ones(len(v), dtype=np.int64)
    for k in range(1, width):
        n += v >= np.uint64(1 << (7 * k))
    if width == 1:
        return v.astype(np.uint8).tobytes(), n
    # byte k of the values that have one, written in place (half the time of a values x width matrix)
    start = np.cumsum(n) - n
    out = np.empty(int(start[-1] + n[-1]), dtype=np.uint8)
    rest, at, more = v, start, n
    for k in range(width):
        if k:
            keep = more > k
            rest, at, more = rest[keep] >> np.uint64(7), at[keep], more[keep]
        out[at + k] = (rest & np.uint64(0x7F)).astype(np.uint8) | np.where(more > k + 1, np.uint8(0x80), np.uint8(0))
    return out.tobytes(), n


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


def _oriented(xy: np.ndarray, ring_off: np.ndarray, poly_off: np.ndarray) -> np.ndarray:
    """Integer ring coordinates with the rings reversed where need be so that each polygon's exterior ring turns
    counter-clockwise (positive area in these coordinates: clockwise on screen in y-down tile units, as MVT wants)
    and its holes the other way — what `shapely.orient_polygons(exterior_cw=False)` does to valid polygons, whose
    rings have non-zero areas, without a GEOS copy of every shape. Areas are exact (int64 shoelace sums)."""
    lengths = np.diff(ring_off)
    ring = np.repeat(np.arange(len(lengths)), lengths)
    cross = np.zeros(len(xy), dtype=np.int64)  # each point's cross product with the next point of its ring
    cross[:-1] = xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]
    cross[ring_off[1:][lengths > 0] - 1] = 0
    sums = np.zeros(len(xy) + 1, dtype=np.int64)
    np.cumsum(cross, out=sums[1:])
    area2 = sums[ring_off[1:]] - sums[ring_off[:-1]]
    shell = np.zeros(len(lengths), dtype=bool)
    shell[poly_off[:-1][np.diff(poly_off) > 0]] = True
    flip = np.where(shell, area2 <= 0, area2 > 0)
    if not flip.any():
        return xy
    i = np.arange(len(xy))
    return xy[np.where(flip[ring], ring_off[:-1][ring] + ring_off[1:][ring] - 1 - i, i)]


_ONE_ARC = (GeometryType.LINESTRING, GeometryType.POLYGON)  # types of one line or ring, unless holed


def _ragged(geoms: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """`shapely.to_ragged_array(geoms)`'s coordinates and offsets (geometries of one type, none empty).

    Lines and polygons without holes, most shapes of a tile, have one arc each: their offsets are their coordinate
    counts, without the copy of every ring `to_ragged_array` makes (~50 us of fixed cost a call, a tenth of a small
    tile's encoding: profiles/tiles-small.txt)."""
    kind = int(shapely.get_type_id(geoms[0])) if len(geoms) else -1
    if kind in _ONE_ARC and not shapely.get_num_interior_rings(geoms).any():
        arcs = np.zeros(len(geoms) + 1, dtype=np.int64)
        np.cumsum(shapely.get_num_coordinates(geoms), out=arcs[1:])
        if kind == GeometryType.POLYGON:
            return shapely.get_coordinates(geoms), (arcs, np.arange(len(geoms) + 1, dtype=np.int64))
        return shapely.get_coordinates(geoms), (arcs,)
    _, coords, offsets = shapely.to_ragged_array(geoms)
    return coords, offsets


def _lineal_or_polygonal(geoms: np.ndarray, polygons: bool, orient: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Command integers of the geometries of one family (lines or polygons), concatenated, and where each
    geometry's run starts and ends (n + 1 offsets; an empty run where nothing is written). `orient`: see `_oriented`."""
    coords, offsets = _ragged(geoms)
    xy = np.rint(coords[:, :2]).astype(np.int64)
    if polygons:
        ring_off, poly_off = offsets[0], offsets[1]
        geom_off = offsets[2] if len(offsets) > 2 else np.arange(len(poly_off))
        if orient:
            xy = _oriented(xy, ring_off, poly_off)
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
    first_arc = np.searchsorted(arc_geom[written], np.arange(len(geom_off)))
    return out, np.append(start, len(out))[first_arc]


def _puntal(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Command integers of (multi)points, concatenated, and each geometry's run (n + 1 offsets): one MoveTo
    of all its points, deltas from (0, 0) at each geometry."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    xy = np.rint(coords).astype(np.int64)
    counts = np.bincount(index, minlength=len(geoms))
    first = np.ones(len(xy), dtype=bool)
    first[1:] = index[1:] != index[:-1]
    delta = xy.copy()
    delta[1:] -= xy[:-1]
    delta[first] = xy[first]
    offsets = np.zeros(len(geoms) + 1, dtype=np.int64)
    np.cumsum(1 + 2 * counts, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint64)
    out[offsets[:-1]] = (counts << 3) | MOVE_TO
    geom_first = offsets[:-1] - np.concatenate([[0], np.cumsum(counts[:-1])]) * 2  # so that at = this + 2 * k + 1
    at = geom_first[index] + 2 * np.arange(len(xy)) + 1
    zz = _zigzag(delta)
    out[at], out[at + 1] = zz[:, 0], zz[:, 1]
    return out, offsets


# by shapely type id (-1, a missing geometry, wraps to the last): the layer's GeomType, 0 for what is not written
_FAMILY_OF_TYPE = np.array([POINT, LINESTRING, 0, POLYGON, POINT, LINESTRING, POLYGON, 0, 0], dtype=np.int64)


def type_table(kinds: Iterable[int]) -> np.ndarray:
    """A lookup of GEOS type ids for `table[type_ids]` (-1, a missing shape, lands on the last slot, never set):
    `np.isin` sorts both arrays on every call, ~10 us apiece on a small tile's few shapes, several calls a tile."""
    table = np.zeros(9, dtype=bool)
    table[[int(k) for k in kinds]] = True
    return table


_LINESTRINGS = type_table([GeometryType.LINESTRING])
_MULTILINESTRINGS = type_table([GeometryType.MULTILINESTRING])
_POLYGONS = type_table([GeometryType.POLYGON])
_MULTIPOLYGONS = type_table([GeometryType.MULTIPOLYGON])
_POINTS = type_table([GeometryType.POINT, GeometryType.MULTIPOINT])


def geometry_commands(geoms: Sequence[shapely.Geometry], orient: bool = False) -> list[tuple[int, bytes]]:
    """(GeomType, packed command integers) of each geometry; (0, b"") where nothing would be written
    (missing, empty, a collection, or no line or ring left with a segment). Rings are written as they come, or with
    `orient` (valid polygons in integer coordinates only) as `shapely.orient_polygons(exterior_cw=False)` would leave them.

    Each family's commands are made for all its geometries at once and packed as varints in one go; only the
    slicing of the packed bytes is per geometry (per-geometry arrays and their slicing in Python were 60% of
    this function on a full tile: profiles/tiles-python.txt)."""
    arr = np.asarray(geoms, dtype=object)
    present = ~shapely.is_missing(arr)
    present[present] = ~shapely.is_empty(arr[present])
    types = np.where(present, shapely.get_type_id(arr), -1)
    family = _FAMILY_OF_TYPE[types]
    begin = np.zeros(len(arr), dtype=np.int64)
    end = np.zeros(len(arr), dtype=np.int64)
    parts, base = [], 0
    # Single and multi shapes apart: to_ragged_array of a mix splits every shape into parts first (a GEOS copy of
    # each polygon of a tile for its few multipolygons)
    encoders: list[tuple[np.ndarray, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]] = [
        (_LINESTRINGS, lambda g: _lineal_or_polygonal(g, False)),
        (_MULTILINESTRINGS, lambda g: _lineal_or_polygonal(g, False)),
        (_POLYGONS, lambda g: _lineal_or_polygonal(g, True, orient)),
        (_MULTIPOLYGONS, lambda g: _lineal_or_polygonal(g, True, orient)),
        (_POINTS, _puntal),
    ]
    for kinds, encode in encoders:
        idx = np.flatnonzero(kinds[types])
        if len(idx):
            out, offsets = encode(arr[idx])
            begin[idx], end[idx] = offsets[:-1] + base, offsets[1:] + base
            parts.append(out)
            base += len(out)
    blob, nbytes = varints(np.concatenate(parts)) if parts else (b"", np.zeros(0, dtype=np.int64))
    at = np.zeros(base + 1, dtype=np.int64)
    np.cumsum(nbytes, out=at[1:])
    first, last = at[begin], at[end]
    family[last == first] = 0
    return [(t, blob[b:e]) for t, b, e in zip(family.tolist(), first.tolist(), last.tolist())]


def _value(v: str | bool | int | float) -> bytes:
    if isinstance(v, bool):
        return b"\x38\x01" if v else b"\x38\x00"
    if isinstance(v, str):
        s = v.encode()
        return b"\x0a" + varint(len(s)) + s
    if isinstance(v, int):
        return b"\x20" + varint(v)
    return b"\x19" + struct.pack("<d", v)


_FEW_IDS = 128  # fewer ids than this are written one by one (see `_id_fields`)


def _id_fields(fids: Sequence[int | None]) -> list[bytes]:
    """Each feature's id field (b"" for none or a negative id), the varints packed for all at once: a parcel's id
    (a 16-digit BSM) is an 8-byte varint, ~1 us a feature in `varint`'s loop (profiles/tiles-fixed.txt). Below
    `_FEW_IDS` the loop is cheaper than numpy's ~75 us of fixed cost (profiles/tiles-small.txt)."""
    given = [fid is not None and fid >= 0 for fid in fids]
    if not any(given):
        return [b""] * len(fids)
    if len(fids) < _FEW_IDS:
        return [b"\x08" + varint(fid) if ok else b"" for fid, ok in zip(fids, given)]  # type: ignore[arg-type]
    blob, nbytes = varints(np.array([fid & _UINT64 if ok else 0 for fid, ok in zip(fids, given)], dtype=np.uint64))  # type: ignore[operator]
    ends = np.cumsum(nbytes).tolist()
    return [b"\x08" + blob[end - n : end] if ok else b"" for ok, end, n in zip(given, ends, nbytes.tolist())]


# a feature's GeomType field and its geometry field's tag, by GeomType
_GEOM_TYPE = {t: b"\x18" + bytes((t,)) + b"\x22" for t in (POINT, LINESTRING, POLYGON)}


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


class LayerEncoder:
    """One layer, fed in batches: `add(geometries, features)`, then `tile()` for the tile's bytes."""

    def __init__(self, name: str, extent: int = 4096, *, orient: bool = False) -> None:
        self.name = name
        self.extent = extent
        self.orient = orient  # rings of (valid) polygons oriented here, see `geometry_commands`
        self.features: list[bytes] = []
        self.keys: dict[str, int] = {}
        self.values: dict[Any, int] = {}
        self.bools: dict[bool, int] = {}
        self.value_msgs: list[bytes] = []
        self.pairs: dict[str, dict[Any, bytes]] = {}  # key -> value -> the pair's packed numbers
        self.bool_pairs: dict[str, dict[bool, bytes]] = {}

    def add(self, geoms: Sequence[shapely.Geometry], features: Iterable[tuple[int | None, dict[str, Any]]]) -> None:
        """Features (id or None, properties) with their tile geometries (y-down integer tile units)."""
        append = self.features.append
        feats = list(features)
        id_fields = _id_fields([fid for fid, _ in feats])
        for (gtype, cmds), (_, props), msg in zip(geometry_commands(geoms, self.orient), feats, id_fields):
            if not cmds:
                continue
            if props:
                tags = self._tags(props)
                if tags:
                    msg += b"\x12" + varint(len(tags)) + tags
            msg += _GEOM_TYPE[gtype] + varint(len(cmds)) + cmds
            append(b"\x12" + varint(len(msg)) + msg)

    def _tags(self, props: dict[str, Any]) -> bytes:
        """A feature's packed tags: (key, value) numbers, each pair's varints made once per layer (a tile's features
        share few pairs: a per-pair, per-feature encoding was a fifth of the encoder, profiles/tiles-python.txt)."""
        out = []
        for k, v in props.items():
            if v.__class__ is str and k.__class__ is str:  # most values: nothing more to check
                table = self.pairs
            elif isinstance(k, str) and isinstance(v, str | bool | int | float):
                table = self.bool_pairs if isinstance(v, bool) else self.pairs  # booleans apart from 1 and 0
            else:
                continue
            per_key = table.get(k)
            if per_key is None:
                per_key = table[k] = {}
            packed = per_key.get(v)
            if packed is None:
                packed = per_key[v] = varint(self._key_number(k)) + varint(self._value_number(v))
            out.append(packed)
        return b"".join(out)

    def _key_number(self, k: str) -> int:
        ki = self.keys.get(k)
        if ki is None:
            ki = self.keys[k] = len(self.keys)
        return ki

    def _value_number(self, v: str | bool | int | float) -> int:
        table = self.bools if isinstance(v, bool) else self.values
        vi = table.get(v)
        if vi is None:
            vi = table[v] = len(self.value_msgs)
            self.value_msgs.append(_field(b"\x22", _value(v)))
        return vi

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
