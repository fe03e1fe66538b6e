"""Instances staged on local disk by the workers, before a store commits them.

A worker writes an instance's files (metadata, frames, bulk data, info) into a
`StagedInstance` folder; frames are copied there by the kernel (`copy_file_range`) from
the source. Only the parent commits a staged folder into the tree, so an instance
appears whole or not at all. Both classes are plain paths underneath: they pickle into
worker processes.
"""

from __future__ import annotations

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

_STAGED = itertools.count()


@dataclass(frozen=True)
class StagedInstance:
    """One instance's files being written, in a folder of the run's staging area."""

    path: str

    def open(self, name: str) -> BinaryIO:
        """A new file `name` (may contain `/`) for writing, unbuffered: the kernel copies
        frames straight into it."""
        target = os.path.join(self.path, name)
        folder = os.path.dirname(target)
        if folder != self.path:
            os.makedirs(folder, exist_ok=True)
        return open(target, "xb", buffering=0)

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

    def remove_folder(self, name: str) -> None:
        shutil.rmtree(os.path.join(self.path, name))

    def clear(self) -> None:
        """Start again with an empty folder (a rewrite with every payload checked)."""
        shutil.rmtree(self.path)
        os.mkdir(self.path)

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
        return StagedInstance(path)

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

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class InProcessRuns:
    """The run bookkeeping of a store that is no local folder (memory, a bucket): staging
    in a temporary local folder, a lock between the threads of this process only (`_lock`,
    a threading.RLock, is the store's), nothing a killed run could leave behind."""

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
        """A temporary local folder for the run's staged instances."""
        area = StagingArea(tempfile.mkdtemp(prefix="dcmweb-staging-"))
        try:
            yield area
        finally:
            area.close()

    def clean_stale(self) -> None:
        """Nothing outlives a process: uploads and puts are whole objects."""
