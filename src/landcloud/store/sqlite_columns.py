"""Many rows into SQLite in one statement, each column bound as one parameter.

Why: Python's sqlite3 binds every parameter holding the GIL, and a submission's writing thread shares the GIL
with the read-ahead and the overlap rule's GEOS thread. Eleven parameters a row (`sqlite_rows.insert_rows`) held
it 4.1 s of a 1M-parcel submission's ~16 s (py-spy --gil; benchmarks/profiles/ingest-sqlite-1m.txt §14). Here a
column travels as one blob: texts and blobs joined, cut at the running ends of their values (or at multiples of
their one size); integers as fixed-width decimal text; floats exactly, as integers of one scale where a column's
values are of one range (a region's coordinates), else as the integer mantissa and binary exponent `frexp` gives.
The statement walks the rows with a recursive CTE and cuts each value out with `substr` on a blob (byte offsets, no
scan) and `CAST`, all inside `sqlite3_step`, which runs without the GIL. 100,000 DLTB rows: the writing thread held
the GIL 0.55 → 0.35 s (most of the rest: making the columns). SQLite's own work grows (~3-4 µs a row against ~1.2 for
VALUES lists): run it on a thread of its own (`stage_writer`), not on a thread with other work to do.

The rows go in in order (a recursive CTE without ORDER BY takes its queue first in, first out), so an INTEGER
PRIMARY KEY numbers them as one by one would.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# The bytes of texts and blobs a statement takes at most (the batch is cut into several beyond it): bounds the
# copies held at once, and stays far below SQLite's limit on one value (SQLITE_MAX_LENGTH, 1e9 by default).
MAX_STATEMENT_BYTES = 32 << 20
_NULL_EXPONENT = 9999  # a float's exponent that reads back as NULL (no finite double has one near it)


@dataclass(frozen=True)
class Texts:
    """Stored as TEXT: UTF-8 bytes, or `str` (encoded here)."""

    values: Sequence[str] | Sequence[bytes]


@dataclass(frozen=True)
class Blobs:
    """Stored as BLOB; None, and an empty value, as NULL (WKB is never empty)."""

    values: Sequence[bytes | None]


@dataclass(frozen=True)
class Reals:
    """Stored as REAL, each the same double; NaN and ±infinity as NULL (SQLite stores a bound NaN as NULL too)."""

    values: np.ndarray


@dataclass(frozen=True)
class Same:
    """One value for every row (bound once)."""

    value: Any


Column = Texts | Blobs | Reals | Same


def insert_columns(cur: sqlite3.Cursor, head: str, columns: Sequence[Column], max_bytes: int = MAX_STATEMENT_BYTES) -> None:
    """`head` ("INSERT INTO t (a, b)") with one value a row from each of `columns` (all of one length), in order."""
    n = _row_count(columns)
    if n == 0:
        return
    joined = [_Joined.of(c) if isinstance(c, Texts | Blobs) else None for c in columns]
    for start, stop in _ranges(sum((j.sizes for j in joined if j is not None), np.zeros(n, np.int64)), max_bytes):
        params: dict[str, Any] = {"count": stop - start}
        forms: list[str] = []
        for i, (column, j) in enumerate(zip(columns, joined, strict=True)):
            name = f"c{i}"
            if j is not None:
                form, part = j.part(name, start, stop)
                forms.append(f"{type(column).__name__}:{form}")
            elif isinstance(column, Reals):
                form, part = _reals(name, np.asarray(column.values[start:stop], dtype=np.float64))
                forms.append(f"Reals:{form}")
            else:
                forms.append("Same")
                part = {name: column.value}  # type: ignore[union-attr]
            params.update(part)
        cur.execute(_statement(head, tuple(forms)), params)


def _reals(name: str, x: np.ndarray) -> tuple[str, dict[str, Any]]:
    """A float column's form and parameters: "scaled" where every value is an integer times one power of two that
    fits 63 bits (coordinates of one region: their binary exponents within 10 of each other; none tiny) — one integer and a
    product a row —, "exact" (`exact_parts`, a NaN or infinity as NULL) otherwise."""
    if len(x) and np.isfinite(x).all():
        exponents = np.frexp(x)[1][x != 0]
        top = int(exponents.max()) if len(exponents) else 0
        if not len(exponents) or (top - int(exponents.min()) <= 10 and top >= -960):
            mantissas = (x * 2.0 ** (63 - top)).astype(np.int64)  # exact: |x| < 2**top, bits shifted left only
            text, width = fixed_decimals(mantissas)
            return "scaled", {f"{name}_m": text, f"{name}_mw": width, f"{name}_s": 2.0 ** (top - 63)}
    mantissas, exponents = exact_parts(x)
    (m_text, m_width), (x_text, x_width) = fixed_decimals(mantissas), fixed_decimals(exponents)
    return "exact", {f"{name}_m": m_text, f"{name}_mw": m_width, f"{name}_x": x_text, f"{name}_xw": x_width}


def _row_count(columns: Sequence[Column]) -> int:
    lengths = {len(c.values) for c in columns if not isinstance(c, Same)}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


@dataclass(frozen=True)
class _Joined:
    """A text or blob column's values, as bytes or as ASCII text, and each one's size in bytes."""

    values: Sequence[str] | Sequence[bytes]
    sizes: np.ndarray
    text: bool  # values are `str` (ASCII)

    @classmethod
    def of(cls, column: Texts | Blobs) -> _Joined:
        values: Any = column.values
        if isinstance(column, Blobs) and None in values:
            values = [b"" if v is None else v for v in values]
        if values and isinstance(values[0], str):
            if "".join(values).isascii():  # (one C pass) then a value's length is its size
                return cls(values, np.fromiter(map(len, values), np.int64, len(values)), True)
            values = [v.encode() for v in values]
        return cls(values, np.fromiter(map(len, values), np.int64, len(values)), False)

    def part(self, name: str, start: int, stop: int) -> tuple[str, dict[str, Any]]:
        """The values `start:stop` joined, and the form of the statement that cuts them apart: "fixed" when they are
        all of one size (cut at multiples of it), else "ends" (their running ends, 0 first, as fixed-width decimals)."""
        piece = self.values[start:stop]
        blob = "".join(piece).encode("ascii") if self.text else b"".join(piece)  # type: ignore[arg-type]
        blob = blob or b"\0"  # (substr reads an empty blob as NULL, even for no bytes)
        sizes = self.sizes[start:stop]
        if sizes.min() == sizes.max():
            return "fixed", {name: blob, f"{name}_w": int(sizes[0])}
        ends = np.zeros(stop - start + 1, np.int64)
        np.cumsum(sizes, out=ends[1:])
        text, width = fixed_decimals(ends)
        return "ends", {name: blob, f"{name}_e": text, f"{name}_ew": width}


def _ranges(sizes: np.ndarray, max_bytes: int) -> Iterator[tuple[int, int]]:
    """Row ranges whose sizes add up to at most `max_bytes` (a row larger than that alone)."""
    ends = np.cumsum(sizes)
    start, n = 0, len(sizes)
    while start < n:
        before = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + max_bytes, side="right")))
        yield start, stop
        start = stop


def fixed_decimals(values: np.ndarray) -> tuple[bytes, int]:
    """Integers as one text of fixed-width fields (a sign, '-' or '0', then the digits), and the width: the k-th is
    `CAST(CAST(substr(text, k * width + 1, width) AS TEXT) AS INTEGER)`. Vectorised: no Python object per value."""
    v = np.asarray(values, dtype=np.int64)
    magnitude = np.abs(v)
    digits = len(str(int(magnitude.max()))) if len(v) else 1
    powers = 10 ** np.arange(digits - 1, -1, -1, dtype=np.int64)
    out = np.empty((len(v), digits + 1), dtype=np.uint8)
    out[:, 0] = np.where(v < 0, ord("-"), ord("0"))
    out[:, 1:] = magnitude[:, None] // powers % 10 + ord("0")
    return out.tobytes(), digits + 1


def exact_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integers m and e with x = m * 2**e exactly, m odd (or 0, with e 0); NaN and ±infinity get m 0 and e
    `_NULL_EXPONENT`. SQLite gives x back exactly as m * pow(2.0, e): m (|m| < 2**53) converts to a double
    exactly, a power of two is exact (e from -1074 for the smallest subnormal to 1023: m is odd, so e is the
    exponent of x's lowest set bit), and the product of the two is x itself."""
    finite = np.isfinite(x)
    fraction, exponent = np.frexp(np.where(finite, x, 0.0))  # x = fraction * 2**exponent, 0.5 <= |fraction| < 1
    m = (fraction * 2.0**53).astype(np.int64)  # exact: the fraction has at most 53 significant bits
    e = exponent.astype(np.int64) - 53
    nonzero = m != 0
    lowest = np.where(nonzero, m & -m, 1)  # the lowest set bit of m (a power of two)
    shift = np.frexp(lowest.astype(np.float64))[1].astype(np.int64) - 1
    m >>= shift  # (arithmetic: exact for negatives too, the bits shifted out are zeros)
    e = np.where(nonzero, e + shift, 0)
    e[~finite] = _NULL_EXPONENT
    return m, e


