"""Access decisions remembered per credential and dataset, taken again only while nothing they rest on has changed.

A map view is dozens of tile requests with one credential on one dataset. Authenticating each (the token, its account
and unit: one statement) and asking the gate each time (the dataset and the caller's unit, division index and grants:
one statement, then the policy in Python) was ~0.6 ms of a signed-in tile's ~1.3 ms of server CPU, and most of a small
tile's time (benchmarks/profiles/tiles-decisions.txt). Here the first request of a credential on a dataset decides as
always; the next ones take that decision again when all of these hold, and decide anew otherwise:

* the store's access generation (`access_changes`, migration 0012) is the one read before that decision: the database
  bumps it on every committed write to a table authentication or the gate reads (accounts, sessions, tokens, grants,
  datasets and versions, units), so a revocation, a disabled account, a changed role, grant, unit or dataset policy
  counts on the very next request, in every process, as before;
* the clock has not reached the credential's expiry (`Principal.until`) nor the next start or end of one of the
  unit's grants (`gate.ReadDecision.changes_at`): the two things that change by time alone;
* it is younger than `MAX_AGE` (a minute): a token's `last_used_at` is written, to the minute, by the full path.

The key is the credential exactly as sent (its sha256: an `Authorization` header, else the session cookie, else none
for the public) and the dataset. Only decisions that let the caller read are kept: a refusal is decided every time.
The caller's address is the request's own, never the remembered one's (the audit log names it).

"What is here" asks the same of every dataset at once: the caller's readable datasets (`gate.readable_datasets`) are
remembered the same way, in a cache of their own (`decide_layers`), so that a point's request is the generation's read
and the features' instead of the token's, the caller's facts', the dataset list's and the features'
(benchmarks/profiles/here-postgis.txt).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Generic, Protocol, TypeVar

import psycopg
from sqlalchemy.engine import Connection, Engine
from starlette.requests import Request, cookie_parser

from landcloud import clock
from landcloud.access import gate
from landcloud.access.auth import SESSION_COOKIE, client_ip
from landcloud.access.policy import Access
from landcloud.access.principal import Principal
from landcloud.access.units import IndexKey
from landcloud.catalog import datasets as catalog
from landcloud.store import libpq
from landcloud.store.repeated_read import RepeatedRead
from landcloud.store.sqlite_stamp import CommitStamp

MAX_AGE_S = 60.0
MAX_ENTRIES = 10_000
MAX_BYTES = 64 << 20  # what the entries' area boundaries may hold in all (a county's is ~0.1-1 MB of WKB)
_ENTRY_OVERHEAD = 2048  # bytes counted per entry besides its boundaries (the dataset row, the principal, the key)
Generation = tuple[int, str]  # (generation, instance) of `access_changes`
Key = tuple[bytes, str]  # (sha256 of the credential, dataset id or LAYERS)
LAYERS = "*layers"  # the key's second part in the cache of readable datasets (`decide_layers`)

_GENERATION_SQL = "SELECT generation, instance FROM access_changes WHERE id = 1"


def access_generation(conn: Connection) -> Generation:
    """The store's access generation, read on `conn` past SQLAlchemy (it runs on every tile; PostgreSQL: prepared)."""
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with psycopg.RawCursor(driver) as cur:  # type: ignore[arg-type]
            cur.execute(_GENERATION_SQL, prepare=True)
            row = cur.fetchone()
    else:
        row = driver.execute(_GENERATION_SQL).fetchone()  # type: ignore[union-attr]
    return _generation_of(row)


@lru_cache(maxsize=256)
def with_generation(query: str) -> str:
    """`query` (a statement of one row, $1, $2 … placeholders) with the access generation after its columns, read by
    the same statement: a tile made on the event loop confirms its decision with this, not with a read of its own.

    Why: the generation's own read (`GenerationReader`, on a connection of its own beside the tile's statement) was a
    second round trip for every cold tile — a second backend woken, a second send and result on the loop — ~0.1 ms of
    a small tile's ~1 ms on a 2-core machine (benchmarks/profiles/tiles-small.txt §7). Read here it is as exact: the
    statement is sent after the request came, and the tile's rows and the generation come from one snapshot. A store
    without the row gives NULLs (`binary_generation` raises, as `access_generation` does)."""
    return f"SELECT q.*, g.generation, g.instance FROM ({query}) q LEFT JOIN access_changes g ON g.id = 1"


