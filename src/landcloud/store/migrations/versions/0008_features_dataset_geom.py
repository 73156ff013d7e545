"""PostGIS: one spatial index on (dataset, geometry) instead of the geometry alone.

Every spatial read of `features` is within one dataset (items pages, tiles, "what is here",
downloads by box). With the geometry alone in the GiST, a box covering many rows (a tile at z8,
a large bbox page) made the planner AND the GiST's bitmap with the dataset's whole version index:
100,000 entries read per tile for a 100k-parcel dataset, a million for a county survey of a
province, whatever the tile held (benchmarks/profiles/tiles-cold3.txt, section 3). A GiST over
(dataset_id, geom), through btree_gist, answers both conditions in one index scan, so a read's cost
follows the rows in the box, not the size of the dataset. It replaces the geometry-only index (every
query names its dataset), so writes maintain one GiST as before. `btree_gist` ships with
PostgreSQL (contrib) and is a trusted extension: the database owner may create it.

SQLite is unchanged: its R*Tree holds every dataset's boxes and the join names the dataset.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute("CREATE INDEX ix_features_dataset_geom ON features USING gist (dataset_id, geom)")
    op.execute("DROP INDEX IF EXISTS ix_features_geom")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE INDEX ix_features_geom ON features USING gist (geom)")
    op.execute("DROP INDEX IF EXISTS ix_features_dataset_geom")
