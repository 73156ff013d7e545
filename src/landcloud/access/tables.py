"""Units: the administrative hierarchy (from the operator's division list) and, later, departments.

A unit's boundary (EPSG:4490) is optional; when present the submission rules check that a
unit's data lies inside it.
"""

from __future__ import annotations

import sqlalchemy as sa

from landcloud.store.db import metadata
from landcloud.store.types import Geometry

units = sa.Table(
    "units",
    metadata,
    sa.Column("code", sa.String(12), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("parent", sa.String(12), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False, server_default="administrative"),
    sa.Column("boundary", Geometry(), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_units_parent", "parent"),
)
