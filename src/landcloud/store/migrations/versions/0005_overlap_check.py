"""The overlap rule as a property of the dataset (`datasets.overlap_check`).

A layer whose polygons overlap by nature (buildings on land-use areas, an OSM extract) is
submitted without the overlap rule; the choice belongs to the dataset, so that every later
submission, incremental ones and OGC API transactions included, is checked the same way.
Existing datasets keep the rule (server default true).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("overlap_check", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("overlap_check")
