"""`dcmweb listen`: a DICOM Storage SCP (pynetdicom) that stores what it receives through
`receive.ingest.Ingest` — C-ECHO, and C-STORE of every storage SOP class in every
transfer syntax the converter knows, compressed and deflated ones included.

Each C-STORE data set is received into a file of the store session's staging area as it
arrives, never whole in memory (`receive.spool`), and kept as it came over the network
(never decoded and encoded again by pydicom): a File Meta Information header made from
the request (its SOP Class and Instance UIDs, the presentation context's transfer syntax)
is put in front of the received bytes, and that P10 file is handed to the ingest as a
`Source.from_spooled`. The header names this receiver with a fixed implementation UID and
no version, so the same data set sent twice gives the same bytes, whoever sends it: a
re-send is a duplicate, not a conflict. The status is answered only after the instance is
committed to the tree; the file is removed then, whatever the outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..p10.transfer_syntax import KNOWN_TRANSFER_SYNTAXES
from ..p10.uids import InvalidUIDError
from ..run.source import Source
from ..store import describe_os_error
from .ingest import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS, Ingest
from .spool import ReceiveSpool, part10_header

log = logging.getLogger("dcmweb_static.receive")

#: an ErrorComment is an LO value: at most 64 characters, no backslash
ERROR_COMMENT_LENGTH = 64
DEFAULT_AE_TITLE = "DCMWEB"
#: the largest PDU peers may send (pynetdicom's default is 16 KiB): fewer, larger PDUs
#: per data set, yet bounded (0 would mean no limit)
MAX_PDU_SIZE = 1 << 20
#: seconds `stop` waits for associations in progress before it aborts them
STOP_GRACE_SECONDS = 30.0


def error_comment(reason: str | None) -> str:
    """A reason as an ErrorComment value (LO: 64 characters, printable, no backslash)."""
    text = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in (reason or "failed"))
    return text if len(text) <= ERROR_COMMENT_LENGTH else text[: ERROR_COMMENT_LENGTH - 3] + "..."


@dataclass
class _Association:
    """What the one log line of an association says."""

    calling: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    end: str = "closed"


class StorageSCP:
    """The listener: a pynetdicom AE serving C-ECHO and C-STORE on (`host`, `port`), every
    instance through `ingest`. `allowed_aes`, when given, is the calling AE titles that
    may associate (others are rejected). `start` returns at once; `stop` stops accepting,
    lets the associations in progress finish (each acknowledged instance is committed),
    and returns; the caller then closes the ingest (which aggregates what is pending)."""

    def __init__(self, ingest: Ingest, *, host: str = "127.0.0.1", port: int = 11112,
                 ae_title: str = DEFAULT_AE_TITLE, allowed_aes: Sequence[str] = (),
                 max_associations: int = 10) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        self.ingest = ingest
        self.host, self.port = host, port
        self.ae = AE(ae_title)
        self.ae.maximum_associations = max_associations
        self.ae.maximum_pdu_size = MAX_PDU_SIZE
        self.ae.require_calling_aet = list(allowed_aes)
        self.ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, list(KNOWN_TRANSFER_SYNTAXES))
        self._server: Any = None
        self._spool: ReceiveSpool | None = None
        self._associations: dict[int, _Association] = {}
        self._lock = threading.Lock()

    def start(self) -> tuple[str, int]:
        """Listen; returns the address bound (port 0 asks the system for a free one)."""
        from pynetdicom import evt

        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, self._on_open),
                    (evt.EVT_ACCEPTED, self._on_accepted), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_RELEASED, self._on_released), (evt.EVT_ABORTED, self._on_aborted),
                    (evt.EVT_CONN_CLOSE, self._on_close)]
        self._spool = ReceiveSpool(self.ingest.staging)
        self._spool.install(self._on_broken)  # process-global (receive.spool): not at import
        try:
            self._server = self.ae.start_server((self.host, self.port), block=False,
                                                evt_handlers=handlers)
        except BaseException:
            self._spool.uninstall()
            raise
        host, port = self._server.server_address[:2]
        self.port = port
        return host, port

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting associations, wait up to `grace_seconds` for those in progress to
        end (the peer releases them), then abort what is left."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server = None
        deadline = time.monotonic() + grace_seconds
        for assoc in list(self.ae.active_associations):
            # a connection that never asked for an association (a port probe) would keep
            # its thread until pynetdicom's ACSE timeout: it is not waited for
            if assoc.is_established:
                assoc.join(max(0.0, deadline - time.monotonic()))
        left = list(self.ae.active_associations)
        for assoc in left:
            assoc.abort()
        for assoc in left:  # threads are daemons: one stuck in a read ends with the process
            assoc.join(1 if assoc.is_established else 0.1)
        if self._spool is not None:  # its folder goes with the ingest's session
            self._spool.uninstall()

    # -- events ------------------------------------------------------------------------
    def _record(self, event: Any) -> _Association:
        key = id(event.assoc)
        with self._lock:
            found = self._associations.get(key)
            if found is None:
                requestor = event.assoc.requestor
                found = self._associations[key] = _Association(
                    requestor.ae_title or "?", f"{requestor.address}:{requestor.port}")
            return found

    def _on_open(self, event: Any) -> None:
        self._record(event)

    def _on_accepted(self, event: Any) -> None:
        self._record(event).calling = event.assoc.requestor.ae_title

    def _on_rejected(self, event: Any) -> None:
        record = self._record(event)
        record.calling, record.end = event.assoc.requestor.ae_title, "rejected"

    def _on_released(self, event: Any) -> None:
        self._record(event).end = "released"

    def _on_aborted(self, event: Any) -> None:
        self._record(event).end = "aborted"

    def _on_close(self, event: Any) -> None:
        with self._lock:
            record = self._associations.pop(id(event.assoc), None)
        if self._spool is not None and self._spool.discard_partial(event.assoc):
            record = record or _Association("?", "?")
            record.failed += 1
            log.warning("connection from %r at %s closed while a data set was arriving: the "
                        "part received is discarded", record.calling, record.peer)
        if record is None:
            return
        if record.end == "closed" and not (record.stored or record.duplicates or record.failed):
            log.debug("connection from %s closed without an association", record.peer)
            return
        log.info("association %s from %r at %s: %d stored, %d duplicates, %d failed, %.1f s",
                 record.end, record.calling, record.peer, record.stored, record.duplicates,
                 record.failed, time.monotonic() - record.started)

    def _on_broken(self, assoc: Any, exc: BaseException) -> None:
        """pynetdicom's DUL thread of `assoc` died of `exc` (a write of the data set
        arriving failed: a full disk): abort the association as pynetdicom does for an
        error reading the socket, so the peer hears of it, and remove the part received."""
        from pynetdicom.pdu import A_ABORT_RQ

        with self._lock:
            record = self._associations.pop(id(assoc), None) or _Association("?", "?")
        assert self._spool is not None
        if self._spool.discard_partial(assoc):
            record.failed += 1
        abort = A_ABORT_RQ()
        abort.source, abort.reason_diagnostic = 0x02, 0x00
        try:
            assoc.dul.socket.send(abort.encode())
            assoc.dul.socket.close()
        except Exception:  # the peer is gone already
            pass
        assoc.is_aborted, assoc.is_established = True, False
        reason = describe_os_error(exc) if isinstance(exc, OSError) else \
            f"{type(exc).__name__}: {exc}"
        log.warning("association aborted from %r at %s: a data set cannot be received (%s): "
                    "%d stored, %d duplicates, %d failed, %.1f s", record.calling, record.peer,
                    reason, record.stored, record.duplicates, record.failed,
                    time.monotonic() - record.started)

    def _on_store(self, event: Any) -> Any:
        """One C-STORE: stored (committed) before the status is answered."""
        from pydicom.dataset import Dataset

        record = self._record(event)
        status, reason = self._store(event, record)
        if status == SUCCESS:
            return SUCCESS
        record.failed += 1
        log.warning("C-STORE from %r refused (0x%04X): %s", record.calling, status, reason)
        answer = Dataset()
        answer.Status = status
        answer.ErrorComment = error_comment(reason)
        return answer

    def _store(self, event: Any, record: _Association) -> tuple[int, str | None]:
        """The received file given this receiver's header, converted, committed, then
        removed (whatever the outcome): the status and reason to answer. Never raises."""
        request = event.request
        try:
            header = part10_header(str(request.AffectedSOPClassUID),
                                   str(request.AffectedSOPInstanceUID),
                                   str(event.context.transfer_syntax))
        except (InvalidUIDError, AttributeError, ValueError) as exc:
            return CANNOT_UNDERSTAND, f"the request cannot be stored: {exc}"
        assert self._spool is not None
        try:
            path = self._spool.part10_file(event.dataset_path, header)
        except OSError as exc:
            return OUT_OF_RESOURCES, f"cannot spool the data set: {describe_os_error(exc)}"
        except (AttributeError, ValueError) as exc:  # not spooled by pynetdicom: a bug
            log.exception("C-STORE of %s not spooled", request.AffectedSOPInstanceUID)
            return OUT_OF_RESOURCES, f"internal error: {exc}"
        try:
            receipt = self.ingest.store_instance(
                Source.from_spooled(path, f"C-STORE from {record.calling}"),
                sop_instance_uid=str(request.AffectedSOPInstanceUID))
        except Exception as exc:  # the ingest never raises for bad input: a bug
            log.exception("C-STORE of %s failed", request.AffectedSOPInstanceUID)
            return OUT_OF_RESOURCES, f"internal error: {exc}"
        finally:
            self._spool.staging.discard(path)
        if receipt.ok:
            if receipt.result.status == "duplicate":
                record.duplicates += 1
            else:
                record.stored += 1
        return receipt.status, receipt.result.reason
