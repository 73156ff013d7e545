"""The overlap rule as a property of the dataset (`datasets.overlap_check`).

A layer whose polygons overlap by nature (buildings on land-use areas, an OSM extract) is
submitted without the overlap rule; the choice belongs to the dataset, so that every later
submission, incremental ones and OGC API transactions included, is checked the same way.
Existing datasets keep the rule (server default true).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both engines: a batch rebuild of `datasets` on SQLite would drop the
    # search triggers of revision 0005.
    op.add_column("datasets", sa.Column("overlap_check", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("datasets", "overlap_check")  # SQLite ≥ 3.35 drops a column in place, keeping the triggers
