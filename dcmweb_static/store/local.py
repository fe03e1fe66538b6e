"""The local folder store: what `dcmweb convert -d DIR` writes into.

- Every file appears by `os.replace` of a temp file made in the run's own scratch folder
  `DIR/.tmp/run-<pid>-<ns>/` (same file system), so whatever a killed process leaves is in
  that one folder; the folder's `flock`, held while the run (and the workers that inherit
  it) lives, tells a later run it may be removed — a pid could have been reused.
- Every instance folder appears by one rename of its staged folder (staged in the same
  scratch folder).
- No symbolic link below the root is followed (lstat of each folder component, temp
  files opened with O_NOFOLLOW | O_EXCL; the folder instances are committed into is
  opened one component at a time with O_NOFOLLOW and checked before each use, see
  `_ParentFolders`); the root itself may be a link.
- Aggregation is serialised between runs with `flock` on `DIR/.dcmweb.lock`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import shutil
import stat
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import TreeLinkError
from .base import NO_HEADERS, Headers, Layout, StagedObject, WriteCounts
from .staging import (
    FOLDER_LOCK,
    StagedInstance,
    StagingArea,
    count_files,
    lock_is_free,
    lock_then_name,
)

SCRATCH_DIR = ".tmp"
SCRATCH_LOCK = FOLDER_LOCK  # a run's scratch folder is locked as any own folder
LOCK_NAME = ".dcmweb.lock"




def _refuse_link(path: str) -> None:
    raise TreeLinkError(errno.ELOOP, "symbolic link inside the output tree, not followed",
                        path)


_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_child(folder_fd: int, part: str, path: str) -> int:
    """Folder `part` of the open folder `folder_fd` (whose path is `path`'s parent), never
    through a link: O_NOFOLLOW, and a link or a file there is refused as `folders` does."""
    try:
        return os.open(part, _FOLDER_FLAGS, dir_fd=folder_fd)
    except NotADirectoryError:  # a link (O_NOFOLLOW with O_DIRECTORY) or a file
        if stat.S_ISLNK(os.lstat(part, dir_fd=folder_fd).st_mode):
            _refuse_link(path)
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", path) from None


def open_folder(root: str, name: str) -> int:
    """A descriptor of folder `name` below `root` (the root may be a link), made where
    missing, opened one component at a time from the root's descriptor: no link below the
    root is followed, and none swapped in later can redirect what is done through it."""
    os.makedirs(root, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    path = root
    try:
        for part in [p for p in name.split("/") if p]:
            path = os.path.join(path, part)
            try:
                child = _open_child(fd, part, path)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):  # made meanwhile by another writer
                    os.mkdir(part, dir_fd=fd)
                child = _open_child(fd, part, path)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


class _ParentFolders:
    """The open folders instances are committed into, by name (`studies/<st>/series/<se>/
    instances`): a few at a time, since a run's inputs come series by series. Before each
    use two stats check that the folder is still where it was opened: its path leads to
    it (nothing put in its place), and its real parents lead up to the root (it was not
    moved out of the tree, whatever link was left behind). Otherwise it is opened again
    from the root, which refuses a link on the way: an instance lands at its URL, inside
    the tree, or its commit fails."""

    KEEP = 8

    def __init__(self) -> None:
        #: name -> (descriptor, its (st_dev, st_ino), the root's when it was opened)
        self._open: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {}

    def get(self, store: LocalStore, name: str) -> int:
        held = self._open.get(name)
        if held is not None:
            fd, identity, root = held
            up = "/".join([".."] * name.count("/")) + "/.."
            try:
                here, top = os.stat(store.path(name)), os.stat(up, dir_fd=fd)
                if (here.st_dev, here.st_ino) == identity and (top.st_dev, top.st_ino) == root:
                    return fd
            except OSError:
                pass
            os.close(self._open.pop(name)[0])
        root_path = store.path("")
        fd = open_folder(root_path, name)
        here, top = os.fstat(fd), os.stat(root_path)
        while len(self._open) >= self.KEEP:
            os.close(self._open.pop(next(iter(self._open)))[0])
        self._open[name] = (fd, (here.st_dev, here.st_ino), (top.st_dev, top.st_ino))
        return fd

    def close(self) -> None:
        while self._open:
            os.close(self._open.popitem()[1][0])


def _create(path: str) -> BinaryIO:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o644), "wb")


def describe_os_error(exc: OSError) -> str:
    """An OSError as one line: the reason and the path it concerns."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


class _FileWriter:
    """A temp file in the scratch folder, renamed over `path` on success, removed on error.
    With `counts`, a file equal to the one at `path` is dropped instead: the stored file
    keeps its mtime (incremental publishing)."""

    def __init__(self, tmp: str, path: str, counts: WriteCounts | None = None) -> None:
        self.tmp, self.path, self.counts = tmp, path, counts
        self.out = _create(tmp)

    def write(self, chunk: bytes) -> None:
        self.out.write(chunk)

    def __enter__(self) -> _FileWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self.out.close()  # flushes: may fail (ENOSPC)
            if kind is None:
                if self.counts is not None and _same_file(self.path, self.tmp):
                    os.unlink(self.tmp)
                    self.counts.unchanged += 1
                    return
                os.replace(self.tmp, self.path)
                if self.counts is not None:
                    self.counts.written += 1
        except BaseException:
            with contextlib.suppress(OSError):
                self.out.close()
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            raise
        if kind is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)


