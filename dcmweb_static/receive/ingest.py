"""Instances received one at a time (a C-STORE listener, STOW-RS) into a tree.

Each arrival goes through the batch's code path: `run.instance.InstanceConverter` stages
it, `run.commit.commit_instance` commits it through the store (one rename of a folder, or
an object upload with the metadata last), and `index.aggregate.Aggregator` rewrites its
study's study/series/QIDO files — debounced, since rewriting a study per instance would
cost O(n^2) over a series.

What is already in the tree decides a re-send: the instance's `info` record keeps the
SHA-256 of the source it was converted from, so the same bytes again are a duplicate (a
success: the sender may retry after a lost acknowledgement) and other bytes under the
same SOP Instance UID are a conflict (a failure, the stored instance stays).

A marker per study (`tree.names.pending_name`) is stored before an instance is committed
and removed once its study is aggregated: a receiver killed in between (kill -9, power
loss) aggregates those studies when it starts again, so the index catches up with every
instance it acknowledged.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pluggy

from ..errors import PluginError
from ..index.aggregate import Aggregator
from ..p10.uids import InvalidUIDError, check_uid
from ..plugins.manager import PluginFailures, run_hook
from ..run.commit import commit_instance
from ..run.instance import InstanceConverter
from ..run.options import ConvertOptions
from ..run.result import InstanceResult
from ..run.source import Source
from ..store import StagedInstance, StagingArea, Store, describe_os_error
from ..tree import names, urls
from ..tree.publish import object_plan

log = logging.getLogger("dcmweb_static.receive")

#: a study that keeps receiving (a long series streaming in) is aggregated at least this
#: often, so its QIDO files are never more than this many seconds behind
MAX_DELAY_SECONDS = 10.0
#: an aggregation that failed (a full disk) is tried again after this long
RETRY_SECONDS = 5.0


#: DIMSE statuses of a stored instance (PS3.4 B.2.3, PS3.7 C): success (also for a
#: re-send of what is stored), the tree cannot be written, the data set names another
#: instance than the request, the data set cannot be converted, and a conflict (another
#: instance with this SOP Instance UID is stored)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
DUPLICATE_SOP_INSTANCE = 0x0111


@dataclass(frozen=True)
class Receipt:
    """What `Ingest.store_instance` did: the instance's result and the status to answer."""

    result: InstanceResult
    status: int

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


@dataclass
class _Pending:
    """A study with instances committed since its last aggregation."""

    first: float
    last: float
    #: bumped by every commit into the study: an aggregation that started before one
    #: does not clear the study
    generation: int = 0


