"""Instances staged on local disk by the workers, before a store commits them.

A worker writes an instance's files (metadata, frames, bulk data, info) into a
`StagedInstance` folder; frames are copied there by the kernel (`copy_file_range`) from
the source. Only the parent commits a staged folder into the tree, so an instance
appears whole or not at all. Both classes are plain paths underneath: they pickle into
worker processes.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from ..kernel_copy import cannot_copy, copy_range

_STAGED = itertools.count()
#: the folders in the system's temp folder where a store that is no folder (memory, a
#: bucket) stages a run, and the file each is locked by (flock) while its run lives
LOCAL_STAGING_PREFIX = "dcmweb-staging-"
#: the lock file of a process's own folder (a run's scratch folder, a local staging folder)
FOLDER_LOCK = ".alive"
#: the block of a copy that the kernel cannot do (another file system): bounded memory
_COPY_BLOCK = 1 << 20


def count_files(folder: str) -> int:
    """How many files the tree below `folder` holds (what a commit, a removal counts)."""
    return sum(len(files) for _, _, files in os.walk(folder))


@dataclass
class StagedInstance:
    """One instance's files being written, in a folder of the run's staging area."""

    path: str
    #: how many files the folder holds, counted as they are made and removed here, so a
    #: commit need not walk the folder to count what it published; None: not known (a
    #: folder named only by its path)
    file_count: int | None = None

    def open(self, name: str) -> BinaryIO:
        """A new file `name` (may contain `/`) for writing, unbuffered: the kernel copies
        frames straight into it."""
        target = os.path.join(self.path, name)
        folder = os.path.dirname(target)
        if folder != self.path:
            os.makedirs(folder, exist_ok=True)
        made = open(target, "xb", buffering=0)
        if self.file_count is not None:
            self.file_count += 1
        return made

    def put(self, name: str, data: bytes) -> int:
        with self.open(name) as out:
            out.write(data)
        return len(data)

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.path, name), "rb") as handle:
            return handle.read()

    def exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.path, name))

    def files(self) -> Iterator[str]:
        """Every staged file's name, relative to the instance folder, sorted."""
        for folder, dirs, names in os.walk(self.path):
            dirs.sort()
            relative = os.path.relpath(folder, self.path)
            for name in sorted(names):
                yield name if relative == "." else f"{relative}/{name}"

    def size(self, name: str) -> int:
        return os.path.getsize(os.path.join(self.path, name))

    def remove_file(self, name: str) -> None:
        """Remove staged file `name` (a part given up: a rendered image, a part10 file)."""
        os.remove(os.path.join(self.path, name))
        if self.file_count is not None:
            self.file_count -= 1

    def remove_folder(self, name: str) -> None:
        folder = os.path.join(self.path, name)
        if self.file_count is not None:
            self.file_count -= count_files(folder)
        shutil.rmtree(folder)

    def clear(self) -> None:
        """Start again with an empty folder (a rewrite with every payload checked)."""
        shutil.rmtree(self.path)
        os.mkdir(self.path)
        if self.file_count is not None:
            self.file_count = 0

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass(frozen=True)
class StagingArea:
    """A run's staging folder: one `StagedInstance` per converted file."""

    path: str

    def new_instance(self, label: str) -> StagedInstance:
        """A new empty instance folder; `label` is a checked UID (for people reading it)."""
        # the counter: two threads (a receiver's) may stage one UID in the same nanosecond
        path = os.path.join(self.path, f"{label}.{os.getpid()}.{time.monotonic_ns()}."
                                       f"{next(_STAGED)}")
        os.makedirs(path)
        return StagedInstance(path, 0)

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> StagingArea:
        """A staging area in folder `path`, made if missing (outside a store's session:
        for scripts and tests that convert single files)."""
        os.makedirs(path, exist_ok=True)
        return cls(os.fspath(path))

    def temporary_file(self) -> BinaryIO:
        """An anonymous temporary file in the staging area (same file system as the
        staged instances), e.g. for an inflated deflated data set."""
        return tempfile.TemporaryFile(dir=self.path)

    def temporary_folder(self, prefix: str) -> str:
        """A new folder in the staging area, removed with it (or with a dead run's staging,
        by the store's stale-session cleaning)."""
        return tempfile.mkdtemp(prefix=prefix, dir=self.path)

    def spliced_file(self, head: bytes, source: str, offset: int) -> str:
        """A new named file in the staging area: `head`, then the bytes of file `source`
        from `offset` on, copied by the kernel (`copy_file_range`: the body never passes
        through this process's memory, however large; a block at a time where the kernel
        cannot). A file given another header, e.g. a received data set. The caller
        removes it (`discard`)."""
        fd, path = tempfile.mkstemp(dir=self.path, suffix=".dcm")
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb", buffering=0) as out:
                _write_all(out, head)
                size = os.fstat(src.fileno()).st_size
                if offset > size:
                    raise ValueError(f"{source} ends before byte {offset}")
                _copy_range(src, out, offset, size - offset)
        except BaseException:
            self.discard(path)
            raise
        return path

    @staticmethod
    def discard(path: str) -> None:
        """Remove a temporary file of the staging area; one already gone is no error."""
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _copy_range(src: BinaryIO, out: BinaryIO, offset: int, length: int) -> None:
    """`length` bytes of `src` from `offset` appended to `out`: by the kernel, or (another
    file system, an old kernel) through one bounded buffer."""
    start = out.tell()
    try:
        if copy_range(src.fileno(), out.fileno(), offset, length) < length:
            raise ValueError(f"{src.name} ends before byte {offset + length}")
        return
    except OSError as exc:
        if not cannot_copy(exc):
            raise
    done = out.tell() - start  # what the kernel copied before it gave up: not again
    src.seek(offset + done)
    while done < length:
        block = src.read(min(_COPY_BLOCK, length - done))
        if not block:
            raise ValueError(f"{src.name} ends before byte {offset + length}")
        _write_all(out, block)
        done += len(block)


