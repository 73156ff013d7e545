"""Finding administrative regions by name or code, with the extent of their boundary.

Division names, codes and outlines are public reference data (GB/T 2260), so the portal's
"zoom to a region" works for everyone; external departments are not regions and never listed.
"""

from __future__ import annotations

from typing import Any

import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from landcloud.access.tables import units
from landcloud.store.db import backend_of

LEVEL_ORDER = sa.case({"province": 0, "prefecture": 1, "county": 2}, value=units.c.level, else_=3)


def find_regions(engine: Engine, q: str | None, level: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
    """Regions whose code starts with `q` or whose name contains it (and of `level`, if given);
    exact matches first, then from province down.

    Each comes with `bbox` [minx, miny, maxx, maxy] (CGCS2000) when a boundary is loaded, else None.
    """
    q = (q or "").strip()
    if not q and not level:
        return []
    like = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    col = sa.func.ST_AsBinary(units.c.boundary) if backend_of(engine) == "postgis" else units.c.boundary
    query = (
        sa.select(units.c.code, units.c.name, units.c.level, units.c.parent, col.label("wkb"))
        .where(units.c.kind == "administrative")
        .where(sa.or_(units.c.code.like(f"{like}%", escape="\\"), units.c.name.like(f"%{like}%", escape="\\")))
        .where(units.c.level == level if level else sa.true())
        .order_by((units.c.name == q).desc(), (units.c.code == q).desc(), LEVEL_ORDER, units.c.code)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out = []
    for r in rows:
        bbox = None
        if r.wkb is not None:
            bounds = shapely.from_wkb(bytes(r.wkb)).bounds
            bbox = [round(b, 6) for b in bounds]
        out.append({"code": r.code, "name": r.name, "level": r.level, "parent": r.parent, "bbox": bbox})
    return out
