"""The lean path for tiles of published public editions: anonymous GETs answered from memory.

A tile of a published edition, as the public reads it, involves no personal access decision:
anyone may read it, and it already leaves with `Cache-Control: public, max-age=3600` and an
ETag, so any CDN may keep it for an hour. This plain ASGI layer (inside the rate limiter and the
security headers, so both still apply) keeps such responses in a bounded LRU and answers the
next anonymous request for the same tile itself, without routing, authentication or the gate.

What it never does:

* answer a request carrying an `Authorization` header or a session cookie, a query string, or a
  method other than GET: those always go to the normal route (a signed-in caller's access is
  decided on every request, and may differ from the public's, e.g. an owner unit reviewing a
  version pending approval);
* decide anything itself: entries are the normal route's own responses (status, headers, bytes),
  stored only when the route says it served the public edition as anyone reads it (it names the
  dataset, version and `updated_at` in the request's state, `STATE_KEY`);
* trust a stale fact for long: whether the dataset is still a published edition, at which version
  (and `updated_at`), is re-read from the store at most every `public_tile_check_ms` ms (default
  1000), far inside the hour shared caches are already granted. An un-published edition, a newly
  approved version or any change of the dataset's row therefore takes effect within that window;
  on any miss or doubt the request falls through to the normal route.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy.engine import Engine

from landcloud.access.hardening import SESSION_MENTIONED, Answer, ASGIApp, Message, Receive, Scope, Send
from landcloud.catalog import datasets as catalog

log = logging.getLogger(__name__)

STATE_KEY = "landcloud.public_tile"  # the route's word: (dataset id, version, updated_at) of a tile served as the public reads it
_TILE_PATH = re.compile(r"^/ogc/collections/([^/]+)/tiles/([^/]+)/([0-9]{1,10})/([0-9]{1,10})/([0-9]{1,10})$")
_KEPT_STATUSES = (200, 204)
_ENTRY_OVERHEAD = 256  # bytes counted per entry besides the body (key, headers)

Fact = tuple[int, str] | None  # (published version, updated_at) of a published edition; None: not one (fall through)
TileKey = tuple[str, int, str, str, str, str, str]  # dataset, version, updated_at, tms, z, row, col


@dataclass(frozen=True)
class Stored:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: bytes | None

    def answer(self, if_none_match: bytes | None) -> Answer:
        """The kept answer to a request with `if_none_match`: a 304 with its validators and caching rules when the
        caller's copy is current, else the answer itself."""
        if etag_matches(if_none_match, self.etag):
            return 304, [(k, v) for k, v in self.headers if k in _NOT_MODIFIED_HEADERS], b""
        return self.status, self.headers, self.body


