"""Edition rebuilds after a new master version, off the request path.

A new version of a master that has a release profile asks for a new edition, pending approval.
Building one reads, generalises and checks the whole version, so it never runs inside the
request that made the version: the HTTP entry points (submissions, OGC API edits, rollback)
`schedule` it after their commit (FastAPI BackgroundTasks run after the response is sent), and
the command line `build_now`s it after its command (a batch: synchronous is right there).

In one process one build per master runs at a time; requests that come in meanwhile coalesce
into one more build, of the newest version, which supersedes the versions in between. The state
of a master's latest rebuild (queued, building, built, failed with its error) is a row in
`edition_builds` that every process reads; a failed build is also written to the audit log,
never undoes the master's version and never answers a 500.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import sqlalchemy as sa
from fastapi import BackgroundTasks
from sqlalchemy.engine import Engine

from landcloud.access import audit, gate
from landcloud.access.principal import Principal, system_principal
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.messages import LandcloudError
from landcloud.publish import editions
from landcloud.publish.tables import edition_builds

log = logging.getLogger(__name__)

_lock = threading.Lock()
_running: set[str] = set()  # masters this process is building now
_again: set[str] = set()  # … and that were asked for again meanwhile


def _set_state(engine: Engine, dataset_id: str, **values: Any) -> None:
    """Write the master's build state (one row per master)."""
    with engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            done = conn.execute(edition_builds.update().where(edition_builds.c.dataset_id == dataset_id).values(**values)).rowcount
            if not done:
                conn.execute(edition_builds.insert().values(dataset_id=dataset_id, **{"requested_at": catalog.now(), **values}))


def state(engine: Engine, dataset_id: str) -> dict[str, Any] | None:
    """The master's latest edition rebuild: status (queued | building | built | failed), error, times; None if never asked."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(edition_builds).where(edition_builds.c.dataset_id == dataset_id)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    for k in ("requested_at", "started_at", "finished_at"):
        out[k] = out[k].isoformat() if out[k] else None
    return out


def state_for(engine: Engine, principal: Principal, dataset_id: str) -> dict[str, Any] | None:
    """The build state as the caller may see it: the owner unit's staff only (None for everyone else)."""
    ds, _ = gate.dataset_for_catalogue(engine, principal, dataset_id)
    return state(engine, ds.id) if editions.owner_staff(principal, ds) else None


def request(engine: Engine, dataset_id: str) -> dict[str, Any] | None:
    """Record that the master's newest version wants an edition ("queued"); None when the master has no profile."""
    if editions.stored_profile(engine, dataset_id) is None:
        return None
    ds = catalog.require_dataset(engine, dataset_id)
    _set_state(engine, dataset_id, status="queued", source_version=ds.current_version, edition_id=None, error=None,
               requested_at=catalog.now(), started_at=None, finished_at=None)
    return state(engine, dataset_id)


def run(engine: Engine, settings: Settings, dataset_id: str) -> dict[str, Any] | None:
    """Build the master's edition now, unless this process is building it already (then once more, after that build).

    Returns the new edition, or None when the build failed (recorded) or was handed to the running one.
    """
    with _lock:
        if dataset_id in _running:
            _again.add(dataset_id)
            return None
        _running.add(dataset_id)
    try:
        while True:
            edition = _build_once(engine, settings, dataset_id)
            with _lock:
                if dataset_id not in _again:
                    _running.discard(dataset_id)
                    return edition
                _again.discard(dataset_id)
    except BaseException:
        with _lock:
            _running.discard(dataset_id)
            _again.discard(dataset_id)
        raise


def _build_once(engine: Engine, settings: Settings, dataset_id: str) -> dict[str, Any] | None:
    me = system_principal("editions")
    _set_state(engine, dataset_id, status="building", started_at=catalog.now(), finished_at=None, error=None)
    try:
        edition = editions.build(engine, settings, me, dataset_id)
    except LandcloudError as exc:
        error = {k: v for k, v in exc.to_dict().items() if k in ("error", "message_zh", "message_en")}
    except Exception as exc:  # noqa: BLE001 - the master's version is committed: a failed build is recorded, never a 500
        log.exception("building the edition of %s failed", dataset_id)
        error = {"error": type(exc).__name__, "message_zh": "生成公开版时出现内部错误", "message_en": str(exc)[:500]}
    else:
        _set_state(engine, dataset_id, status="built", edition_id=edition["id"], source_version=edition["source_version"],
                   finished_at=catalog.now())
        return edition
    _set_state(engine, dataset_id, status="failed", error=error, finished_at=catalog.now())
    audit.record(engine, me, "edition.build_failed", dataset_id=dataset_id, detail={"error": error["error"], "message": error["message_en"]})
    return None


def schedule(background: BackgroundTasks, engine: Engine, settings: Settings, dataset_id: str) -> dict[str, Any] | None:
    """After a committed new master version, over HTTP: queue the rebuild to run after the response; returns the state."""
    queued = request(engine, dataset_id)
    if queued is not None:
        background.add_task(run, engine, settings, dataset_id)
    return queued


def build_now(engine: Engine, settings: Settings, dataset_id: str) -> dict[str, Any] | None:
    """After a new master version in a batch command: build at once; the new edition, or None (no profile, or failed)."""
    if request(engine, dataset_id) is None:
        return None
    return run(engine, settings, dataset_id)
