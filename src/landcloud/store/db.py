"""Engine creation and the one MetaData every package's tables hang on.

SQLite is tuned here (WAL, foreign keys, a busy timeout) because the embedded store must
behave like a server for concurrent readers while one submission writes.
"""

from __future__ import annotations

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
    elif backend_of(bind) == "postgis":
        with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn
    else:
        with bind.connect() as conn:
            yield conn


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


def create_engine(url: str) -> Engine:
    """An engine for either backend, with the settings the store relies on."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
