"""Registered Xi'an-80 / Beijing-54 → CGCS2000 transformation sets.

PROJ has no real transformation for these datums, so a conversion happens only with a set an
administrator registered for the submitting unit's region (parameters are classified
configuration, not code). The most specific region that contains the unit wins.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from landcloud.geo.crs import TransformationSet
from landcloud.ingest.tables import transformation_sets
from landcloud.messages import Conflict, LandcloudError


def register(engine: Engine, tset: TransformationSet, replace: bool = False) -> None:
    if tset.source_datum not in ("xian80", "beijing54"):
        raise LandcloudError(
            "transformation.bad_datum",
            f"源基准“{tset.source_datum}”无效，应为 xian80 或 beijing54",
            f"invalid source datum '{tset.source_datum}': use xian80 or beijing54",
        )
    data = tset.to_dict()
    row = dict(
        source_datum=tset.source_datum,
        region_code=tset.region_code,
        method=tset.method,
        params=data,
        created_at=datetime.now(UTC),
    )
    with engine.begin() as conn:
        exists = conn.execute(sa.select(transformation_sets.c.name).where(transformation_sets.c.name == tset.name)).first()
        if exists and not replace:
            raise Conflict(
                "transformation.exists", f"转换参数集“{tset.name}”已存在", f"transformation set '{tset.name}' already exists"
            )
        if exists:
            conn.execute(transformation_sets.update().where(transformation_sets.c.name == tset.name).values(**row))
        else:
            conn.execute(transformation_sets.insert().values(name=tset.name, **row))


def list_sets(engine: Engine) -> list[TransformationSet]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(transformation_sets.c.params).order_by(transformation_sets.c.name)).all()
    return [TransformationSet.from_dict(r.params) for r in rows]


def find_for(engine: Engine, datum: str, unit: str | None) -> TransformationSet | None:
    """The set for `datum` whose region is the longest code prefix of the unit's code."""
    best: TransformationSet | None = None
    for tset in list_sets(engine):
        region = tset.region_code.rstrip("0") or tset.region_code
        if len(region) % 2:
            region += "0"
        if tset.source_datum != datum or not (unit or "").startswith(region):
            continue
        if best is None or len(tset.region_code.rstrip("0")) > len(best.region_code.rstrip("0")):
            best = tset
    return best
