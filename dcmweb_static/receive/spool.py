"""Where `dcmweb listen` receives each C-STORE data set: into a file, never into memory.

pynetdicom, with `_config.STORE_RECV_CHUNKED_DATASET`, writes a C-STORE data set to a
temporary file as its P-DATA fragments arrive (its own File Meta Information in front)
and gives the handler that file's path (`event.dataset_path`) instead of the bytes. The
listener points those temporary files at a folder of its store session's staging area
(`ReceiveSpool`: the tree's file system for a folder; removed with the session, and a
killed listener's by the store's stale-session cleaning when a run or listener starts
again). Each data set is then given the header `part10_header` makes — the bytes a
received data set has always been converted with, so a re-send hashes the same whatever
the pynetdicom version — by a kernel copy of the data set behind it
(`StagingArea.spliced_file`), and converted from that file by the batch's code path.

A write that fails while a data set arrives (a full disk) raises in pynetdicom's DUL
thread, where pynetdicom 3.0 does not catch it (`DULServiceProvider.run_reactor` handles
errors of reading the socket, not of decoding what was read): the thread dies, leaving
the peer unanswered and the partial file behind. A `threading.excepthook` hands such a
death to the listener (`on_broken`), which aborts the association and removes the file.

The three settings this takes are process-global: pynetdicom reads the flag for every
C-STORE request any association of the process decodes, it makes its temporary file with
`tempfile.NamedTemporaryFile` in `tempfile.tempdir`, and a thread's uncaught exception
goes to `threading.excepthook`. `ReceiveSpool.install` sets the three when the listener
starts (not when this module is imported: a process that imports it, or uses pynetdicom
as an SCU or another SCP, keeps pynetdicom's defaults, and the folder exists only once
the store session does) and `uninstall` restores them when it stops. One listener per
process (`dcmweb listen` runs one).
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from ..p10.uids import check_uid
from ..store import StagingArea

#: the Implementation Class UID of the File Meta Information made for received data sets:
#: a UUID-derived UID (PS3.5 B.2), fixed, so a re-sent data set gives the same bytes
IMPLEMENTATION_CLASS_UID = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID,
                                                   "dcmweb-static C-STORE receiver").int)
IMPLEMENTATION_VERSION_NAME = "DCMWEB_RECEIVE"
#: preamble, `DICM`, then (0002,0000) File Meta Information Group Length, UL, 4 bytes
_GROUP_LENGTH_AT = 132
_GROUP_LENGTH_ELEMENT = b"\x02\x00\x00\x00UL\x04\x00"
_META_START = _GROUP_LENGTH_AT + len(_GROUP_LENGTH_ELEMENT) + 4

_installed_lock = threading.Lock()
_installed: ReceiveSpool | None = None


def part10_header(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """What goes before a received data set to make it a P10 file: preamble, `DICM`, and
    File Meta Information made from the request (this receiver's fixed implementation
    UID, no version). The UIDs are checked (InvalidUIDError): they come from the network."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = check_uid(sop_class_uid, "Affected SOP Class UID")
    meta.MediaStorageSOPInstanceUID = check_uid(sop_instance_uid, "Affected SOP Instance UID")
    meta.TransferSyntaxUID = check_uid(transfer_syntax_uid, "Transfer Syntax UID")
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    out = DicomBytesIO()
    write_file_meta_info(out, meta, enforce_standard=True)
    return b"".join((b"\0" * 128, b"DICM", out.getvalue()))


def data_set_offset(head: bytes) -> int:
    """Where the data set starts in a P10 file that begins with `head` (its first 144
    bytes at least): after the File Meta Information, whose group length is its first
    element (PS3.10 7.1). ValueError if the file does not begin so."""
    at = _GROUP_LENGTH_AT
    if len(head) < _META_START or head[128:at] != b"DICM" or \
            head[at: at + len(_GROUP_LENGTH_ELEMENT)] != _GROUP_LENGTH_ELEMENT:
        raise ValueError("the received file has no File Meta Information group length")
    return _META_START + int.from_bytes(head[_META_START - 4: _META_START], "little")


