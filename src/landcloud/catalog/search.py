"""Catalogue search with Chinese full text, restricted to what the caller may see.

Chinese has no spaces, and a word-level tokenizer (or SQLite's trigram one) cannot find a
two-character word such as 规划 inside 国土空间规划分区. So documents and queries are cut the
same way, here, before either engine sees them:

- a run of Chinese characters becomes its overlapping character bigrams, plus its last
  character on its own (国土空间 → 国土 土空 空间 间), so that every character of the run is the
  first character of some token;
- any other run of letters or digits is one word, NFKC-normalised and lower-cased.

A query is cut the same way: a Chinese run of two or more characters must appear as the
phrase of its bigrams (a substring of the document), a single Chinese character as the prefix
of a token (so it matches anywhere in a run), a Latin word as itself. Parts separated by
spaces must all match; alternatives separated by commas (, ， 、) may any match (the OGC API
Records rule for `q`).
SQLite ranks with FTS5's bm25, PostgreSQL with ts_rank over a tsvector built from the same
tokens (literal lexemes, never the database's own parser).

Documents: title, English title and dataset id (weight A); keywords and the theme's names (B);
description and the owner unit's name and those of its ancestors (C); field names and aliases
(D). Field names only count for callers who may see every field of the dataset: a listed-only
caller sees no field list, and must not find a dataset through it either.

The index is refreshed by `reindex(bind, dataset_id)` when a dataset changes, and heals itself:
triggers on `datasets` note every row inserted, deleted or updated with a new `updated_at`
(table `search_dirty`), and every query first reindexes those and drops rows of datasets that
no longer exist. Visibility and the theme/unit/sharing filters are read
from the datasets table, never from the index, so a stale index can only make a text match
stale, never show an entry the caller may not see.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from landcloud.access import units as units_mod
from landcloud.access.principal import Principal
from landcloud.catalog import datasets as catalog
from landcloud.catalog.tables import datasets as datasets_table
from landcloud.messages import LandcloudError

if TYPE_CHECKING:
    from landcloud.access import gate

log = logging.getLogger(__name__)

__all__ = ["search", "reindex", "reindex_all", "doc_tokens", "query_terms", "Term", "MAX_LIMIT"]

MAX_LIMIT = 1000
MAX_TERMS = 16
MAX_QUERY_CHARS = 200
MAX_WORD = 64
MAX_POSITION = 16383  # PostgreSQL's largest tsvector position

_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_RUN = re.compile(rf"[{_HAN}]+|[^\W_{_HAN}]+")
_IS_HAN = re.compile(rf"[{_HAN}]")

# Weighted sections: (FTS5 column, tsvector weight, bm25 weight)
SECTIONS = (("title", "A", 10.0), ("keywords", "B", 5.0), ("body", "C", 2.0), ("fields", "D", 1.0))
META_COLUMNS = "{title keywords body}"

_META = sa.MetaData()
search_docs = sa.Table(
    "search_docs",
    _META,
    sa.Column("dataset_id", sa.String(64), primary_key=True),
    sa.Column("rid", sa.Integer, nullable=True),
    sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("minx", sa.Float, nullable=True),
    sa.Column("miny", sa.Float, nullable=True),
    sa.Column("maxx", sa.Float, nullable=True),
    sa.Column("maxy", sa.Float, nullable=True),
)


# ---------------------------------------------------------------- tokens


def _runs(text: str) -> list[tuple[bool, str]]:
    norm = unicodedata.normalize("NFKC", text or "").casefold()
    return [(bool(_IS_HAN.match(m.group())), m.group()) for m in _RUN.finditer(norm)]


def doc_tokens(text: str) -> list[str]:
    """The index tokens of a text, in order: Chinese bigrams (+ the run's last character), words."""
    out: list[str] = []
    for han, run in _runs(text):
        if not han:
            out.append(run[:MAX_WORD])
        elif len(run) == 1:
            out.append(run)
        else:
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
            out.append(run[-1])
    return out


@dataclass(frozen=True)
class Term:
    """One part of a query: a phrase of bigrams, a single-character prefix, or a word."""

    kind: str  # "phrase" | "prefix" | "word"
    tokens: tuple[str, ...]


def _terms(text: str) -> list[Term]:
    terms: list[Term] = []
    for han, run in _runs(text):
        if not han:
            term = Term("word", (run[:MAX_WORD],))
        elif len(run) == 1:
            term = Term("prefix", (run,))
        else:
            term = Term("phrase", tuple(run[i : i + 2] for i in range(len(run) - 1)))
        if term not in terms:
            terms.append(term)
    return terms


def query_terms(q: str | None) -> list[list[Term]]:
    """The query as alternatives (separated by commas, any may match), each a list of parts that
    must all match (separated by spaces); empty: no text condition."""
    groups: list[list[Term]] = []
    budget = MAX_TERMS
    for part in re.split(r"[,，、]", (q or "")[:MAX_QUERY_CHARS]):
        terms = _terms(part)[:budget]
        if terms and terms not in groups:
            groups.append(terms)
            budget -= len(terms)
        if budget <= 0:
            break
    return groups


def _fts5_query(groups: Sequence[Sequence[Term]], meta_only: bool) -> str:
    alternatives = []
    for terms in groups:
        parts = []
        for t in terms:
            text = '"' + " ".join(t.tokens) + '"' + (" *" if t.kind == "prefix" else "")
            parts.append(f"{META_COLUMNS} : {text}" if meta_only else text)
        alternatives.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(alternatives)


def _ts_lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def _tsquery(groups: Sequence[Sequence[Term]], meta_only: bool) -> str:
    weights = "ABC" if meta_only else ""
    alternatives = []
    for terms in groups:
        parts = []
        for t in terms:
            if t.kind == "prefix":
                parts.append(f"{_ts_lexeme(t.tokens[0])}:*{weights}")
            else:
                lex = [_ts_lexeme(tok) + (f":{weights}" if weights else "") for tok in t.tokens]
                parts.append("(" + " <-> ".join(lex) + ")" if len(lex) > 1 else lex[0])
        alternatives.append("(" + " & ".join(parts) + ")")
    return " | ".join(alternatives)


def _tsvector(sections: Sequence[tuple[str, list[str]]]) -> str:
    """A tsvector literal: every token with its positions and section weight."""
    positions: dict[str, list[str]] = {}
    pos = 0
    for weight, tokens in sections:
        for tok in tokens:
            pos += 1
            if pos > MAX_POSITION:
                break
            positions.setdefault(tok, []).append(f"{pos}{weight}")
        pos += 1  # a gap between sections
    return " ".join(f"{_ts_lexeme(tok)}:{','.join(p[:256])}" for tok, p in positions.items())


# ---------------------------------------------------------------- documents


def _unit_names(conn: Connection) -> dict[str, tuple[str, str | None]]:
    return {str(u["code"]): (str(u["name"]), cast(str | None, u["parent"])) for u in units_mod.list_units(conn.engine, conn=conn)}


def _unit_text(units: dict[str, tuple[str, str | None]], code: str) -> str:
    names, seen = [code], set()
    current: str | None = code
    while current and current in units and current not in seen:
        seen.add(current)
        name, parent = units[current]
        names.append(name)
        current = parent
    return " ".join(names)


def document(ds: catalog.Dataset, units: dict[str, tuple[str, str | None]]) -> list[tuple[str, list[str]]]:
    """The sections of a dataset's document as (FTS5 column, tokens)."""
    theme_zh, theme_en = catalog.THEMES.get(ds.theme, ("", ""))
    fields = " ".join(f"{f.get('name', '')} {f.get('alias_zh', '') or ''}" for f in ds.fields)
    return [
        ("title", doc_tokens(f"{ds.title} {ds.title_en} {ds.id}")),
        ("keywords", doc_tokens(" ".join([*ds.keywords, theme_zh, theme_en, ds.theme]))),
        ("body", doc_tokens(f"{ds.description} {_unit_text(units, ds.owner_unit)}")),
        ("fields", doc_tokens(fields)),
    ]


def _extent(ds: catalog.Dataset) -> tuple[float | None, ...]:
    e = ds.extent
    if e and len(e) == 4 and all(isinstance(v, (int, float)) for v in e):
        return tuple(float(v) for v in e)
    return (None, None, None, None)


def _is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


def _write(conn: Connection, items: Sequence[catalog.Dataset], units: dict[str, tuple[str, str | None]]) -> None:
    """Replace the index rows of these datasets (in the caller's transaction)."""
    if not items:
        return
    ids = [ds.id for ds in items]
    now = datetime.now(UTC)
    rows = []
    for ds in items:
        minx, miny, maxx, maxy = _extent(ds)
        rows.append(
            {
                "dataset_id": ds.id,
                "source_updated_at": ds.updated_at or now,
                "indexed_at": now,
                "minx": minx,
                "miny": miny,
                "maxx": maxx,
                "maxy": maxy,
                "_doc": document(ds, units),
            }
        )
    if _is_sqlite(conn):
        for chunk in _chunks(ids, 500):
            stmt = sa.text("SELECT rid FROM search_docs WHERE dataset_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
            old = [r.rid for r in conn.execute(stmt, {"ids": chunk}) if r.rid is not None]
            if old:
                conn.execute(
                    sa.text("DELETE FROM search_fts WHERE rowid IN :rids").bindparams(sa.bindparam("rids", expanding=True)),
                    {"rids": old},
                )
            conn.execute(search_docs.delete().where(search_docs.c.dataset_id.in_(chunk)))
        next_rid = int(conn.execute(sa.text("SELECT coalesce(max(rowid), 0) FROM search_fts")).scalar_one()) + 1
        fts_rows = []
        for i, row in enumerate(rows):
            row["rid"] = next_rid + i
            fts_rows.append({"rid": row["rid"], **{col: " ".join(toks) for col, toks in row.pop("_doc")}})
        conn.execute(
            sa.text(
                "INSERT INTO search_fts (rowid, title, keywords, body, fields) VALUES (:rid, :title, :keywords, :body, :fields)"
            ),
            fts_rows,
        )
        conn.execute(search_docs.insert(), rows)
        return
    weights = {col: w for col, w, _ in SECTIONS}
    for row in rows:
        row["tsv"] = _tsvector([(weights[col], toks) for col, toks in row.pop("_doc")])
        row["rid"] = None
    conn.execute(
        sa.text(
            "INSERT INTO search_docs (dataset_id, rid, source_updated_at, indexed_at, minx, miny, maxx, maxy, tsv) "
            "VALUES (:dataset_id, :rid, :source_updated_at, :indexed_at, :minx, :miny, :maxx, :maxy, CAST(:tsv AS tsvector)) "
            "ON CONFLICT (dataset_id) DO UPDATE SET source_updated_at = EXCLUDED.source_updated_at, "
            "indexed_at = EXCLUDED.indexed_at, minx = EXCLUDED.minx, miny = EXCLUDED.miny, maxx = EXCLUDED.maxx, "
            "maxy = EXCLUDED.maxy, tsv = EXCLUDED.tsv"
        ),
        rows,
    )


def _delete(conn: Connection, ids: Sequence[str]) -> None:
    _clear_dirty(conn, ids)
    for chunk in _chunks(list(ids), 500):
        if _is_sqlite(conn):
            conn.execute(
                sa.text(
                    "DELETE FROM search_fts WHERE rowid IN (SELECT rid FROM search_docs WHERE dataset_id IN :ids)"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": chunk},
            )
        conn.execute(search_docs.delete().where(search_docs.c.dataset_id.in_(chunk)))


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _load(conn: Connection, ids: Sequence[str]) -> list[catalog.Dataset]:
    out: list[catalog.Dataset] = []
    names = list(catalog.Dataset.__dataclass_fields__)
    for chunk in _chunks(list(ids), 500):
        for row in conn.execute(sa.select(datasets_table).where(datasets_table.c.id.in_(chunk))):
            m = row._mapping
            out.append(catalog.Dataset(**{k: m[k] for k in names}))
    return out


def reindex(bind: Engine | Connection, dataset_id: str) -> None:
    """Refresh one dataset's index row (or drop it when the dataset is gone).

    With a Connection the change joins the caller's transaction (call it after the dataset
    row was written, e.g. at the end of record_version); with an Engine it is its own.
    """
    if isinstance(bind, Connection):
        _reindex_ids(bind, bind.engine, [dataset_id])
        return
    with _write_connection(bind) as conn, conn.begin():
        _reindex_ids(conn, bind, [dataset_id])


def reindex_all(engine: Engine) -> int:
    """Rebuild the whole index; returns how many datasets were indexed."""
    with _write_connection(engine) as conn, conn.begin():
        ids = [r[0] for r in conn.execute(sa.select(datasets_table.c.id))]
        gone = [
            r[0]
            for r in conn.execute(
                sa.select(search_docs.c.dataset_id).where(search_docs.c.dataset_id.not_in(sa.select(datasets_table.c.id)))
            )
        ]
        _delete(conn, gone)
        _reindex_ids(conn, engine, ids)
    return len(ids)


def _clear_dirty(conn: Connection, ids: Sequence[str]) -> None:
    """These ids are being indexed from the rows as this transaction reads them next."""
    for chunk in _chunks(list(ids), 500):
        conn.execute(
            sa.text("DELETE FROM search_dirty WHERE dataset_id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": chunk},
        )


def _reindex_ids(conn: Connection, engine: Engine, ids: Sequence[str]) -> None:
    _clear_dirty(conn, ids)
    units = _unit_names(conn)  # the caller's connection: a second one would wait for this transaction's lock
    found = {}
    for chunk in _chunks(list(ids), 1000):
        items = _load(conn, chunk)
        found.update({ds.id: ds for ds in items})
        _write(conn, items, units)
    missing = [i for i in ids if i not in found]
    if missing:
        _delete(conn, missing)


class _write_connection:
    """A connection whose transaction takes SQLite's write lock up front (BEGIN IMMEDIATE)."""

    def __init__(self, engine: Engine, busy_ms: int | None = None) -> None:
        self.engine = engine
        self.busy_ms = busy_ms

    def __enter__(self) -> Connection:
        self.conn = self.engine.connect()
        if self.busy_ms is not None and _is_sqlite(self.conn):
            self.conn.exec_driver_sql(f"PRAGMA busy_timeout={int(self.busy_ms)}")
            self.conn.commit()
        self.conn.info["write"] = True
        return self.conn

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.info.pop("write", None)
            if self.busy_ms is not None and _is_sqlite(self.conn):
                self.conn.rollback()
                self.conn.exec_driver_sql("PRAGMA busy_timeout=30000")
                self.conn.commit()
        finally:
            self.conn.close()


def _dirty(conn: Connection) -> bool:
    return conn.execute(sa.text("SELECT 1 FROM search_dirty LIMIT 1")).first() is not None


def _take_dirty(conn: Connection) -> list[str]:
    """The ids noted by the triggers on `datasets` (migration 0005), removed in this transaction.

    Removed before their datasets are read: a change committed meanwhile notes its id again
    (after this transaction, on PostgreSQL it waits for the row), so it is refreshed next time.
    """
    return [r[0] for r in conn.execute(sa.text("DELETE FROM search_dirty RETURNING dataset_id"))]


def heal(engine: Engine) -> int:
    """Reindex what changed since it was indexed and drop what is gone; returns how many rows changed.

    Triggers note every dataset inserted, deleted or updated with a new `updated_at`, so the
    check is one probe of a (normally empty) table, not a comparison over the catalogue.
    On SQLite the write lock is waited for briefly only: while a long submission holds it, the
    search answers from the index as it is (visibility never comes from the index).
    """
    with engine.connect() as conn:
        if not _dirty(conn):
            return 0
    return _heal_dirty(engine)


def _heal_dirty(engine: Engine) -> int:
    try:
        with _write_connection(engine, busy_ms=250) as conn, conn.begin():
            ids = _take_dirty(conn)
            _reindex_ids(conn, engine, ids)
    except OperationalError as exc:
        if not _is_sqlite(engine):
            raise
        log.warning("search index not refreshed (store busy): %s", exc)
        return 0
    return len(ids)


# ---------------------------------------------------------------- visibility


# ---------------------------------------------------------------- searching


def _bad(param: str, value: Any, allowed: Iterable[str]) -> LandcloudError:
    allowed = list(allowed)
    return LandcloudError(
        "search.bad_filter",
        f"参数 {param} 的值“{value}”无效；可选：{', '.join(allowed)}",
        f"invalid value '{value}' for {param}; choose one of: {', '.join(allowed)}",
        param=param,
        allowed=allowed,
    )


def _region_units(engine: Engine, region: str) -> tuple[str, list[str]]:
    """The code prefix of a region and the departments attached within it."""
    index = units_mod.division_index(engine)
    prefix = index.jurisdiction_prefix(region) if index is not None and region in index else region
    if not prefix.isalnum():
        raise LandcloudError("search.bad_region", f"区域代码“{region}”无效", f"invalid region code '{region}'")
    departments = [
        str(u["code"]) for u in units_mod.list_units(engine, kind="department") if str(u["parent"] or "").startswith(prefix)
    ]
    return prefix, departments


def search(
    engine: Engine,
    principal: Principal,
    q: str | None = None,
    *,
    theme: str | None = None,
    unit: str | None = None,
    region: str | None = None,
    sharing_class: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    limit: int = 20,
    offset: int = 0,
) -> dict[str, Any]:
    """Catalogue entries matching the query and filters that the caller may see, best first.

    Returns {"total", "limit", "offset", "items": [dataset metadata as the caller may see it,
    with "score"]}. `bbox` matches entries whose extent intersects it, among those whose data
    the caller may read (a listed-only entry does not show where its data lies).
    """
    if theme is not None and theme not in catalog.THEMES:
        raise _bad("theme", theme, catalog.THEMES)
    if sharing_class is not None and sharing_class not in catalog.SHARING_CLASSES:
        raise _bad("sharing_class", sharing_class, catalog.SHARING_CLASSES)
    limit = max(0, min(int(limit), MAX_LIMIT))
    offset = max(0, int(offset))
    terms = query_terms(q)
    sqlite = _is_sqlite(engine)

    where: list[str] = []
    params: dict[str, Any] = {}
    binds: list[sa.BindParameter[Any]] = []
    if theme is not None:
        where.append("d.theme = :theme")
        params["theme"] = theme
    if unit:
        where.append("d.owner_unit = :unit")
        params["unit"] = unit
    if region:
        prefix, departments = _region_units(engine, region)
        params["rprefix"] = prefix + "%"
        if departments:
            where.append("(d.owner_unit LIKE :rprefix OR d.owner_unit IN :rdepts)")
            params["rdepts"] = departments
            binds.append(sa.bindparam("rdepts", expanding=True))
        else:
            where.append("d.owner_unit LIKE :rprefix")
    if sharing_class is not None:
        where.append("d.sharing_class = :sharing_class")
        params["sharing_class"] = sharing_class
    if bbox is not None:
        where.append("s.minx IS NOT NULL AND s.minx <= :bmaxx AND s.maxx >= :bminx AND s.miny <= :bmaxy AND s.maxy >= :bminy")
        params.update(bminx=bbox[0], bminy=bbox[1], bmaxx=bbox[2], bmaxy=bbox[3])

    with engine.connect() as conn:  # the heal probe, the classes, the caller's facts, the page and its rows
        _snapshot(conn)
        if _dirty(conn):  # heal (see `heal`), then read in a snapshot taken after it
            conn.rollback()
            _heal_dirty(engine)
            _snapshot(conn)
        match, score, order = _match_sql(terms, sqlite, params)
        # imported here, not at the top: a submission keeps the index in step (`reindex`) and would
        # otherwise import the gate's auth, i.e. FastAPI and PyJWT (0.2 s of a CLI ingest's CPU)
        from landcloud.access import gate

        vis = gate.Viewer(engine, principal, conn)
        granted = sorted(vis.grants)
        if granted:
            params["granted"] = granted
            binds.append(sa.bindparam("granted", expanding=True))
        source = _source_sql(terms, sqlite) + " WHERE " + " AND ".join([*match, *where] or ["1 = 1"])
        params.update(limit=limit, offset=offset, top=limit + offset)
        found = conn.execute(_stmt(_classes_and_best_sql(source, score, order, bool(granted)), binds), params).all()
        classes = _allowed_classes(vis, [r for r in found if r.part == 0], terms, bbox)
        if not classes.full and not classes.meta_only:
            return {"total": 0, "limit": limit, "offset": offset, "items": []}
        if classes.every:  # every class of the matching rows allowed in full (in this snapshot): the best are the page
            page = sorted((r for r in found if r.part == 1), key=lambda r: r.rk)[offset:]
            total = classes.full_count
        else:
            page, total = _allowed_page(conn, classes, source, score, order, bool(granted), terms, sqlite, params, binds)
        loaded = {ds.id: ds for ds in _load(conn, [r.id for r in page])}
    items = []
    for row in page:
        ds = loaded.get(row.id)
        if ds is None:
            continue
        access = vis.access(ds)
        if not vis.in_catalogue(ds, access):  # changed since the query: leave it out
            continue
        meta = gate.dataset_metadata(gate.as_seen(engine, ds, access), access)
        meta["score"] = round(float(row.score or 0.0), 6)
        items.append(meta)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


def _snapshot(conn: Connection) -> None:
    """Let every read of this search see one snapshot (SQLite's read transaction is one already)."""
    if not _is_sqlite(conn):
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


# The columns the access decision reads of a catalogue row (gate.Viewer.access with no field list).
POLICY_COLUMNS = (
    "owner_unit",
    "security_level",
    "sharing_class",
    "openness",
    "jurisdiction_field",
    "edition_of",
    "published_version",
)


def _class_key_sql(granted: bool) -> str:
    """SQL text naming a row's access class: its policy columns, NULL-safe and length-prefixed (so
    two different combinations never make the same text); a dataset with a grant to the caller's
    unit is a class of its own, since grants are decided per dataset. `_class_key` makes the same
    text in Python."""
    parts = [f"coalesce(length(CAST(d.{c} AS TEXT)) || ':' || CAST(d.{c} AS TEXT), '-')" for c in POLICY_COLUMNS]
    key = " || ".join(parts)
    return f"(CASE WHEN d.id IN :granted THEN '*' || d.id ELSE {key} END)" if granted else f"({key})"


def _class_key(row: Any) -> str:
    if getattr(row, "granted_id", None) is not None:
        return "*" + str(row.granted_id)
    values = (getattr(row, c) for c in POLICY_COLUMNS)
    return "".join("-" if v is None else f"{len(str(v))}:{v}" for v in values)


def _classes_and_best_sql(source: str, score: str, order: str, granted: bool) -> str:
    """In one statement: the access classes among the matching rows (`part` 0; grouped on the plain columns: cheaper
    than on the key text), each with a member's id, its policy columns and its number of rows; and the best :top of
    all the matching rows (`part` 1, `rk` their order), which are the page when the caller may see every class in
    full (most searches). The matches are found and joined to their datasets once: PostgreSQL, 10,000 records, a
    query matching 2,150 of them, two statements of ~12 ms each were ~15 ms as one (benchmarks/profiles/search-postgis.txt)."""
    cols = ", ".join(POLICY_COLUMNS) + (", granted_id" if granted else "")
    matched = ", ".join(f"d.{c}" for c in POLICY_COLUMNS) + (", CASE WHEN d.id IN :granted THEN d.id END AS granted_id" if granted else "")
    return (
        f"WITH m AS MATERIALIZED (SELECT d.id AS id, {score} AS score, {matched} {source}) "
        f"SELECT 0 AS part, {cols}, min(id) AS id, count(*) AS n, CAST(NULL AS DOUBLE PRECISION) AS score, "
        f"CAST(NULL AS BIGINT) AS rk FROM m GROUP BY {cols} "  # (typed NULLs: PostgreSQL types a subquery's NULL text)
        f"UNION ALL SELECT * FROM (SELECT 1, {cols}, id, CAST(NULL AS BIGINT), score, row_number() OVER (ORDER BY {order}) "
        f"FROM m ORDER BY {order} LIMIT :top) best"
    )


def _allowed_page(
    conn: Connection,
    classes: _Classes,
    source: str,
    score: str,
    order: str,
    granted: bool,
    terms: Sequence[Sequence[Term]],
    sqlite: bool,
    params: dict[str, Any],
    binds: list[sa.BindParameter[Any]],
) -> tuple[list[Any], int]:
    """The page and the total when some class of the matching rows is not allowed in full: the rows of the allowed
    classes only, ranked in the database."""
    allowed = _allowed_sql(classes, granted, terms, sqlite, params, binds)
    counted = not classes.meta_only  # the total is the classes' counts; else count the matches
    window = "" if counted else ", count(*) OVER () AS total"
    matches = f"SELECT d.id AS id, {score} AS score {source} AND {allowed}"  # FTS5's bm25 refuses a window beside it
    page_sql = f"SELECT id, score{window} FROM ({matches}) m ORDER BY {order} LIMIT :limit OFFSET :offset"
    page = conn.execute(_stmt(page_sql, binds), params).all()
    if counted:
        return page, classes.full_count
    if page:
        return page, int(page[0].total)
    # an offset past the end (or limit 0): count on its own
    return page, int(conn.execute(_stmt(f"SELECT count(*) {source} AND {allowed}", binds), params).scalar_one())


@dataclass
class _Classes:
    """The access classes the caller may see listed (their keys), and how many rows they hold."""

    full: list[str]  # matched by any part of the document
    meta_only: list[str]  # matched by the metadata only (the caller does not see every field)
    every: bool = True  # every class among the matching rows is in `full`
    full_count: int = 0


def _allowed_classes(
    vis: gate.Viewer,
    rows: Sequence[Any],
    terms: Sequence[Sequence[Term]],
    bbox: tuple[float, float, float, float] | None,
) -> _Classes:
    """The classes (`rows`, one a class) the caller may see listed, decided by the gate once per class (a caller who
    does not see every field must not find a dataset through a field name). With `bbox`, only classes
    whose data the caller may read (a listed-only entry does not show where its data lies)."""
    out = _Classes([], [])
    for row in rows:
        access = vis.access(row, frozenset())  # index rows carry no field list
        if not vis.in_catalogue(row, access) or (bbox is not None and not access.visible):
            out.every = False
        elif terms and access.field_names is not None:
            out.every = False
            out.meta_only.append(_class_key(row))
        else:
            out.full.append(_class_key(row))
            out.full_count += int(row.n)
    return out


def _allowed_sql(
    classes: _Classes,
    granted: bool,
    terms: Sequence[Sequence[Term]],
    sqlite: bool,
    params: dict[str, Any],
    binds: list[sa.BindParameter[Any]],
) -> str:
    """The condition admitting exactly the rows of the allowed classes."""
    key = _class_key_sql(granted)
    parts = []
    if classes.full:
        params["full_classes"] = classes.full
        binds.append(sa.bindparam("full_classes", expanding=True))
        parts.append(f"{key} IN :full_classes")
    if classes.meta_only:
        params["meta_classes"] = classes.meta_only
        binds.append(sa.bindparam("meta_classes", expanding=True))
        if sqlite:
            params["qm"] = _fts5_query(terms, meta_only=True)
            hit = "s.rid IN (SELECT rowid FROM search_fts WHERE search_fts MATCH :qm)"
        else:
            params["qm"] = _tsquery(terms, meta_only=True)
            hit = "s.tsv @@ CAST(:qm AS tsquery)"
        parts.append(f"({key} IN :meta_classes AND {hit})")
    return "(" + " OR ".join(parts) + ")"


def _match_sql(terms: Sequence[Sequence[Term]], sqlite: bool, params: dict[str, Any]) -> tuple[list[str], str, str]:
    """The text condition, the score expression and the order of results."""
    if not terms:
        return [], "0.0", "id"
    if sqlite:
        params["q"] = _fts5_query(terms, meta_only=False)
        weights = ", ".join(str(w) for _, _, w in SECTIONS)
        return ["search_fts MATCH :q"], f"-bm25(search_fts, {weights})", "score DESC, id"
    params["q"] = _tsquery(terms, meta_only=False)
    return ["s.tsv @@ CAST(:q AS tsquery)"], "ts_rank(s.tsv, CAST(:q AS tsquery))", "score DESC, id"


def _source_sql(terms: Sequence[Sequence[Term]], sqlite: bool) -> str:
    if terms and sqlite:
        return "FROM search_fts JOIN search_docs s ON s.rid = search_fts.rowid JOIN datasets d ON d.id = s.dataset_id"
    return "FROM search_docs s JOIN datasets d ON d.id = s.dataset_id"


def _stmt(sql: str, binds: Sequence[sa.BindParameter[Any]]) -> sa.TextClause:
    return sa.text(sql).bindparams(*binds) if binds else sa.text(sql)
