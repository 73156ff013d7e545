"""The audit log (审计日志): append-only, hash-chained, verifiable.

Grade-3 protection asks for a record of every sign-in and failure, every read of non-public
data, every download and every change of users, roles, grants and settings — and for that
record to show any later edit. Each entry carries the hash of the one before it; the
`audit_head` row holds the newest seq and hash, so a deleted tail shows as well as a deleted
or edited entry. The database refuses UPDATE and DELETE on `audit_log` (triggers, migration
0002); the chain catches what someone with the rights to drop those triggers does anyway.

Appends are serialised on the head row (`SELECT … FOR UPDATE` on PostgreSQL; on SQLite the
transaction begins IMMEDIATE, taking the single write lock before the head is read), so
concurrent writers never fork the chain.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from landcloud import clock
from landcloud.access.principal import Principal
from landcloud.access.tables import audit_head, audit_log

GENESIS = "0" * 64
HEAD_ID = 1
HASH_FORMAT = "landcloud-audit-v1"
MASK = "***"
SECRET_WORDS = frozenset({"password", "passwd", "secret", "token", "otp", "totp"})
CSV_COLUMNS = ("seq", "at", "actor", "actor_unit", "ip", "action", "dataset_id", "version", "detail", "prev_hash", "hash")
_STREAM_BATCH = 1000


# ---------------------------------------------------------------- canonical form and hashing


def canonical_detail(detail: Mapping[str, Any] | None) -> str:
    """The detail as stored and hashed: secrets masked, canonical JSON text."""
    return json.dumps(mask_secrets(dict(detail or {})), ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _key_words(key: str) -> list[str]:
    """`newPassword` / `totp_secret` / `API-Token` → their lower-case words."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_key(key: object) -> bool:
    """A key naming a secret: password, passwd, secret, token, otp or totp as a whole word of it."""
    return isinstance(key, str) and any(w in SECRET_WORDS for w in _key_words(key))


def mask_secrets(value: Any) -> Any:
    """A copy with the value of every secret-named key (at any depth) replaced by "***"."""
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_key(k) else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_secrets(v) for v in value]
    return value


def utc(value: datetime) -> datetime:
    """Aware UTC; a naive value (SQLite) was stored in UTC."""
    return clock.aware(value).astimezone(UTC)


def iso_at(value: datetime) -> str:
    """`at` as hashed and shown: ISO-8601 UTC, always with microseconds."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    seq: int,
    at: datetime,
    actor: str,
    actor_unit: str | None,
    ip: str | None,
    action: str,
    dataset_id: str | None,
    version: int | None,
    detail: str,
    prev_hash: str,
) -> str:
    """sha256 (hex) of one entry's canonical serialisation; used by record() and verify() alike."""
    fields = [HASH_FORMAT, int(seq), iso_at(at), actor, actor_unit, ip, action, dataset_id,
              None if version is None else int(version), detail, prev_hash]
    payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _row_hash(row: Any) -> str:
    return entry_hash(row.seq, row.at, row.actor, row.actor_unit, row.ip, row.action, row.dataset_id, row.version,
                      row.detail, row.prev_hash)


# ---------------------------------------------------------------- appending


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else str(value)[:length]


def _lock_head(conn: Connection) -> tuple[int, str]:
    """The head (seq, hash), locked for this transaction; created as the genesis on first use."""
    stmt = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ID).with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        conn.execute(insert(audit_head).values(id=HEAD_ID, seq=0, hash=GENESIS).on_conflict_do_nothing(index_elements=["id"]))
        row = conn.execute(stmt).one()
    return int(row.seq), str(row.hash)


