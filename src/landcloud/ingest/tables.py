"""Submissions and the coordinate transformation sets administrators register."""

from __future__ import annotations

import sqlalchemy as sa

from landcloud.store.db import metadata
from landcloud.store.types import JSONType

submissions = sa.Table(
    "submissions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("dataset_id", sa.String(64), nullable=False),
    sa.Column("unit", sa.String(12), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("options", JSONType, nullable=False),
    sa.Column("report", JSONType, nullable=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_submissions_dataset", "dataset_id"),
)

transformation_sets = sa.Table(
    "transformation_sets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("source_datum", sa.String(16), nullable=False),
    sa.Column("region_code", sa.String(12), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
