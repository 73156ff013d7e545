"""The feature table: every version of every feature of every dataset.

A row is visible in version N when `v_from <= N` and (`v_to` is null or `v_to > N`). Accepting
a version only inserts rows and closes rows (sets `v_to`); nothing is updated in place or
deleted, so every earlier version can be read back exactly.
"""

from __future__ import annotations

import sqlalchemy as sa

from landcloud.store.db import metadata
from landcloud.store.types import BigId, Geometry, JSONType

features = sa.Table(
    "features",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # a foreign key on SQLite; on PostgreSQL kept by triggers on `datasets` and the store's lock per write (migration 0013)
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("fkey", sa.Text, nullable=False),
    sa.Column("v_from", sa.Integer, nullable=False),
    sa.Column("v_to", sa.Integer, nullable=True),
    sa.Column("props", JSONType, nullable=False),
    sa.Column("geom", Geometry(), nullable=True),
    sa.Column("minx", sa.Float, nullable=True),
    sa.Column("miny", sa.Float, nullable=True),
    sa.Column("maxx", sa.Float, nullable=True),
    sa.Column("maxy", sa.Float, nullable=True),
    sa.Column("area_m2", sa.Float, nullable=True),
    sa.Column("chash", sa.String(32), nullable=False),
    sa.Index("ix_features_dataset_fkey", "dataset_id", "fkey"),
    sa.Index("ix_features_dataset_vfrom", "dataset_id", "v_from"),
    sa.Index("ix_features_dataset_vto", "dataset_id", "v_to"),
)
