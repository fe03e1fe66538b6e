"""run/prefetch.py: a task's input files are read into the page cache ahead of the
conversion. Whether a page is cached is asked the kernel directly (mincore)."""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from pathlib import Path

import pytest

from dcmweb_static.run import batch
from dcmweb_static.run.prefetch import prefetch
from dcmweb_static.run.result import InstanceResult

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise")

MIB = 1 << 20
PAGE = mmap.PAGESIZE


def _resident(path: Path) -> list[bool]:
    """Which 4 KiB pages of `path` are in the page cache: mincore(2) of a mapping,
    which asks without reading (a probing read would start the very I/O it looks for)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size = path.stat().st_size
    pages = (size + PAGE - 1) // PAGE
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vector = ctypes.create_string_buffer(pages)
            assert libc.mincore(address, size, vector) == 0, os.strerror(ctypes.get_errno())
            return [bool(byte & 1) for byte in vector.raw]
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)


def _evicted(path: Path, size: int) -> Path:
    """`path` written with `size` bytes, then dropped from the page cache."""
    path.write_bytes(os.urandom(size))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages only can be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if any(_resident(path)):
        pytest.skip("this file system keeps the file's pages (tmpfs?): nothing to read ahead")
    return path


def _read_ahead(path: Path, pages: slice, seconds: float = 10.0) -> bool:
    """Whether the `pages` of `path` come into the page cache (the reads are queued,
    not waited for, by the prefetch)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(_resident(path)[pages]):
            return True
        time.sleep(0.01)
    return False


def test_the_files_are_read_into_the_page_cache_ahead(tmp_path: Path) -> None:
    one = _evicted(tmp_path / "one.dcm", 2 * MIB)
    two = _evicted(tmp_path / "two.dcm", 2 * MIB)
    assert prefetch([str(one), two]) == 4 * MIB
    for path in (one, two):
        assert _read_ahead(path, slice(None))  # every page


def test_at_most_the_task_budget_is_read_ahead(tmp_path: Path) -> None:
    one = _evicted(tmp_path / "one.dcm", 2 * MIB)
    two = _evicted(tmp_path / "two.dcm", 2 * MIB)
    assert prefetch([one, two], task_bytes=MIB) == MIB
    assert _read_ahead(one, slice(0, MIB // PAGE))
    time.sleep(0.2)
    assert not any(_resident(one)[MIB // PAGE:])  # past the budget
    assert not any(_resident(two))


def test_what_is_not_a_regular_local_file_is_left_alone(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "empty.dcm").write_bytes(b"")
    started = time.monotonic()
    asked = prefetch([fifo, tmp_path, tmp_path / "missing.dcm", tmp_path / "empty.dcm",
                      "s3://bucket/key.dcm", "bad\0name"])
    assert asked == 0
    assert time.monotonic() - started < 1  # a FIFO is never opened, so nothing waits
    with pytest.raises(OSError):  # and no reader holds it open: a writer finds none
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)


def test_a_worker_reads_its_task_ahead_before_converting(monkeypatch) -> None:
    events: list[tuple[str, object]] = []
    monkeypatch.setattr(batch, "prefetch", lambda paths: events.append(("prefetch", paths)))

    def convert(path: str) -> InstanceResult:
        events.append(("convert", path))
        return InstanceResult(path=path, status="converted")

    monkeypatch.setattr(batch, "_convert_in_worker", convert)
    batch._convert_chunk(["a.dcm", "b.dcm"])
    assert events == [("prefetch", ["a.dcm", "b.dcm"]), ("convert", "a.dcm"),
                      ("convert", "b.dcm")]
