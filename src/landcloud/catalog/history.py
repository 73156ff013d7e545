"""Version history: differences between versions and rollback.

Rollback never deletes anything: it writes a new version whose features equal an old one's,
so the rolled-back-from version stays readable too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.engine import Connection, Engine

from landcloud.catalog import datasets as catalog
from landcloud.store import tilegeoms
from landcloud.store.features import DiffEntry, DiffKind, feature_store_for


def diff_counts(engine: Engine, ds: catalog.Dataset, a: int, b: int) -> dict[DiffKind, int]:
    a, b = catalog.resolve_version(ds, a), catalog.resolve_version(ds, b)
    return feature_store_for(engine).diff_counts(ds.id, a, b)


def iter_diff(
    engine: Engine,
    ds: catalog.Dataset,
    a: int,
    b: int,
    kinds: tuple[DiffKind, ...] = ("added", "removed", "changed"),
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[DiffEntry]:
    a, b = catalog.resolve_version(ds, a), catalog.resolve_version(ds, b)
    return feature_store_for(engine).iter_diff(ds.id, a, b, kinds, limit=limit, offset=offset)


def changed_fields(entry: DiffEntry) -> list[str]:
    """Names of attributes that differ (and "geometry" when the shape moved) in a changed entry."""
    if entry.before is None or entry.after is None:
        return []
    before, after = entry.before.props, entry.after.props
    names = [k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
    if entry.before.wkb != entry.after.wkb:
        names.append("geometry")
    return names


def rollback(
    engine: Engine,
    dataset_id: str,
    to_version: int,
    note: str = "",
    in_transaction: Callable[[Connection, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """A new version equal to `to_version`; returns the new version's counts.

    `in_transaction` gets the result before the commit (the caller's audit entry).
    """
    store = feature_store_for(engine)
    with engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            ds = catalog.require_dataset(conn, dataset_id)
            catalog.check_writable(ds)
            source = catalog.resolve_version(ds, to_version)
            new_version = ds.current_version + 1
            counts = store.restore_version(conn, ds.id, source, new_version)
            feature_count, extent = store.summary(conn, ds.id, new_version)
            old = catalog.get_version(conn, ds.id, source)
            catalog.record_version(
                conn,
                ds,
                version=new_version,
                mode="rollback",
                unit=ds.owner_unit,
                submission_id=None,
                feature_count=feature_count,
                added=counts.added,
                removed=counts.removed,
                changed=counts.changed,
                extent=extent,
                source={**old.source, "rollback_to": source},
                report={"status": "accepted", "summary": {"rollback_to": source, "feature_count": feature_count}},
                note=note or f"rollback to version {source}",
            )
            result = {"version": new_version, "rollback_to": source, "feature_count": feature_count, **counts.__dict__}
            if in_transaction is not None:
                in_transaction(conn, result)
    store.refresh_statistics(counts.added + counts.changed + counts.removed)  # committed; PostGIS: a large write analysed
    tilegeoms.build_quietly(engine, dataset_id, new_version)  # the re-inserted rows' tile copies
    return result
