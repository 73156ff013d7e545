"""PostGIS: the spatial index's dataset column as a 64-bit hash of the dataset id, not the text itself.

Migration 0008 made every spatial read one scan of a GiST over (dataset_id, geom), through btree_gist. Kept up
row by row, that index was most of the server's work in a large submission (~20 of ~34 s of CPU per million
parcels; `benchmarks/profiles/ingest-5.txt`): btree_gist's penalty for a text key compares strings under the
collation and decompresses (detoasts) the key of every entry on the way down, for every row, although every row
of a version carries the same dataset id. A GiST over (hashtextextended(dataset_id, 0), geom, dataset_id) keeps the
same selectivity per dataset with an 8-byte integer key first (no collation, no detoast): GiST chooses a subtree
column by column and looks at a later column only on a tie, so the text, last, is compared only where two boxes
tie. It stays in the index for the planner: with the hash alone, `dataset_id = :d` was no index condition, and the
planner ANDed the GiST's bitmap with the dataset's version index again (the read 0008 removed). 300,000 rows
inserted one by one: (dataset_id, geom) 4.0-4.9 s, (hash, geom) 2.2-3.2 s, (hash, geom, dataset_id) 2.5-3.5 s
(`benchmarks/profiles/ingest-columns.txt`). Every spatial read names its dataset through
`PostGISFeatureStore.conditions`, which adds the same expression (`DATASET_HASH_SQL`) beside `dataset_id = :d`, so
the planner matches this index; a hash shared by two datasets would only make its first column less selective.
PostgreSQL keeps `hashtextextended` stable across versions: hash partitions of text rely on it.

SQLite is unchanged.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE INDEX ix_features_dataset_hash_geom ON features USING gist ((hashtextextended(dataset_id, 0)), geom, dataset_id)"
    )
    op.execute("DROP INDEX IF EXISTS ix_features_dataset_geom")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE INDEX ix_features_dataset_geom ON features USING gist (dataset_id, geom)")
    op.execute("DROP INDEX IF EXISTS ix_features_dataset_hash_geom")
