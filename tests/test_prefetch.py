"""run/prefetch.py: a task's input files are read into the page cache ahead of the
conversion. Whether a page is cached is asked the kernel directly (mincore)."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dcmweb_static import synthetic as syn
from dcmweb_static.run import batch
from dcmweb_static.run import prefetch as prefetch_module
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.inputs import InputSpool, iter_input_files
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.run.prefetch import WINDOW_TASK_BYTES, prefetch, read_ahead_of_start

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


def test_the_parent_reads_each_task_ahead_as_it_hands_it_to_the_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = tmp_path / "in"
    syn.ct_series(inputs, 40, study_index=7, rich=False)
    asked: list[tuple[list[str], int]] = []
    monkeypatch.setattr(batch, "prefetch", lambda paths, budget: asked.append((paths, budget)))
    files = InputSpool(iter_input_files([inputs]))
    summary = Converter(ConvertOptions(output=tmp_path / "out"), jobs=2).run(files)
    assert summary.counts["converted"] == 40
    assert [path for paths, _ in asked for path in paths] == [str(p) for p in files]
    assert len(asked) > 1 and {budget for _, budget in asked} == {WINDOW_TASK_BYTES}


# --- the start-up read-ahead --------------------------------------------------------------

def _arguments_read(tmp_path: Path, arguments: list[str], monkeypatch: pytest.MonkeyPatch
                    ) -> list[str]:
    advised: list[str] = []
    real = prefetch_module._advise
    monkeypatch.setattr(prefetch_module, "_advise",
                        lambda path, budget: advised.append(str(path)) or real(path, budget))
    monkeypatch.chdir(tmp_path)
    reader = read_ahead_of_start(arguments)
    if reader is not None:
        reader.finish()
    return advised


def test_the_start_reads_the_inputs_of_the_command_line_in_the_conversions_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in" / "b").mkdir(parents=True)
    (tmp_path / "in" / "a").mkdir()
    for name in ("in/b/2.dcm", "in/b/1.dcm", "in/a/9.dcm", "in/z.dcm", "single.dcm"):
        _evicted(tmp_path / name, 64 << 10)
    (tmp_path / "in" / "out").mkdir()  # the output inside an input: never read as input
    _evicted(tmp_path / "in" / "out" / "old.dcm", 4096)
    _evicted(tmp_path / "report.json", 4096)
    advised = _arguments_read(tmp_path, [
        "in", "-d", "in/out", "-j", "2", "--plugin", "deidentify", "single.dcm",
        "--report=report.json", "missing.dcm", "s3://bucket/x", "--", "-dash"], monkeypatch)
    expected = [str(Path(p)) for p in ("in/z.dcm", "in/a/9.dcm", "in/b/1.dcm", "in/b/2.dcm",
                                       "single.dcm")]  # a folder's files, then its folders
    assert advised == expected == [
        str(p.relative_to(tmp_path)) for p in iter_input_files(
            [tmp_path / "in", tmp_path / "single.dcm"], exclude=tmp_path / "in" / "out")]
    for name in expected:
        assert _read_ahead(tmp_path / name, slice(None))
    assert not any(_resident(tmp_path / "in" / "out" / "old.dcm"))
    assert _arguments_read(tmp_path, ["-d", "in", "--dicomweb-dir=in/out"], monkeypatch) == []


def test_the_start_reads_at_most_its_budget_and_no_fifo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in").mkdir()
    for index in range(6):
        _evicted(tmp_path / "in" / f"{index}.dcm", MIB)
    os.mkfifo(tmp_path / "in" / "3.dcm.fifo")
    monkeypatch.setattr(prefetch_module, "START_FILES", 5)
    monkeypatch.setattr(prefetch_module, "START_BYTES", 3 * MIB + 1)
    started = time.monotonic()
    advised = _arguments_read(tmp_path, ["in"], monkeypatch)
    assert time.monotonic() - started < 5
    assert advised == [str(Path("in") / n) for n in ("0.dcm", "1.dcm", "2.dcm", "3.dcm")]
    for index in range(3):
        assert _read_ahead(tmp_path / "in" / f"{index}.dcm", slice(None))
    assert _read_ahead(tmp_path / "in" / "3.dcm", slice(0, 1))  # 3 MiB and one byte
    time.sleep(0.2)
    assert not any(_resident(tmp_path / "in" / "4.dcm") + _resident(tmp_path / "in" / "5.dcm"))
    with pytest.raises(OSError):  # the FIFO was never opened: a writer finds no reader
        os.open(tmp_path / "in" / "3.dcm.fifo", os.O_WRONLY | os.O_NONBLOCK)


def test_the_start_reader_is_stopped_and_joined_before_a_fork(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in").mkdir()
    for index in range(50):
        (tmp_path / "in" / f"{index:02d}.dcm").write_bytes(b"x")
    entered, release = threading.Event(), threading.Event()
    advised: list[str] = []

    def slow(path: str, budget: int) -> int:
        advised.append(path)
        entered.set()
        release.wait(10)
        return 1

    monkeypatch.setattr(prefetch_module, "_advise", slow)
    reader = read_ahead_of_start([str(tmp_path / "in")])
    assert reader is not None and entered.wait(10)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: no reader thread came along
        os._exit(0 if threading.active_count() == 1 else 1)
    assert time.monotonic() - started >= 0.25  # the fork waited for the file in progress
    assert not reader.thread.is_alive() and len(advised) == 1  # and stopped the rest
    assert os.waitpid(pid, 0)[1] == 0


def test_dcmweb_convert_reads_its_first_inputs_while_it_imports(tmp_path: Path) -> None:
    """The console script's read-ahead overlaps the imports: a sitecustomize logs each
    posix_fadvise with whether the batch module was imported yet."""
    inputs = tmp_path / "in"
    syn.ct_series(inputs, 3, study_index=8, rich=False)
    site, log = tmp_path / "site", tmp_path / "advised.log"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        "_real = os.posix_fadvise\n"
        "def _logged(fd, offset, length, advice):\n"
        f"    with open({str(log)!r}, 'a') as out:\n"
        "        imported = 'dcmweb_static.run.batch' in sys.modules\n"
        "        out.write(f\"{os.readlink(f'/proc/self/fd/{fd}')} {imported}\\n\")\n"
        "    return _real(fd, offset, length, advice)\n"
        "os.posix_fadvise = _logged\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    run = subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert", str(inputs),
                          "-d", str(tmp_path / "out"), "-q"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    first = sorted(inputs.iterdir())[0]
    lines = log.read_text().splitlines()
    assert lines[0] == f"{first} False"  # before the conversion's modules were imported
    assert f"{first} True" in lines  # and again as the parent hands its task to the pool