def binary_generation(values: Sequence[bytes | None]) -> Generation:
    """The generation from `with_generation`'s last two columns as libpq gives them in binary (int8, text)."""
    generation, instance = values
    if generation is None or instance is None:
        return _generation_of(None)
    return int.from_bytes(generation, "big", signed=True), instance.decode()


def _text_generation(row: libpq.Row | None) -> Generation:
    return _generation_of(None if row is None else [libpq.text(v) for v in row])


def _generation_of(row: Any) -> Generation:
    if row is None:
        raise RuntimeError("access_changes has no row: the store's migrations did not run (landcloud db upgrade)")
    return int(row[0]), str(row[1])


def credential_key(request: Request) -> bytes:
    """What identifies the caller's credential, as `auth.authenticate` chooses it: the Authorization header when
    present (even a malformed one: it is refused there), else the session cookie, else nothing (the public)."""
    authorization, cookies, _ = request_credentials(request.scope["headers"])
    return credential_key_of(authorization, cookies)


def request_credentials(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, list[bytes], bytes | None]:
    """(the first Authorization header, the Cookie headers, the first If-None-Match) of a request's raw headers, in one
    pass: what `credential_key_of` takes, and what a tile answered from memory also needs."""
    authorization = if_none_match = None
    cookies: list[bytes] = []
    for name, value in headers:
        if name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"cookie":
            cookies.append(value)
        elif name == b"if-none-match" and if_none_match is None:
            if_none_match = value
    return authorization, cookies, if_none_match


def credential_key_of(authorization: bytes | None, cookies: Sequence[bytes]) -> bytes:
    """`credential_key` from the request's headers as sent (the layer before routing has no `Request`): the first
    Authorization header (`Headers.get`), the session cookie of all Cookie headers, the last one counting
    (`Request.cookies`)."""
    if authorization is not None and authorization.strip():
        return (_authorization_key if len(authorization) <= _KEPT_MAX else _authorization_digest)(authorization)
    if not cookies:
        return b"public"
    kept = tuple(cookies)
    return (_cookies_key if sum(map(len, kept)) <= _KEPT_MAX else _cookies_digest)(kept)


def _authorization_digest(authorization: bytes) -> bytes:
    return hashlib.sha256(b"h:" + authorization).digest()


def _cookies_digest(cookies: tuple[bytes, ...]) -> bytes:
    session = None
    for header in cookies:
        session = cookie_parser(header.decode("latin-1")).get(SESSION_COOKIE, session)
    if session:
        return hashlib.sha256(b"c:" + session.encode("utf-8", "surrogateescape")).digest()
    return b"public"


# A map's tiles come with the same credential dozens of times: its key (a digest; for cookies, a parse first) is kept
# for the 4,096 credentials seen last, a dict look-up instead of ~1 us (~6 us with a cookie) per tile. The keys are
# digests of what the caller sent, nothing decided; headers longer than `_KEPT_MAX` are digested each time, so that
# what the caches hold stays under ~10 MB whatever callers send.
_KEPT_MAX = 1024
_authorization_key = lru_cache(maxsize=4096)(_authorization_digest)
_cookies_key = lru_cache(maxsize=4096)(_cookies_digest)


def _areas_bytes(access: Access | None) -> int:
    """The WKB of the areas a decision matches rows by (a unit's or a grant region's boundary)."""
    clauses = access.clauses if access is not None else ()
    return sum(len(a) for c in clauses if c.rows is not None for a in c.rows.areas)


@dataclasses.dataclass(frozen=True)
class Remembered:
    principal: Principal
    decision: gate.ReadDecision
    generation: Generation
    until: datetime | None  # the credential's expiry or a grant's start or end, whichever comes first
    made: float  # monotonic seconds

    @property
    def size(self) -> int:
        """Roughly what keeping it costs: a decision that matches rows by area holds the areas' WKB (a unit's or a
        grant region's boundary), each decision a copy of its own."""
        return _ENTRY_OVERHEAD + _areas_bytes(self.decision.access)


@dataclasses.dataclass(frozen=True)
class RememberedLayers:
    """A caller's readable datasets (as it may know them, with what it may read of each), and its division index's key
    (`units.division_at`), as `decide_layers` took them."""

    principal: Principal
    layers: tuple[tuple[catalog.Dataset, Access], ...]
    index_key: IndexKey
    generation: Generation
    until: datetime | None
    made: float

    @property
    def size(self) -> int:
        """As `Remembered.size`, for each dataset kept."""
        return _ENTRY_OVERHEAD * (1 + len(self.layers)) + sum(_areas_bytes(access) for _, access in self.layers)


