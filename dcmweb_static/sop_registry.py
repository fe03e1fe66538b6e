"""What a run remembers of every SOP Instance UID it has committed, outside Python.

Duplicates within a run are judged against the first file in input order, whatever
order the workers finish in, so the run must remember each committed instance until it
ends. Kept in a dict, that cost about 750 bytes of the parent's memory per input; kept
in SQLite's temporary database (a bounded page cache, then a file), the parent's memory
stays flat however many files a run has.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from .instance import InstanceResult


@dataclass(slots=True)
class Committed:
    """One file that had a given SOP Instance UID: the winner or a loser."""

    index: int
    path: str
    sha256: str | None
    bytes_in: int
    status: str
    reason: str | None = None

    @classmethod
    def row(cls, idx: int, path: bytes, *rest: object) -> Committed:
        return cls(idx, os.fsdecode(path), *rest)  # type: ignore[arg-type]

    @classmethod
    def of(cls, index: int, result: InstanceResult) -> Committed:
        return cls(index, result.path, result.sha256, result.bytes_in, result.status,
                   result.reason)


class SopRegistry:
    """SOP Instance UID → the file that won it and the files that lost to it."""

    def __init__(self) -> None:
        # paths as bytes: a POSIX name need not be UTF-8, SQLite's TEXT must be;
        # "": SQLite's private temporary database, held in its page cache (2 MiB by
        # default) and spilled to a file it deletes itself when closed
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE files (sop TEXT NOT NULL, winner INTEGER NOT NULL,"
            " idx INTEGER NOT NULL, path BLOB NOT NULL, sha256 TEXT, bytes_in INTEGER,"
            " status TEXT NOT NULL, reason TEXT);"
            "CREATE INDEX files_sop ON files (sop, winner DESC, idx);")

    def winner(self, sop_uid: str) -> Committed | None:
        row = self._db.execute(
            "SELECT idx, path, sha256, bytes_in, status, reason FROM files"
            " WHERE sop = ? AND winner = 1", (sop_uid,)).fetchone()
        return Committed.row(*row) if row else None

    def losers(self, sop_uid: str) -> list[Committed]:
        """The files that lost `sop_uid`, in input order."""
        rows = self._db.execute(
            "SELECT idx, path, sha256, bytes_in, status, reason FROM files"
            " WHERE sop = ? AND winner = 0 ORDER BY idx", (sop_uid,)).fetchall()
        return [Committed.row(*row) for row in rows]

    def add(self, sop_uid: str, entry: Committed, *, winner: bool) -> None:
        self._db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (sop_uid, int(winner), entry.index, os.fsencode(entry.path),
                          entry.sha256, entry.bytes_in, entry.status, entry.reason))

    def replace(self, sop_uid: str, winner: Committed, losers: list[Committed]) -> None:
        """An earlier input took `sop_uid` over: it wins, every other file lost."""
        self._db.execute("DELETE FROM files WHERE sop = ?", (sop_uid,))
        self.add(sop_uid, winner, winner=True)
        for loser in losers:
            self.add(sop_uid, loser, winner=False)

    def close(self) -> None:
        self._db.close()
