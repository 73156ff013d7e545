"""One statement read again and again from the event loop (`store.repeated_read`): a statement's error reaches every
asker of that read and of the next, the connection is let go, and the next read prepares it again on a new one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from landcloud.store import libpq
from landcloud.store.repeated_read import RepeatedRead

pytestmark = pytest.mark.parametrize("backend", ["postgis"])  # PostgreSQL's protocol only

_QUERY = "SELECT 10 / (SELECT count(*) FROM pg_class WHERE relname = 'repeated_read_probe')"


def test_a_failing_statement_fails_its_askers_and_the_next_read_starts_anew(engine: sa.Engine) -> None:
    reader = RepeatedRead.for_engine(engine, _QUERY, lambda row: None if row is None else int(libpq.text(row[0])))
    assert reader is not None

    def probe(sql: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))

    async def scenario() -> tuple[int, list[Any], bool, int, int, int]:
        probe("CREATE TABLE repeated_read_probe (id int)")
        first = await reader.current()  # (opens the connection, prepares, reads)
        pid = reader._conn.pgconn.backend_pid  # type: ignore[union-attr]
        probe("DROP TABLE repeated_read_probe")
        answers: list[Any] = []
        reader.ask(lambda value, error: answers.append(("sent", value, str(error))))
        reader.ask(lambda value, error: answers.append(("waiting", value, str(error))))  # for the read after it
        for _ in range(500):
            if len(answers) == 2:
                break
            await asyncio.sleep(0.01)
        ready = reader.ready
        probe("CREATE TABLE repeated_read_probe (id int)")
        try:
            value = await reader.current()
            new_pid = reader._conn.pgconn.backend_pid  # type: ignore[union-attr]
        finally:
            probe("DROP TABLE repeated_read_probe")
        return first, answers, ready, value, pid, new_pid

    try:
        first, answers, ready, value, pid, new_pid = asyncio.run(scenario())
    finally:
        reader.close()
    assert first == 10
    assert sorted(a[0] for a in answers) == ["sent", "waiting"]  # the one waiting behind it told too, never read for
    assert all(a[1] is None and "division by zero" in a[2] for a in answers)
    assert not ready  # the connection let go after the error
    assert value == 10 and new_pid != pid and reader.reads == 3  # prepared again on a new connection