def _write_all(out: BinaryIO, data: bytes) -> None:
    """All of `data` into an unbuffered file (whose writes may be partial)."""
    view = memoryview(data)
    while view:
        view = view[out.write(view) or 0:]


class InProcessRuns:
    """The run bookkeeping of a store that is no local folder (memory, a bucket): staging
    in a temporary local folder (`local_staging`: a killed run's is removed by the next
    session), a lock between the threads of this process only (`_lock`, a
    threading.RLock, is the store's)."""

    _lock: threading.RLock

    @contextmanager
    def lock(self, wait: bool = True) -> Iterator[bool]:
        if not self._lock.acquire(blocking=wait):
            yield False
            return
        try:
            yield True
        finally:
            self._lock.release()

    @contextmanager
    def session(self) -> Iterator[StagingArea]:
        """A temporary local folder for the run's staged instances (`local_staging`)."""
        with local_staging() as area:
            yield area

    def clean_stale(self) -> None:
        """Nothing in the store outlives a process: uploads and puts are whole objects
        (a killed run's local staging folder goes when the next session starts)."""


@contextmanager
def local_staging() -> Iterator[StagingArea]:
    """A staging folder `dcmweb-staging-*` in the system's temp folder, locked while it
    lives and removed at the end. The folders of dead processes (killed: SIGKILL, power
    loss) are removed first, so a receiver's spooled data sets and staged instances do
    not pile up there: a folder's lock is taken before it gets its name, so one that has
    its name and a free lock is a dead run's."""
    parent = tempfile.gettempdir()
    _remove_dead_staging(parent)
    making = tempfile.mkdtemp(prefix="dcmweb-new-", dir=parent)
    path = os.path.join(parent, LOCAL_STAGING_PREFIX + os.path.basename(making)[11:])
    fd = lock_then_name(making, path, 0o600)
    area = StagingArea(path)
    try:
        yield area
    finally:
        area.close()
        os.close(fd)


def _remove_dead_staging(parent: str) -> None:
    """Remove this user's local staging folders in `parent` whose lock no process holds."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(LOCAL_STAGING_PREFIX):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or \
                    entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:  # gone meanwhile
            continue
        if lock_is_free(entry.path):  # None, no lock (an older version's): left alone
            shutil.rmtree(entry.path, ignore_errors=True)


def lock_then_name(making: str, final: str, mode: int) -> int:
    """Lock the new folder `making` (flock of its `FOLDER_LOCK` file), then rename it to
    `final`: a folder that has its final name and a free lock is a dead process's, which
    the next process removes. Returns the lock's descriptor (closing it releases the
    lock); on failure `making` is removed."""
    fd = -1
    try:
        fd = os.open(os.path.join(making, FOLDER_LOCK),
                     os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, mode)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(making, final)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(making, ignore_errors=True)
        raise
    return fd


def lock_is_free(folder: str) -> bool | None:
    """Whether no process holds the lock of `folder` (made by `lock_then_name`): True,
    its process is dead; None: it has no lock file."""
    try:
        fd = os.open(os.path.join(folder, FOLDER_LOCK), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
