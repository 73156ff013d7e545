"""Which fields hold only strings (ingest/string_fields.py): told column by column or row by row, the same answer."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from landcloud.ingest.string_fields import KEY, StringFields, column_kinds, recorded

NAMES = ["A", "B", "C"]
VALUES = st.one_of(st.text(max_size=3), st.none(), st.integers(), st.floats(allow_nan=False), st.booleans())


@given(st.lists(st.lists(st.one_of(st.just(...), VALUES), min_size=3, max_size=3), max_size=30), st.integers(1, 7))
def test_columns_and_rows_give_what_every_value_says(table: list[list[Any]], per_batch: int) -> None:
    rows = [{n: v for n, v in zip(NAMES, row) if v is not ...} for row in table]  # `...`: the row lacks the field
    want = {n for n in NAMES if all(r.get(n) is None or isinstance(r.get(n), str) for r in rows)}
    by_rows, by_columns = StringFields(NAMES), StringFields(NAMES)
    for start in range(0, len(rows), per_batch):
        batch = rows[start:start + per_batch]
        by_rows.see_rows(batch)
        by_columns.see_kinds(column_kinds({n: [r.get(n) for r in batch] for n in NAMES if any(n in r for r in batch)}))
    assert set(by_rows.record()["only_strings"]) == want == set(by_columns.record()["only_strings"])
    assert by_rows.record()["checked"] == NAMES


def test_the_record_answers_only_for_the_fields_it_looked_at() -> None:
    seen = StringFields(["A", "B"])
    seen.see_rows([{"A": "x", "B": 1}])
    source = {"filename": "x.gpkg", KEY: seen.record()}
    assert recorded(source, ["A", "B"]) == {"A"}
    assert recorded(source, ["B"]) == frozenset()
    assert recorded(source, ["A", "C"]) is None  # C was not looked at: scan
    assert recorded({"filename": "x.gpkg"}, ["A"]) is None  # recorded before this existed
    assert recorded({KEY: "garbled"}, ["A"]) is None
