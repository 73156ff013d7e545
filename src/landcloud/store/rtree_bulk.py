"""Bulk loading of SQLite's R*Tree (`features_rtree`) for large writes.

SQLite's rtree module has no bulk load: every entry goes in through the R*-tree insertion algorithm, ~10 us each on
this machine (1M parcels: 9.8-10.7 s of the submission's main thread, `benchmarks/profiles/ingest-rtree.txt`), and
the plain GDAL copy we are compared with builds its GeoPackage's R*Tree by writing the node table directly, packed.
Here the same: when a write adds many entries relative to the tree's size, the whole tree is packed anew
(Sort-Tile-Recursive, full nodes) and written straight into the module's shadow tables, ~1.7 us an entry.

The shadow tables' format is SQLite's (ext/rtree/rtree.c), checked in the tests by `rtreecheck()` and against a tree
built by the module's own inserts (the same stored values, the same answers):
- `<name>_node(nodeno, data)`: node 1 is the root; a node's blob is a 2-byte big-endian tree depth (read from the
  root only), a 2-byte cell count, then cells of an 8-byte big-endian id (a row id in a leaf, a child node number
  above) and the box as 4 big-endian float32 (minx, maxx, miny, maxy), zero-padded to the node size, which is the
  root blob's length (set when the table was created);
- `<name>_rowid(rowid, nodeno)`: the leaf of each entry; `<name>_parent(nodeno, parentnode)`: every node but the root.
Coordinates are stored as float32 rounded outward (`as_stored`), as the module does, so a packed tree holds exactly
the values its inserts would.

Pure packing (`pack`, `entries`) has no I/O; `rebuild` writes, inside the caller's write transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from landcloud.store.sqlite_rows import insert_rows

CELL = np.dtype([("id", ">i8"), ("box", ">f4", (4,))])  # one cell of a node: id, minx, maxx, miny, maxy
HEADER = 4  # depth, cell count
_MAX_CELLS = 51  # rtree.c's RTREE_MAXCELLS: a node's cells at most, whatever the page size
# rtree.c rounds a double to float32 toward -inf for a minimum, +inf for a maximum, by these factors
_TOWARDS = 1.0 - 1.0 / 8388608.0
_AWAY = 1.0 + 1.0 / 8388608.0

# When packing pays: inserting costs ~10 us a new entry, packing ~1.7 us an entry of the whole tree plus reading the
# new rows (~0.5 us); rebuild when new x INSERT_US > (existing + new) x PACK_US, i.e. when the write adds at least
# ~a quarter of the tree. Below MIN_NEW entries the inserts take < 0.2 s: not worth rewriting a tree.
INSERT_US = 10.0
PACK_US = 2.5
MIN_NEW = 20_000
_WRITE_BLOCK = 100_000  # rows of _rowid made into tuples at a time (bounded memory for a province-sized tree)


def _outward(d: np.ndarray, down: bool) -> np.ndarray:
    """rtreeValueDown (`down`) / rtreeValueUp of rtree.c, vectorised: the float32 nearest, moved by one factor
    when it lies on the wrong side of the double."""
    f = d.astype(np.float32)
    wrong = f.astype(np.float64) > d if down else f.astype(np.float64) < d
    if wrong.any():
        dd = d[wrong]
        negative = dd < 0
        factor = np.where(negative, _AWAY, _TOWARDS) if down else np.where(negative, _TOWARDS, _AWAY)
        f[wrong] = (dd * factor).astype(np.float32)
    return f


def as_stored(boxes: np.ndarray) -> np.ndarray:
    """(n, 4) float64 boxes (minx, maxx, miny, maxy) as the R*Tree stores them: float32, minima rounded down and
    maxima up (rtreeValueDown / rtreeValueUp)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([_outward(b[:, 0], True), _outward(b[:, 1], False), _outward(b[:, 2], True), _outward(b[:, 3], False)])


