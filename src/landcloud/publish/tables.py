"""Public editions' own tables (migrations 0004, 0006): profiles, editions, build states, recipient keys, fingerprinted copies."""

from __future__ import annotations

import sqlalchemy as sa

from landcloud.store.db import metadata
from landcloud.store.types import JSONType


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


release_profiles = sa.Table(
    "release_profiles",
    metadata,
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("profile", JSONType, nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    _ts("updated_at"),
)

editions = sa.Table(
    "editions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("source_dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("source_version", sa.Integer, nullable=False),
    sa.Column("profile", JSONType, nullable=False),
    sa.Column("report", JSONType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | published | superseded
    sa.Column("created_by", sa.Text, nullable=False),
    _ts("created_at"),
    sa.Column("decided_by", sa.Text, nullable=True),
    _ts("decided_at", nullable=True),
    sa.UniqueConstraint("dataset_id", "version", name="uq_editions_dataset_version"),
    sa.Index("ix_editions_source", "source_dataset_id", "source_version"),
)

edition_builds = sa.Table(  # one row per master: its latest edition rebuild (publish/editions_jobs.py)
    "edition_builds",
    metadata,
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # queued | building | built | failed
    sa.Column("source_version", sa.Integer, nullable=True),
    sa.Column("edition_id", sa.Integer, nullable=True),
    sa.Column("error", JSONType, nullable=True),
    _ts("requested_at"),
    _ts("started_at", nullable=True),
    _ts("finished_at", nullable=True),
)

recipient_keys = sa.Table(
    "recipient_keys",
    metadata,
    sa.Column("recipient", sa.String(64), primary_key=True),
    sa.Column("secret", sa.Text, nullable=False),
    _ts("created_at"),
)

fingerprinted_copies = sa.Table(
    "fingerprinted_copies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("recipient", sa.String(64), sa.ForeignKey("recipient_keys.recipient"), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("grant_ids", JSONType, nullable=False),
    sa.Column("tolerance_m", sa.Float, nullable=False),
    sa.Column("epsg", sa.Integer, nullable=False),
    sa.Column("extent", JSONType, nullable=True),
    _ts("created_at"),
    sa.Index("ix_fingerprinted_copies_dataset", "dataset_id", "version"),
)
