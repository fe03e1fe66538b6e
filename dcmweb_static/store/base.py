"""The storage seam: everything written into a tree goes through a `Store`.

A store holds named byte strings (files of a folder, objects of a bucket) with the
headers a static server should send for them. It knows nothing of DICOM: names come
from the URL table (`tree.urls`), bytes from the encoders. Implementations: the local
folder (`LocalStore`, temp file + `os.replace`, folder rename, `flock`) and memory
(`MemoryStore`, for tests and as the model an object store follows), and object stores
through fsspec (`ObjectStore`: S3, keys equal to URLs, headers set at upload).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from .staging import StagedInstance, StagingArea

Layout = Literal["folder", "object"]


@dataclass(frozen=True)
class Headers:
    """What a static server sends with a stored resource."""

    content_type: str | None = None
    #: "gzip" for resources stored compressed
    content_encoding: str | None = None


NO_HEADERS = Headers()


@dataclass
class WriteCounts:
    """What a run did to the stored objects: a re-run of the same inputs writes nothing
    (`unchanged` counts the puts skipped because the same bytes and headers were there)."""

    written: int = 0
    unchanged: int = 0
    removed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"written": self.written, "unchanged": self.unchanged, "removed": self.removed}


@dataclass(frozen=True)
class StagedObject:
    """One staged file of an instance as an object store publishes it: the staged name
    (relative to the instance folder), its key (relative to the tree) and headers. The
    URL table (`tree.publish.object_plan`) makes these; the store knows nothing of DICOM."""

    staged_name: str
    key: str
    headers: Headers


@dataclass(frozen=True)
class StagedUpload:
    """One object a worker put into the run's staging prefix of an object store
    (`ObjectStore.stage`), for the parent to publish with a server-side copy
    (`ObjectStore.commit_staged`): the parent never moves its bytes. `staged_key` is None
    when the final object already held these bytes and headers (nothing was uploaded:
    a re-run writes nothing)."""

    key: str
    #: the content hash (`objects.content_hash`) of the bytes and headers
    digest: str
    staged_key: str | None
    #: content-addressed (a deduplicated extract): kept as it is when the key exists
    only_new: bool = False


class Writer(Protocol):
    """A resource written piece by piece; it appears whole when the writer closes without
    an error, and not at all otherwise."""

    def write(self, chunk: bytes) -> None: ...


class Store(Protocol):
    """Named resources of one tree. Names use `/` and never start with `/`."""

    #: how names are formed from URLs (see `tree.urls`): folders, or keys equal to URLs
    layout: Layout
    #: objects written, left unchanged (same bytes already stored) and removed so far
    counts: WriteCounts

    def put(self, name: str, data: bytes, headers: Headers = NO_HEADERS) -> None:
        """Store `data` under `name` atomically: readers see the old bytes or the new."""

    def put_new(self, name: str, data: bytes, headers: Headers = NO_HEADERS) -> bool:
        """`put` unless `name` is stored already (content-addressed names: equal names
        hold equal bytes); True if written."""

    def writer(self, name: str, headers: Headers = NO_HEADERS) -> AbstractContextManager[Writer]:
        """Like `put`, for data made piece by piece (never held whole)."""

    def get(self, name: str) -> bytes | None:
        """The bytes under `name`; None when there are none."""

    def exists(self, name: str) -> bool: ...

    def children(self, prefix: str) -> list[str]:
        """The names one level below `prefix` (a folder's entries), sorted."""

    def delete(self, name: str) -> None:
        """Remove `name` if it exists."""

    def delete_folder(self, name: str) -> None:
        """Remove every name below folder `name`."""

    def lock(self, wait: bool = True) -> AbstractContextManager[bool]:
        """Serialise study/series aggregation between runs writing into this tree; yields
        False when `wait` is False and another run holds it."""

    def clean_stale(self) -> None:
        """Remove what killed runs left (call with the lock held)."""

    def session(self) -> AbstractContextManager[StagingArea]:
        """A run's session: a local folder for its workers to stage instances in (and, for
        a local folder, its temp files), removed at the end; a killed run's is removed by
        a later run. Writes happen inside a session."""

    def commit_instance(self, staged: StagedInstance, folder: str,
                        plan: Sequence[StagedObject] | None = None) -> None:
        """Publish a staged instance under `folder`, replacing an earlier one whole (no
        stale file of it survives); result folders (`_vendor_name/`) of the earlier one
        survive unless staged again. The staged folder is used up. An object store
        uploads the files in `plan`'s order, under its keys and with its headers (the
        folder layout stores the staged names as they are and ignores it)."""