def str_order(boxes: np.ndarray, per_node: int) -> np.ndarray:
    """Sort-Tile-Recursive order of boxes: sorted by centre x into vertical slabs of ~sqrt(nodes) nodes each, each slab
    by centre y, so that consecutive runs of `per_node` boxes are compact."""
    n = len(boxes)
    b = boxes.astype(np.float64)
    cx, cy = b[:, 0] + b[:, 1], b[:, 2] + b[:, 3]
    nodes = -(-n // per_node)
    per_slab = max(1, int(np.ceil(np.sqrt(nodes)))) * per_node
    slab = np.empty(n, dtype=np.int64)
    slab[np.argsort(cx, kind="stable")] = np.arange(n) // per_slab
    by_y = np.argsort(cy, kind="stable")
    return by_y[np.argsort(slab[by_y], kind="stable")]  # by slab, then y (a stable sort of small integers: a radix sort)


@dataclass(frozen=True)
class Packed:
    nodes: list[tuple[int, bytes]]  # (nodeno, blob), the root (1) last
    leaf_ids: np.ndarray  # entry ids …
    leaf_nodes: np.ndarray  # … and the leaf holding each
    child_nodes: np.ndarray  # node numbers below the root …
    parent_nodes: np.ndarray  # … and their parents
    depth: int


def _blob(depth: int, cells: np.ndarray, node_size: int) -> bytes:
    body = depth.to_bytes(2, "big") + len(cells).to_bytes(2, "big") + cells.tobytes()
    return body + bytes(node_size - len(body))


def cells_per_node(node_size: int) -> int:
    return (node_size - HEADER) // CELL.itemsize


def pack(ids: np.ndarray, boxes: np.ndarray, node_size: int) -> Packed:
    """A whole R*Tree of the entries (`boxes` as stored: float32 (n, 4)), nodes filled up, level by level."""
    m = cells_per_node(node_size)
    level_ids, level_boxes = np.asarray(ids, dtype=np.int64), np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    nodes: list[tuple[int, bytes]] = []
    leaf: tuple[np.ndarray, np.ndarray] | None = None
    children: list[np.ndarray] = []
    parents: list[np.ndarray] = []
    depth, next_no = 0, 2
    while len(level_ids) > m:
        order = str_order(level_boxes, m)
        oi, ob = level_ids[order], level_boxes[order]
        starts = np.arange(0, len(oi), m)
        counts = np.minimum(m, len(oi) - starts)
        numbers = np.arange(next_no, next_no + len(starts), dtype=np.int64)
        next_no += len(starts)
        cells = np.empty(len(oi), dtype=CELL)
        cells["id"], cells["box"] = oi, ob
        nodes += [(no, _blob(0, cells[s : s + c], node_size)) for no, s, c in zip(numbers.tolist(), starts.tolist(), counts.tolist())]
        owner = np.repeat(numbers, counts)
        if depth == 0:
            leaf = (oi, owner)
        else:
            children.append(oi)
            parents.append(owner)
        lows, highs = np.minimum.reduceat(ob[:, [0, 2]], starts), np.maximum.reduceat(ob[:, [1, 3]], starts)
        level_ids = numbers
        level_boxes = np.column_stack([lows[:, 0], highs[:, 0], lows[:, 1], highs[:, 1]]).astype(np.float32)
        depth += 1
    root = np.empty(len(level_ids), dtype=CELL)
    root["id"], root["box"] = level_ids, level_boxes
    nodes.append((1, _blob(depth, root, node_size)))
    if depth == 0:
        leaf = (level_ids, np.ones(len(level_ids), dtype=np.int64))
    else:
        children.append(level_ids)
        parents.append(np.ones(len(level_ids), dtype=np.int64))
    assert leaf is not None
    empty = np.empty(0, dtype=np.int64)
    return Packed(
        nodes, leaf[0], leaf[1], np.concatenate(children) if children else empty,
        np.concatenate(parents) if parents else empty, depth,
    )


def entries(nodes: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """The leaf entries (ids, float32 boxes) of a stored tree, from its node blobs: read from the root down, so only
    nodes of the tree count."""
    if not nodes:
        return np.empty(0, dtype=np.int64), np.empty((0, 4), dtype=np.float32)
    size = len(nodes[0][1])
    m = cells_per_node(size)
    numbers = np.array([no for no, _ in nodes], dtype=np.int64)
    raw = np.frombuffer(b"".join(blob for _, blob in nodes), dtype=np.uint8).reshape(len(nodes), size)
    counts = raw[:, 2].astype(np.int64) << 8 | raw[:, 3]
    cells = np.ascontiguousarray(raw[:, HEADER : HEADER + m * CELL.itemsize]).view(CELL).reshape(len(nodes), m)
    by_number = np.argsort(numbers)
    row = int(by_number[np.searchsorted(numbers, 1, sorter=by_number)])
    depth = int(raw[row, 0]) << 8 | int(raw[row, 1])
    level = np.array([row])
    for _ in range(depth):
        kids = _cells_of(cells, counts, level)["id"].astype(np.int64)
        level = by_number[np.searchsorted(numbers, kids, sorter=by_number)]
    found = _cells_of(cells, counts, level)
    return found["id"].astype(np.int64), found["box"].astype(np.float32)


def _cells_of(cells: np.ndarray, counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    used = np.arange(cells.shape[1])[None, :] < counts[rows][:, None]
    return cells[rows][used]


def pays(existing: int, new: int) -> bool:
    """Whether packing the whole tree anew costs less than inserting `new` entries into a tree of `existing`."""
    return new >= MIN_NEW and new * INSERT_US > (existing + new) * PACK_US


def size(cur: Any, table: str) -> int:
    """Entries in the tree (its _rowid table's rows)."""
    return int(cur.execute(f"SELECT count(*) FROM {table}_rowid").fetchone()[0])


def _pairs(a: np.ndarray, b: np.ndarray) -> Iterator[list[tuple[int, int]]]:
    for s in range(0, len(a), _WRITE_BLOCK):
        yield list(zip(a[s : s + _WRITE_BLOCK].tolist(), b[s : s + _WRITE_BLOCK].tolist()))


def rebuild(cur: Any, table: str, new_ids: np.ndarray, new_boxes: np.ndarray) -> int:
    """Pack the tree `table` anew with its entries and the new ones (ids not in it; float64 boxes minx, maxx, miny,
    maxy), writing its shadow tables through the DB-API cursor `cur` inside the caller's transaction.

    Returns the entries written."""
    stored = cur.execute(f"SELECT nodeno, data FROM {table}_node").fetchall()
    old_ids, old_boxes = entries([(int(no), bytes(data)) for no, data in stored])
    node_size = len(stored[0][1]) if stored else HEADER + _MAX_CELLS * CELL.itemsize
    del stored
    ids = np.concatenate([old_ids, np.asarray(new_ids, dtype=np.int64)])
    boxes = np.concatenate([old_boxes, as_stored(new_boxes)])
    del old_ids, old_boxes
    packed = pack(ids, boxes, node_size)
    del ids, boxes
    for part in ("node", "rowid", "parent"):
        cur.execute(f"DELETE FROM {table}_{part}")
    insert_rows(cur, f"INSERT INTO {table}_node (nodeno, data)", 2, packed.nodes)
    by_id = np.argsort(packed.leaf_ids)  # (a B-tree filled in key order)
    for rows in _pairs(packed.leaf_ids[by_id], packed.leaf_nodes[by_id]):
        insert_rows(cur, f"INSERT INTO {table}_rowid (rowid, nodeno)", 2, rows)
    for rows in _pairs(packed.child_nodes, packed.parent_nodes):
        insert_rows(cur, f"INSERT INTO {table}_parent (nodeno, parentnode)", 2, rows)
    return len(packed.leaf_ids)
