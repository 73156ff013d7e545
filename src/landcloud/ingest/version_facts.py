"""What a replacing submission's rows hold, noted while they stream in and kept with the version: which fields hold
nothing but strings, and which property keys the rows carry.

Why: the PostGIS tile statement can write a tile more cheaply once it knows these of the version (`publish/
tile_types.py`): a field every row holds as a string (or null, or nothing) is carried as a plain text column with no
test of each value, and where the caller sees every key the rows carry, the rows' whole `props` go to ST_AsMVT as they
are instead of an object built per row. That knowledge came from a scan of the version's rows, run the first time a
tile of the version was asked for: the first tiles after a server started, or after a submission, were made the slow
way while it ran (100,000 parcels: a fresh server's first pass over 80 small tiles, median 2.76 ms against 1.01 ms with
the record; the scan grows with the version). The submission sees every value anyway: it notes the answers and records
them in the version's `source` ("string_fields", "property_keys"), which `tile_types` reads before it would scan. Only a
replacement records them: its version's rows are the submitted rows (an unchanged feature keeps its stored row, whose
content hash, over the same JSON text, is equal). The rows of an incremental version include older rows the submission
does not see: such a version is scanned as before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

KEY = "string_fields"  # in a version's `source`
KEYS_KEY = "property_keys"  # likewise
_STRINGY = frozenset({str, type(None)})


def column_kinds(columns: Mapping[str, Sequence[Any]]) -> dict[str, set[type]]:
    """The Python types each column holds (once per batch: `pipeline._json_format` reads them too)."""
    return {name: set(map(type, column)) for name, column in columns.items()}


class StringFields:
    """The fields every row seen so far holds as a string, a null or nothing, among `names`."""

    def __init__(self, names: Iterable[str]) -> None:
        self.checked = frozenset(names)
        self._left = set(self.checked)

    def see(self, props: Iterable[Mapping[str, Any]], kinds: Mapping[str, Collection[type]] | None) -> None:
        """A batch: by its columns' types where the reader gave it column by column (`column_kinds`), else row by row."""
        if kinds is not None:
            self.see_kinds(kinds)
        else:
            self.see_rows(props)

    def see_kinds(self, kinds: Mapping[str, Collection[type]]) -> None:
        """A batch given column by column (its columns' types, `column_kinds`); a field it lacks holds nothing there."""
        for name in [n for n in self._left if n in kinds]:
            if not _STRINGY.issuperset(kinds[name]):
                self._left.discard(name)

    def see_rows(self, props: Iterable[Mapping[str, Any]]) -> None:
        """A batch given row by row."""
        if not self._left:
            return
        for p in props:
            for name in [n for n in self._left if p.get(n).__class__ not in _STRINGY]:
                self._left.discard(name)
            if not self._left:
                return

    def record(self) -> dict[str, list[str]]:
        """What the version's `source` keeps: the fields looked at, and those of them that hold only strings."""
        return {"checked": sorted(self.checked), "only_strings": sorted(self._left)}


def recorded(source: Mapping[str, Any], fields: Collection[str]) -> frozenset[str] | None:
    """From a version's `source`: the fields of `fields` that hold only strings in it, or None when the version has no
    record that answers for all of them (recorded before this was, an incremental version, a field not looked at)."""
    note = source.get(KEY)
    if not isinstance(note, dict):
        return None
    checked, strings = note.get("checked"), note.get("only_strings")
    if not isinstance(checked, list) or not isinstance(strings, list) or not set(fields) <= set(checked):
        return None
    return frozenset(strings).intersection(fields)


class PropertyKeys:
    """Every property key the rows seen so far carry (a key with a null value too: its row's JSON holds it)."""

    def __init__(self) -> None:
        self._keys: set[str] = set()

    def see(self, props: Sequence[Mapping[str, Any]], columns: Mapping[str, Any] | None) -> None:
        """A batch: its columns' names where the reader gave it column by column (every row has exactly those),
        else each row's keys."""
        self._keys.update(columns if columns is not None else set().union(*props))

    def record(self) -> list[str]:
        return sorted(self._keys)


def recorded_keys(source: Mapping[str, Any]) -> frozenset[str] | None:
    """From a version's `source`: every property key its rows carry, or None when the version has no such record."""
    keys = source.get(KEYS_KEY)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return None
    return frozenset(keys)


class SubmissionFacts:
    """Both notes of one submission, told every batch and recorded together (`record_into` a version's `source`)."""

    def __init__(self, field_names: Iterable[str]) -> None:
        self.strings = StringFields(field_names)
        self.keys = PropertyKeys()

    def see(self, props: Sequence[Mapping[str, Any]], columns: Mapping[str, Sequence[Any]] | None,
            kinds: Mapping[str, Collection[type]] | None) -> None:
        self.strings.see(props, kinds)
        self.keys.see(props, columns)

    def record_into(self, source: dict[str, Any]) -> None:
        source[KEY] = self.strings.record()
        source[KEYS_KEY] = self.keys.record()
