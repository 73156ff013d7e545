"""Rows into SQLite column by column (store/sqlite_columns.py): the table row by row makes, in few statements."""

from __future__ import annotations

import math
import sqlite3
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from landcloud.store import sqlite_columns as sc
from landcloud.store.sqlite_functions import pow_or_null, register

READ = "SELECT id, a, typeof(a), b, typeof(b), c, typeof(c), d, typeof(d) FROM t ORDER BY id"


def _db() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:", isolation_level=None)
    register(con)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b BLOB, c FLOAT, d)")
    return con


def _bits(x: object) -> object:
    """A float by its bits (so that -0.0, the last bit of a subnormal … count); anything else as it is."""
    return struct.pack("<d", x) if isinstance(x, float) else x


rows_strategy = st.lists(
    st.tuples(st.text(max_size=6), st.one_of(st.none(), st.binary(min_size=1, max_size=6)), st.floats(), st.integers(-5, 5)),
    max_size=30,
)


@hsettings(max_examples=150, deadline=None)
@given(rows=rows_strategy, as_bytes=st.booleans(), max_bytes=st.sampled_from([1, 7, 1 << 20]))
def test_the_table_is_the_one_row_by_row_makes(rows: list[tuple], as_bytes: bool, max_bytes: int) -> None:
    """Every text (any character), blob, double (subnormals, extremes, both zeros) and constant reads back as
    `executemany` stores it, in the same order and with the same ids, however the rows are cut into statements;
    NaN is NULL both ways, ±infinity NULL here (where bound it would stay infinite)."""
    ours, ref = _db(), _db()
    texts = [r[0].encode() if as_bytes else r[0] for r in rows]
    reals = np.array([r[2] for r in rows], dtype=np.float64)
    sc.insert_columns(ours.cursor(), "INSERT INTO t (a, b, c, d)",
                      [sc.Texts(texts), sc.Blobs([r[1] for r in rows]), sc.Reals(reals), sc.Same(7)], max_bytes=max_bytes)
    ref.executemany("INSERT INTO t (a, b, c, d) VALUES (?, ?, ?, 7)",
                    [(r[0], r[1], r[2] if math.isfinite(r[2]) else None) for r in rows])
    got, want = ours.execute(READ).fetchall(), ref.execute(READ).fetchall()
    assert [tuple(map(_bits, r)) for r in got] == [tuple(map(_bits, r)) for r in want]


@hsettings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_exact_parts_give_the_double_back(x: float) -> None:
    """m * 2**e is x exactly, with m odd (or 0), in SQLite's arithmetic as in Python's."""
    m, e = sc.exact_parts(np.array([x]))
    assert math.ldexp(int(m[0]), int(e[0])) == x and (m[0] % 2 == 1 or (m[0] == 0 and e[0] == 0))
    got = sqlite3.connect(":memory:").execute("SELECT ? * pow(2.0, ?)", (int(m[0]), int(e[0]))).fetchone()[0]
    assert struct.pack("<d", got) == struct.pack("<d", x + 0.0)  # (-0.0 comes back as 0.0, as SQLite's integer 0 times)


def test_the_extremes_of_a_double() -> None:
    extremes = np.array([5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308, 0.1 + 0.2])
    m, e = sc.exact_parts(extremes)
    assert (m.tolist(), e.tolist()) == ([1, -1, 1, 9007199254740991, -9007199254740991, 1351079888211149],
                                        [-1074, -1074, -1022, 971, 971, -52])


@given(st.lists(st.integers(-(2**62), 2**62), max_size=20))
def test_fixed_decimals_read_back(values: list[int]) -> None:
    text, width = sc.fixed_decimals(np.array(values, dtype=np.int64))
    con = sqlite3.connect(":memory:")
    got = [con.execute("SELECT CAST(CAST(substr(?, ? * ? + 1, ?) AS TEXT) AS INTEGER)", (text, k, width, width)).fetchone()[0]
           for k in range(len(values))]
    assert got == values and len(text) == width * len(values)


def test_a_large_batch_is_cut_into_statements_and_keeps_its_order() -> None:
    con = _db()
    seen: list[str] = []
    con.set_trace_callback(seen.append)
    texts = [f"行{i}" * (i % 5) for i in range(1000)]
    sc.insert_columns(con.cursor(), "INSERT INTO t (a, b, c, d)",
                      [sc.Texts(texts), sc.Blobs([bytes([i % 256]) * 3 for i in range(1000)]),
                       sc.Reals(np.arange(1000) / 7), sc.Same(None)], max_bytes=4000)
    inserts = [s for s in seen if "INSERT INTO t" in s]
    assert 2 <= len(inserts) <= 6  # ~10 bytes a row: 1000 rows in a few statements of at most 4000 bytes
    assert con.execute("SELECT a, b, c FROM t ORDER BY id").fetchall() == [
        (texts[i], bytes([i % 256]) * 3, i / 7) for i in range(1000)]


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        sc.insert_columns(_db().cursor(), "INSERT INTO t (a, c)", [sc.Texts(["x"]), sc.Reals(np.zeros(2))])


def test_floats_read_back_exactly_with_pythons_pow_where_sqlite_has_none() -> None:
    """A SQLite built without its math functions gets `pow` from Python (`sqlite_functions.register`): the same doubles,
    NULL for NaN and infinity."""
    con = _db()
    con.create_function("pow", 2, pow_or_null, deterministic=True)  # (a user function takes the built-in's place)
    values = [5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2, 126.63, float("nan"), float("inf"), 0.0]
    sc.insert_columns(con.cursor(), "INSERT INTO t (c)", [sc.Reals(np.array(values))])
    got = [r[0] for r in con.execute("SELECT c FROM t ORDER BY id")]
    assert [struct.pack("<d", g) if g is not None else None for g in got] == [
        struct.pack("<d", v) if math.isfinite(v) else None for v in values]


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(-300.0, 300.0), st.just(0.0)), min_size=1, max_size=40), st.integers(-40, 40))
def test_values_of_one_range_go_as_integers_of_one_scale_and_read_back_exactly(xs: list[float], shift: int) -> None:
    """Values whose binary exponents lie within 10 of each other (a region's coordinates) take the shorter form, one
    integer and one product a row; every double still reads back bit for bit. Wider ranges and tiny values (whose scale
    would overflow) take the exact form."""
    x = np.ldexp(np.array(xs), shift)
    exponents = np.frexp(x)[1][x != 0]
    narrow = not len(exponents) or (int(exponents.max() - exponents.min()) <= 10 and exponents.max() >= -960)  # (not tiny)
    assert sc._reals("c0", x)[0] == ("scaled" if narrow else "exact")
    con = _db()
    sc.insert_columns(con.cursor(), "INSERT INTO t (c)", [sc.Reals(x)])
    got = [r[0] for r in con.execute("SELECT c FROM t ORDER BY id")]
    assert [struct.pack("<d", g) for g in got] == [struct.pack("<d", v + 0.0) for v in x.tolist()]


def test_texts_of_one_size_are_cut_at_multiples_of_it() -> None:
    con = _db()
    keys = [f"2301020000{i:02d}" for i in range(30)]
    assert sc._Joined.of(sc.Texts(keys)).part("c0", 0, 30)[0] == "fixed"
    assert sc._Joined.of(sc.Texts(["a", "bb"])).part("c0", 0, 2)[0] == "ends"
    sc.insert_columns(con.cursor(), "INSERT INTO t (a, b)", [sc.Texts(keys), sc.Blobs([None] * 30)])
    assert con.execute("SELECT a, b FROM t ORDER BY id").fetchall() == [(k, None) for k in keys]
