"""Small file-system helpers: reproducible gzip, atomic replace, a tree-wide lock."""

from __future__ import annotations

import fcntl
import gzip as _gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

GZIP_LEVEL = 3  # measured: level 1 speed, 3% smaller; 6 costs 28% more CPU for 9% (docs)


def gzip_bytes(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """gzip with mtime 0 and no file name, so re-runs write byte-identical files."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path`: a reader
    sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


class ResourceWriter:
    """A resource written piece by piece (never held whole), gzip or plain, atomically
    replacing `path`(.gz) on success and removing the other form; discarded on error."""

    def __init__(self, path: Path, gzip: bool) -> None:
        plain, packed = path, path.with_name(path.name + ".gz")
        self.keep, self.drop = (packed, plain) if gzip else (plain, packed)
        self.keep.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.keep.with_name(f".{self.keep.name}.{os.getpid()}.tmp")
        self.compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gzip else None
        self.out = open(self.tmp, "wb")

    def write(self, chunk: bytes) -> None:
        self.out.write(self.compressor.compress(chunk) if self.compressor else chunk)

    def __enter__(self) -> ResourceWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.out.close()
            self.tmp.unlink(missing_ok=True)
            return
        if self.compressor:
            self.out.write(self.compressor.flush())
        self.out.close()
        os.replace(self.tmp, self.keep)
        self.drop.unlink(missing_ok=True)


def write_resource_stream(path: Path, chunks: Iterable[bytes], gzip: bool) -> None:
    """Write the resource `path` (named without .gz) as `path.gz` or plain, from pieces
    (never held whole), and remove the other form so no stale copy stays under it."""
    with ResourceWriter(path, gzip) as writer:
        for chunk in chunks:
            writer.write(chunk)


def write_resource(path: Path, data: bytes, gzip: bool) -> None:
    write_resource_stream(path, (data,), gzip)


def read_resource(path: str | os.PathLike[str]) -> bytes | None:
    """The bytes of resource `path`, from `path.gz` or `path`; None if neither exists."""
    name = os.fspath(path)
    try:
        with open(name + ".gz", "rb") as packed:
            return _gzip.decompress(packed.read())
    except FileNotFoundError:
        pass
    try:
        with open(name, "rb") as plain:
            return plain.read()
    except FileNotFoundError:
        return None


@contextmanager
def tree_lock(root: Path) -> Iterator[None]:
    """Serialise study/series aggregation between concurrent runs on one output."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".dcmweb.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
