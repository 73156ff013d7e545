"""Initial schema: units, datasets, versions, features, submissions, transformation sets.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from landcloud.store.types import BigId, Geometry, JSONType

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "units",
        sa.Column("code", sa.String(12), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("parent", sa.String(12), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False, server_default="administrative"),
        sa.Column("boundary", Geometry(), nullable=True),
        _ts("updated_at"),
    )
    op.create_index("ix_units_parent", "units", ["parent"])
    op.create_table(
        "datasets",
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
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        _ts("created_at"),
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
    op.create_table(
        "features",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
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
    )
    op.create_index("ix_features_dataset_fkey", "features", ["dataset_id", "fkey"])
    op.create_index("ix_features_dataset_vfrom", "features", ["dataset_id", "v_from"])
    op.create_index("ix_features_dataset_vto", "features", ["dataset_id", "v_to"])
    if sqlite:
        op.execute("CREATE VIRTUAL TABLE features_rtree USING rtree(id, minx, maxx, miny, maxy)")
    else:
        op.execute("CREATE INDEX ix_features_geom ON features USING gist (geom)")
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dataset_id", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(12), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("options", JSONType, nullable=False),
        sa.Column("report", JSONType, nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        _ts("created_at"),
        _ts("finished_at", nullable=True),
    )
    op.create_index("ix_submissions_dataset", "submissions", ["dataset_id"])
    op.create_table(
        "transformation_sets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("source_datum", sa.String(16), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        _ts("created_at"),
    )


def downgrade() -> None:
    for table in ("transformation_sets", "submissions", "features", "dataset_versions", "datasets", "units"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS features_rtree")
