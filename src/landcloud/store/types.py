"""Column types that differ between the two backends.

Geometry is `geometry(Geometry, 4490)` in PostGIS and WKB in a BLOB in SQLite; JSON is
`jsonb` in PostgreSQL (indexable, queryable by the filters that come later) and text in SQLite.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.types import UserDefinedType

SRID = 4490


class Geometry(UserDefinedType):
    """A geometry column in EPSG:4490; values travel as WKB bytes on both backends."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return f"geometry(Geometry,{SRID})"


@compiles(Geometry, "sqlite")
def _geometry_sqlite(_type: Geometry, _compiler: Any, **_kw: Any) -> str:
    return "BLOB"


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
