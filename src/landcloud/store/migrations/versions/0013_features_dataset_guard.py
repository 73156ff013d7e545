"""PostgreSQL: the features table's reference to its dataset is kept by triggers on `datasets` and one lock per
write instead of a foreign key checked row by row.

A foreign key is checked per inserted row: a query on `datasets` and a row lock, ~5.4 µs each. In a submission of a
million parcels (one COPY into `features`, every row with the same dataset id) that was 5.4 of the server's ~23 s
and 5.5 s of the submission's 30.8 s (`benchmarks/profiles/ingest-fk.txt`): the server, busy keeping the indexes up,
finishes the COPY after the client has sent it.

What the key guaranteed is still guaranteed:
- *No row for a dataset that does not exist.* Every write of rows goes through the feature store, which reads the
  dataset's row `FOR KEY SHARE` first (`FeatureStore.hold_dataset`), as the key's check did for each row: the write
  fails if it is missing, and the row cannot be deleted or its id changed until the writing transaction ends.
- *No dataset removed or renamed while it has rows.* A trigger on `datasets` refuses a DELETE, an UPDATE of its id
  and a TRUNCATE that would leave rows behind (SQLSTATE 23503, as the key did). The TRUNCATE check runs after the
  statement, so that `TRUNCATE datasets, features` still works.
What it no longer guards: an INSERT into `features` written by hand, around the store.

SQLite keeps its key: it checks a row in well under a microsecond, and dropping it would rebuild the table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_features_dataset_id_datasets"
PG_FUNCTIONS = """
CREATE OR REPLACE FUNCTION datasets_keep_features() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM features WHERE dataset_id = OLD.id) THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = format('dataset %L still has features: they would be left without their dataset', OLD.id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION datasets_truncate_keeps_features() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM features) THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = 'datasets truncated while features has rows: truncate features with it';
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
"""
PG_TRIGGERS = [
    "CREATE TRIGGER datasets_keep_features AFTER DELETE OR UPDATE OF id ON datasets "
    "FOR EACH ROW EXECUTE FUNCTION datasets_keep_features()",
    "CREATE TRIGGER datasets_truncate_keeps_features AFTER TRUNCATE ON datasets "
    "FOR EACH STATEMENT EXECUTE FUNCTION datasets_truncate_keeps_features()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(PG_FUNCTIONS)
    for statement in PG_TRIGGERS:
        op.execute(statement)
    op.execute(f"ALTER TABLE features DROP CONSTRAINT IF EXISTS {FOREIGN_KEY}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE features ADD CONSTRAINT {FOREIGN_KEY} FOREIGN KEY (dataset_id) REFERENCES datasets (id)")
    op.execute("DROP TRIGGER IF EXISTS datasets_truncate_keeps_features ON datasets")
    op.execute("DROP TRIGGER IF EXISTS datasets_keep_features ON datasets")
    op.execute("DROP FUNCTION IF EXISTS datasets_truncate_keeps_features()")
    op.execute("DROP FUNCTION IF EXISTS datasets_keep_features()")