def _append(
    conn: Connection,
    principal: Principal,
    action: str,
    dataset_id: str | None,
    version: int | None,
    detail: Mapping[str, Any] | None,
) -> int:
    head_seq, head_hash = _lock_head(conn)
    entry = {
        "seq": head_seq + 1,
        "at": utc(clock.now()),
        "actor": _clip(principal.actor, 64) or "?",
        "actor_unit": _clip(principal.unit, 32),
        "ip": _clip(principal.ip, 64),
        "action": _clip(action, 64) or "?",
        "dataset_id": _clip(dataset_id, 64),
        "version": None if version is None else int(version),
        "detail": canonical_detail(detail),
        "prev_hash": head_hash,
    }
    entry["hash"] = entry_hash(**entry)
    conn.execute(audit_log.insert().values(**entry))
    conn.execute(audit_head.update().where(audit_head.c.id == HEAD_ID).values(seq=entry["seq"], hash=entry["hash"]))
    return int(entry["seq"])


def record(
    engine: Engine,
    principal: Principal,
    action: str,
    *,
    dataset_id: str | None = None,
    version: int | None = None,
    detail: dict[str, Any] | None = None,
    conn: Connection | None = None,
) -> int:
    """Append one entry and return its seq.

    With `conn`, the entry joins the caller's transaction (a change and its audit entry commit
    or roll back together; the head stays locked until the caller commits). On SQLite that
    transaction should have been begun as a write one (`conn.info["write"] = True` before
    `conn.begin()`). Without `conn`, the entry is written in its own short transaction.
    """
    if conn is not None and conn.in_transaction():
        return _append(conn, principal, action, dataset_id, version, detail)
    if conn is not None:  # a connection outside a transaction: a short one of our own on it
        return _append_in_own_transaction(conn, principal, action, dataset_id, version, detail)
    with engine.connect() as own:
        return _append_in_own_transaction(own, principal, action, dataset_id, version, detail)


def _append_in_own_transaction(
    conn: Connection,
    principal: Principal,
    action: str,
    dataset_id: str | None,
    version: int | None,
    detail: Mapping[str, Any] | None,
) -> int:
    conn.info["write"] = True  # SQLite: BEGIN IMMEDIATE, the write lock before the head is read
    try:
        with conn.begin():
            return _append(conn, principal, action, dataset_id, version, detail)
    finally:
        conn.info.pop("write", None)


# ---------------------------------------------------------------- verifying


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_broken_seq: int | None
    reason_zh: str
    reason_en: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _broken(checked: int, seq: int, zh: str, en: str) -> VerifyResult:
    return VerifyResult(False, checked, seq, zh, en)


def _missing(first: int, last: int) -> tuple[str, str]:
    if first == last:
        return f"第 {first} 条记录缺失（已被删除）", f"entry {first} is missing (deleted)"
    return f"第 {first}–{last} 条记录缺失（已被删除）", f"entries {first}–{last} are missing (deleted)"


