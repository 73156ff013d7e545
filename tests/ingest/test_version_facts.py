"""What a submission notes of its rows (ingest/version_facts.py): which fields hold only strings and which keys the rows
carry, told column by column or row by row, the same answer."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from landcloud.ingest.version_facts import (
    KEY,
    KEYS_KEY,
    PropertyKeys,
    StringFields,
    SubmissionFacts,
    column_kinds,
    recorded,
    recorded_keys,
)

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


@given(st.lists(st.lists(st.one_of(st.just(...), VALUES), min_size=3, max_size=3), max_size=30), st.integers(1, 7))
def test_the_keys_the_rows_carry_by_columns_and_by_rows(table: list[list[Any]], per_batch: int) -> None:
    rows = [{n: v for n, v in zip(NAMES, row) if v is not ...} for row in table]
    by_rows, by_columns = PropertyKeys(), PropertyKeys()
    for start in range(0, len(rows), per_batch):
        batch = rows[start:start + per_batch]
        by_rows.see(batch, None)
        # a reader's columns: the fields some row of the batch has (the others hold null there, so their key too)
        by_columns.see(batch, {n: [r.get(n) for r in batch] for n in NAMES if any(n in r for r in batch)})
    assert by_rows.record() == sorted({n for r in rows for n in r}) == by_columns.record()


def test_a_submissions_facts_are_recorded_together_and_read_back() -> None:
    facts = SubmissionFacts(["A", "B"])
    facts.see([{"A": "x", "B": 1}, {"A": None, "B": 2, "C": True}], None, None)
    source: dict[str, Any] = {"filename": "x.gpkg"}
    facts.record_into(source)
    assert source[KEY] == {"checked": ["A", "B"], "only_strings": ["A"]}
    assert source[KEYS_KEY] == ["A", "B", "C"]
    assert recorded_keys(source) == {"A", "B", "C"}
    assert recorded_keys({"filename": "x.gpkg"}) is None  # recorded before this existed, or an incremental version
    assert recorded_keys({KEYS_KEY: "A"}) is None and recorded_keys({KEYS_KEY: ["A", 1]}) is None
