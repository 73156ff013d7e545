"""Units: the administrative hierarchy (from the operator's division list) and, later, departments.

A unit's boundary (EPSG:4490) is optional; when present the submission rules check that a
unit's data lies inside it.
"""

from __future__ import annotations

import sqlalchemy as sa

from landcloud.store.db import metadata
from landcloud.store.types import Geometry, JSONType

units = sa.Table(
    "units",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("parent", sa.String(32), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False, server_default="administrative"),
    sa.Column("boundary", Geometry(), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_units_parent", "parent"),
)

# One row (id 1): bumped by the database itself (triggers, migration 0011) on every change to `units`, so "did the
# units change since I built my division index?" is a primary-key read, not an aggregate over every unit.
unit_changes = sa.Table(
    "unit_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("instance", sa.String(36), nullable=False),  # random, set once: a store rebuilt from scratch differs
)

# One row (id 1): bumped by the database itself (triggers, migration 0012) whenever a table that authentication or the
# gate reads changes (accounts, sessions, tokens, grants, datasets and their versions, units), so a remembered access
# decision (`access.decisions`) is checked with a primary-key read.
access_changes = sa.Table(
    "access_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("instance", sa.String(36), nullable=False),
)


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.Text, nullable=False, server_default=""),
    sa.Column("unit", sa.String(32), sa.ForeignKey("units.code"), nullable=False),
    sa.Column("roles", JSONType, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("totp_secret", sa.Text, nullable=True),  # encrypted with the platform secret
    sa.Column("oidc_subject", sa.Text, nullable=True, unique=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("password_changed_at", nullable=True),
)

signin_failures = sa.Table(
    "signin_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False),
    _ts("at"),
    sa.Column("ip", sa.String(64), nullable=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # sha256 of the cookie value
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    _ts("created_at"),
    _ts("expires_at"),
    _ts("revoked_at", nullable=True),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 of the token
    sa.Column("scopes", JSONType, nullable=False),
    _ts("created_at"),
    _ts("expires_at"),
    _ts("revoked_at", nullable=True),
    _ts("last_used_at", nullable=True),
)

applications = sa.Table(
    "applications",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("applicant_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("applicant_unit", sa.String(32), nullable=False),
    sa.Column("fields", JSONType, nullable=True),
    sa.Column("region", sa.String(12), nullable=True),
    sa.Column("purpose", sa.Text, nullable=False),
    _ts("period_start"),
    _ts("period_end"),
    sa.Column("status", sa.String(16), nullable=False),  # pending | approved | rejected | withdrawn
    sa.Column("stage", sa.String(16), nullable=False),  # owner | parent | done
    sa.Column("decisions", JSONType, nullable=False),
    _ts("created_at"),
    _ts("decided_at", nullable=True),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("grantee_unit", sa.String(32), nullable=False),
    sa.Column("fields", JSONType, nullable=True),  # None = every non-sensitive field
    sa.Column("region", sa.String(12), nullable=True),  # None = the whole dataset
    sa.Column("application_id", sa.String(36), nullable=True),
    sa.Column("purpose", sa.Text, nullable=False, server_default=""),
    _ts("starts_at"),
    _ts("expires_at"),
    _ts("created_at"),
    sa.Column("created_by", sa.String(36), nullable=True),
    _ts("revoked_at", nullable=True),
    sa.Column("revoked_by", sa.String(36), nullable=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
    _ts("at"),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("actor_unit", sa.String(32), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("dataset_id", sa.String(64), nullable=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("detail", sa.Text, nullable=False),  # canonical JSON, hashed as stored
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
