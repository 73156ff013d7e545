"""Statements from the event loop straight through libpq (`store.libpq`): values typed as psycopg types them, rows
in binary or text, statements prepared once per connection, a pool that never waits and lets go of what failed."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from landcloud.store import libpq

pytestmark = pytest.mark.parametrize("backend", ["postgis"])  # PostgreSQL's protocol only


@pytest.fixture
def conninfo(engine: sa.Engine) -> str:
    return libpq.conninfo(engine)


def test_values_go_as_psycopg_types_them_and_rows_come_back_in_binary_or_text(conninfo: str) -> None:
    pool = libpq.LoopPool(conninfo, size=2)

    async def scenario() -> tuple[list[Any], list[Any], int, bool]:
        held = await pool.take()
        assert held is not None
        query = "SELECT length($1::bytea), $2::text || '县', $3 + 1, $4 * 2.0, $5::text[] @> ARRAY['b'], $6::int IS NULL"
        values = [b"\x00\x01\xff", "哈尔滨", 2**40, 0.25, ["a", "b"], None]
        binary = await held.run(query, values)
        again = await held.run(query, [b"", "x", 2**41, 1.5, ["c"], None], binary=False)
        setting = await held.run("SELECT current_setting('jit')", [], binary=False)
        pool.give_back(held, True)
        assert binary is not None and again is not None and setting is not None
        return binary, again, len(held.prepared), setting == [b"off"]

    try:
        binary, again, prepared, jit_off = asyncio.run(scenario())
    finally:
        pool.close()
    assert int.from_bytes(binary[0] or b"", "big") == 3 and (binary[1] or b"").decode() == "哈尔滨县"
    assert int.from_bytes(binary[2] or b"", "big", signed=True) == 2**40 + 1 and binary[4] == b"\x01" and binary[5] == b"\x01"
    assert again == [b"0", "x县".encode(), str(2**41 + 1).encode(), b"3", b"f", b"t"]
    assert prepared == 2  # the first statement once for both runs (same text, same types), and the setting's
    assert jit_off  # the store's session settings (store.db.POSTGRES_SESSION)


def test_the_pool_never_waits_and_lets_go_of_a_connection_that_failed(conninfo: str) -> None:
    pool = libpq.LoopPool(conninfo, size=1)

    async def scenario() -> tuple[bool, str, bool, int]:
        first = await pool.take()
        assert first is not None
        none_free = await pool.take() is None  # the one connection is out: no wait, the caller goes its usual way
        try:
            await first.run("SELECT 1 / $1::int", [0])
            message = ""
        except psycopg.DatabaseError as exc:
            message = str(exc)
        pool.give_back(first, False)  # failed: closed, not kept
        second = await pool.take()
        assert second is not None
        fresh = second is not first and first.conn.closed
        row = await second.run("SELECT $1::int + 1", [41], binary=False)
        pool.give_back(second, True)
        return none_free, message, fresh, int(row[0]) if row else 0  # type: ignore[arg-type]

    try:
        none_free, message, fresh, answer = asyncio.run(scenario())
    finally:
        pool.close()
    assert none_free and "division by zero" in message and fresh and answer == 42


def test_a_new_event_loop_opens_new_connections(conninfo: str) -> None:
    """A test client runs each request's loop anew: a connection of another loop is never used, nor counted."""
    pool = libpq.LoopPool(conninfo, size=1)

    async def use() -> libpq.LoopConnection:
        held = await pool.take()
        assert held is not None
        await held.run("SELECT 1", [])
        pool.give_back(held, True)
        return held

    try:
        first = asyncio.run(use())
        second = asyncio.run(use())
    finally:
        pool.close()
    assert second is not first and first.conn.closed and pool.taken == 2


def test_statements_prepared_on_a_connection_are_bounded(conninfo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_PREPARED texts the least recently used is let go on the server too; a text used again stays."""
    monkeypatch.setattr(libpq, "MAX_PREPARED", 3)
    pool = libpq.LoopPool(conninfo, size=1)

    async def scenario() -> tuple[list[list[Any]], int, int]:
        held = await pool.take()
        assert held is not None
        rows = []
        for i in (1, 2, 1, 3, 4, 1):  # 1 used again before 3 and 4 come: 2 goes first, then 3
            rows.append(await held.run(f"SELECT {i} + $1::int", [10], binary=False))
        server = await held.run("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'landcloud_%'", [], binary=False)
        pool.give_back(held, True)
        return rows, len(held.prepared), int(server[0]) if server else -1  # type: ignore[arg-type]

    try:
        rows, kept, on_server = asyncio.run(scenario())
    finally:
        pool.close()
    assert [r[0] for r in rows] == [b"11", b"12", b"11", b"13", b"14", b"11"]
    assert kept == 3 and on_server == 3  # the count statement itself pushed one more out: still three


def test_a_statement_is_planned_once_whatever_its_values(conninfo: str) -> None:
    """The loop's statements run on their generic plan: PostgreSQL re-planned a tile's statement on every run (its plan
    for given values always looked cheaper), a quarter to a half of a small tile's statement time."""
    pool = libpq.LoopPool(conninfo, size=1)
    query = "SELECT count(*) FROM generate_series(1, $1::int) g WHERE g % $2::int = 0"

    async def scenario() -> tuple[list[int], list[bytes | None]]:
        held = await pool.take()
        assert held is not None
        counts = []
        for n, k in [(10, 2), (1000, 7), (5, 5), (100, 3), (50, 10), (7, 7), (9, 2), (64, 8)]:  # more runs than the 5 custom plans
            row = await held.run(query, [n, k], binary=False)
            counts.append(int(row[0]) if row else -1)  # type: ignore[arg-type]
        plans = await held.run(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1", [query], binary=False,
        )
        pool.give_back(held, True)
        return counts, plans or []

    try:
        counts, plans = asyncio.run(scenario())
    finally:
        pool.close()
    assert counts == [5, 142, 1, 33, 5, 1, 4, 8]
    assert plans == [b"8", b"0"]  # eight runs, eight times the one generic plan, no plan for the values
