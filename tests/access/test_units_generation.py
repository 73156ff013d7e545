"""The division index's key: a generation of the units table kept by the database (migration 0011), on both stores.

Every access decision reads it with the caller's unit; a unit written by any path (the loader, a boundary, a
department, plain SQL) must change it, a failed write must not, and the statement must give one row whether or not
the caller's unit exists.
"""

from __future__ import annotations

import pytest
import shapely
import sqlalchemy as sa

from landcloud.access import units
from landcloud.access.tables import unit_changes
from landcloud.access.tables import units as units_table

from conftest import REFERENCE


def _key_and_unit(engine: sa.Engine, code: str | None) -> tuple[units.IndexKey, dict[str, object] | None]:
    with engine.connect() as conn:
        rows = conn.execute(units.INDEX_KEY_AND_UNIT, {"unit_code": code}).all()
    assert len(rows) == 1
    return units.index_key_and_unit_of(rows[0])


def test_every_write_to_the_units_changes_the_key_and_nothing_else_does(engine: sa.Engine) -> None:
    start, none = _key_and_unit(engine, "230102")
    assert none is None and start == units._index_key(engine)
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    loaded, daoli = _key_and_unit(engine, "230102")
    assert daoli is not None and daoli["name"] == "道里区" and daoli["parent"] == "230100" and daoli["kind"] == "administrative"
    assert loaded[1] == start[1] and loaded[0] > start[0]
    assert _key_and_unit(engine, "999999") == (loaded, None)  # an unknown unit: the key, no unit
    assert _key_and_unit(engine, None) == (loaded, None)
    assert units.division_index(engine) is units.division_index(engine)  # cached while the key stands

    index = units.division_index(engine)
    units.set_boundary(engine, "230102", shapely.box(126.5, 45.7, 126.7, 45.8))
    bounded, _ = _key_and_unit(engine, "230102")
    assert bounded[0] > loaded[0]
    assert units.division_index(engine) is not index  # read again after the change

    units.add_department(engine, "court-230102", "道里区人民法院", "230102")
    added, court = _key_and_unit(engine, "court-230102")
    assert added[0] > bounded[0] and court is not None and court["kind"] != "administrative"

    with engine.begin() as conn:  # any path, plain SQL too
        conn.execute(sa.delete(units_table).where(units_table.c.code == "court-230102"))
    removed, gone = _key_and_unit(engine, "court-230102")
    assert removed[0] > added[0] and gone is None

    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # a failed write leaves the key as it was
        conn.execute(sa.update(units_table).where(units_table.c.code == "230102").values(name="x"))
        conn.execute(units_table.insert().values(code="230102", name="dup", level="county", updated_at=sa.func.now()))
    assert _key_and_unit(engine, "230102")[0] == removed

    with engine.connect() as conn:  # reads change nothing
        conn.execute(sa.select(units_table)).all()
    assert units._index_key(engine) == removed


def test_the_instance_is_the_stores_own(engine: sa.Engine) -> None:
    """A store rebuilt from scratch draws a new instance: a process that cached the old store's index under the same
    generation does not take it for the new one's."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(unit_changes)).all()
    assert len(rows) == 1 and rows[0].id == 1 and len(rows[0].instance) == 36
    assert units._index_key(engine) == (rows[0].generation, rows[0].instance)
