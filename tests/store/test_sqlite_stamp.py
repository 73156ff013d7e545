"""A SQLite database's commit stamp (store/sqlite_stamp.py) and the generation reader that trusts it.

The stamp must change with every commit, from any connection, and with nothing else that matters; the reader must
then read the generation again, and read nothing while the stamp stands.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from landcloud.access import decisions
from landcloud.store.sqlite_stamp import CommitStamp, same_copies


def _database(path: Path, wal: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE access_changes (id INTEGER PRIMARY KEY, generation INTEGER, instance TEXT)")
    conn.execute("INSERT INTO access_changes VALUES (1, 1, 'i')")
    conn.execute("CREATE TABLE other (v INTEGER)")
    return conn


def test_every_commit_changes_the_stamp_and_reads_do_not(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    writer = _database(path)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("SELECT 1 FROM other").fetchall()  # a reader open in WAL mode, as the generation reader is
    stamp = CommitStamp(path)
    try:
        seen = stamp()
        assert seen is not None and len(seen) == 52
        reader.execute("SELECT * FROM access_changes").fetchall()
        reader.execute("BEGIN")
        reader.execute("SELECT * FROM other").fetchall()
        reader.execute("COMMIT")  # a read-only transaction commits nothing
        assert stamp() == seen
        stamps = {seen}
        for i in range(20):
            (writer if i % 2 else reader).execute("INSERT INTO other VALUES (?)", (i,))  # any connection, any table
            now = stamp()
            assert now is not None and now not in stamps
            stamps.add(now)
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the log emptied: the next commit restarts it
        writer.execute("UPDATE access_changes SET generation = 2")
        assert stamp() not in stamps
    finally:
        stamp.close()
        reader.close()
        writer.close()


def test_without_a_wal_index_there_is_no_stamp(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    _database(path, wal=False).close()
    stamp = CommitStamp(path)
    try:
        assert stamp() is None  # a rollback journal: every read is a statement
    finally:
        stamp.close()


@given(st.binary(min_size=96, max_size=96), st.integers(0, 47))
def test_a_header_being_written_is_no_stamp(header: bytes, at: int) -> None:
    """Copies that differ anywhere (the second is written first) or an uninitialised header vouch for nothing."""
    first = bytearray(header[:48])
    first[12] = 1
    assert same_copies(bytes(first) * 2)
    other = bytearray(first)
    other[at] ^= 0xFF
    assert not same_copies(bytes(first) + bytes(other)) and not same_copies(bytes(other) + bytes(first))
    first[12] = 0
    assert not same_copies(bytes(first) * 2) and not same_copies(bytes(first))


def test_the_generation_reader_reads_again_only_after_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    writer = _database(path)
    reader = decisions.GenerationReader(sa.create_engine(f"sqlite:///{path}"))
    statements: list[str] = []
    try:
        assert reader.now() == (1, "i")
        assert reader._sqlite is not None
        reader._sqlite.set_trace_callback(statements.append)
        assert [reader.now() for _ in range(5)] == [(1, "i")] * 5
        assert len(statements) == 1 and reader.reads == 6  # the first read after opening sets the stamp; then none
        writer.execute("UPDATE access_changes SET generation = 2")
        assert reader.now() == (2, "i") and asyncio.run(reader.current()) == (2, "i")
        assert len(statements) == 2
        writer.execute("INSERT INTO other VALUES (1)")  # another table: read again, the same generation
        assert reader.now() == (2, "i") and len(statements) == 3
        writer.execute("BEGIN")
        writer.execute("UPDATE access_changes SET generation = 3")
        assert reader.now() == (2, "i") and len(statements) == 3  # not yet committed: nothing to see
        writer.execute("COMMIT")
        assert reader.now() == (3, "i") and len(statements) == 4
    finally:
        reader.close()
        writer.close()
