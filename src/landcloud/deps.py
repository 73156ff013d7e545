"""FastAPI dependencies shared by every router: settings, engine, the calling principal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool

from landcloud.access.principal import Principal
from landcloud.config import Settings
from landcloud.store.db import read_connection


# async: an attribute read. A sync dependency runs in the thread pool, a hop each per request
# (see benchmarks/profiles/items-*.txt); get_principal reads the store, so it stays sync.
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_app_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_principal(request: Request) -> Principal:
    """Who is calling: a bearer token, a personal API token, a session cookie, or the public."""
    from landcloud.access.auth import authenticate

    return authenticate(request.app.state.engine, request.app.state.settings, request)


class Reads:
    """A read route's caller and its one store connection, for the whole request.

    A signed-in read is three statements (the credential and account; the dataset and the caller's
    facts; the page). Through `get_principal` the first ran in a thread-pool hop of its own and each
    took a pool checkout of its own; here the endpoint authenticates in its own worker thread, on
    the connection the gate and the page then read on (benchmarks/profiles/request-path.txt).
    Nothing outlives the request: the next one reads the token, account and grants again, so a
    revocation counts at once. The connection is a read connection (`store.db.read_connection`):
    writes (the audit log, a token's last use) still go through the engine. A read's audit entry is
    written once the connection is back (`after_close`): written while it was held, each audited request
    needed a second connection, and more concurrent audited reads than the pool holds would each wait
    for one that none would give back.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.engine: Engine = request.app.state.engine
        self._conn: Connection | None = None
        self._principal: Principal | None = None
        self._after: list[Callable[[], object]] = []

    @property
    def conn(self) -> Connection:
        """The request's read connection, checked out on first use (in the endpoint's thread)."""
        if self._conn is None:
            self._conn = read_connection(self.engine)
        return self._conn

    @property
    def principal(self) -> Principal:
        """Who is calling (as `get_principal` answers), authenticated on first use on `conn`."""
        if self._principal is None:
            from landcloud.access.auth import authenticate

            self._principal = authenticate(self.engine, self.request.app.state.settings, self.request, conn=self.conn)
        return self._principal

    def after_close(self, write: Callable[[], object]) -> None:
        """Run `write` (an audit entry of a read made on `conn`) once the connection is back in the pool."""
        self._after.append(write)

    @property
    def pending(self) -> bool:
        return bool(self._after)

    def close(self) -> None:
        """Hand the connection back, then write what waited for it (every entry, even if one fails: the
        first failure is raised after the others)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
        failure: BaseException | None = None
        while self._after:
            try:
                self._after.pop(0)()
            except BaseException as exc:  # noqa: BLE001 - raised below, after the other entries
                failure = failure or exc
        if failure is not None:
            raise failure


async def get_reads(request: Request) -> AsyncIterator[Reads]:
    """A `Reads` for the request, its connection returned to the pool when the endpoint is done.

    async: making it and closing it do no I/O of their own (a read connection ends without a round
    trip), so neither takes a thread-pool hop; the endpoint's first use checks the connection out.
    """
    reads = Reads(request)
    try:
        yield reads
    finally:
        await close_reads(reads)


async def close_reads(reads: Reads) -> None:
    """End a request's `Reads` from the event loop: in a thread-pool hop only when an audit entry waits (I/O)."""
    if reads.pending:  # an endpoint that ended early (an error) with an audit entry to write: I/O, off the loop
        await run_in_threadpool(reads.close)
    else:
        reads.close()


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_app_engine)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ReadsDep = Annotated[Reads, Depends(get_reads)]
