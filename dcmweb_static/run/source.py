"""What a conversion reads: a file by its path, or bytes, a stream or a spooled file
handed over by a receiver (C-STORE, STOW-RS), so what arrived need not be written under
its name first."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..store.opening import is_url
from .inputs import open_regular


@dataclass(frozen=True)
class Source:
    """One input. `name` is what the report shows (a path, or a label for received data).
    A path source pickles as its path; a bytes source as its bytes; a stream source is
    converted in the process that holds it."""

    name: str
    path: str | None = None
    data: bytes | None = None
    stream: BinaryIO | None = None
    #: an object store URL (`s3://bucket/key`), read in ranges through fsspec
    url: str | None = None
    storage_options: tuple[tuple[str, Any], ...] = ()
    #: `path` is a receiver's temporary file: the report and the info record name the
    #: source by `name` (where it came from), not by that file's passing name
    spooled: bool = False

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Source:
        text = os.fspath(path)
        return cls(text if isinstance(text, str) else os.fsdecode(text), path=os.fspath(path))

    @classmethod
    def from_spooled(cls, path: str | os.PathLike[str], name: str) -> Source:
        """A file a receiver spooled what arrived into (a C-STORE data set as it came off
        the network): converted as a path is, by the batch's code path (its checksum on
        a second core while the frames are copied by the kernel), but named `name`."""
        return cls(name, path=os.fspath(path), spooled=True)

    @property
    def recorded_path(self) -> str:
        """What the info record names as the source: a file's absolute path, or the
        label of what a receiver handed over."""
        if self.path is not None and not self.spooled:
            return os.path.abspath(self.path)
        return self.name

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> Source:
        return cls(name, data=bytes(data))

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, Any] | None = None) -> Source:
        """An object in an object store: opened in the worker and read in ranges as the
        parser seeks (never downloaded whole first); pickles as its URL."""
        return cls(url, url=url, storage_options=tuple(sorted((options or {}).items())))

    @classmethod
    def from_stream(cls, stream: BinaryIO, name: str) -> Source:
        """A seekable binary stream positioned anywhere; it is read from its start."""
        if not stream.seekable():
            raise ValueError("a source stream must be seekable (spool it to a file first)")
        return cls(name, stream=stream)

    def open(self) -> BinaryIO:
        """The source's bytes as a binary file object (a regular file, never a FIFO or a
        device, for a path). The caller closes it."""
        if self.path is not None:
            return open_regular(self.path)
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.url is not None:
            import fsspec  # optional extra

            return fsspec.open(self.url, "rb", **dict(self.storage_options)).open()
        assert self.stream is not None
        self.stream.seek(0)
        return _Unclosed(self.stream)


def source_for(path: str, storage_options: Mapping[str, Any] | None = None) -> Source:
    """The source of one input as the spool holds it: an object store URL or a path."""
    return Source.from_url(path, storage_options) if is_url(path) else Source.from_path(path)


class _Unclosed(io.BufferedIOBase):
    """A handed-over stream that the conversion must not close (its owner does)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def read(self, size: int | None = -1) -> bytes:
        return self._stream.read(size)

    def readinto(self, buffer) -> int:  # type: ignore[override]
        return self._stream.readinto(buffer)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._stream.fileno()
