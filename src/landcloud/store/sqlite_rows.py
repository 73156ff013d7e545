"""Many rows into and out of SQLite in few steps: an INSERT with a VALUES list per few hundred rows, and the
blobs a read joined into one (`split_joined`).

Why not `executemany`: Python's sqlite3 lets the GIL go around every `sqlite3_step`, one per row there.
A submission writes its rows while two other threads (the read-ahead and the overlap rule's GEOS thread)
want the GIL, so each row's step handed it over and waited to get it back. A VALUES list of 500 rows is
one step: 400,000 stored DLTB rows into the features table with its three indexes took 1.6 s of the
writing thread's CPU against 2.15 s by `executemany` alone, and 1.6-2.4 s against 3.3-3.5 s (wall 1.8-2.6
against 4.1-4.3 s) beside a thread running Python (benchmarks/profiles/ingest-sqlite-1m.txt §9).
The rows keep their order: an INTEGER PRIMARY KEY gets its ids in the list's order, as one by one.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

ROWS_PER_STATEMENT = 500  # the gain is flat from ~100 rows on; a prepared statement keeps ~1 KB a row of it (`blocks`)


def insert_rows(cur: sqlite3.Cursor, head: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
    """`head` ("INSERT INTO t (a, b)") with the values of `rows` (each `width` long), in order."""
    start = 0
    for n in blocks(len(rows), _rows_per_statement(cur.connection, width)):
        cur.execute(_statement(head, width, n), list(chain.from_iterable(rows[start : start + n])))
        start += n


def blocks(n: int, per: int) -> list[int]:
    """The row counts of the statements for `n` rows: `per` while that many are left, then the rest's powers of two.

    Why not the rest in one: each statement stays prepared in the connection's cache (sqlite3 keeps 128), ~1 KB a
    row of it (128 statements of ~450 rows: 54 MiB); a batch's rest of any size is so a few of at most ~10 sizes.
    """
    out = [per] * (n // per)
    rest = n % per
    while rest:
        bit = 1 << (rest.bit_length() - 1)
        out.append(bit)
        rest -= bit
    return out


def _rows_per_statement(conn: sqlite3.Connection, width: int) -> int:
    """At most ROWS_PER_STATEMENT, and within the connection's limit of bound parameters (32,766 since SQLite 3.32)."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(ROWS_PER_STATEMENT, limit // max(1, width)))


def split_joined(blob: bytes | None, sizes: Sequence[int | None]) -> list[bytes | None]:
    """The values `CAST(group_concat(x, '') AS BLOB)` joined into `blob`, cut apart by their `length(x)`s in the same
    order; None for a NULL (group_concat skips it). How a read gets many rows' blobs in one step (one per row lets the
    GIL go around each)."""
    out: list[bytes | None] = []
    at = 0
    for size in sizes:
        if size is None:
            out.append(None)
            continue
        out.append(blob[at : at + size])  # type: ignore[index]  (a size is only given for a joined value)
        at += size
    return out


@functools.lru_cache(maxsize=64)
def _statement(head: str, width: int, n: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return f"{head} VALUES {','.join([one] * n)}"