class PublicTileCache:
    """An LRU of tile responses bounded by bytes, and the per-dataset facts with their read time.

    Used from the event loop only (one thread), so it needs no lock.
    """

    def __init__(self, max_bytes: int, check_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.check_s = check_ms / 1000
        self.clock = clock
        self._entries: OrderedDict[TileKey, Stored] = OrderedDict()
        self._bytes = 0
        self._facts: dict[str, tuple[float, Fact]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def fresh_fact(self, dataset_id: str) -> tuple[bool, Fact]:
        """(known and fresh, fact)."""
        found = self._facts.get(dataset_id)
        if found is None or self.clock() - found[0] >= self.check_s:
            return False, None
        return True, found[1]

    def set_fact(self, dataset_id: str, read_at: float, fact: Fact) -> None:
        if len(self._facts) > 10_000:  # ids come from URLs: forget them rather than grow without bound
            self._facts.clear()
        self._facts[dataset_id] = (read_at, fact)

    def get(self, key: TileKey, count_miss: bool = True) -> Stored | None:
        """The entry (used last: dropped last), counted as a hit; a miss is counted unless the caller will ask again
        through the layer (`tile_lane`)."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += count_miss
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: TileKey, entry: Stored) -> None:
        size = len(entry.body) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body) + _ENTRY_OVERHEAD
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= len(dropped.body) + _ENTRY_OVERHEAD


def read_fact(engine: Engine, dataset_id: str) -> Fact:
    """Whether the dataset is a published edition now, at which version (and row `updated_at`)."""
    ds = catalog.get_dataset(engine, dataset_id)
    if ds is None or ds.edition_of is None or not ds.published_version:
        return None
    return ds.published_version, ds.updated_at.isoformat() if ds.updated_at else ""


def anonymous_get(scope: Scope) -> bool:
    """A plain GET without credentials or query: the only requests the lean path may answer."""
    if scope.get("method") != "GET" or scope.get("query_string"):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return False
        if name == b"cookie" and SESSION_MENTIONED in value:  # any mention, however spelled: treat it as signed in
            return False
    return True


def etag_matches(header: bytes | None, etag: bytes | None) -> bool:
    """If-None-Match against a tile's ETag (a list, weak tags, `*`): the rule of every tile answer."""
    if not header or etag is None:
        return False
    if header.strip() == b"*":
        return True
    for tag in header.split(b","):
        tag = tag.strip()
        if (tag[2:] if tag.startswith(b"W/") else tag) == etag:
            return True
    return False


_NOT_MODIFIED_HEADERS = (b"etag", b"cache-control", b"vary")


class PublicTiles:
    """The ASGI layer: see the module docstring."""

    def __init__(self, app: ASGIApp, engine: Engine, cache: PublicTileCache) -> None:
        self.app = app
        self.engine = engine
        self.cache = cache
        self._reading: dict[str, asyncio.Future[Fact]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        match = _TILE_PATH.match(scope.get("path", ""))
        if match is None or not anonymous_get(scope):
            await self.app(scope, receive, send)
            return
        dataset_id, tms, z, row, col = match.groups()
        try:
            fact = await self._fact(dataset_id)
        except Exception:  # noqa: BLE001 - the store did not answer: the normal route decides (and reports it)
            log.warning("public tiles: reading whether %s is a published edition failed", dataset_id, exc_info=True)
            fact = None
        if fact is None:
            await self.app(scope, receive, send)  # not (or no longer) a published edition: the normal route decides
            return
        entry = self.cache.get((dataset_id, fact[0], fact[1], tms, z, row, col))
        if entry is None:
            await self._fill(scope, receive, send, (tms, z, row, col))
            return
        await self._replay(scope, send, entry)

    async def _fact(self, dataset_id: str) -> Fact:
        fresh, fact = self.cache.fresh_fact(dataset_id)
        if fresh:
            return fact
        pending = self._reading.get(dataset_id)
        if pending is not None:  # one read per dataset at a time; the others wait for it
            return await asyncio.shield(pending)
        future: asyncio.Future[Fact] = asyncio.get_running_loop().create_future()
        self._reading[dataset_id] = future
        try:
            read_at = self.cache.clock()
            fact = await anyio.to_thread.run_sync(read_fact, self.engine, dataset_id)
            self.cache.set_fact(dataset_id, read_at, fact)
            future.set_result(fact)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiting requests fall through on their own
            raise
        finally:
            del self._reading[dataset_id]
        return fact

    async def _replay(self, scope: Scope, send: Send, entry: Stored) -> None:
        inm = next((value for name, value in scope.get("headers", ()) if name == b"if-none-match"), None)
        status, headers, body = entry.answer(inm)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _fill(self, scope: Scope, receive: Receive, send: Send, tile: tuple[str, str, str, str]) -> None:
        """The normal route answers; its response is kept when it says it served the public edition."""
        state = scope.setdefault("state", {})
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and start is not None:
                    self._keep(state.get(STATE_KEY), start, b"".join(chunks), tile)
            await send(message)

        await self.app(scope, receive, capture)

    def _keep(self, served: Any, start: Message, body: bytes, tile: tuple[str, str, str, str]) -> None:
        if served is None or start["status"] not in _KEPT_STATUSES:
            return
        headers = [(bytes(k).lower(), bytes(v)) for k, v in start.get("headers", [])]
        etag = next((v for k, v in headers if k == b"etag"), None)
        if not any(k == b"cache-control" and v.startswith(b"public") for k, v in headers):
            return
        dataset_id, version, updated = served
        self.cache.put((dataset_id, version, updated, *tile), Stored(start["status"], headers, body, etag))
