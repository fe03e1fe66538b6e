"""What a run remembers of every SOP Instance UID it has committed, outside Python.

Duplicates within a run are judged against the first file in input order, whatever
order the workers finish in, so the run must remember each committed instance until it
ends. Kept in a dict, that cost about 750 bytes of the parent's memory per input; kept
in SQLite's temporary database (a bounded page cache, then a file), the parent's memory
stays flat however many files a run has.

Almost every UID of a run is new, so the question "who has it?" is first put to a Bloom
filter of fixed size (1 MiB): a UID it has never seen needs no query, and the rows go
into SQLite in batches (one `executemany` per `BATCH` files, pending rows first written
before any query). Together that is a third of the parent's time per file here.
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


#: rows kept in Python before one executemany writes them
BATCH = 32


class SopRegistry:
    """SOP Instance UID → the file that won it and the files that lost to it."""

    def __init__(self, filter_bits: int = 1 << 23) -> None:
        #: a Bloom filter of the UIDs added (two bits each, from Python's string hash):
        #: never a false "not seen"; a false "maybe" (5% at a million UIDs) costs a query
        self._bits = bytearray(filter_bits // 8)
        self._mask = filter_bits - 1
        assert filter_bits & self._mask == 0, "filter_bits: a power of two"
        self._pending: list[tuple[object, ...]] = []
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

    def _positions(self, sop_uid: str) -> tuple[int, int]:
        value = hash(sop_uid)
        return value & self._mask, (value >> 32) & self._mask

    def _maybe_seen(self, sop_uid: str) -> bool:
        bits = self._bits
        return all(bits[n >> 3] & (1 << (n & 7)) for n in self._positions(sop_uid))

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 self._pending)
            self._pending.clear()

    def winner(self, sop_uid: str) -> Committed | None:
        if not self._maybe_seen(sop_uid):
            return None
        self._flush()
        row = self._db.execute(
            "SELECT idx, path, sha256, bytes_in, status, reason FROM files"
            " WHERE sop = ? AND winner = 1", (sop_uid,)).fetchone()
        return Committed.row(*row) if row else None

    def losers(self, sop_uid: str) -> list[Committed]:
        """The files that lost `sop_uid`, in input order."""
        self._flush()
        rows = self._db.execute(
            "SELECT idx, path, sha256, bytes_in, status, reason FROM files"
            " WHERE sop = ? AND winner = 0 ORDER BY idx", (sop_uid,)).fetchall()
        return [Committed.row(*row) for row in rows]

    def add(self, sop_uid: str, entry: Committed, *, winner: bool) -> None:
        bits = self._bits
        for n in self._positions(sop_uid):
            bits[n >> 3] |= 1 << (n & 7)
        self._pending.append((sop_uid, int(winner), entry.index, os.fsencode(entry.path),
                              entry.sha256, entry.bytes_in, entry.status, entry.reason))
        if len(self._pending) >= BATCH:
            self._flush()

    def replace(self, sop_uid: str, winner: Committed, losers: list[Committed]) -> None:
        """An earlier input took `sop_uid` over: it wins, every other file lost."""
        self._flush()
        self._db.execute("DELETE FROM files WHERE sop = ?", (sop_uid,))
        self.add(sop_uid, winner, winner=True)
        for loser in losers:
            self.add(sop_uid, loser, winner=False)

    def close(self) -> None:
        self._db.close()
