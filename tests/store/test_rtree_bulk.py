"""Packing SQLite's R*Tree (store/rtree_bulk.py): the packed tree is one SQLite itself accepts and answers from
exactly as from a tree built by its own inserts (rtreecheck, stored values, window queries, later edits)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from landcloud.store import rtree_bulk

coords = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False, allow_infinity=False)


def _db(page_size: int = 4096) -> sqlite3.Connection:
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.execute(f"PRAGMA page_size={page_size}")
    con.execute("CREATE VIRTUAL TABLE t USING rtree(id, minx, maxx, miny, maxy)")
    con.execute("CREATE VIRTUAL TABLE s USING rtree(id, minx, maxx, miny, maxy)")
    return con


def _boxes(rng: np.random.Generator, n: int, lon: float = 126.6, lat: float = 45.7) -> np.ndarray:
    """(n, 4) minx, maxx, miny, maxy: parcels of up to ~0.02 degrees around a point, some far away."""
    x = rng.uniform(lon - 2, lon + 2, n)
    y = rng.uniform(lat - 2, lat + 2, n)
    w, h = rng.exponential(0.003, n), rng.exponential(0.003, n)
    return np.column_stack([x, x + w, y, y + h])


def _insert(con: sqlite3.Connection, table: str, ids: np.ndarray, boxes: np.ndarray) -> None:
    con.executemany(f"INSERT INTO {table} VALUES (?,?,?,?,?)", zip(ids.tolist(), *boxes.T.tolist()))


def _all(con: sqlite3.Connection, table: str) -> list[tuple[float, ...]]:
    return con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def _window(con: sqlite3.Connection, table: str, box: tuple[float, float, float, float]) -> list[int]:
    x0, y0, x1, y1 = box
    sql = f"SELECT id FROM {table} WHERE minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ? ORDER BY id"
    return [r[0] for r in con.execute(sql, (x1, x0, y1, y0))]


@given(st.lists(st.tuples(coords, coords), min_size=1, max_size=200))
@hsettings(max_examples=60, deadline=None)
def test_values_are_stored_as_sqlite_stores_them(pairs: list[tuple[float, float]]) -> None:
    """float32, minima rounded down and maxima up, bit for bit what the module's own insert keeps."""
    lo = np.array([min(a, b) for a, b in pairs])
    hi = np.array([max(a, b) for a, b in pairs])
    boxes = np.column_stack([lo, hi, lo, hi])
    con = _db()
    _insert(con, "t", np.arange(1, len(pairs) + 1), boxes)
    stored = np.array([r[1:] for r in _all(con, "t")])
    mine = rtree_bulk.as_stored(boxes).astype(np.float64)
    assert np.array_equal(stored, mine)
    normal = (np.abs(lo) >= 1e-30) | (lo == 0), (np.abs(hi) >= 1e-30) | (hi == 0)  # (below float32's range: 0, as SQLite)
    assert (mine[normal[0], 0] <= lo[normal[0]]).all() and (mine[normal[1], 1] >= hi[normal[1]]).all()