def write_file(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> None:
    """Write a file outside any tree (the run report) atomically: temp beside it, replace."""
    target = os.fspath(path)
    head, tail = os.path.split(target)
    with _FileWriter(os.path.join(head, f".{tail}.{os.getpid()}.tmp"), target) as out:
        for chunk in chunks:
            out.write(chunk)


class LocalStore:
    """A tree in a local folder (the folder layout of `tree.urls`)."""

    layout: Layout = "folder"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._root = os.fspath(root)
        self._scratch: str | None = None  # the open session's folder
        self._depth = 0
        self._counter = itertools.count()
        self.counts = WriteCounts()
        self._parents = _ParentFolders()  # closed with the session, or with the store
        weakref.finalize(self, self._parents.close)

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    def __getstate__(self) -> dict[str, object]:  # into a worker: the folder, no session
        return {"root": self._root}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["root"])  # type: ignore[misc]

    def path(self, name: str) -> str:
        """The file of `name` (names come from the URL table: checked UIDs only)."""
        return os.path.join(self._root, name) if name else self._root

    # -- folders: never through a link -------------------------------------------------
    def folders(self, name: str) -> str:
        """Make folder `name` and its parents, checking with lstat that no component is a
        symbolic link (the root may be one). One lstat per existing component."""
        current = self._root
        os.makedirs(current, exist_ok=True)
        for part in [p for p in name.split("/") if p]:
            current = os.path.join(current, part)
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                try:
                    os.mkdir(current)
                    continue
                except FileExistsError:  # made meanwhile by another writer
                    mode = os.lstat(current).st_mode
            if stat.S_ISLNK(mode):
                _refuse_link(current)
            if not stat.S_ISDIR(mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", current)
        return current

    def _target(self, name: str) -> str:
        folder, _, _ = name.rpartition("/")
        self.folders(folder)
        return self.path(name)

    # -- the run's scratch folder ----------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[StagingArea]:
        """This run's scratch folder, locked while it lives: temp files of every write
        and the staged instances go here. Re-entrant; removed when the outermost ends."""
        if self._scratch is not None:
            self._depth += 1
            try:
                yield StagingArea(self._scratch)
            finally:
                self._depth -= 1
            return
        with self.lock(wait=False) as locked:  # a killed run's debris goes first
            if locked:
                self.clean_stale()
        parent = self.folders(SCRATCH_DIR)
        label = f"{os.getpid()}-{time.time_ns()}"
        making = os.path.join(parent, f"new-{label}")  # not a run-* name until locked
        os.mkdir(making)
        folder = os.path.join(parent, f"run-{label}")
        fd = lock_then_name(making, folder, 0o644)
        self._scratch = folder
        try:
            yield StagingArea(folder)
        finally:
            self._scratch = None
            self._parents.close()
            shutil.rmtree(folder, ignore_errors=True)
            os.close(fd)
            with contextlib.suppress(OSError):
                os.rmdir(parent)  # empty: no other run is using it

    def clean_stale(self) -> None:
        """Remove the scratch folders of dead runs (with the tree lock held)."""
        parent = self.path(SCRATCH_DIR)
        if os.path.islink(parent) or not os.path.isdir(parent):
            return
        with os.scandir(parent) as entries:
            for entry in list(entries):
                if entry.is_symlink():
                    continue
                if (entry.name.startswith("run-") and _lock_is_free(entry.path)) or \
                        (entry.name.startswith("new-") and _legacy_dead(entry.name)):
                    shutil.rmtree(entry.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(parent)

    def _temp(self, name: str) -> str:
        if self._scratch is None:
            raise RuntimeError("no store session open: writes need `with store.session()`")
        base = name.rsplit("/", 1)[-1]
        return os.path.join(self._scratch, f"{os.getpid()}-{next(self._counter)}-{base}")

    # -- resources ---------------------------------------------------------------------
    def put(self, name: str, data: bytes, headers: Headers = NO_HEADERS) -> None:
        with self.writer(name, headers) as out:
            out.write(data)

    def put_new(self, name: str, data: bytes, headers: Headers = NO_HEADERS) -> bool:
        target = self._target(name)  # a link on the way is refused, even if nothing is written
        if os.path.lexists(target):
            self.counts.unchanged += 1
            return False
        self.put(name, data, headers)
        return True

    def writer(self, name: str, headers: Headers = NO_HEADERS) -> _FileWriter:
        target = self._target(name)
        return _FileWriter(self._temp(name), target, self.counts)

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
        path = self.path(name)
        if os.path.lexists(path):
            folder = name.rpartition("/")[0]
            self.folders(folder)  # never through a link
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                self.counts.removed += 1

    def delete_folder(self, name: str) -> None:
        """Remove folder `name` and everything in it."""
        path = self.path(name)
        if os.path.lexists(path):
            self.folders(name.rpartition("/")[0])
            if os.path.islink(path):
                os.unlink(path)
            else:
                self.counts.removed += count_files(path)
                shutil.rmtree(path)

    @contextmanager
    def lock(self, wait: bool = True) -> Iterator[bool]:
        """Serialise aggregation between runs on one tree; yields False if `wait` is
        False and another run holds it. Opened read-only (flock needs no write access),
        so a read-only tree fails where it is written, not here."""
        self.folders("")
        path = self.path(LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                _refuse_link(path)
            raise
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    # -- instances ---------------------------------------------------------------------
    def commit_instance(self, staged: StagedInstance, folder: str,
                        plan: Sequence[StagedObject] | None = None) -> None:
        """Rename the staged folder to the instance folder. An earlier folder is first
        renamed aside and removed after, so no stale frame or bulk file of it survives and
        a reader never sees a half-written folder.

        Runs in the parent once per file, beside the workers, so a new instance costs two
        system calls: the folder it goes into (`studies/<st>/series/<se>/instances`) is
        opened once per series, component by component without following a link
        (`_ParentFolders`), and each commit checks that its path still leads to that folder
        (a link or a folder swapped in meanwhile: opened again, and refused) and renames
        into it by descriptor. The files are counted as the worker staged them."""
        parent, _, name = folder.rpartition("/")
        fd = self._parents.get(self, parent)
        try:
            os.rename(staged.path, name, dst_dir_fd=fd)  # the common case: a new instance
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
        else:
            self.counts.written += staged.file_count if staged.file_count is not None else \
                count_files(self.path(folder))
            return
        self._replace_instance(staged, folder)

    def _replace_instance(self, staged: StagedInstance, folder: str) -> None:
        """An instance folder already there (or something else by its name): checked by
        path, the old folder renamed aside, the staged one in, the old one removed."""
        final = self.path(folder)
        self.folders(folder.rpartition("/")[0])
        if os.path.islink(final):
            _refuse_link(final)
        old: str | None = None
        if os.path.lexists(final):
            self._keep_unchanged(staged, final)
            old = staged.path + ".replaced"
            os.rename(final, old)
        os.rename(staged.path, final)
        if old is not None:
            _keep_result_folders(old, final)
            self.counts.removed += _count_gone(old, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self.counts.written += count_files(final)

    def _keep_unchanged(self, staged: StagedInstance, final: str) -> None:
        """Before an instance folder is replaced: each staged file equal to the stored one
        becomes a hard link of the stored one, so after the swap it keeps its mtime (and
        inode): a sync to a bucket or a CDN sees nothing new. Counted as unchanged; the
        stored files the new conversion does not have are counted removed by the caller."""
        for name in staged.files():
            staged_path = os.path.join(staged.path, name)
            stored = os.path.join(final, name)
            if _same_file(stored, staged_path):
                link = staged_path + ".same"
                os.link(stored, link, follow_symlinks=False)
                os.replace(link, staged_path)
                self.counts.unchanged += 1
            else:
                self.counts.written += 1


def _count_gone(old: str, new: str) -> int:
    """The files of the replaced folder `old` that folder `new` has no file for."""
    gone = 0
    for folder, _, files in os.walk(old):
        relative = os.path.relpath(folder, old)
        gone += sum(not os.path.lexists(os.path.join(new, relative, name)) for name in files)
    return gone


def _same_file(stored: str, new: str) -> bool:
    """Whether `stored` is a regular file (not a link) holding the bytes of `new`."""
    try:
        info = os.lstat(stored)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size != os.stat(new).st_size:
        return False
    with open(stored, "rb") as one, open(new, "rb") as two:
        while True:
            a, b = one.read(1 << 20), two.read(1 << 20)
            if a != b:
                return False
            if not a:
                return True


def _keep_result_folders(old: str, new: str) -> None:
    """Plugin result folders (`_vendor_name/`) of the replaced conversion survive, unless
    the plugin that made them wrote that folder again in this one."""
    with os.scandir(old) as entries:
        for entry in entries:
            target = os.path.join(new, entry.name)
            if entry.name.startswith("_") and entry.is_dir(follow_symlinks=False) \
                    and not os.path.exists(target):
                os.rename(entry.path, target)


def _lock_is_free(folder: str) -> bool:
    free = lock_is_free(folder)
    return _legacy_dead(os.path.basename(folder)) if free is None else free


def _legacy_dead(name: str) -> bool:
    """A folder without a lock (made by an older version): judged by its pid."""
    parts = name.split("-")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False
