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


def write_resource(path: Path, data: bytes, gzip: bool) -> None:
    """Write the resource `path` (named without .gz) as `path.gz` or plain, and remove the
    other form so a tree never holds a stale copy under the other name."""
    plain, packed = path, path.with_name(path.name + ".gz")
    keep, drop = (packed, plain) if gzip else (plain, packed)
    atomic_write(keep, gzip_bytes(data) if gzip else data)
    try:
        drop.unlink()
    except FileNotFoundError:
        pass


def write_resource_stream(path: Path, chunks: Iterable[bytes], gzip: bool) -> None:
    """Like write_resource, for a document given in pieces: never held whole in memory."""
    plain, packed = path, path.with_name(path.name + ".gz")
    keep, drop = (packed, plain) if gzip else (plain, packed)
    keep.parent.mkdir(parents=True, exist_ok=True)
    tmp = keep.with_name(f".{keep.name}.{os.getpid()}.tmp")
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gzip else None
    with open(tmp, "wb") as out:
        for chunk in chunks:
            out.write(compressor.compress(chunk) if compressor else chunk)
        if compressor:
            out.write(compressor.flush())
    os.replace(tmp, keep)
    try:
        drop.unlink()
    except FileNotFoundError:
        pass


def read_resource(path: Path) -> bytes | None:
    """The bytes of resource `path`, from `path.gz` or `path`; None if neither exists."""
    try:
        return _gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
    except FileNotFoundError:
        pass
    try:
        return path.read_bytes()
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
