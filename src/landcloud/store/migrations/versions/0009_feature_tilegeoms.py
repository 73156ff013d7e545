"""Pre-generalised tile geometry: `feature_tilegeoms` (feature_id, level, geom).

A copy of a feature row's shape in EPSG:3857, simplified once for a generalisation level (`geo/tilegen.py`), read by
low-zoom vector tiles instead of simplifying the shape on every request. Only shapes a tile would simplify have one.
A row is never changed in place (a new version writes new rows), so its copies never go stale; they go with the row
(ON DELETE CASCADE). The copy is a speed-up only: a tile whose row has none simplifies on the fly.

PostGIS: geometry(Geometry, 3857). SQLite: WKB in a BLOB, as every geometry of the SQLite store.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from landcloud.store.types import BigId

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_table(
            "feature_tilegeoms",
            sa.Column("feature_id", BigId, sa.ForeignKey("features.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("level", sa.SmallInteger, primary_key=True),
            sa.Column("geom", sa.LargeBinary, nullable=False),
        )
        return
    op.execute(
        "CREATE TABLE feature_tilegeoms (feature_id bigint NOT NULL REFERENCES features (id) ON DELETE CASCADE, "
        "level smallint NOT NULL, geom geometry(Geometry, 3857) NOT NULL, PRIMARY KEY (feature_id, level))"
    )


def downgrade() -> None:
    op.drop_table("feature_tilegeoms")