class Ingest:
    """Receives instances one at a time into a tree (the C-STORE listener, STOW-RS): each is
    converted by the batch's code path, committed, and its study's study/series/QIDO files
    follow, debounced.

    Thread-safe: `receive` may be called from many threads at once (one per association
    or request). Conversion runs in the calling thread, one at a time; the check against
    the tree and the commit are serialised too (reading the network goes on meanwhile); one
    background thread aggregates studies `debounce_seconds` after their last instance, or
    every `max_delay_seconds` while instances keep arriving."""

    def __init__(self, store: Store, options: ConvertOptions, plugin_manager: pluggy.PluginManager,
                 *, debounce_seconds: float = 2.0,
                 max_delay_seconds: float = MAX_DELAY_SECONDS) -> None:
        self.store = store
        self.options = options
        self.pm = plugin_manager
        self.debounce_seconds = debounce_seconds
        self.max_delay_seconds = max_delay_seconds
        #: failures of the parent-side plugin hooks, over the receiver's life
        self.plugin_failures: PluginFailures = _SharedFailures()
        self._converter = InstanceConverter(options, plugin_manager)
        #: one conversion at a time: the converter records pydicom's warnings with
        #: warnings.catch_warnings, which is process-wide state (not thread-safe), and
        #: reuses one copy buffer; conversion holds the GIL anyway
        self._convert_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # the tree check, the commit, the markers
        self._aggregate_lock = threading.Lock()  # one aggregation at a time
        self._wake = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._closing = False
        self._closed = False
        self._session = store.session()
        self._staging = self._session.__enter__()
        try:
            self._recover()
        except BaseException:
            self._session.__exit__(None, None, None)
            raise
        self._thread = threading.Thread(target=self._debounce, name="dcmweb-aggregate",
                                        daemon=True)
        self._thread.start()

    @property
    def staging(self) -> StagingArea:
        """The store session's staging area, alive as long as the ingest: where a receiver
        spools what arrives (the tree's file system for a folder; a dead receiver's is
        removed by the store's stale-session cleaning)."""
        return self._staging

    # -- receiving -----------------------------------------------------------------------
    def receive(self, source: Source) -> InstanceResult:
        """Convert and commit one instance. Returns after it is committed (status
        "converted"), or "duplicate" (this SOP Instance UID with the same content is in the
        tree already: a success, nothing written), or "failed" with a one-line reason (a
        conflict: this SOP Instance UID with other content; a bad data set; a tree that
        cannot be written). Never raises for bad input."""
        return self.store_instance(source).result

    def store_instance(self, source: Source, *,
                       sop_instance_uid: str | None = None) -> Receipt:
        """`receive`, with the DIMSE status a receiver answers (PS3.4 B.2.3): the C-STORE
        listener and STOW-RS's FailureReason. With `sop_instance_uid` (the request's
        Affected SOP Instance UID), a data set naming another instance is refused. The
        plugins' `instance_converted` hook sees each outcome, as in a batch."""
        receipt = self._store(source, sop_instance_uid)
        run_hook(self.pm, "instance_converted", {"record": receipt.result.report_record()},
                 on_error=self.plugin_failures.add)
        return receipt

    def _store(self, source: Source, sop_instance_uid: str | None) -> Receipt:
        if self._closing:
            return Receipt(InstanceResult(path=source.name, status="failed",
                                          reason="the receiver is shutting down"),
                           OUT_OF_RESOURCES)
        with self._convert_lock:
            result = self._converter.convert(source, self._staging)
        result.timings = {}
        if result.status == "skipped":  # a DICOMDIR: never an instance to store
            result.status = "failed"
        if result.status != "converted":
            if result.staging:
                StagedInstance(result.staging).remove()
            # staging that cannot be written is the receiver's trouble; the rest the data set's
            return Receipt(result, OUT_OF_RESOURCES if _os_error(result.reason)
                           else CANNOT_UNDERSTAND)
        assert result.staging and result.sop_uid and result.study_uid and result.series_uid
        staged, result.staging = StagedInstance(result.staging), None
        status = SUCCESS
        try:
            if sop_instance_uid is not None and sop_instance_uid != result.sop_uid:
                result.status, status = "failed", DATA_SET_MISMATCH
                result.reason = (f"the data set's SOP Instance UID {result.sop_uid} is not "
                                 f"the request's {sop_instance_uid}")
            else:
                with self._commit_lock:
                    if not self._commit(staged, result):
                        status = DUPLICATE_SOP_INSTANCE
        except OSError as exc:
            result.status, status = "failed", OUT_OF_RESOURCES
            result.reason = f"cannot write the instance into the tree: {describe_os_error(exc)}"
        finally:
            staged.remove()  # used up by a commit; left over by a duplicate or a failure
        return Receipt(result, status)

    def _commit(self, staged: StagedInstance, result: InstanceResult) -> bool:
        """Judge `result` against the tree, then commit it (with the lock held). False for
        a conflict (the stored instance stays)."""
        study, series, sop = result.study_uid, result.series_uid, result.sop_uid
        assert study and series and sop
        verdict = self._judge(staged, result)
        if verdict is not None:
            result.status, result.reason = verdict
            return result.status == "duplicate"
        self.store.put(names.pending_name(study), b"")  # first: a kill after the commit
        commit_instance(self.store, staged, study, series, sop)  # leaves the marker
        now = time.monotonic()
        with self._wake:
            pending = self._pending.get(study)
            if pending is None:
                self._pending[study] = _Pending(now, now)
            else:
                pending.last = now
                pending.generation += 1
            self._wake.notify()
        return True

    def _judge(self, staged: StagedInstance, result: InstanceResult) -> tuple[str, str] | None:
        """None when the instance is new to the tree; else its status and reason."""
        study, series, sop = result.study_uid, result.series_uid, result.sop_uid
        assert study and series and sop
        folder = urls.instance_path(study, series, sop)
        stored = _load_info(self.store.get(f"{folder}/{names.INFO}"))
        if stored is None:
            return None  # not there, or a folder without a record: replaced whole
        source = stored.get("source")
        digest = source.get("sha256") if isinstance(source, dict) else None
        if digest is not None:
            same = digest == result.sha256
        else:  # converted through a transform: no source checksum kept; compare what
            same = self._same_published(staged, folder)  # was published
        if same:
            return "duplicate", f"SOP Instance UID {sop} is in the tree already (same content)"
        return "failed", (f"SOP Instance UID {sop} is in the tree already with different "
                          "content; the stored instance was kept")

    def _same_published(self, staged: StagedInstance, folder: str) -> bool:
        """Whether every file the staged instance would publish (metadata, frames, bulk
        data; not the info record, which names the tool's version, nor staged-only dot
        names) is stored with the same bytes: a transformed instance's own content."""
        if self.store.layout == "object":
            pairs = [(item.staged_name, item.key) for item in object_plan(staged, folder)]
        else:
            pairs = [(name, f"{folder}/{name}") for name in staged.files()]
        compared = 0
        for name, key in pairs:
            if name == names.INFO or name.startswith("."):
                continue
            if self.store.get(key) != staged.read(name):
                return False
            compared += 1
        return compared > 0

    # -- aggregation ---------------------------------------------------------------------
    def flush(self) -> None:
        """Aggregate every pending study now (the study list too), in this thread."""
        with self._wake:
            studies = list(self._pending)
        if studies:
            self._aggregate(studies)

    def close(self) -> None:
        """Flush and stop the debounce thread; `receive` refuses instances from now on."""
        if self._closed:
            return
        self._closing = True
        with self._wake:
            self._wake.notify()
        self._thread.join()
        try:
            self.flush()
        finally:
            self._closed = True
            self._session.__exit__(None, None, None)

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def pending_studies(self) -> list[str]:
        """Studies with instances not aggregated yet."""
        with self._wake:
            return sorted(self._pending)

    def _recover(self) -> None:
        """Studies a killed receiver committed into but did not aggregate: due now."""
        for name in self.store.children(names.PENDING_DIR):
            try:
                study = check_uid(name, "Study Instance UID")
            except InvalidUIDError:
                continue
            self._pending[study] = _Pending(0.0, 0.0)

    def _due(self, now: float) -> tuple[list[str], float | None]:
        """Studies due for aggregation, and the seconds until the next one is."""
        due, wait = [], None
        for study, pending in self._pending.items():
            at = min(pending.last + self.debounce_seconds, pending.first + self.max_delay_seconds)
            if at <= now:
                due.append(study)
            else:
                wait = at - now if wait is None else min(wait, at - now)
        return due, wait

    def _debounce(self) -> None:
        """The aggregation thread: never raises (a failure is logged and tried again)."""
        while True:
            with self._wake:
                while not self._closing:
                    due, wait = self._due(time.monotonic())
                    if due:
                        break
                    self._wake.wait(wait)
                if self._closing:
                    return  # close() flushes what is left
            self._aggregate(due)

    def _aggregate(self, studies: list[str]) -> None:
        """Aggregate `studies`; each is cleared unless an instance arrived meanwhile."""
        with self._aggregate_lock:
            with self._wake:
                started = {s: self._pending[s].generation for s in studies if s in self._pending}
            if not started:
                return
            try:
                Aggregator(self.store, self.pm, gzip=self.options.gzip,
                           base_url=self.options.base_url,
                           failures=self.plugin_failures).run(started)
            except Exception as exc:  # a full disk, an unreadable tree: tried again later
                log.error("study and series files of %d studies not updated: %s", len(started),
                          describe_os_error(exc) if isinstance(exc, OSError) else exc)
                retry = time.monotonic() + RETRY_SECONDS - self.debounce_seconds
                with self._wake:
                    for study in started:
                        if study in self._pending:
                            self._pending[study].last = max(self._pending[study].last, retry)
                            self._pending[study].first = self._pending[study].last
                return
            with self._commit_lock:  # no commit (and its marker) between check and delete
                with self._wake:
                    cleared = [s for s, generation in started.items()
                               if self._pending.get(s) is not None
                               and self._pending[s].generation == generation]
                try:  # the markers first: a study no longer pending has none left
                    for study in cleared:
                        self.store.delete(names.pending_name(study))
                except OSError as exc:  # the marker only makes a restart aggregate again
                    log.warning("cannot remove a pending-study marker: %s",
                                describe_os_error(exc))
                with self._wake:
                    for study in cleared:
                        del self._pending[study]
            log.debug("aggregated %d studies", len(started))


class _SharedFailures(PluginFailures):
    """PluginFailures added to from several threads (associations, the aggregation)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def add(self, error: PluginError) -> None:
        with self._lock:
            super().add(error)


def _os_error(reason: str | None) -> bool:
    """Whether a conversion failed on an OSError (the converter names its type first)."""
    found = getattr(builtins, (reason or "").partition(":")[0], None)
    return isinstance(found, type) and issubclass(found, OSError)


def _load_info(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        info = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None
