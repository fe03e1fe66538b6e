"""An object store through fsspec (S3 and S3-compatible servers, Google Cloud Storage, Azure
Blob Storage, fsspec's memory store): what `dcmweb convert -d s3://bucket/prefix` (`gs://`,
`az://`) writes into; `backends` holds what differs between the three services.

- The object layout of `tree.urls`: each key *is* the resource's URL path below the
  prefix (`studies`, `studies/<st>/series`, `.../frames/1`), so a static website or CDN in
  front of the bucket answers WADO-RS/QIDO-RS with no rewrite rule.
- Every object carries the headers a client needs (`Content-Type`, `Content-Encoding:
  gzip` where gzipped, an optional `Cache-Control`), set at upload: the service sends them
  back as they were stored. Upload tools that guess them from the name break DICOMweb clients.
- Incremental: each object's metadata keeps the SHA-256 of its bytes and headers
  (`x-amz-meta-dcmweb-sha256`, `x-goog-meta-...`, `x-ms-meta-dcmweb_sha256`); a put whose
  hash is already there uploads nothing, so a re-run keeps ETags and a CDN keeps its cache.
- An instance is uploaded metadata last (the order of the plan `tree.publish` makes), so
  a reader that sees its metadata finds its frames; the earlier instance's other keys are
  removed after.
- A PUT is atomic on an object store: readers see the old object or the new one.
- Dask workers stage an instance in the bucket itself (`stage`: objects below the run's
  hidden prefix `.tmp/run-<pid>-<ns>/`, uploaded with their final headers and hash); the
  parent publishes it with server-side copies (`commit_staged`), so no instance byte
  passes through the parent. A key whose final object already has the hash is not
  uploaded at all. The session removes its prefix at the end; `clean_stale` removes the
  prefixes of killed runs.
- There is no lock between runs on one bucket: `lock()` serialises one process's threads
  only. Run one conversion per prefix at a time (`clean_stale` takes every other run's
  staging prefix for a dead one's).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from .backends import (
    HASH_KEY,
    HEADER_PROTOCOLS,
    copy_all,
    default_options,
    listed,
    read,
    stored_hash,
    upload,
)
from .base import NO_HEADERS, Headers, Layout, StagedObject, StagedUpload, WriteCounts
from .staging import InProcessRuns, StagedInstance, StagingArea

__all__ = ["HASH_KEY", "HEADER_PROTOCOLS", "SUPPORTED", "ObjectStore", "content_hash"]
#: fsspec's memory store holds bytes only (tests, and library users who read them back)
SUPPORTED = (*HEADER_PROTOCOLS, "memory")
#: the hidden prefix of the runs' staged objects (never a DICOMweb URL: no resource starts
#: with a dot)
SCRATCH_PREFIX = ".tmp"


#: printable ASCII, no leading or trailing space: no CR/LF gets into a header
_SAFE_HEADER_VALUE = re.compile(r"[!-~](?:[ -~]*[!-~])?")


class UnsupportedStoreError(ValueError):
    """An output URL this store cannot publish a servable tree into."""


def content_hash(data: bytes, headers: Headers, cache_control: str | None) -> str:
    """SHA-256 of the bytes and every header stored with them: a changed header (e.g. a new
    --cache-control) is a change, so the object is uploaded again."""
    digest = hashlib.sha256()
    for value in (headers.content_type, headers.content_encoding, cache_control):
        digest.update((value or "").encode("utf-8") + b"\0")
    digest.update(data)
    return digest.hexdigest()


class _ObjectWriter:
    """Collects a resource made piece by piece (in a spooled temp file: large study
    metadata does not stay in memory) and uploads it whole when closed without error."""

    def __init__(self, store: ObjectStore, name: str, headers: Headers) -> None:
        self.store, self.name, self.headers = store, name, headers
        self.spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)

    def write(self, chunk: bytes) -> None:
        self.spool.write(chunk)

    def __enter__(self) -> _ObjectWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.spool.seek(0)
                self.store.put(self.name, self.spool.read(), self.headers)
        finally:
            self.spool.close()


class ObjectStore(InProcessRuns):
    """A tree under `url` (`s3://bucket/prefix`, `gs://`, `az://container/prefix`,
    `memory://name`) in the object layout."""

    layout: Layout = "object"

    def __init__(self, url: str, options: Mapping[str, Any] | None = None,
                 cache_control: str | None = None) -> None:
        import fsspec  # optional extra: imported only for an object store

        self.url = url
        self.options = dict(options or {})
        self.cache_control = cache_control
        protocol = url.split("://", 1)[0].lower() if "://" in url else ""
        if protocol not in SUPPORTED:
            raise UnsupportedStoreError(
                f"{url}: cannot publish into {protocol or 'this'}:// objects (their "
                f"Content-Type and Content-Encoding cannot be set here); use one of "
                f"{', '.join(p + '://' for p in SUPPORTED)} or a local folder")
        if cache_control is not None and not _SAFE_HEADER_VALUE.fullmatch(cache_control):
            raise UnsupportedStoreError(f"--cache-control {cache_control!r} is not a header "
                                        "value (printable ASCII, no leading/trailing space)")
        self.protocol = protocol
        self.fs, root = fsspec.core.url_to_fs(
            url, **default_options(protocol, self.options))
        self.root = root.rstrip("/")
        self.counts = WriteCounts()
        self._lock = threading.RLock()
        #: the open session's staging prefix (`.tmp/run-<pid>-<ns>`), for Dask workers
        self.run_prefix: str | None = None

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:  # into a worker: how to reach the store
        return {"url": self.url, "options": self.options, "cache_control": self.cache_control}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["options"], state["cache_control"])  # type: ignore[misc]

    def path(self, name: str) -> str:
        """The full key of `name` (names come from the URL table: checked UIDs only)."""
        return f"{self.root}/{name}" if name else self.root

    # -- resources ---------------------------------------------------------------------
    def put(self, name: str, data: bytes, headers: Headers = NO_HEADERS) -> None:
        self._put(name, data, headers, maybe_stored=True)

    def _put(self, name: str, data: bytes, headers: Headers, maybe_stored: bool) -> None:
        """`put`; with `maybe_stored` False (a fresh listing has no such key) no HEAD asks
        for the stored hash first: a new instance costs one request per object."""
        data = bytes(data)
        digest = content_hash(data, headers, self.cache_control)
        path = self.path(name)
        if maybe_stored and self._stored_hash(path, data) == digest:
            self.counts.unchanged += 1
            return
        self._upload(path, data, headers, digest)
        self.counts.written += 1

    def _stored_hash(self, path: str, data: bytes) -> str | None:
        """The hash kept with the stored object; for a store without metadata, the hash
        the stored bytes would have now (they are compared, not trusted)."""
        try:
            if self.protocol in HEADER_PROTOCOLS:
                return stored_hash(self.fs, self.protocol, path)
            stored = self.fs.cat_file(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return content_hash(data, NO_HEADERS, self.cache_control) if stored == data else None

    def _upload(self, path: str, data: bytes, headers: Headers, digest: str) -> None:
        upload(self.fs, self.protocol, path, data, headers, self.cache_control, digest)

    def put_new(self, name: str, data: bytes, headers: Headers = NO_HEADERS) -> bool:
        if self.exists(name):
            self.counts.unchanged += 1
            return False
        self.put(name, data, headers)
        return True

    def writer(self, name: str, headers: Headers = NO_HEADERS) -> _ObjectWriter:
        return _ObjectWriter(self, name, headers)

    def get(self, name: str) -> bytes | None:
        try:
            return read(self.fs, self.protocol, self.path(name))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def exists(self, name: str) -> bool:
        try:
            return self.fs.info(self.path(name)).get("type") == "file"
        except FileNotFoundError:
            return False

    def children(self, prefix: str) -> list[str]:
        base = self.path(prefix).rstrip("/") + "/"
        try:
            entries = listed(self.fs, self.protocol, base)
        except FileNotFoundError:
            return []
        found = set()
        for entry in entries:
            entry = entry.rstrip("/")
            if entry.startswith(base) and entry != base.rstrip("/"):
                found.add(entry[len(base):].split("/", 1)[0])
        return sorted(found)

    def keys_below(self, folder: str) -> list[str]:
        """Every key below `folder`, relative to it (one LIST on S3)."""
        base = self.path(folder).rstrip("/") + "/"
        try:
            found = self.fs.find(base, withdirs=False)
        except FileNotFoundError:
            return []
        return sorted(k[len(base):] for k in found if k.startswith(base) and len(k) > len(base))

    def delete(self, name: str) -> None:
        path = self.path(name)
        # S3 answers a delete of a missing key with success: ask first, so `removed`
        # counts only what was there (deletes are rare: stale keys, dropped thumbnails)
        if not self.fs.exists(path):
            return
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            return
        self.counts.removed += 1

    def delete_folder(self, name: str) -> None:
        for key in self.keys_below(name):
            self.delete(f"{name}/{key}")

    # -- the run's staging prefix --------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[StagingArea]:
        """A local folder for staging (as any store that is no folder), and on the
        outermost session a staging prefix in the bucket for Dask workers, whose objects
        (the debris of killed workers, of a stopped run) are removed at the end."""
        if self.run_prefix is not None:
            with super().session() as area:
                yield area
            return
        self.run_prefix = f"{SCRATCH_PREFIX}/run-{os.getpid()}-{time.time_ns()}"
        try:
            with super().session() as area:
                yield area
        finally:
            prefix, self.run_prefix = self.run_prefix, None
            self._drop([f"{prefix}/{key}" for key in self.keys_below(prefix)])

    def clean_stale(self) -> None:
        """Remove the staging prefixes of other runs: with one conversion per prefix at a
        time, those are killed runs' (a worker may upload after its run ended)."""
        own = self.run_prefix.rsplit("/", 1)[-1] if self.run_prefix else None
        for run in self.children(SCRATCH_PREFIX):
            if run != own:
                base = f"{SCRATCH_PREFIX}/{run}"
                self._drop([f"{base}/{key}" for key in self.keys_below(base)])

    def _drop(self, names: Sequence[str]) -> None:
        """Remove staged objects (not counted: they never were part of the tree); one
        bulk request on S3."""
        if names:
            try:
                self.fs.rm([self.path(name) for name in names])
            except FileNotFoundError:
                pass

    def stage(self, prefix: str, staged: StagedInstance, plan: Sequence[StagedObject],
              folder: str | None = None, stored: Sequence[str] = (),
              only_new: bool = False) -> list[StagedUpload]:
        """On a worker: upload the files of `plan` below `prefix` (a folder of the run's
        staging prefix) with their final headers and hash, except those whose final
        object already holds them. `stored`: the keys below `folder` (`keys_below`), so
        that a key not among them needs no HEAD; `only_new`: content-addressed keys,
        skipped if present."""
        inside = f"{folder}/" if folder is not None else None
        stored = set(stored)
        uploads: list[StagedUpload] = []
        for item in plan:
            data = staged.read(item.staged_name)
            digest = content_hash(data, item.headers, self.cache_control)
            if only_new:
                there = self.exists(item.key)
            else:
                maybe = inside is None or not item.key.startswith(inside) or \
                    item.key[len(inside):] in stored
                there = maybe and self._stored_hash(self.path(item.key), data) == digest
            staged_key = None
            if not there:
                staged_key = f"{prefix}/{item.staged_name}"
                self._upload(self.path(staged_key), data, item.headers, digest)
            uploads.append(StagedUpload(item.key, digest, staged_key, only_new))
        return uploads

    def discard_staged(self, uploads: Sequence[StagedUpload]) -> None:
        """Remove what a worker staged for an instance that is not published (a
        duplicate's, one that failed to commit)."""
        self._drop([item.staged_key for item in uploads if item.staged_key is not None])

    def commit_staged(self, folder: str, uploads: Sequence[StagedUpload],
                      stored: Sequence[str]) -> None:
        """In the parent: publish what a worker staged (`stage`) in its order (metadata
        last) by server-side copies, then remove the earlier conversion's keys below
        `folder` (`stored`, as the worker listed them: one run per prefix, and only the
        first of an instance's files is committed, so nothing changed them since) that
        this one does not have (result folders survive unless staged again), and the
        staged objects. Uploads the worker found stored already count unchanged."""
        prefix = folder + "/"
        try:
            copies: list[tuple[str, str]] = []
            for item in uploads:
                if item.staged_key is None or (item.only_new and self.exists(item.key)):
                    self.counts.unchanged += 1
                    continue
                copies.append((self.path(item.staged_key), self.path(item.key)))
            self._copy(copies[:-1])  # at once: frames, bulk data, info
            self._copy(copies[-1:])  # then the last (the metadata)
            self.counts.written += len(copies)
            self._remove_stale(prefix, stored, [item.key for item in uploads])
        finally:
            self.discard_staged(uploads)

    def _remove_stale(self, prefix: str, stored: set[str], published: Sequence[str]) -> None:
        """Delete the keys below `prefix` an earlier conversion left that this one did not
        publish; a `_vendor` result folder survives unless this conversion staged it anew."""
        kept = {key[len(prefix):] for key in published if key.startswith(prefix)}
        restaged = {key.split("/", 1)[0] for key in kept if key.startswith("_")}
        for old in sorted(stored):
            first = old.split("/", 1)[0]
            if old not in kept and (not first.startswith("_") or first in restaged):
                self.delete(prefix + old)

    def _copy(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Server-side copies (source, target), all at once: CopyObject, rewriteTo and
        Copy Blob keep the headers and metadata (hash) the worker uploaded."""
        if pairs:
            copy_all(self.fs, self.protocol, pairs)

    # -- instances ---------------------------------------------------------------------
    def commit_instance(self, staged: StagedInstance, folder: str,
                        plan: Sequence[StagedObject] | None = None) -> None:
        """Upload the staged files in `plan`'s order (metadata last), then remove the
        earlier conversion's keys this one does not have (its result folders survive
        unless staged again)."""
        if plan is None:
            plan = [StagedObject(name, f"{folder}/{name}", NO_HEADERS)
                    for name in staged.files()]
        prefix = folder + "/"
        stored = set(self.keys_below(folder))  # one LIST instead of a HEAD per new key
        for item in plan:
            inside = item.key.startswith(prefix)
            self._put(item.key, staged.read(item.staged_name), item.headers,
                      maybe_stored=not inside or item.key[len(prefix):] in stored)
        self._remove_stale(prefix, stored, [item.key for item in plan])
        staged.remove()
