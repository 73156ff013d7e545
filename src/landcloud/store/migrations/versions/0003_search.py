"""Catalogue search: one index row per dataset, full text over character bigrams.

SQLite: `search_docs` (bookkeeping, extent) plus the FTS5 table `search_fts` (rowid = rid).
PostgreSQL: `search_docs` carries the document as a tsvector under a GIN index. The words are
made by landcloud.catalog.search (bigrams of Chinese runs, whole Latin words), never by the
database's own parser, so both engines index and query exactly the same tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    columns = [
        sa.Column("dataset_id", sa.String(64), primary_key=True),
        sa.Column("rid", sa.Integer, nullable=True),  # SQLite: rowid of the document in search_fts
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),  # datasets.updated_at indexed
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("minx", sa.Float, nullable=True),
        sa.Column("miny", sa.Float, nullable=True),
        sa.Column("maxx", sa.Float, nullable=True),
        sa.Column("maxy", sa.Float, nullable=True),
    ]
    if not sqlite:
        columns.append(sa.Column("tsv", postgresql.TSVECTOR, nullable=False))
    op.create_table("search_docs", *columns)
    if sqlite:
        op.create_index("ix_search_docs_rid", "search_docs", ["rid"], unique=True)
        op.execute(
            "CREATE VIRTUAL TABLE search_fts USING fts5(title, keywords, body, fields, tokenize = 'unicode61 remove_diacritics 0')"
        )
    else:
        op.create_index("ix_search_docs_tsv", "search_docs", ["tsv"], postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS search_fts")
    op.drop_table("search_docs")
