"""Which fields of a submission hold nothing but strings, noted while its rows stream in and kept with the version.

Why: the PostGIS tile statement carries a field as a plain text column only once it is known that every row of the
version holds a string (or null, or nothing) there; until then it tests each value (`publish/tile_types.py`). That
knowledge came from a scan of the version's rows, run the first time a tile of the version was asked for: the first
tiles after a server started, or after a submission, were made the slow way while it ran (100,000 parcels: a fresh
server's first pass over 80 small tiles, median 2.76 ms against 1.01 ms with the record; the scan grows with the
version). The submission sees every value anyway:
it notes the answer for every field and records it in the version's `source` ("string_fields"), which
`tile_types` reads before it would scan. Only a replacement records it: its version's rows are the submitted rows
(an unchanged feature keeps its stored row, whose content hash, over the same JSON text, is equal). The rows of an
incremental version include older rows the submission does not see: such a version is scanned as before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

KEY = "string_fields"  # in a version's `source`
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
