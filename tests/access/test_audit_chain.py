"""The audit chain: append-only at the database, hash-chained, tamper-evident, safe under concurrency.

Tampering is done the way an attacker with database superuser rights would: with the
append-only triggers out of the way for one statement (see `tamper`). Runs on both stores.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from landcloud import clock
from landcloud.access import audit
from landcloud.access.principal import Principal, system_principal

MIGRATION = Path(audit.__file__).resolve().parents[1] / "store" / "migrations" / "versions" / "0002_access.py"


def _append_only_sqlite_sql() -> str:
    spec = importlib.util.spec_from_file_location("landcloud_migration_0002", MIGRATION)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.APPEND_ONLY_SQLITE


APPEND_ONLY_SQLITE = _append_only_sqlite_sql()

ALICE = Principal("user", user_id="u-1", username="张三", unit="230000", roles=frozenset({"viewer"}), ip="10.0.0.7")
BOB = Principal("user", user_id="u-2", username="bob", unit="230100", roles=frozenset({"data_admin"}), ip="10.0.0.8")


def tamper(engine: sa.Engine, sql: str | sa.Executable, **params: Any) -> None:
    """Run one statement as a database superuser would: append-only triggers off, then back on."""
    stmt = sa.text(sql) if isinstance(sql, str) else sql
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.info["write"] = True
            try:
                with conn.begin():
                    conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
                    conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
                    conn.execute(stmt, params)
                    for name in ("update", "delete"):
                        conn.exec_driver_sql(APPEND_ONLY_SQLITE.format(op=name, OP=name.upper()))
            finally:
                conn.info.pop("write", None)
        else:
            with conn.begin():
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")  # skips the triggers
                conn.execute(stmt, params)


def wipe_audit(engine: sa.Engine) -> None:
    tamper(engine, "DELETE FROM audit_log")
    tamper(engine, "DELETE FROM audit_head")


def fresh_audit(engine: sa.Engine) -> Iterator[sa.Engine]:
    """The store with an empty audit log, emptied again afterwards (the PostGIS test database lives
    for the whole session and its audit tables are not among those the `engine` fixture truncates)."""
    wipe_audit(engine)
    try:
        yield engine
    finally:
        clock.set_clock(None)
        wipe_audit(engine)


@pytest.fixture
def audit_engine(engine: sa.Engine) -> Iterator[sa.Engine]:
    yield from fresh_audit(engine)


def fill(engine: sa.Engine, n: int) -> list[int]:
    return [
        audit.record(engine, ALICE if i % 2 else BOB, "data.read", dataset_id="dltb", version=i,
                     detail={"filter": {"DLMC": "水田"}, "features": i * 10, "fields": ["DLBM", "DLMC"]})
        for i in range(1, n + 1)
    ]


def entry(engine: sa.Engine, seq: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(audit.audit_log).where(audit.audit_log.c.seq == seq)).one()


# ---------------------------------------------------------------- appending and an intact chain


def test_empty_log_verifies(audit_engine: sa.Engine) -> None:
    result = audit.verify(audit_engine)
    assert result.ok and result.checked == 0 and result.first_broken_seq is None


def test_record_builds_an_intact_chain(audit_engine: sa.Engine) -> None:
    assert fill(audit_engine, 5) == [1, 2, 3, 4, 5]
    result = audit.verify(audit_engine)
    assert result.ok, result.reason_en
    assert (result.checked, result.first_broken_seq) == (5, None)
    assert result.reason_en == "audit chain intact: 5 entries" and "5" in result.reason_zh
    first, last = entry(audit_engine, 1), entry(audit_engine, 5)
    assert first.prev_hash == audit.GENESIS
    assert entry(audit_engine, 2).prev_hash == first.hash
    assert first.actor == "张三" and first.actor_unit == "230000" and first.ip == "10.0.0.7" and entry(audit_engine, 2).actor == "bob"
    assert last.detail == '{"features":50,"fields":["DLBM","DLMC"],"filter":{"DLMC":"水田"}}'
    with audit_engine.connect() as conn:
        head = conn.execute(sa.select(audit.audit_head)).one()
    assert (head.seq, head.hash) == (5, last.hash)


def test_at_is_hashed_as_stored_whatever_the_clock_zone(audit_engine: sa.Engine) -> None:
    beijing = timezone(timedelta(hours=8))
    clock.set_clock(lambda: datetime(2026, 3, 1, 8, 30, 0, 123456, tzinfo=beijing))
    audit.record(audit_engine, ALICE, "auth.signin")
    clock.set_clock(lambda: datetime(2026, 3, 1, 0, 31, 0, 0, tzinfo=UTC))  # zero microseconds
    audit.record(audit_engine, ALICE, "auth.signout")
    assert audit.verify(audit_engine).ok
    rows = audit.query(audit_engine)
    assert [r["at"] for r in rows] == ["2026-03-01T00:31:00.000000Z", "2026-03-01T00:30:00.123456Z"]


def test_entry_hash_normalises_datetimes() -> None:
    aware = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    naive = aware.replace(tzinfo=None)
    shanghai = aware.astimezone(timezone(timedelta(hours=8)))
    args = ("a", "230000", None, "x", None, None, "{}", audit.GENESIS)
    assert audit.entry_hash(1, aware, *args) == audit.entry_hash(1, naive, *args) == audit.entry_hash(1, shanghai, *args)
    assert audit.entry_hash(1, aware, *args) != audit.entry_hash(1, aware + timedelta(microseconds=1), *args)
    assert audit.entry_hash(1, aware, *args) != audit.entry_hash(2, aware, *args)


def test_record_joins_the_callers_transaction(audit_engine: sa.Engine) -> None:
    audit.record(audit_engine, ALICE, "auth.signin")
    with audit_engine.connect() as conn:
        conn.info["write"] = True
        try:
            trans = conn.begin()
            assert audit.record(audit_engine, BOB, "user.create", detail={"username": "carol"}, conn=conn) == 2
            trans.rollback()  # the change failed: its audit entry goes with it
            with conn.begin():
                assert audit.record(audit_engine, BOB, "user.create", detail={"username": "dave"}, conn=conn) == 2
        finally:
            conn.info.pop("write", None)
    rows = audit.query(audit_engine)
    assert [(r["seq"], r["detail"]) for r in rows] == [(2, {"username": "dave"}), (1, {})]
    assert audit.verify(audit_engine).ok


def test_concurrent_appends_never_fork_the_chain(audit_engine: sa.Engine) -> None:
    seqs: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def writer(n: int) -> None:
        try:
            who = Principal("user", username=f"writer{n}", unit="230000", roles=frozenset({"viewer"}))
            start.wait()
            mine = [audit.record(audit_engine, who, "data.read", detail={"i": i}) for i in range(50)]
            with lock:
                seqs.extend(mine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(seqs) == list(range(1, 201))
    result = audit.verify(audit_engine)
    assert result.ok and result.checked == 200, result.reason_en
    with audit_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count(sa.distinct(audit.audit_log.c.seq)))).scalar_one() == 200


# ---------------------------------------------------------------- secrets


def test_secret_keys_are_masked(audit_engine: sa.Engine) -> None:
    detail = {
        "username": "carol",
        "Password": "hunter2-密码",
        "new_password": "s3cret-new",
        "nested": {"TOTP": "123456", "items": [{"api_token": "tok-abc"}, {"otp": "654321"}], "passwd": "pw-x"},
        "secret": {"deep": "shh"},
        "footprint": "kept",
        "tokens_used": 3,
    }
    seq = audit.record(audit_engine, BOB, "user.update", detail=detail)
    stored = entry(audit_engine, seq).detail
    for secret in ("hunter2", "s3cret-new", "123456", "tok-abc", "654321", "pw-x", "shh"):
        assert secret not in stored
    parsed = json.loads(stored)
    assert parsed["Password"] == parsed["new_password"] == parsed["secret"] == "***"
    assert parsed["nested"] == {"TOTP": "***", "items": [{"api_token": "***"}, {"otp": "***"}], "passwd": "***"}
    assert parsed["username"] == "carol" and parsed["footprint"] == "kept" and parsed["tokens_used"] == 3
    assert detail["Password"] == "hunter2-密码"  # the caller's dict is not changed
    assert audit.verify(audit_engine).ok


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "Token", "x_otp", "pwd", "passWord"]), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_mask_secrets_leaves_no_secret_key_unmasked(detail: dict[str, Any]) -> None:
    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if audit.is_secret_key(k):
                    assert v == "***"
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    text = audit.canonical_detail(detail)
    walk(json.loads(text))
    assert audit.canonical_detail(json.loads(text)) == text  # canonical: stable under a round trip


# ---------------------------------------------------------------- append-only and tampering


def test_update_and_delete_are_refused_by_the_database(audit_engine: sa.Engine) -> None:
    fill(audit_engine, 2)
    table = audit.audit_log
    for stmt in (table.update().values(detail="{}").where(table.c.seq == 1), table.delete().where(table.c.seq == 2)):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), audit_engine.begin() as conn:
            conn.execute(stmt)
    if audit_engine.dialect.name == "postgresql":
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), audit_engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE audit_log")
    tamper(audit_engine, "UPDATE audit_log SET actor = 'x' WHERE seq = 1")  # the superuser can …
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), audit_engine.begin() as conn:
        conn.execute(table.delete())  # … and the triggers are back afterwards
    assert entry(audit_engine, 2).seq == 2


def test_edited_detail_is_named(audit_engine: sa.Engine) -> None:
    fill(audit_engine, 6)
    tamper(audit_engine, "UPDATE audit_log SET detail = :d WHERE seq = 3", d='{"features":0}')
    result = audit.verify(audit_engine)
    assert not result.ok and result.first_broken_seq == 3 and result.checked == 2
    assert "entry 3 was altered" in result.reason_en and "第 3 条记录被篡改" in result.reason_zh


@pytest.mark.parametrize(
    ("column", "value"),
    [("actor", "someone-else"), ("actor_unit", None), ("version", 99), ("dataset_id", "other"), ("action", "data.download")],
)
def test_edited_column_is_named(audit_engine: sa.Engine, column: str, value: Any) -> None:
    fill(audit_engine, 4)
    tamper(audit_engine, f"UPDATE audit_log SET {column} = :v WHERE seq = 2", v=value)
    result = audit.verify(audit_engine)
    assert (result.ok, result.first_broken_seq) == (False, 2), result.reason_en


def test_edited_timestamp_is_named(audit_engine: sa.Engine) -> None:
    fill(audit_engine, 4)
    table = audit.audit_log
    at = entry(audit_engine, 4).at
    tamper(audit_engine, table.update().where(table.c.seq == 4).values(at=at - timedelta(microseconds=1)))
    result = audit.verify(audit_engine)
    assert (result.ok, result.first_broken_seq) == (False, 4) and "entry 4 was altered" in result.reason_en


def test_deleted_entries_are_named(audit_engine: sa.Engine) -> None:
    fill(audit_engine, 8)
    tamper(audit_engine, "DELETE FROM audit_log WHERE seq IN (4, 5)")
    result = audit.verify(audit_engine)
    assert not result.ok and result.first_broken_seq == 4 and result.checked == 3
    assert "entries 4–5 are missing" in result.reason_en and "第 4–5 条记录缺失" in result.reason_zh
    tamper(audit_engine, "DELETE FROM audit_log WHERE seq = 1")
    result = audit.verify(audit_engine)
    assert result.first_broken_seq == 1 and "entry 1 is missing" in result.reason_en


def test_deleted_tail_shows_against_the_head(audit_engine: sa.Engine) -> None:
    fill(audit_engine, 6)
    tamper(audit_engine, "DELETE FROM audit_log WHERE seq >= 5")
    result = audit.verify(audit_engine)
    assert not result.ok and result.first_broken_seq == 5 and result.checked == 4
    assert "the log ends at 4 but the head says 6" in result.reason_en
    tamper(audit_engine, "DELETE FROM audit_log")
    result = audit.verify(audit_engine)
    assert not result.ok and result.first_broken_seq == 1 and "the log is empty but the head says 6" in result.reason_en


def test_rewritten_head_is_detected(audit_engine: sa.Engine) -> None:
    fill(audit_engine, 3)
    with audit_engine.begin() as conn:  # audit_head is not append-only: it changes with every entry
        conn.execute(audit.audit_head.update().values(hash="f" * 64))
    result = audit.verify(audit_engine)
    assert (result.ok, result.first_broken_seq) == (False, 3) and "head" in result.reason_en
    with audit_engine.begin() as conn:
        conn.execute(audit.audit_head.update().values(seq=2, hash=entry(audit_engine, 2).hash))
    result = audit.verify(audit_engine)
    assert (result.ok, result.first_broken_seq) == (False, 3)
    assert "the log ends at 3 but the head says 2" in result.reason_en
    with audit_engine.begin() as conn:
        conn.execute(audit.audit_head.delete())
    result = audit.verify(audit_engine)
    assert not result.ok and "head is missing" in result.reason_en


def test_rehashed_entry_breaks_the_next_link(audit_engine: sa.Engine) -> None:
    fill(audit_engine, 6)
    old = entry(audit_engine, 3)
    forged_detail = '{"features":1}'
    forged = audit.entry_hash(old.seq, old.at, old.actor, old.actor_unit, old.ip, old.action, old.dataset_id, old.version,
                              forged_detail, old.prev_hash)
    tamper(audit_engine, "UPDATE audit_log SET detail = :d, hash = :h WHERE seq = 3", d=forged_detail, h=forged)
    result = audit.verify(audit_engine)
    assert not result.ok and result.first_broken_seq == 4 and result.checked == 3
    assert "entry 4 does not link to entry 3" in result.reason_en and "第 4 条" in result.reason_zh


# ---------------------------------------------------------------- query and CSV


def _seed_for_query(engine: sa.Engine) -> None:
    clock.set_clock(lambda: datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    audit.record(engine, ALICE, "auth.signin")
    clock.set_clock(lambda: datetime(2026, 5, 2, 12, 0, tzinfo=UTC))
    audit.record(engine, ALICE, "data.read", dataset_id="dltb", version=2, detail={"features": 12, "filter": "DLMC='水田'"})
    clock.set_clock(lambda: datetime(2026, 5, 3, 12, 0, tzinfo=UTC))
    audit.record(engine, BOB, "auth.signin_failed", detail={"reason": "bad password", "password": "guess"})
    audit.record(engine, system_principal(), "settings.change", detail={"key": "lockout_failures", "old": 5, "new": 3})
    clock.set_clock(None)


def test_query_filters_and_pages(audit_engine: sa.Engine) -> None:
    _seed_for_query(audit_engine)
    assert [r["seq"] for r in audit.query(audit_engine)] == [4, 3, 2, 1]  # newest first
    assert [r["seq"] for r in audit.query(audit_engine, actor="张三")] == [2, 1]
    assert [r["seq"] for r in audit.query(audit_engine, unit="230100")] == [3]
    assert [r["seq"] for r in audit.query(audit_engine, action="auth.signin")] == [1]
    assert [r["seq"] for r in audit.query(audit_engine, action="auth.*")] == [3, 1]
    assert [r["seq"] for r in audit.query(audit_engine, dataset_id="dltb")] == [2]
    since = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
    assert [r["seq"] for r in audit.query(audit_engine, since=since)] == [4, 3, 2]
    assert [r["seq"] for r in audit.query(audit_engine, until=since)] == [1]
    local = since.astimezone(timezone(timedelta(hours=8)))  # the same instant, written in Beijing time
    assert [r["seq"] for r in audit.query(audit_engine, since=local, until=local + timedelta(days=1))] == [2]
    assert [r["seq"] for r in audit.query(audit_engine, since=since.replace(tzinfo=None), limit=2, offset=1)] == [3, 2]
    assert audit.count(audit_engine, action="auth.*") == 2
    read = audit.query(audit_engine, dataset_id="dltb")[0]
    assert read["detail"] == {"features": 12, "filter": "DLMC='水田'"} and read["version"] == 2
    assert read["at"] == "2026-05-02T12:00:00.000000Z" and len(read["hash"]) == 64
    assert [r["seq"] for r in audit.iter_rows(audit_engine, action="auth.*")] == [1, 3]


def test_csv_export(audit_engine: sa.Engine) -> None:
    _seed_for_query(audit_engine)
    audit.record(audit_engine, Principal("anonymous", ip="1.2.3.4"), "auth.signin_failed", detail={"username": "=cmd|' /C calc'!A0"})
    text = "".join(audit.to_csv_stream(audit_engine, batch=2))
    assert text.startswith("\ufeffseq,at,actor,actor_unit,ip,action,dataset_id,version,detail,prev_hash,hash\r\n")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5]
    assert rows[1]["actor"] == "张三" and rows[1]["dataset_id"] == "dltb" and rows[1]["version"] == "2"
    assert rows[1]["detail"] == entry(audit_engine, 2).detail  # exactly as stored and hashed
    assert "水田" in rows[1]["detail"] and "guess" not in text
    assert rows[0]["dataset_id"] == "" and rows[0]["prev_hash"] == audit.GENESIS
    assert rows[4]["hash"] == entry(audit_engine, 5).hash
    only = "".join(audit.to_csv_stream(audit_engine, since=datetime(2026, 5, 2, tzinfo=UTC), until=datetime(2026, 5, 3, tzinfo=UTC)))
    assert [r["seq"] for r in csv.DictReader(io.StringIO(only.removeprefix("\ufeff")))] == ["2"]


def test_csv_defuses_spreadsheet_formulas(audit_engine: sa.Engine) -> None:
    audit.record(audit_engine, Principal("user", username="=HYPERLINK(\"http://x\")", unit="230000"), "auth.signin_failed")
    text = "".join(audit.to_csv_stream(audit_engine))
    row = next(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert row["actor"] == "'=HYPERLINK(\"http://x\")"


def test_unreadable_entry_is_named_not_a_crash(audit_engine: sa.Engine) -> None:
    if audit_engine.dialect.name != "sqlite":
        pytest.skip("only SQLite stores a timestamp as free text")
    fill(audit_engine, 4)
    tamper(audit_engine, "UPDATE audit_log SET at = 'garbage' WHERE seq = 3")
    result = audit.verify(audit_engine)
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 3, 2) and "cannot be read" in result.reason_en
