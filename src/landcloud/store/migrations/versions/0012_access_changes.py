"""`access_changes`: a generation number of everything an access decision reads, kept by the database itself.

A tile request authenticated and asked the gate anew every time: two statements and the policy in Python, ~0.6 ms of a
signed-in tile's ~1.3 ms (benchmarks/profiles/tiles-decisions.txt), while a map view asks for dozens of tiles with
one credential. `access.decisions` keeps the decision per credential and dataset and takes it again only while this
generation stands, so a revocation, a disabled account, a changed role, grant, unit or dataset still counts on the
very next request. Every table authentication and the gate read bumps it: users, sessions, api_tokens (not a token's
`last_used_at`, written as it is used), grants, datasets, dataset_versions, units (a test holds the list to what the
statements read).

PostgreSQL bumps it when the writing transaction commits (deferred constraint triggers): an ingest writes its new
dataset's row early in a transaction of minutes, and a bump then would hold this one row's lock, so every sign-in and
every other dataset's ingest, until it ended. TRUNCATE (which constraint triggers cannot follow) bumps at once. SQLite
has one writer at a time anyway: per row, at once. `instance` as in `unit_changes` (0011).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BUMP = "UPDATE access_changes SET generation = generation + 1 WHERE id = 1"
TABLES = ("users", "sessions", "api_tokens", "grants", "datasets", "dataset_versions", "units")
# api_tokens: every column but last_used_at (authentication records a token's use, to the minute)
TOKEN_COLUMNS = ("id", "user_id", "name", "token_hash", "scopes", "created_at", "expires_at", "revoked_at")
SQLITE_OPS = ("insert", "update", "delete")

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION access_changes_bump() RETURNS trigger AS $$
BEGIN {BUMP}; RETURN NULL; END $$ LANGUAGE plpgsql
"""


def _pg_triggers(table: str) -> list[str]:
    update = f"UPDATE OF {', '.join(TOKEN_COLUMNS)}" if table == "api_tokens" else "UPDATE"
    return [
        f"CREATE CONSTRAINT TRIGGER {table}_access_changed AFTER INSERT OR {update} OR DELETE ON {table} "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION access_changes_bump()",
        f"CREATE TRIGGER {table}_access_truncated AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION access_changes_bump()",
    ]


def _sqlite_triggers(table: str) -> list[str]:
    out = []
    for name in SQLITE_OPS:
        event = f"UPDATE OF {', '.join(TOKEN_COLUMNS)}" if name == "update" and table == "api_tokens" else name.upper()
        out.append(f"CREATE TRIGGER {table}_access_changed_{name} AFTER {event} ON {table} BEGIN {BUMP}; END")
    return out


def upgrade() -> None:
    table = op.create_table(
        "access_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("instance", sa.String(36), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "generation": 0, "instance": str(uuid.uuid4())}])
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        op.execute(PG_FUNCTION)
    for name in TABLES:
        for statement in _sqlite_triggers(name) if sqlite else _pg_triggers(name):
            op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in TABLES:
        if sqlite:
            for op_name in SQLITE_OPS:
                op.execute(f"DROP TRIGGER IF EXISTS {name}_access_changed_{op_name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}_access_changed ON {name}")
            op.execute(f"DROP TRIGGER IF EXISTS {name}_access_truncated ON {name}")
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS access_changes_bump()")
    op.drop_table("access_changes")
