"""Whether a SQLite database may have changed since a moment: the bytes every commit rewrites, read without a query.

A value read from the store on every request (the access generation, `access.decisions.GenerationReader`) changes
rarely, and in a WAL-mode database every commit rewrites the WAL-index header at the start of the `-shm` file (its
change counter `iChange` is incremented by every write of the header: a commit, a WAL restart, a recovery;
https://www.sqlite.org/walformat.html §2.1). So if those bytes are what they were before a read, nothing was committed
since, and that read's value still stands: reading 96 bytes of a file the page cache holds costs ~1-2 us against
~10 us for the statement (with its Python around it). The header is kept twice, the second copy written first; copies
that differ are a commit under way (no stamp: read it). In rollback-journal mode (no WAL) every commit increments the
database header's change counter (offset 24), which the stamp also holds.

Sound only while the `-shm` file read is the one the writers map: the caller keeps a connection to the database open
in WAL mode (as a reader does), so that no other connection is ever the last to close it and remove or recreate it.
"""

from __future__ import annotations

import os
from pathlib import Path

_WAL_INDEX_HEADER = 48  # bytes of one copy of the WAL-index header
_IS_INIT = 12  # offset of the header's isInit byte (1 once the header is valid)
_CHANGE_COUNTER = 24  # offset of the database header's file change counter (4 bytes)


def same_copies(header: bytes) -> bool:
    """Both copies of a WAL-index header read whole, equal and initialised: no commit was writing it."""
    return len(header) == 2 * _WAL_INDEX_HEADER and header[:_WAL_INDEX_HEADER] == header[_WAL_INDEX_HEADER:] and header[_IS_INIT] == 1


class CommitStamp:
    """The bytes of one SQLite database that every commit changes (see the module docstring)."""

    def __init__(self, database: str | Path) -> None:
        self._db = os.open(database, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._shm: int | None = os.open(f"{database}-shm", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._shm = None  # not in WAL mode (or no reader has opened it yet): every read is a query

    def __call__(self) -> bytes | None:
        """The stamp now; None when it cannot vouch for anything (no WAL index, or a commit writing its header)."""
        if self._shm is None:
            return None
        header = os.pread(self._shm, 2 * _WAL_INDEX_HEADER, 0)
        if not same_copies(header):
            return None
        return header[:_WAL_INDEX_HEADER] + os.pread(self._db, 4, _CHANGE_COUNTER)

    def close(self) -> None:
        os.close(self._db)
        if self._shm is not None:
            os.close(self._shm)
            self._shm = None
