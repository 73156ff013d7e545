"""Answers about a committed version's rows, each learnt once, on a worker thread, off the request path.

A committed version's rows never change (a later version closes rows, it never edits one), so whatever a scan of them
finds is settled for good: what they hold (`tile_types`), where they are (`tile_occupancy`). Each such answer only
lets a tile be made more cheaply, never changes what it holds; so a request never waits for one. The first tile that
asks starts the scan on the one learning thread; tiles go the slow way until it has answered (or for good, if it
failed). The scans take a connection of their own, outside the store's pool: never one a request is waiting for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from landcloud.catalog import datasets as catalog
from landcloud.store.db import store_name

_log = logging.getLogger(__name__)
Key = tuple[str, str, int, datetime | None]  # store (`store_name`), dataset, version, the dataset row's updated_at
T = TypeVar("T")
A = TypeVar("A", bound=Hashable)

_lock = threading.Lock()  # guards the executor, the engines and every `Learnt`'s tables
_pool: ThreadPoolExecutor | None = None
_engines: dict[str, Engine] = {}  # by URL: the scans' own engines (no pool)
_UNKNOWN = object()


def version_key(engine: Engine, ds: catalog.Dataset, version: int) -> Key:
    """What answers about a version are kept under (and `tiles.version_stamp`): a store rebuilt under the same dataset
    ids and version numbers sets `updated_at` anew, so an answer never outlives the version it is about."""
    return (store_name(engine), ds.id, version, ds.updated_at)


def own_engine(engine: Engine) -> Engine:
    """An engine on the same database that keeps no connections (NullPool): a scan opens one and closes it."""
    url = engine.url.render_as_string(hide_password=False)
    with _lock:
        own = _engines.get(url)
        if own is None:
            own = _engines[url] = sa.create_engine(engine.url, poolclass=NullPool)
        return own


def _executor() -> ThreadPoolExecutor:
    """The scans' one worker thread (call with `_lock` held)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landcloud-version-learning")
    return _pool


class Learnt(Generic[T, A]):
    """One kind of answer, per version: `learn(engine, key, arg)` run once per key on the learning thread (`arg`: what
    else it needs, decided by the caller from the dataset row, which the key's `updated_at` pins). At most `max_keys`
    answers are kept (all dropped when full: versions a process serves are few; the bound is against a leak)."""

    def __init__(self, what: str, learn: Callable[[Engine, Key, A], T], nothing: T, max_keys: int) -> None:
        self.what = what
        self._learn_fn = learn
        self.nothing = nothing
        self.max_keys = max_keys
        self._known: dict[Key, T] = {}
        self._pending: dict[Key, Future[T]] = {}

    def get(self, engine: Engine, key: Key, arg: A, *, wait: bool = False) -> T:
        """The answer for `key`: `nothing` until it has been learnt (started here the first time; `wait`: learn it, or
        wait for it, now)."""
        found = self._known.get(key, _UNKNOWN)  # (asked per tile: no lock for what is known)
        if found is not _UNKNOWN:
            return found  # type: ignore[return-value]
        with _lock:
            found = self._known.get(key, _UNKNOWN)
            if found is not _UNKNOWN:
                return found  # type: ignore[return-value]
            job = self._pending.get(key)
            if job is None:
                job = self._pending[key] = _executor().submit(self._learn, engine, key, arg)
        return job.result() if wait else self.nothing

    def _learn(self, engine: Engine, key: Key, arg: A) -> T:
        try:
            found = self._learn_fn(engine, key, arg)
        except Exception:  # a dropped database, a lost connection: tiles go the slow way
            _log.warning("could not learn %s of version %s of %s", self.what, key[2], key[1], exc_info=True)
            found = self.nothing
        with _lock:
            if len(self._known) >= self.max_keys:
                self._known.clear()
            self._known[key] = found
            self._pending.pop(key, None)
        return found

    def forget(self) -> None:
        """Drop every answer (tests)."""
        with _lock:
            self._known.clear()
