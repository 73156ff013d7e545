"""Rows into SQLite by VALUES lists (store/sqlite_rows.py): the same table as row by row, in few statements."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from landcloud.store import sqlite_rows

values = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=8), st.binary(max_size=8)
)


def _db() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a, b, c)")
    return con


def _statements(con: sqlite3.Connection) -> list[str]:
    seen: list[str] = []
    con.set_trace_callback(seen.append)
    return seen


@hsettings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(values, values, values), max_size=40), per=st.integers(1, 7))
def test_the_table_is_the_one_row_by_row_makes(rows: list[tuple[object, ...]], per: int) -> None:
    ours, ref = _db(), _db()
    ours.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 3 * per)  # blocks of `per` rows
    sqlite_rows.insert_rows(ours.cursor(), "INSERT INTO t (a, b, c)", 3, rows)
    ref.executemany("INSERT INTO t (a, b, c) VALUES (?, ?, ?)", rows)
    read = "SELECT id, a, typeof(a), b, typeof(b), c, typeof(c) FROM t ORDER BY id"
    assert ours.execute(read).fetchall() == ref.execute(read).fetchall()  # ids in the list's order, values and types


def test_one_statement_per_block_of_rows() -> None:
    con = _db()
    seen = _statements(con)
    sqlite_rows.insert_rows(con.cursor(), "INSERT INTO t (a, b, c)", 3, [(i, i, i) for i in range(1201)])
    assert len(seen) == 6  # 500 + 500 + 128 + 64 + 8 + 1 (executemany: one per row)
    assert con.execute("SELECT count(*), sum(a), min(id), max(id) FROM t").fetchone() == (1201, 1201 * 600, 1, 1201)


def test_blocks_stay_within_the_connections_parameter_limit() -> None:
    con = _db()
    con.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # 3 rows of 3 values a statement
    seen = _statements(con)
    sqlite_rows.insert_rows(con.cursor(), "INSERT INTO t (a, b, c)", 3, [(i, -i, str(i)) for i in range(10)])
    assert len(seen) == 4  # 3 + 3 + 3 + 1
    assert con.execute("SELECT group_concat(c, ',') FROM (SELECT c FROM t ORDER BY id)").fetchone()[0] == "0,1,2,3,4,5,6,7,8,9"


def test_or_ignore_keeps_the_first_of_each_key_as_row_by_row() -> None:
    con = _db()
    con.execute("CREATE UNIQUE INDEX ix_t_a ON t (a)")
    sqlite_rows.insert_rows(con.cursor(), "INSERT OR IGNORE INTO t (a, b, c)", 3, [(1, "x", 0), (2, "y", 0), (1, "z", 0)])
    assert con.execute("SELECT a, b FROM t ORDER BY id").fetchall() == [(1, "x"), (2, "y")]


def test_a_refused_row_fails_its_statement_and_the_caller_rolls_back() -> None:
    con = _db()
    con.execute("CREATE TABLE n (id INTEGER PRIMARY KEY, v NOT NULL)")
    con.execute("BEGIN")
    with pytest.raises(sqlite3.IntegrityError):
        sqlite_rows.insert_rows(con.cursor(), "INSERT INTO n (v)", 1, [(1,), (None,), (3,)])
    con.execute("ROLLBACK")
    assert con.execute("SELECT count(*) FROM n").fetchone()[0] == 0


@given(n=st.integers(0, 5000), per=st.integers(1, 600))
def test_blocks_cover_the_rows_with_few_sizes(n: int, per: int) -> None:
    sizes = sqlite_rows.blocks(n, per)
    assert sum(sizes) == n and all(0 < k <= per for k in sizes)
    rest = [k for k in sizes if k != per]
    assert len(rest) == len(set(rest)) and all(k & (k - 1) == 0 for k in rest)  # distinct powers of two


def test_a_connection_prepares_few_statements_for_any_batch_sizes() -> None:
    con = _db()
    seen = _statements(con)
    for n in range(1, 601):
        sqlite_rows.insert_rows(con.cursor(), "INSERT INTO t (a, b, c)", 3, [(i, i, i) for i in range(n)])
    sizes = {sql.count("),(") + 1 for sql in seen}  # (the trace shows the values bound: count the rows)
    assert sizes == {500, 256, 128, 64, 32, 16, 8, 4, 2, 1}  # each statement prepared once, then from the cache
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 600 * 601 // 2


@hsettings(max_examples=60, deadline=None)
@given(blobs=st.lists(st.one_of(st.none(), st.binary(max_size=12)), max_size=30))
def test_joined_blobs_cut_back_as_stored(blobs: list[bytes | None]) -> None:
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v BLOB)")
    con.executemany("INSERT INTO b (v) VALUES (?)", [(v,) for v in blobs])
    sizes, joined = con.execute(
        "SELECT json_group_array(length(v)), CAST(group_concat(v, '') AS BLOB) FROM (SELECT v FROM b ORDER BY id)"
    ).fetchone()
    assert sqlite_rows.split_joined(joined, json.loads(sizes)) == blobs  # NULs inside, empty blobs, NULLs between
