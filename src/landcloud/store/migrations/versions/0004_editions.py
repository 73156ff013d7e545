"""Public editions (公开版): release profiles, editions, recipient keys and fingerprinted copies.

A dataset that is an edition names its master (`datasets.edition_of`) and the version the
public may read (`datasets.published_version`): the gate decides on these two columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from landcloud.store.types import JSONType

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("edition_of", sa.String(64), nullable=True))
        batch.add_column(sa.Column("published_version", sa.Integer, nullable=True))
    op.create_table(
        "release_profiles",
        sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("profile", JSONType, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        _ts("updated_at"),
    )
    op.create_table(
        "editions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source_dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("source_version", sa.Integer, nullable=False),
        sa.Column("profile", JSONType, nullable=False),
        sa.Column("report", JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        _ts("created_at"),
        sa.Column("decided_by", sa.Text, nullable=True),
        _ts("decided_at", nullable=True),
        sa.UniqueConstraint("dataset_id", "version", name="uq_editions_dataset_version"),
    )
    op.create_index("ix_editions_source", "editions", ["source_dataset_id", "source_version"])
    op.create_table(
        "recipient_keys",
        sa.Column("recipient", sa.String(64), primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "fingerprinted_copies",
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
    )
    op.create_index("ix_fingerprinted_copies_dataset", "fingerprinted_copies", ["dataset_id", "version"])


def downgrade() -> None:
    op.drop_table("fingerprinted_copies")
    op.drop_table("recipient_keys")
    op.drop_table("editions")
    op.drop_table("release_profiles")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("published_version")
        batch.drop_column("edition_of")
