"""What a version's rows hold, for the PostGIS tile statement: learnt once per version, off the request path.

Two facts, each letting a tile be written more cheaply with the same content:

* which string fields hold nothing but strings. The statement carries a field declared as a string as a text column
  only where a row's value is a JSON string. The declared types are the newest submission's and rows of older versions
  keep theirs, so every value is tested (`jsonb_typeof`), and a number or boolean goes through the jsonb column instead
  (`tiles._properties_sql`). Those tests were ~1 ms of a 600-feature OSM tile's ~8 ms statement
  (benchmarks/profiles/tiles-fixed.txt); a field known to hold only strings is carried with no test.
* every property key the rows carry. Where the caller sees all of them, the rows' whole `props` go to ST_AsMVT as
  they are, rather than an object built per row of the visible fields and each value's type tested: ~10% of a small
  detail-zoom DLTB tile's statement (benchmarks/profiles/tiles-small.txt §7).

A committed version's rows never change: a later version closes rows (`v_to`), it never edits one. So both are settled
for good per version. A replacing submission notes them while its rows stream in and records them with the version
(`ingest.version_facts`); for any other version (incremental, a rollback of one, recorded before those notes existed)
one scan of the version's rows finds them. Either is read on a worker thread the first time a tile of the version asks,
on a connection of its own outside the store's pool (it never takes one a request is waiting for); until it has
answered (and if it fails), tiles test every value as before: the answer changes how fast a tile is made, never what
it holds. The record answers in a single-row read where the scan read every row (100,000 parcels: 8 ms; a fresh
server's first pass over 80 small tiles, median 2.76 ms while the scan ran, 1.01 ms with the record).
PostgreSQL only: the Python way reads each value's type as it writes it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine

from landcloud.catalog import datasets as catalog
from landcloud.ingest.version_facts import recorded as recorded_strings
from landcloud.ingest.version_facts import recorded_keys
from landcloud.publish.version_learning import Key, Learnt, own_engine, version_key
from landcloud.store.features import feature_store_for


@dataclass(frozen=True)
class Facts:
    """What is known of a version's rows: the string fields (of those asked about) that hold only strings, and every
    property key the rows carry (None: not known)."""

    only_strings: frozenset[str] = frozenset()
    keys: frozenset[str] | None = None


NOTHING_KNOWN = Facts()


def declared_strings(ds: catalog.Dataset) -> frozenset[str]:
    """The fields the dataset declares as strings (a field without a type is one)."""
    return frozenset(f["name"] for f in ds.fields if f.get("type", "string") == "string")


def scan_sql(engine: Engine, dataset_id: str, version: int, fields: Collection[str]) -> tuple[str, dict[str, object]]:
    """One row: for each field (in order, columns s0, s1, ...), whether every row of the version holds a JSON string,
    a JSON null or nothing under it."""
    clauses, params = feature_store_for(engine).conditions(dataset_id, version, None, None, None)
    tests = []
    for i, name in enumerate(fields):
        params[f"tt_f{i}"] = name
        value = f"jsonb_typeof(f.props -> CAST(:tt_f{i} AS text))"
        tests.append(f"coalesce(bool_and({value} IS NULL OR {value} IN ('string', 'null')), true) AS s{i}")
    return f"SELECT {', '.join(tests)} FROM features f WHERE {' AND '.join(clauses)}", params


def keys_sql(engine: Engine, dataset_id: str, version: int) -> tuple[str, dict[str, object]]:
    """Every property key the version's rows carry, one a row."""
    clauses, params = feature_store_for(engine).conditions(dataset_id, version, None, None, None)
    return f"SELECT DISTINCT k FROM features f, jsonb_object_keys(f.props) k WHERE {' AND '.join(clauses)}", params


def scan(engine: Engine, dataset_id: str, version: int, fields: Collection[str]) -> Facts:
    """Both facts of the version's rows, read now (`fields`: the string fields to look at)."""
    names = sorted(set(fields))
    with own_engine(engine).connect() as conn:
        strings: frozenset[str] = frozenset()
        if names:
            sql, params = scan_sql(engine, dataset_id, version, names)
            row = conn.execute(text(sql), params).one()
            strings = frozenset(name for name, only_strings in zip(names, row, strict=True) if only_strings)
        sql, params = keys_sql(engine, dataset_id, version)
        keys = frozenset(conn.execute(text(sql), params).scalars())
    return Facts(strings, keys)


def recorded(engine: Engine, dataset_id: str, version: int, fields: Collection[str]) -> Facts | None:
    """What the version's submission noted (`ingest.version_facts`) of `fields` and of its keys, read now; None when it
    did not note both, or not of all of `fields` (then `scan`)."""
    with own_engine(engine).connect() as conn:
        source = catalog.get_version(conn, dataset_id, version).source
    strings, keys = recorded_strings(source, fields), recorded_keys(source)
    return None if strings is None or keys is None else Facts(strings, keys)


def _learn(engine: Engine, key: Key, fields: frozenset[str]) -> Facts:
    found = recorded(engine, key[1], key[2], fields)
    return scan(engine, key[1], key[2], fields) if found is None else found


_facts: Learnt[Facts, frozenset[str]] = Learnt("what the rows hold", _learn, NOTHING_KNOWN, max_keys=4096)


def facts(engine: Engine, ds: catalog.Dataset, version: int, *, wait: bool = False) -> Facts:
    """What is known of `version`'s rows: nothing until it has been learnt (started here, on the learning thread, the
    first time; `wait`: learn it, or wait for it, now). The string fields looked at are the ones the dataset declares; a
    declaration changes with a new version or a metadata change, which both set the dataset's `updated_at`, so the
    version is learnt anew."""
    return _facts.get(engine, version_key(engine, ds, version), declared_strings(ds), wait=wait)


def forget() -> None:
    """Drop every answer (tests)."""
    _facts.forget()
