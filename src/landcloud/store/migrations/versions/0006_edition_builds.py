"""Edition builds: the state of the edition rebuild a new master version asked for.

Rebuilding a master's edition runs after the request that made the new version has answered
(publish/editions_jobs.py); this row per master says where it stands (queued, building, built,
failed with its error) across processes, so a failure is seen, never a 500.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from landcloud.store.types import JSONType

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edition_builds",
        sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source_version", sa.Integer, nullable=True),
        sa.Column("edition_id", sa.Integer, nullable=True),
        sa.Column("error", JSONType, nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("edition_builds")