class _Entry(Protocol):
    """What the cache asks of what it keeps."""

    @property
    def generation(self) -> Generation: ...
    @property
    def until(self) -> datetime | None: ...
    @property
    def made(self) -> float: ...
    @property
    def size(self) -> int: ...


Entry = TypeVar("Entry", bound=_Entry)


class DecisionCache(Generic[Entry]):
    """A map of remembered decisions bounded by count and by bytes (least recently used out first); shared by the
    worker threads. One for the tiles' decisions per dataset (`Remembered`), one for the readable datasets of
    'what is here' (`RememberedLayers`)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_age_s: float = MAX_AGE_S,
                 monotonic: Callable[[], float] = time.monotonic, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.monotonic = monotonic
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, generation: Generation) -> Entry | None:
        """The decision remembered for `key` if it still stands at `generation` and now; else None (and it is dropped)."""
        found = self.peek(key)
        if found is None:
            with self._lock:
                self.misses += 1
            return None
        return found if self.confirm(key, found, generation) else None

    def peek(self, key: Key) -> Entry | None:
        """The decision remembered for `key`, not yet checked (`confirm` it once the generation is read)."""
        return self._entries.get(key)

    def confirm(self, key: Key, entry: Entry, generation: Generation) -> bool:
        """Whether `entry` (from `peek`) still stands at `generation` and now: a hit, or it is dropped."""
        with self._lock:
            kept = self._entries.get(key) is entry
            if self._stands(entry, generation):
                if kept:
                    self._entries.move_to_end(key)  # used last: dropped last
                self.hits += 1
                return True
            if kept:
                self._drop(key)
            self.misses += 1
            return False

    def _stands(self, entry: Entry, generation: Generation) -> bool:
        if entry.generation != generation or self.monotonic() - entry.made >= self.max_age_s:
            return False
        return entry.until is None or clock.now() < entry.until

    @property
    def bytes(self) -> int:
        return self._bytes

    def _drop(self, key: Key) -> None:
        self._bytes -= self._entries.pop(key).size

    def put(self, key: Key, entry: Entry) -> None:
        """Keep `entry` (not one bigger than the whole bound: it is decided anew each time)."""
        size = entry.size
        with self._lock:
            if key in self._entries:
                self._drop(key)
            if size > self.max_bytes:
                return
            self._entries[key] = entry
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))


class GenerationReader:
    """The access generation for code on the event loop (a tile answered there from memory or disk, or one outside the
    data, `tiles_router`; a tile made there reads it in its own statement, `with_generation`), without a
    worker thread or a pooled connection, always from a read sent after the caller asked.

    PostgreSQL: through a connection of its own, the statement prepared once and its answers handed to callbacks
    (`store.repeated_read`: `ask` for the HTTP protocol's lane, `current` for code that awaits), one read at a time,
    shared by the askers that come while one is out. SQLite: through a query-only connection of its own, read at once
    on the loop: a primary-key read of a local file (~10 us) costs less than an asker's share of a shared read, whose
    future, task and wake-up were ~10% of a cached signed-in tile's server CPU (benchmarks/profiles/tiles-edge.txt).
    It waits at most `SQLITE_WAIT_S` for a lock (WAL readers meet one only while another connection recovers the log):
    the event loop is not held; the tile then takes the full path, which waits in a worker thread.
    """

    SQLITE_WAIT_S = 0.05

    def __init__(self, engine: Engine) -> None:
        self._pg = RepeatedRead.for_engine(engine, _GENERATION_SQL, _text_generation)  # PostgreSQL
        database = engine.url.database
        self._path = database if self._pg is None and database not in (None, "", ":memory:") else None
        self._sqlite: sqlite3.Connection | None = None
        self._stamp: CommitStamp | None = None
        self._seen: tuple[bytes, Generation] | None = None  # a commit stamp and the generation read after it
        self._sqlite_reads = 0

    @property
    def available(self) -> bool:
        return self._pg is not None or self._path is not None

    @property
    def at_once(self) -> bool:
        """Whether `now` reads it (SQLite) rather than a read being a round trip to wait for (PostgreSQL)."""
        return self._pg is None and self._path is not None

    @property
    def reads(self) -> int:
        """Reads sent (tests and the bench's notes count them)."""
        return self._pg.reads if self._pg is not None else self._sqlite_reads

    async def current(self) -> Generation:
        """The generation as of a read sent after this call."""
        if self._pg is not None:
            return await self._pg.current()
        return self._read_sqlite()

    def now(self) -> Generation | None:
        """The generation read at once (SQLite), or None where a read is a round trip to wait for (PostgreSQL:
        `current`, or `ask`). For code that answers without a coroutine (`web.http_protocol`)."""
        return None if self._pg is not None else self._read_sqlite()

    @property
    def asks(self) -> bool:
        """Whether `ask` can be called now (PostgreSQL, its connection open on the running loop)."""
        return self._pg is not None and self._pg.ready

    def ask(self, answered: Callable[[Generation | None, BaseException | None], None]) -> None:
        """PostgreSQL, when `asks`: `answered(generation, None)` called on the loop once a read sent after this call
        is back (`answered(None, why)` if it failed); never from within this call."""
        assert self._pg is not None
        self._pg.ask(answered)

    def _read_sqlite(self) -> Generation:
        """The generation, or the one read last if the database's commit stamp is what it was before that read
        (`store.sqlite_stamp`: nothing committed since; a tenth of the statement's cost)."""
        self._sqlite_reads += 1
        if self._path is None:
            raise RuntimeError("an in-memory SQLite store has no generation another connection could read")
        if self._sqlite is None:
            self._sqlite = sqlite3.connect(self._path, timeout=self.SQLITE_WAIT_S, check_same_thread=False, isolation_level=None)
            self._sqlite.execute("PRAGMA query_only = 1")
        if self._stamp is None:
            generation = _generation_of(self._sqlite.execute(_GENERATION_SQL).fetchone())  # (maps the WAL index)
            self._stamp = CommitStamp(self._path)
            return generation
        stamp = self._stamp()
        seen = self._seen
        if stamp is not None and seen is not None and stamp == seen[0]:
            return seen[1]
        generation = _generation_of(self._sqlite.execute(_GENERATION_SQL).fetchone())
        self._seen = None if stamp is None else (stamp, generation)  # the stamp before the read: a later commit changes it
        return generation

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._stamp is not None:
            self._stamp.close()
            self._stamp = None


def _earliest(*times: datetime | None) -> datetime | None:
    return min((t for t in times if t is not None), default=None)


def decide_read(
    cache: DecisionCache[Remembered], engine: Engine, request: Request, dataset_id: str, conn: Connection,
    authenticate: Callable[[], Principal], peeked: tuple[Key, Remembered] | None = None,
) -> tuple[Principal, catalog.Dataset, Access]:
    """(the caller, the dataset as it may know it, what it may read): `gate.read_decision`'s answer for the caller
    `authenticate` names, taken from `cache` while it stands (see the module docstring). `conn`: the request's read
    connection, where the generation is read before any decision is made on it (so a remembered decision is never
    newer than the generation it is filed under: a write committed in between only makes it be decided again).
    `peeked`: this request's key and the entry `cache.peek` found for it (the tile layer before routing looked)."""
    generation = access_generation(conn)
    if peeked is not None:
        key, entry = peeked
        found = entry if cache.confirm(key, entry, generation) else None
    else:
        key = (credential_key(request), dataset_id)
        found = cache.get(key, generation)
    if found is not None:
        principal = dataclasses.replace(found.principal, ip=client_ip(request))
        return principal, found.decision.ds, found.decision.access
    principal = authenticate()
    decision = gate.read_decision(engine, principal, dataset_id, conn)
    until = _earliest(principal.until, decision.changes_at)
    cache.put(key, Remembered(principal, decision, generation, until, cache.monotonic()))
    return principal, decision.ds, decision.access


def decide_layers(
    cache: DecisionCache[RememberedLayers], engine: Engine, request: Request, conn: Connection, authenticate: Callable[[], Principal]
) -> RememberedLayers:
    """The caller `authenticate` names, its readable datasets and its division index's key, taken from `cache` while
    they stand, as `decide_read` takes one dataset's decision (the generation read first, on `conn`). The principal
    returned carries the request's own address."""
    generation = access_generation(conn)
    key = (credential_key(request), LAYERS)
    found = cache.get(key, generation)
    if found is not None:
        return dataclasses.replace(found, principal=dataclasses.replace(found.principal, ip=client_ip(request)))
    principal = authenticate()
    viewer = gate.Viewer(engine, principal, conn)
    layers = tuple(gate.readable_datasets(engine, principal, viewer, conn))
    until = _earliest(principal.until, viewer.changes_at)
    entry = RememberedLayers(principal, layers, viewer.index_key, generation, until, cache.monotonic())
    cache.put(key, entry)
    return entry