def verify(engine: Engine) -> VerifyResult:
    """Walk the chain in seq order (streamed) and report the first broken entry, if any."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for the head and the whole log
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.info.pop("write", None)  # a read: no SQLite write lock
        with conn.begin():
            head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ID)).first()
            rows = conn.execution_options(yield_per=_STREAM_BATCH).execute(sa.select(audit_log).order_by(audit_log.c.seq))
            checked, prev_seq, prev_hash = 0, 0, GENESIS
            iterator = iter(rows)
            while True:
                try:
                    row = next(iterator)
                except StopIteration:
                    break
                except (ValueError, TypeError) as exc:  # a value the driver cannot read back (e.g. a mangled timestamp)
                    seq = prev_seq + 1
                    return _broken(checked, seq, f"第 {prev_seq} 条之后的记录无法读取（{exc}）",
                                   f"the entry after {prev_seq} cannot be read ({exc})")
                seq = int(row.seq)
                if seq <= prev_seq:  # cannot happen with the primary key and ORDER BY; kept as a guard
                    return _broken(checked, seq, f"第 {seq} 条记录的序号重复或乱序", f"entry {seq} is duplicated or out of order")
                if seq != prev_seq + 1:
                    zh, en = _missing(prev_seq + 1, seq - 1)
                    return _broken(checked, prev_seq + 1, zh, en)
                try:
                    recomputed = _row_hash(row)
                except (ValueError, TypeError, AttributeError):
                    recomputed = None
                if recomputed != row.hash:
                    return _broken(checked, seq, f"第 {seq} 条记录被篡改（哈希不符）", f"entry {seq} was altered (its hash does not match)")
                if row.prev_hash != prev_hash:
                    return _broken(
                        checked, seq,
                        f"第 {seq} 条记录与第 {prev_seq} 条记录不衔接（前一哈希不符：前一条被改写或替换）",
                        f"entry {seq} does not link to entry {prev_seq} (prev_hash mismatch: the entry before was rewritten or replaced)",
                    )
                checked, prev_seq, prev_hash = checked + 1, seq, row.hash
            return _check_head(head, checked, prev_seq, prev_hash)


def _check_head(head: Any, checked: int, last_seq: int, last_hash: str) -> VerifyResult:
    if head is None:
        if last_seq == 0:
            return VerifyResult(True, 0, None, "审计链完整：0 条记录", "audit chain intact: 0 entries")
        return _broken(checked, last_seq, f"审计链头缺失（日志止于第 {last_seq} 条）", f"the audit head is missing (the log ends at {last_seq})")
    head_seq, head_hash = int(head.seq), str(head.hash)
    if head_seq > last_seq:
        zh, en = _missing(last_seq + 1, head_seq)
        if last_seq == 0:
            return _broken(checked, 1, f"日志为空，但链头记录为第 {head_seq} 条；{zh}", f"the log is empty but the head says {head_seq}; {en}")
        return _broken(checked, last_seq + 1, f"日志止于第 {last_seq} 条，但链头记录为第 {head_seq} 条；{zh}",
                       f"the log ends at {last_seq} but the head says {head_seq}; {en}")
    if head_seq < last_seq:
        return _broken(checked, head_seq + 1, f"日志止于第 {last_seq} 条，但链头记录为第 {head_seq} 条（链头被改写或有记录绕过链头写入）",
                       f"the log ends at {last_seq} but the head says {head_seq} (the head was rewritten or entries bypassed it)")
    if head_hash != last_hash:
        seq = max(last_seq, 1)
        return _broken(checked, seq, f"链头哈希与第 {last_seq} 条记录不符（链头被改写）",
                       f"the head's hash does not match entry {last_seq} (the head was rewritten)")
    return VerifyResult(True, checked, None, f"审计链完整：{checked} 条记录", f"audit chain intact: {checked} entries")


# ---------------------------------------------------------------- querying and export


def _as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


class lists_dataset(FunctionElement[bool]):  # noqa: N801 - an SQL function, named like one
    """True when the entry's detail lists the dataset under "datasets" (one entry for a read of many layers)."""

    type = sa.Boolean()
    inherit_cache = True
    name = "lists_dataset"


@compiles(lists_dataset, "sqlite")
def _lists_dataset_sqlite(element: lists_dataset, compiler: Any, **kw: Any) -> str:
    arg = compiler.process(next(iter(element.clauses)), **kw)
    return (f"(CASE WHEN json_valid(audit_log.detail) THEN EXISTS (SELECT 1 FROM json_each(audit_log.detail, '$.datasets') AS d "
            f"WHERE json_extract(d.value, '$.dataset') = {arg}) ELSE 0 END)")


@compiles(lists_dataset, "postgresql")
def _lists_dataset_postgresql(element: lists_dataset, compiler: Any, **kw: Any) -> str:
    arg = compiler.process(next(iter(element.clauses)), **kw)
    return (f"(strpos(audit_log.detail, '\"datasets\"') > 0 AND (audit_log.detail::jsonb -> 'datasets') "
            f"@> jsonb_build_array(jsonb_build_object('dataset', CAST({arg} AS text))))")


