"""Instances of a tree as DICOM Part 10 files (`dcmweb part10`), rebuilt from the tree
alone: the source file may be gone or moved.

`open_instance` gives one instance's transfer syntax and its P10 bytes in chunks (what a
WADO-RS retrieval sends); `write_part10` writes a selection as `DEST/<SOP>.dcm`, each
checked against the source's SHA-256 when no transform changed it. Every outcome is a
`Part10Result`: one instance that cannot be rebuilt does not stop the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..encode import jsonio
from ..encode.p10_writer import RebuildError, encode_published, splice
from ..errors import InvalidUIDError
from ..p10.uids import check_uid
from ..store import LocalStore, write_file
from . import urls
from .reader import TreeReader


@dataclass
class Part10:
    """One instance as a P10 file, not yet read: `chunks()` streams its bytes."""

    study_uid: str
    series_uid: str
    sop_uid: str
    transfer_syntax_uid: str
    #: transforms that changed the published dataset (then `chunks` encodes it anew)
    transforms: tuple[str, ...]
    #: SHA-256 and size of the source, which an untransformed rebuild must equal
    source_sha256: str | None
    source_size: int | None
    _chunks: Callable[[], Iterator[bytes]]

    def chunks(self) -> Iterator[bytes]:
        """The P10 bytes in blocks of at most about 1 MiB; raises RebuildError or OSError."""
        return self._chunks()


@dataclass
class Part10Result:
    sop_uid: str
    status: str  # "written" or "failed"
    path: str | None = None
    reason: str | None = None
    bytes: int = 0
    transformed: bool = False


def _read_info(folder: Path) -> dict[str, Any]:
    try:
        fd = os.open(folder / "info", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise RebuildError(f"no info record: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fp:
        data = fp.read()
    try:
        info = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RebuildError(f"info is not JSON: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("transfer_syntax_uid"), str):
        raise RebuildError("info names no transfer syntax")
    return info


def _document(root: Path, folder: Path, study: str, series: str, sop: str) -> dict[str, Any]:
    """The published instance metadata: its file, or else the deduplicated form."""
    data = TreeReader(LocalStore(root)).instance_document(study, series, sop)
    document = None if data is None else jsonio.loads(data)
    if document is None:
        raise RebuildError("no instance metadata (neither metadata nor a deduplicated record)")
    return document


def open_instance(root: Path, study: str, series: str, sop: str) -> Part10:
    """Instance `sop` of `root` as a P10 file. Raises InvalidUIDError for a malformed
    UID, RebuildError (one line) when the tree cannot give the instance back."""
    study, series, sop = (check_uid(uid, f"{what} Instance UID")
                          for uid, what in ((study, "Study"), (series, "Series"), (sop, "SOP")))
    folder = root / urls.instance_path(study, series, sop)
    if not folder.is_dir() or folder.is_symlink():
        raise RebuildError(f"no instance {sop} in series {series} of study {study}")
    info = _read_info(folder)
    transforms = tuple(info.get("transforms") or ())
    source = info.get("source") or {}
    document = _document(root, folder, study, series, sop) if transforms else None
    sha256, size = (None, None) if transforms else (source.get("sha256"), source.get("size"))
    return Part10(study, series, sop, transfer_syntax(info), transforms, sha256, size,
                  lambda: folder_chunks(folder, info, document))


def transfer_syntax(info: dict[str, Any]) -> str:
    """The instance's transfer syntax UID from its info record, checked: it goes into a
    part's Content-Type header."""
    try:
        return check_uid(info["transfer_syntax_uid"], "Transfer Syntax UID")
    except InvalidUIDError as exc:
        raise RebuildError(f"info: {exc}") from None


def folder_chunks(folder: Path, info: dict[str, Any], document: dict[str, Any] | None
                  ) -> Iterator[bytes]:
    """The P10 bytes of the instance whose files are in `folder` (a tree's instance folder
    or a staged one) and whose info record is `info`: spliced from the kept header when no
    transform changed it, else encoded anew from its published `document`."""
    if info.get("transforms"):
        if document is None:
            raise RebuildError("a transformed instance needs its metadata to be rebuilt")
        return encode_published(folder, info, document)
    return splice(folder, info)


def _folders(path: Path) -> list[str]:
    """Sub-folder names that are UIDs, sorted; links and dot names left out."""
    try:
        with os.scandir(path) as entries:
            names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in sorted(names):
        with contextlib.suppress(InvalidUIDError):
            out.append(check_uid(name, "UID"))
    return out


def select(root: Path, study: str | None = None, series: str | None = None,
           sop: str | None = None) -> Iterator[tuple[str, str, str]]:
    """(study, series, sop) of each instance folder of `root` the selection names."""
    studies = [study] if study else _folders(root / "studies")
    for st in studies:
        series_list = [series] if series else _folders(root / "studies" / st / "series")
        for se in series_list:
            base = root / "studies" / st / "series" / se / "instances"
            for instance in [sop] if sop else _folders(base):
                yield st, se, instance


def write_instance(part: Part10, dest: Path) -> Part10Result:
    """Write `part` as `dest/<SOP>.dcm` (temp file, then renamed: never half a file);
    an untransformed rebuild whose SHA-256 differs from the source's is not kept."""
    result = Part10Result(part.sop_uid, "failed", transformed=bool(part.transforms))
    target = dest / f"{part.sop_uid}.dcm"
    size = 0

    def checked() -> Iterator[bytes]:
        nonlocal size
        digest = hashlib.sha256()
        for chunk in part.chunks():
            digest.update(chunk)
            size += len(chunk)
            yield chunk
        if part.source_sha256 is not None and (digest.hexdigest() != part.source_sha256
                                               or size != part.source_size):
            raise RebuildError(f"rebuilt bytes differ from the source ({size} bytes, sha256 "
                               f"{digest.hexdigest()[:16]}…; the source had "
                               f"{part.source_size} bytes, {part.source_sha256[:16]}…)")

    try:
        write_file(target, checked())  # discarded whole when the check fails
    except RebuildError as exc:
        result.reason = str(exc)
    except OSError as exc:
        result.reason = f"{type(exc).__name__}: {exc.strerror or exc}"
    except Exception as exc:  # a broken record must not stop the other instances
        result.reason = f"unexpected {type(exc).__name__}: {exc}"
    if result.reason is None:
        result.status, result.path, result.bytes = "written", str(target), size
    return result


def write_part10(root: Path, dest: Path, study: str | None = None, series: str | None = None,
                 sop: str | None = None) -> list[Part10Result]:
    """Write each selected instance of `root` into `dest`; one result per instance."""
    LocalStore(dest).folders("")
    results = []
    for st, se, instance in select(root, study, series, sop):
        try:
            part = open_instance(root, st, se, instance)
        except (RebuildError, InvalidUIDError) as exc:
            results.append(Part10Result(instance, "failed", reason=str(exc)))
            continue
        except Exception as exc:  # a broken record must not stop the other instances
            reason = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
            results.append(Part10Result(instance, "failed", reason=reason))
            continue
        results.append(write_instance(part, dest))
    return results
