"""Datasets and their versions: the catalogue's own tables."""

from __future__ import annotations

import sqlalchemy as sa

from landcloud.store.db import metadata
from landcloud.store.types import JSONType

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("title_en", sa.Text, nullable=False, server_default=""),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("theme", sa.String(32), nullable=False, server_default="other"),
    sa.Column("owner_unit", sa.String(12), nullable=False),
    sa.Column("standard_schema", sa.String(32), nullable=True),
    sa.Column("fields", JSONType, nullable=False),
    sa.Column("update_frequency", sa.String(32), nullable=False, server_default="irregular"),
    sa.Column("sharing_class", sa.String(16), nullable=False, server_default="conditional"),
    sa.Column("openness", sa.String(16), nullable=False, server_default="not_open"),
    sa.Column("security_level", sa.String(16), nullable=False, server_default="internal"),
    sa.Column("keywords", JSONType, nullable=False),
    sa.Column("key_field", sa.String(64), nullable=True),
    sa.Column("jurisdiction_field", sa.String(64), nullable=True),
    sa.Column("extent", JSONType, nullable=True),
    sa.Column("feature_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("current_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("extra", JSONType, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("edition_of", sa.String(64), nullable=True),  # an edition: its master dataset (migration 0004)
    sa.Column("published_version", sa.Integer, nullable=True),  # an edition: the version the public reads
    # the overlap rule (图斑不得重叠) for every submission of the dataset (migration 0007)
    sa.Column("overlap_check", sa.Boolean, nullable=False, server_default=sa.true()),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("unit", sa.String(12), nullable=True),
    sa.Column("submission_id", sa.String(36), nullable=True),
    sa.Column("based_on", sa.Integer, nullable=True),
    sa.Column("feature_count", sa.BigInteger, nullable=False),
    sa.Column("added", sa.BigInteger, nullable=False),
    sa.Column("removed", sa.BigInteger, nullable=False),
    sa.Column("changed", sa.BigInteger, nullable=False),
    sa.Column("extent", JSONType, nullable=True),
    sa.Column("source", JSONType, nullable=False),
    sa.Column("report", JSONType, nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
)