class Filters(TypedDict, total=False):
    """What the audit administrator filters on; `since` inclusive, `until` exclusive (naive = UTC)."""

    actor: str | None
    unit: str | None
    action: str | None  # ending in "*": every action under a prefix ("auth.*")
    dataset_id: str | None
    since: datetime | None
    until: datetime | None


def _filtered(stmt: sa.Select[Any], filters: Filters) -> sa.Select[Any]:
    c = audit_log.c
    actor, unit, action = filters.get("actor"), filters.get("unit"), filters.get("action")
    dataset_id, since, until = filters.get("dataset_id"), filters.get("since"), filters.get("until")
    if actor:
        stmt = stmt.where(c.actor == actor)
    if unit:
        stmt = stmt.where(c.actor_unit == unit)
    if action:
        if action.endswith("*"):  # "auth.*": every action under a prefix
            prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(c.action.like(prefix + "%", escape="\\"))
        else:
            stmt = stmt.where(c.action == action)
    if dataset_id:  # an entry about the dataset, or a many-layer read listing it ("what is here")
        stmt = stmt.where(sa.or_(c.dataset_id == dataset_id, lists_dataset(sa.literal(dataset_id, sa.String))))
    if since is not None:
        stmt = stmt.where(c.at >= _as_utc(since))
    if until is not None:
        stmt = stmt.where(c.at < _as_utc(until))
    return stmt


def _entry(row: Any, *, raw_detail: bool = False) -> dict[str, Any]:
    d = dict(row._mapping)
    d["at"] = iso_at(d["at"])
    if not raw_detail:
        try:
            d["detail"] = json.loads(d["detail"])
        except ValueError:
            pass  # shown as stored; verify() reports the entry
    return d


def query(engine: Engine, *, limit: int = 100, offset: int = 0, **filters: Unpack[Filters]) -> list[dict[str, Any]]:
    """Entries matching the filters, newest first; `at` as ISO-8601 UTC text, `detail` parsed.

    `since` is inclusive and `until` exclusive; naive datetimes are taken as UTC. An `action`
    ending in "*" matches a prefix ("auth.*").
    """
    stmt = _filtered(sa.select(audit_log), filters)
    stmt = stmt.order_by(audit_log.c.seq.desc()).limit(max(0, int(limit))).offset(max(0, int(offset)))
    with engine.connect() as conn:
        return [_entry(r) for r in conn.execute(stmt)]


def count(engine: Engine, **filters: Unpack[Filters]) -> int:
    """How many entries match the filters (for paging)."""
    stmt = _filtered(sa.select(sa.func.count()).select_from(audit_log), filters)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def iter_rows(engine: Engine, *, raw_detail: bool = False, **filters: Unpack[Filters]) -> Iterator[dict[str, Any]]:
    """Every matching entry in seq order, streamed (bounded memory) — for export."""
    stmt = _filtered(sa.select(audit_log), filters)
    stmt = stmt.order_by(audit_log.c.seq)
    with engine.connect() as conn:
        conn.info.pop("write", None)
        with conn.begin():
            for row in conn.execution_options(yield_per=_STREAM_BATCH).execute(stmt):
                yield _entry(row, raw_detail=raw_detail)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Defuse spreadsheet formulas (an attacker picks the username of a failed sign-in)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv_stream(engine: Engine, *, batch: int = 500, **filters: Unpack[Filters]) -> Iterator[str]:
    """CSV text in chunks: a UTF-8 BOM (Excel reads the Chinese right), one English header row, entries in seq order.

    `detail` is the canonical JSON text exactly as stored and hashed. A text cell starting with
    = + - @ is prefixed with ' so that a spreadsheet shows it rather than evaluates it.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    buf.write("\ufeff")
    writer.writerow(CSV_COLUMNS)
    n = 0
    for entry in iter_rows(engine, **filters, raw_detail=True):
        writer.writerow([_cell(entry[c]) for c in CSV_COLUMNS])
        n += 1
        if n % batch == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