class ReceiveSpool:
    """The listener's folder of received data sets, in `staging`, and the process-global
    settings that send pynetdicom's temporary files there (see the module's text)."""

    def __init__(self, staging: StagingArea) -> None:
        self.staging = staging
        self.folder = staging.temporary_folder("c-store-")
        self._saved: tuple[bool, str | None, Any] | None = None
        self._on_broken: Callable[[Any, BaseException], None] | None = None

    def install(self, on_broken: Callable[[Any, BaseException], None]) -> None:
        """Receive C-STORE data sets into files of this folder, from now on; a pynetdicom
        DUL thread dying of an exception goes to `on_broken(association, exception)`
        (in that thread, which ends then)."""
        global _installed
        from pynetdicom import _config

        with _installed_lock:
            if _installed is not None:
                raise RuntimeError("a C-STORE listener is receiving in this process already")
            self._saved = (_config.STORE_RECV_CHUNKED_DATASET, tempfile.tempdir,
                           threading.excepthook)
            self._on_broken = on_broken
            _config.STORE_RECV_CHUNKED_DATASET = True
            tempfile.tempdir = self.folder
            threading.excepthook = self._excepthook
            _installed = self

    def uninstall(self) -> None:
        """Give pynetdicom, `tempfile` and `threading` back the settings they had."""
        global _installed
        from pynetdicom import _config

        with _installed_lock:
            if _installed is not self or self._saved is None:
                return
            _config.STORE_RECV_CHUNKED_DATASET, tempfile.tempdir, threading.excepthook = \
                self._saved
            _installed, self._saved = None, None

    def _excepthook(self, args: Any) -> None:
        """A DUL thread's exception to `on_broken`; any other thread's to the hook before."""
        from pynetdicom.dul import DULServiceProvider

        saved, on_broken = self._saved, self._on_broken
        if isinstance(args.thread, DULServiceProvider) and on_broken is not None and \
                isinstance(args.exc_value, Exception):
            try:
                on_broken(args.thread.assoc, args.exc_value)
                return
            except Exception:  # never lose the original report
                pass
        (saved[2] if saved is not None else threading.__excepthook__)(args)

    def part10_file(self, received: str | os.PathLike[str], header: bytes) -> str:
        """The P10 file of a received data set: `header`, then the data set of pynetdicom's
        file `received` (after pynetdicom's own File Meta Information), copied by the
        kernel into a new file of the staging area; pynetdicom's file is removed at once
        (the disk holds one copy for long). The caller discards the file returned."""
        received = os.fspath(received)
        try:
            with open(received, "rb") as handle:
                offset = data_set_offset(handle.read(_META_START))
            return self.staging.spliced_file(header, received, offset)
        finally:
            self._discard(received)

    def discard_partial(self, assoc: Any) -> bool:
        """Remove the file of a data set an association was still receiving when it ended
        (aborted, the connection dropped): pynetdicom leaves it behind. This reads
        pynetdicom's DIMSE state (`assoc.dimse.message._data_set_file`); should that ever
        move, the file stays only until the listener's session ends. True if there was
        one."""
        message = getattr(getattr(assoc, "dimse", None), "message", None)
        partial = getattr(message, "_data_set_file", None)
        if partial is None:
            return False
        name = getattr(partial, "name", None)
        with suppress(OSError, ValueError):
            partial.close()
        if isinstance(name, str):
            self._discard(name)
        return True

    def _discard(self, path: str) -> None:
        """Remove `path` if it is one of this folder's files (pynetdicom names them)."""
        if os.path.dirname(os.path.abspath(path)) == os.path.abspath(self.folder):
            with suppress(OSError):
                self.staging.discard(path)
