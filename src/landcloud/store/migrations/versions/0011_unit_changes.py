"""`unit_changes`: a generation number of the units table, kept by the database itself.

Every access decision asks whether the cached division index is still current. It asked with an aggregate over the
whole units table (count and newest `updated_at`) in the same statement as the caller's unit: ~0.15 ms with a
province's 136 counties, 0.5-0.7 ms with the national list's 3,214 units and ~6.6 ms with 40,000 (townships), on
every request (benchmarks/profiles/tiles-fixed.txt). Triggers bump one row on every insert, update or delete of a unit
(PostgreSQL: once per statement, TRUNCATE too; SQLite: per row, it has no statement triggers), so the question is a
primary-key read. `instance` is random, set once here: a store rebuilt from scratch never repeats an old (generation,
instance) pair, so a long-running process cannot take its cached index for the new store's.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BUMP = "UPDATE unit_changes SET generation = generation + 1 WHERE id = 1"
PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION unit_changes_bump() RETURNS trigger AS $$
BEGIN {BUMP}; RETURN NULL; END $$ LANGUAGE plpgsql;
CREATE TRIGGER units_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON units
FOR EACH STATEMENT EXECUTE FUNCTION unit_changes_bump();
"""
SQLITE_OPS = ("insert", "update", "delete")


def upgrade() -> None:
    table = op.create_table(
        "unit_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("instance", sa.String(36), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "generation": 0, "instance": str(uuid.uuid4())}])
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_OPS:
            op.execute(f"CREATE TRIGGER units_changed_{name} AFTER {name.upper()} ON units BEGIN {BUMP}; END")
    else:
        op.execute(PG_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_OPS:
            op.execute(f"DROP TRIGGER IF EXISTS units_changed_{name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS units_changed ON units")
        op.execute("DROP FUNCTION IF EXISTS unit_changes_bump()")
    op.drop_table("unit_changes")