@given(st.integers(min_value=0, max_value=3000), st.integers(min_value=2, max_value=51), st.integers(0, 2**32 - 1))
@hsettings(max_examples=40, deadline=None)
def test_a_packed_tree_holds_each_entry_once(n: int, per_node: int, seed: int) -> None:
    """Pure: every entry in exactly one leaf, with its box; every node below the root has a parent; nodes full
    but the last of each level."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1, n + 1) * 7)
    boxes = rtree_bulk.as_stored(_boxes(rng, n))
    size = rtree_bulk.HEADER + per_node * rtree_bulk.CELL.itemsize
    packed = rtree_bulk.pack(ids, boxes, size)
    got_ids, got_boxes = rtree_bulk.entries(packed.nodes)
    order = np.argsort(got_ids)
    expected = np.argsort(ids)
    assert np.array_equal(got_ids[order], ids[expected])
    assert np.array_equal(got_boxes[order], boxes[expected])
    assert sorted(packed.leaf_ids.tolist()) == sorted(ids.tolist())
    numbers = {no for no, _ in packed.nodes}
    assert numbers == {1, *packed.child_nodes.tolist()} and len(numbers) == len(packed.nodes)
    assert set(packed.leaf_nodes.tolist()) <= numbers and set(packed.parent_nodes.tolist()) <= numbers
    assert all(len(blob) == size for _, blob in packed.nodes)
    depth, level = 0, n
    while level > per_node:  # each level above holds one cell per full node below
        level, depth = -(-level // per_node), depth + 1
    assert packed.depth == depth


@pytest.mark.parametrize(("n", "page_size"), [(0, 4096), (1, 4096), (51, 4096), (52, 4096), (5000, 4096), (3000, 512), (20_000, 1024)])
def test_a_packed_tree_answers_as_sqlites_own(n: int, page_size: int) -> None:
    rng = np.random.default_rng(n)
    boxes = _boxes(rng, n)
    ids = np.arange(1, n + 1)
    con = _db(page_size)
    _insert(con, "s", ids, boxes)
    con.execute("BEGIN")
    assert rtree_bulk.rebuild(con.cursor(), "t", ids, boxes) == n
    con.execute("COMMIT")
    assert con.execute("SELECT rtreecheck('t')").fetchone()[0] == "ok"
    assert _all(con, "t") == _all(con, "s")
    for _ in range(150):
        x, y, d = rng.uniform(124.5, 128.7), rng.uniform(43.6, 47.8), rng.exponential(0.05)
        assert _window(con, "t", (x, y, x + d, y + d)) == _window(con, "s", (x, y, x + d, y + d))
    # the module keeps editing a packed tree
    more = _boxes(rng, 700)
    for table in ("t", "s"):
        _insert(con, table, np.arange(n + 1, n + 701), more)
        con.execute(f"DELETE FROM {table} WHERE id % 3 = 0")
    assert con.execute("SELECT rtreecheck('t')").fetchone()[0] == "ok"
    assert _all(con, "t") == _all(con, "s")
    assert _window(con, "t", (125.0, 45.0, 127.0, 46.0)) == _window(con, "s", (125.0, 45.0, 127.0, 46.0))


def test_packing_keeps_what_the_tree_held() -> None:
    """A tree its inserts built (and edited) packed anew with new entries: the union, as inserts would have it."""
    rng = np.random.default_rng(7)
    old, new = _boxes(rng, 4000), _boxes(rng, 3000)
    con = _db(1024)
    for table in ("t", "s"):
        _insert(con, table, np.arange(1, 4001), old)
        con.execute(f"DELETE FROM {table} WHERE id % 5 = 0")
    _insert(con, "s", np.arange(5001, 8001), new)
    assert _window(con, "t", (126.0, 45.0, 127.0, 46.0))  # (the module has read the tree in this connection)
    con.execute("BEGIN")
    assert rtree_bulk.rebuild(con.cursor(), "t", np.arange(5001, 8001), new) == 3200 + 3000
    con.execute("COMMIT")
    assert con.execute("SELECT rtreecheck('t')").fetchone()[0] == "ok"
    assert _all(con, "t") == _all(con, "s")
    assert _window(con, "t", (126.0, 45.0, 127.0, 46.0)) == _window(con, "s", (126.0, 45.0, 127.0, 46.0))


def test_a_rolled_back_packing_leaves_the_tree() -> None:
    rng = np.random.default_rng(3)
    con = _db()
    _insert(con, "t", np.arange(1, 1001), _boxes(rng, 1000))
    before = _all(con, "t")
    con.execute("BEGIN")
    rtree_bulk.rebuild(con.cursor(), "t", np.arange(2001, 4001), _boxes(rng, 2000))
    assert len(_all(con, "t")) == 3000
    con.execute("ROLLBACK")
    assert _all(con, "t") == before
    assert con.execute("SELECT rtreecheck('t')").fetchone()[0] == "ok"


def test_packing_pays_for_writes_large_against_the_tree() -> None:
    assert rtree_bulk.pays(0, 1_000_000)
    assert rtree_bulk.pays(2_000_000, 1_000_000)  # 10 s of inserts against 7.5 s of packing
    assert not rtree_bulk.pays(10_000_000, 1_000_000)
    assert not rtree_bulk.pays(0, rtree_bulk.MIN_NEW - 1)


def test_another_connection_reads_the_packed_tree(tmp_path: Path) -> None:
    """WAL, as the store: a reader that used the tree before sees the old tree during the packing and the packed
    one after the commit."""
    rng = np.random.default_rng(11)
    old, new = _boxes(rng, 3000), _boxes(rng, 3000)
    path = tmp_path / "t.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE VIRTUAL TABLE t USING rtree(id, minx, maxx, miny, maxy)")
    writer.execute("CREATE VIRTUAL TABLE s USING rtree(id, minx, maxx, miny, maxy)")
    _insert(writer, "t", np.arange(1, 3001), old)
    _insert(writer, "s", np.arange(1, 3001), old)
    reader = sqlite3.connect(path, isolation_level=None)
    window = (126.0, 45.0, 126.5, 45.5)
    before = _window(reader, "t", window)
    assert before == _window(reader, "s", window) and before
    writer.execute("BEGIN IMMEDIATE")
    rtree_bulk.rebuild(writer.cursor(), "t", np.arange(3001, 6001), new)
    assert _window(reader, "t", window) == before
    writer.execute("COMMIT")
    _insert(writer, "s", np.arange(3001, 6001), new)
    assert _window(reader, "t", window) == _window(reader, "s", window) != before
    assert reader.execute("SELECT rtreecheck('t')").fetchone()[0] == "ok"