def _int_at(name: str, index: str) -> str:
    return f"CAST(CAST(substr(:{name}, ({index}) * :{name}w + 1, :{name}w) AS TEXT) AS INTEGER)"


def _expression(form: str, name: str) -> str:
    kind, _, shape = form.partition(":")
    if kind in ("Texts", "Blobs"):
        if shape == "fixed":
            piece = f"substr(:{name}, n * :{name}_w + 1, :{name}_w)"
        else:
            start, end = _int_at(f"{name}_e", "n"), _int_at(f"{name}_e", "n + 1")
            piece = f"substr(:{name}, {start} + 1, {end} - {start})"
        return f"CAST({piece} AS TEXT)" if kind == "Texts" else f"nullif({piece}, x'')"
    if kind == "Reals":
        if shape == "scaled":
            return f"{_int_at(f'{name}_m', 'n')} * :{name}_s"
        return f"{_int_at(f'{name}_m', 'n')} * pow(2.0, nullif({_int_at(f'{name}_x', 'n')}, {_NULL_EXPONENT}))"
    return f":{name}"


@functools.lru_cache(maxsize=128)
def _statement(head: str, forms: tuple[str, ...]) -> str:
    values = ", ".join(_expression(form, f"c{i}") for i, form in enumerate(forms))
    return f"WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < :count) {head} SELECT {values} FROM i"
