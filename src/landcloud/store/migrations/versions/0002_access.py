"""Access: users, sign-in failures, sessions, API tokens, applications, grants, the audit chain.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from landcloud.store.types import JSONType

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


APPEND_ONLY_SQLITE = """
CREATE TRIGGER audit_log_no_{op} BEFORE {OP} ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
"""
APPEND_ONLY_PG = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"""


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:  # department codes are longer than administrative ones
        op.alter_column("units", "code", type_=sa.String(32))
        op.alter_column("units", "parent", type_=sa.String(32))
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.Text, nullable=False, server_default=""),
        sa.Column("unit", sa.String(32), sa.ForeignKey("units.code"), nullable=False),
        sa.Column("roles", JSONType, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("totp_secret", sa.Text, nullable=True),
        sa.Column("oidc_subject", sa.Text, nullable=True, unique=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("password_changed_at", nullable=True),
    )
    op.create_table(
        "signin_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        _ts("at"),
        sa.Column("ip", sa.String(64), nullable=True),
    )
    op.create_index("ix_signin_failures_username_at", "signin_failures", ["username", "at"])
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("revoked_at", nullable=True),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", JSONType, nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("revoked_at", nullable=True),
        _ts("last_used_at", nullable=True),
    )
    op.create_table(
        "applications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("applicant_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("applicant_unit", sa.String(32), nullable=False),
        sa.Column("fields", JSONType, nullable=True),
        sa.Column("region", sa.String(12), nullable=True),
        sa.Column("purpose", sa.Text, nullable=False),
        _ts("period_start"),
        _ts("period_end"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("decisions", JSONType, nullable=False),
        _ts("created_at"),
        _ts("decided_at", nullable=True),
    )
    op.create_index("ix_applications_dataset", "applications", ["dataset_id"])
    op.create_table(
        "grants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("grantee_unit", sa.String(32), nullable=False),
        sa.Column("fields", JSONType, nullable=True),
        sa.Column("region", sa.String(12), nullable=True),
        sa.Column("application_id", sa.String(36), nullable=True),
        sa.Column("purpose", sa.Text, nullable=False, server_default=""),
        _ts("starts_at"),
        _ts("expires_at"),
        _ts("created_at"),
        sa.Column("created_by", sa.String(36), nullable=True),
        _ts("revoked_at", nullable=True),
        sa.Column("revoked_by", sa.String(36), nullable=True),
    )
    op.create_index("ix_grants_unit_dataset", "grants", ["grantee_unit", "dataset_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
        _ts("at"),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("actor_unit", sa.String(32), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    if sqlite:
        for name in ("update", "delete"):
            op.execute(APPEND_ONLY_SQLITE.format(op=name, OP=name.upper()))
    else:
        op.execute(APPEND_ONLY_PG)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    for table in ("audit_head", "audit_log", "grants", "applications", "api_tokens", "sessions", "signin_failures", "users"):
        op.drop_table(table)
