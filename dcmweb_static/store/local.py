"""The local folder store: what `dcmweb convert -d DIR` writes into.

Every file appears by `os.replace` of a temp file, every instance folder by one rename
of its staged folder (staging lives inside the tree, on the same file system), and
aggregation is serialised between runs with `flock` on the tree's lock file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .base import NO_HEADERS, Headers, Layout
from .staging import StagedInstance, StagingArea

STAGING_DIR = ".tmp"
LOCK_NAME = ".dcmweb.lock"


def _temp_name(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.{os.getpid()}.tmp")


class _FileWriter:
    """Writes a temp file beside `path`; `os.replace` on success, removed on error."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self.tmp = _temp_name(path)
        self.out: BinaryIO = open(self.tmp, "wb")

    def write(self, chunk: bytes) -> None:
        self.out.write(chunk)

    def __enter__(self) -> _FileWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self.out.close()
            if kind is None:
                os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def write_file(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> None:
    """Write a file outside any tree (the run report) the same atomic way."""
    with _FileWriter(os.fspath(path)) as out:
        for chunk in chunks:
            out.write(chunk)


class LocalStore:
    """A tree in a local folder (the folder layout of `tree.urls`)."""

    layout: Layout = "folder"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._root = os.fspath(root)

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    def path(self, name: str) -> str:
        """The file of `name` (names come from the URL table: checked UIDs only)."""
        return os.path.join(self._root, name)

    def put(self, name: str, data: bytes, headers: Headers = NO_HEADERS) -> None:
        with _FileWriter(self.path(name)) as out:
            out.write(data)

    def writer(self, name: str, headers: Headers = NO_HEADERS) -> _FileWriter:
        return _FileWriter(self.path(name))

    def get(self, name: str) -> bytes | None:
        try:
            with open(self.path(name), "rb") as handle:
                return handle.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def exists(self, name: str) -> bool:
        return os.path.isfile(self.path(name))

    def children(self, prefix: str) -> list[str]:
        try:
            with os.scandir(self.path(prefix)) as entries:
                return sorted(entry.name for entry in entries)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, name: str) -> None:
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass

    @contextmanager
    def lock(self) -> Iterator[None]:
        os.makedirs(self._root, exist_ok=True)
        with open(self.path(LOCK_NAME), "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def staging(self) -> StagingArea:
        parent = self.path(STAGING_DIR)
        _clean_stale_staging(parent)
        path = os.path.join(parent, f"run-{os.getpid()}-{time.time_ns()}")
        os.makedirs(path)
        return StagingArea(path)

    def close_staging(self, area: StagingArea) -> None:
        area.close()
        try:
            os.rmdir(self.path(STAGING_DIR))
        except OSError:
            pass  # another run's staging is still there

    def commit_instance(self, staged: StagedInstance, folder: str) -> None:
        """Rename the staged folder to the instance folder. An earlier folder is first
        renamed aside and removed after, so no stale frame or bulk file of it survives and
        a reader never sees a half-written folder.

        Runs in the parent once per file, beside the workers: plain string paths and
        asking for forgiveness (rename first, create folders only when that fails) keep
        it to a few system calls."""
        final = self.path(folder)
        try:
            os.rename(staged.path, final)  # the common case: a new instance in a known series
            return
        except FileNotFoundError:
            os.makedirs(os.path.dirname(final), exist_ok=True)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        old: str | None = None
        if os.path.exists(final):
            old = staged.path + ".replaced"
            os.rename(final, old)
        os.rename(staged.path, final)
        if old is not None:
            _keep_result_folders(old, final)
            shutil.rmtree(old, ignore_errors=True)


def _keep_result_folders(old: str, new: str) -> None:
    """Plugin result folders (`_vendor_name/`) of the replaced conversion survive, unless
    the plugin that made them wrote that folder again in this one."""
    with os.scandir(old) as entries:
        for entry in entries:
            target = os.path.join(new, entry.name)
            if entry.name.startswith("_") and entry.is_dir() and not os.path.exists(target):
                os.rename(entry.path, target)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale_staging(staging_parent: str) -> None:
    """Remove staging folders left by killed runs, so a re-run leaves the same tree."""
    try:
        entries = os.listdir(staging_parent)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in entries:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "run" and parts[1].isdigit():
            if not _pid_alive(int(parts[1])):
                shutil.rmtree(os.path.join(staging_parent, name), ignore_errors=True)
