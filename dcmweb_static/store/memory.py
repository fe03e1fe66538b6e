"""A store in memory: the seam's second implementation, used by tests to show that a
conversion writes through the store alone, and the model an object store follows
(names are keys; a folder is only a prefix)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from .base import NO_HEADERS, Headers, Layout, StagedObject, WriteCounts
from .staging import InProcessRuns, StagedInstance


@dataclass
class StoredObject:
    data: bytes
    headers: Headers


class _MemoryWriter:
    def __init__(self, store: MemoryStore, name: str, headers: Headers) -> None:
        self.store, self.name, self.headers = store, name, headers
        self.chunks: list[bytes] = []

    def write(self, chunk: bytes) -> None:
        self.chunks.append(bytes(chunk))

    def __enter__(self) -> _MemoryWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.store.put(self.name, b"".join(self.chunks), self.headers)


@dataclass
class MemoryStore(InProcessRuns):
    """Names → bytes and headers. Staging is a temporary local folder, as for any store
    that is not a local folder: workers stage on disk, the parent commits."""

    layout: Layout = "folder"
    objects: dict[str, StoredObject] = field(default_factory=dict)
    counts: WriteCounts = field(default_factory=WriteCounts)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def put(self, name: str, data: bytes, headers: Headers = NO_HEADERS) -> None:
        stored = StoredObject(bytes(data), headers)
        with self._lock:
            if self.objects.get(name) == stored:
                self.counts.unchanged += 1
                return
            self.objects[name] = stored
            self.counts.written += 1

    def put_new(self, name: str, data: bytes, headers: Headers = NO_HEADERS) -> bool:
        with self._lock:
            if name in self.objects:
                self.counts.unchanged += 1
                return False
            self.put(name, data, headers)
            return True

    def writer(self, name: str, headers: Headers = NO_HEADERS) -> _MemoryWriter:
        return _MemoryWriter(self, name, headers)

    def get(self, name: str) -> bytes | None:
        stored = self.objects.get(name)
        return None if stored is None else stored.data

    def exists(self, name: str) -> bool:
        return name in self.objects

    def children(self, prefix: str) -> list[str]:
        start = prefix.rstrip("/") + "/" if prefix else ""
        return sorted({name[len(start):].split("/", 1)[0] for name in list(self.objects)
                       if name.startswith(start)})

    def delete(self, name: str) -> None:
        with self._lock:
            if self.objects.pop(name, None) is not None:
                self.counts.removed += 1




    def delete_folder(self, name: str) -> None:
        prefix = name.rstrip("/") + "/"
        with self._lock:
            for key in [k for k in self.objects if k.startswith(prefix)]:
                self.delete(key)

    def commit_instance(self, staged: StagedInstance, folder: str,
                        plan: Sequence[StagedObject] | None = None) -> None:
        """Store the staged files (in the object layout: `plan`'s keys and headers, in its
        order), then drop the earlier conversion's other names."""
        prefix = folder + "/"
        if plan is None or self.layout == "folder":
            plan = [StagedObject(name, prefix + name, NO_HEADERS) for name in staged.files()]
        kept = {item.key for item in plan}
        restaged = {item.key[len(prefix):].split("/", 1)[0] for item in plan
                    if item.key.startswith(prefix + "_")}
        with self._lock:
            for item in plan:
                self.put(item.key, staged.read(item.staged_name), item.headers)
            for old in [n for n in self.objects if n.startswith(prefix) and n not in kept]:
                first = old[len(prefix):].split("/", 1)[0]
                if not first.startswith("_") or first in restaged:
                    self.delete(old)
        staged.remove()
