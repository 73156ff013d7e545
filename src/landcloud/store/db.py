"""Engine creation and the one MetaData every package's tables hang on.

SQLite is tuned here (WAL, foreign keys, a busy timeout) because the embedded store must
behave like a server for concurrent readers while one submission writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

BackendKind = Literal["sqlite", "postgis"]


def backend_of(engine: Engine | sa.Connection) -> BackendKind:
    return "sqlite" if engine.dialect.name == "sqlite" else "postgis"


@contextmanager
def connection(bind: Engine | sa.Connection) -> Iterator[sa.Connection]:
    """For reads: `bind` itself when it is a connection (the caller's: left open), else a new one.

    Lets a caller that makes several small reads make them on one connection (one pool checkout).
    A new PostgreSQL connection is in autocommit: each read is its own statement (what READ
    COMMITTED gives anyway) without the BEGIN and ROLLBACK round trips around it. Never write
    through a new one: use `engine.begin()`.
    """
    if isinstance(bind, sa.Connection):
        yield bind
    else:
        with read_connection(bind) as conn:
            yield conn


def read_connection(engine: Engine) -> sa.Connection:
    """A new connection for reads (the caller closes it): in autocommit on PostgreSQL (see `connection`).

    Closing it costs no round trip: there is no transaction to end (SQLite's is a read transaction,
    ended in the library).
    """
    if backend_of(engine) == "postgis":
        return engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    return engine.connect()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The stdlib driver opens transactions lazily and never for DDL; we drive BEGIN ourselves
    # (see the "begin" listener) so a submission is one all-or-nothing transaction.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()
    from landcloud.store import sqlite_functions

    sqlite_functions.register(dbapi_connection)


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


def _forget_write(_dbapi_connection: Any, record: Any) -> None:
    """A pool `checkin` listener: the next checkout begins as a read unless it asks to write.

    `conn.info` is the pooled connection's, not the checkout's: a writer that set "write" and did not
    take it off (history, editions, fingerprints, the ingest pipeline, migrations) made every later read
    on that connection BEGIN IMMEDIATE: it held the write lock while it read, so reads queued behind
    each other and behind writers, and a read still open while its request wrote on another connection
    (an audit entry) waited the busy timeout out ("database is locked").
    """
    record.info.pop("write", None)


IDLE_PING_SECONDS = 10.0  # a pooled PostgreSQL connection idle longer than this is pinged before use


def _mark_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Any:
    """A pool `checkout` listener: ping only a connection that sat idle longer than IDLE_PING_SECONDS.

    `pool_pre_ping` costs a round trip on every checkout (12% of a feature page's server time, see
    benchmarks/profiles/items-*.txt). A connection in steady use is known alive; one idle for a while
    may have been dropped (a PostgreSQL restart, a firewall timeout): that one is pinged, and a dead
    one is replaced (DisconnectionError makes the pool reconnect). A connection that dies while in
    use fails that one statement; SQLAlchemy then recycles every connection older than the failure.
    """

    def listener(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("checked_in")
        if last is None or time.monotonic() - last <= IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc

    return listener


def create_engine(url: str) -> Engine:
    """An engine for either backend, with the settings the store relies on."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine.pool, "checkin", _forget_write)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = sa.create_engine(url, pool_size=10, max_overflow=20)
    event.listen(engine.pool, "checkin", _mark_checkin)
    event.listen(engine.pool, "checkin", _forget_write)  # no effect on PostgreSQL's BEGIN, but one meaning on both
    event.listen(engine.pool, "checkout", _ping_if_idle(engine))
    return engine
