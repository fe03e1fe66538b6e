"""Convert many files in a pool of worker processes; the parent alone commits results.

Workers never raise (they return an `InstanceResult`); the parent moves each staged
folder into the tree, detects duplicate SOP Instance UIDs within the run, and keeps
going when a worker process dies: the files that were in flight are re-run one at a
time so the one that kills its worker is reported and the rest are converted.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pluggy

from ..index.aggregate import Aggregator, aggregate
from ..pathnames import display_path
from ..plugins.manager import get_plugin_manager, run_hook
from ..store import (
    LocalStore,
    StagedInstance,
    StagingArea,
    Store,
    describe_os_error,
    is_url,
)
from ..store.objects import ObjectStore
from .commit import commit_instance, commit_staged_instance
from .inputs import InputSpool, iter_input_files
from .instance import InstanceConverter, workers_need_pydicom
from .options import ConvertOptions
from .prefetch import prefetch
from .report import RunSummary
from .result import InstanceResult, StagedObjects, peak_rss_kib
from .sop_registry import Committed, SopRegistry
from .source import Source, source_for
from .stopping import Interrupted, StopRequest, stop_on_signals

#: how often (seconds) the parent looks for a stop request while it waits for workers
STOP_POLL_SECONDS = 0.1


class _Worker:
    """What a worker process keeps for the run: set once by the pool's initializer from
    what the parent passed (options, its plugin manager, the staging area)."""

    converter: InstanceConverter | None = None
    staging: StagingArea | None = None


def convert_source(converter: InstanceConverter, source: Source,
                   staging: StagingArea) -> InstanceResult:
    """One input in a worker (a seam for tests that need a worker to die on a file)."""
    return converter.convert(source, staging)


def _convert_in_worker(path: str) -> InstanceResult:
    assert _Worker.converter is not None and _Worker.staging is not None
    source = source_for(path, _Worker.converter.options.storage_options)
    return convert_source(_Worker.converter, source, _Worker.staging)


def _convert_chunk(paths: list[str]) -> list[InstanceResult]:
    prefetch(paths)  # the disk reads the task's files while the first converts
    results = [_convert_in_worker(path) for path in paths]
    results[-1].worker_peak_rss_kib = peak_rss_kib()
    return results


def _init_worker(options: ConvertOptions, plugin_manager: pluggy.PluginManager,
                 staging: StagingArea) -> None:
    """Workers leave signals to the parent, which stops them (Ctrl-C in a terminal
    reaches the whole process group); SIGTERM, as the parent sends it, ends them."""
    _Worker.converter = InstanceConverter(options, plugin_manager)
    _Worker.staging = staging
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's workers now, not after their tasks: nothing they do is used."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no API before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


@contextmanager
def _worker_pool(jobs: int, setup: tuple[ConvertOptions, pluggy.PluginManager, StagingArea]
                 ) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers are stopped, not waited for, when the parent leaves
    it by an exception (a stop request, or a bug while handling a result). Forked: the
    workers inherit the parent's plugin manager as it is (a test's own included)."""
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"),
                               initializer=_init_worker, initargs=setup)
    try:
        yield pool
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True)


def task_size(remaining: int, jobs: int) -> int:
    """Files per task: up to 16, and at most 1/8 of each worker's share of what is left."""
    return max(1, min(16, remaining // (jobs * 8)))


class _Batches:
    """The inputs, in order, cut into tasks that shrink as they run out (`task_size`), so
    that no worker is left with a long last task; the process pool and Dask both take them."""

    def __init__(self, paths: InputSpool, workers: int) -> None:
        self._inputs = enumerate(paths)
        self._total = len(paths)
        self._workers = workers
        self._taken = 0
        #: inputs may remain
        self.more = True

    def next(self) -> list[tuple[int, str]]:
        """The next task's (input index, path) pairs; empty when the inputs ran out."""
        chunk = task_size(self._total - self._taken, self._workers)
        items = list(itertools.islice(self._inputs, chunk))
        self._taken += len(items)
        self.more = len(items) == chunk
        return items


@dataclass(frozen=True)
class _Held:
    """A converted instance waiting for its commit: a staged folder (a local worker, or a
    Dask worker writing into the folder's staging area), or the objects a Dask worker
    staged in an object store (`run.dask_pool`)."""

    staging: str | None
    uploads: StagedObjects | None
    #: the staged folder's file count, as the worker counted it (None: unknown)
    files: int | None = None

    def commit(self, store: Store, study: str, series: str, sop: str) -> None:
        if self.uploads is not None:
            assert isinstance(store, ObjectStore)
            commit_staged_instance(store, self.uploads, study, series, sop)
        else:
            assert self.staging is not None
            commit_instance(store, StagedInstance(self.staging, self.files), study, series, sop)

    def discard(self, store: Store) -> None:
        """A loser's (or a failed commit's) staged files go; nothing of it is published."""
        if self.uploads is not None:
            assert isinstance(store, ObjectStore)
            store.discard_staged(self.uploads.uploads)
        elif self.staging is not None:
            StagedInstance(self.staging).remove()


def _mark_duplicate(loser: InstanceResult, winner: Committed) -> None:
    if loser.sha256 == winner.sha256:
        loser.status = "duplicate"
        loser.reason = f"same file content as {display_path(winner.path)}"
    else:
        loser.status = "failed"
        loser.reason = (f"SOP Instance UID {loser.sop_uid} also in "
                        f"{display_path(winner.path)}, with different content; the first "
                        "file in input order was kept")


class Converter:
    """Runs a batch. `on_result` (and the `instance_converted` hook) is called in the
    parent for every file, in input order, once its outcome is final: a result can only
    be changed by an earlier input's (see `_commit`), so finished results wait for their
    predecessors; at most the submission window waits."""

    def __init__(self, options: ConvertOptions, jobs: int | None = None,
                 on_result: Callable[[InstanceResult], None] | None = None,
                 keep_results: bool = True, *, store: Store | None = None,
                 plugin_manager: pluggy.PluginManager | None = None,
                 scheduler: str | None = None) -> None:
        self.options = options
        #: a Dask scheduler address (`tcp://host:8786`) or `local`; None: a process pool
        self.scheduler = scheduler
        #: where the tree is written (default: the folder `options.output`)
        self.store: Store = store if store is not None else LocalStore(options.output)
        if scheduler is not None:
            from .dask_pool import check_store

            check_store(self.store)  # OptionError: Dask workers cannot reach it
        #: the plugins of this run (default: the installed ones)
        self.pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.on_result = on_result or (lambda result: None)
        #: False: results only go to the spooled report (memory flat for any batch size)
        self.keep_results = keep_results
        #: results behind registry entries, only when results are kept anyway
        self._kept: dict[int, InstanceResult] = {}
        self._sops: SopRegistry | None = None
        self._worker_peak_rss_kib = 0
        #: results finished before an earlier input, and the next index to release
        self._waiting: dict[int, InstanceResult] = {}
        self._released = 0
        self._stop = StopRequest()
        #: overlapped aggregation: studies the input order has left behind, not yet
        #: aggregated, and those aggregated since their last commit (skipped at the end)
        self._left_behind: list[str] = []
        self._settled: set[str] = set()
        self._last_study: str | None = None

    def run(self, files: Iterable[str | os.PathLike[str]]) -> RunSummary:
        """Convert `files` into the tree: an InputSpool, or files and folders (walked as
        `dcmweb convert` walks them, the output excluded).

        SIGINT, SIGTERM and SIGHUP (where the application does not handle them) stop the
        run: workers are ended, staging removed, nothing aggregated (a re-run mends the
        tree), and `Interrupted` is raised with the summary so far as `.summary`."""
        started = time.perf_counter()
        root = self.options.output
        url = getattr(self.store, "url", None)  # an object store: nothing local to exclude
        summary = RunSummary(output=url or root, keep_results=self.keep_results)
        spool = files if isinstance(files, InputSpool) else InputSpool(
            iter_input_files((f if is_url(f) else Path(os.fspath(f)) for f in files),
                             exclude=None if url else root,
                             storage_options=self.options.storage_options))
        before = self.store.counts.as_dict()
        self._waiting, self._released = {}, 0
        self._left_behind, self._settled, self._last_study = [], set(), None
        stage = "cannot use the output folder"
        try:
            with stop_on_signals() as self._stop:
                with self.store.session() as staging:  # staged instances (and temp files)
                    try:
                        self._run_pool(spool, staging, summary)
                    except KeyboardInterrupt:
                        raise  # stop fast: no aggregation
                    except BaseException:
                        stage = "study and series files not (all) updated"
                        self._aggregate(summary)  # committed instances still get their index
                        raise
                    self._stop.raise_now = True  # no workers now: a signal may stop anywhere
                    self._stop.check()
                    stage = "study and series files not (all) updated"
                    self._aggregate(summary)
        except OSError as exc:  # the tree is unusable (full, read-only, a link in it)
            summary.error = f"{stage}: {describe_os_error(exc)}"
        except KeyboardInterrupt as exc:
            stopped = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
            summary.interrupted = stopped.signum
            stopped.summary = summary
            if stopped is exc:
                raise
            raise stopped from exc
        finally:
            self._stop = StopRequest()
            if spool is not files:
                spool.close()
            if self._sops is not None:
                self._sops.close()
            self._sops, self._kept, self._waiting = None, {}, {}
            summary.objects = {key: count - before[key]
                               for key, count in self.store.counts.as_dict().items()}
            summary.seconds = time.perf_counter() - started
            summary.peak_rss_kib = {
                "parent": peak_rss_kib(),
                "workers": self._worker_peak_rss_kib,
            }
        return summary

    def _aggregate(self, summary: RunSummary) -> None:
        """The study files of every study committed to and not aggregated since (see
        `_aggregate_left_behind`), and the lists spanning studies."""
        aggregated = time.perf_counter()
        aggregate(self.store, summary.touched_studies - self._settled, self.pm,
                  gzip=self.options.gzip, base_url=self.options.base_url,
                  failures=summary.plugin_failures)
        summary.timings["aggregate"] = time.perf_counter() - aggregated

    def _aggregate_left_behind(self, summary: RunSummary) -> None:
        """Aggregation overlapped with conversion: a study the input order has moved past
        (inputs are walked folder by folder, so its files are usually all in) is
        aggregated now, while the workers convert, instead of after the last file. A
        later commit to it takes it out of `_settled` again, so it is aggregated at the
        end as well: the tree is the same either way, only the work is done twice."""
        while self._left_behind:
            study = self._left_behind.pop(0)
            if study in self._settled or study not in summary.touched_studies:
                continue
            started = time.perf_counter()
            Aggregator(self.store, self.pm, gzip=self.options.gzip,
                       base_url=self.options.base_url,
                       failures=summary.plugin_failures).update_studies(study)
            self._settled.add(study)
            summary.timings["aggregate_overlapped"] = time.perf_counter() - started + \
                summary.timings.get("aggregate_overlapped", 0.0)
            return  # one study per pass: results keep being committed in between

    def _finish(self, index: int, result: InstanceResult, summary: RunSummary) -> None:
        for stage, seconds in result.timings.items():  # kept as run totals only
            summary.worker_timings[stage] = summary.worker_timings.get(stage, 0.0) + seconds
        result.timings = {}
        if result.status == "converted":
            committed = time.perf_counter()
            self._commit(index, result, summary)
            summary.timings["commit"] = summary.timings.get("commit", 0.0) + \
                time.perf_counter() - committed
        self._worker_peak_rss_kib = max(self._worker_peak_rss_kib, result.worker_peak_rss_kib)
        summary.add(index, result)
        self._waiting[index] = result
        while self._released in self._waiting:  # outcomes final up to here: release them
            released = self._waiting.pop(self._released)
            self._released += 1
            if released.study_uid and released.study_uid != self._last_study:
                if self._last_study is not None:
                    self._left_behind.append(self._last_study)
                self._last_study = released.study_uid
            self.on_result(released)
            if self.pm.hook.instance_converted.get_hookimpls():  # its record costs ~10 us
                run_hook(self.pm, "instance_converted", {"record": released.report_record()},
                         on_error=summary.plugin_failures.add)

    def _commit(self, index: int, result: InstanceResult, summary: RunSummary) -> None:
        """Move the staged folder into the tree. Of several files with one SOP Instance
        UID the first in input order wins, whatever order the workers finish in, and the
        others are judged against it (duplicate if the same bytes, else failed), so a
        re-run gives the same tree and the same report."""
        assert result.staging or result.uploads is not None
        assert result.sop_uid and result.study_uid and result.series_uid
        if self._sops is None:
            self._sops = SopRegistry()
        held = _Held(result.staging, result.uploads, result.staged_files)
        result.staging, result.uploads = None, None
        sop = result.sop_uid
        first = self._sops.winner(sop)
        if first is not None and first.index < index:
            held.discard(self.store)
            _mark_duplicate(result, first)
            self._remember(sop, index, result, winner=False)
            return
        try:
            held.commit(self.store, result.study_uid, result.series_uid, sop)
        except OSError as exc:
            held.discard(self.store)
            result.status, result.reason = "failed", f"cannot write instance folder: {exc}"
            return
        summary.touched_studies.add(result.study_uid)  # in the tree: it must be indexed
        self._settled.discard(result.study_uid)  # aggregated early: again at the end
        if first is None:
            self._remember(sop, index, result, winner=True)
            return
        # an earlier input arrived after later ones: it wins, they are judged against it
        winner = Committed.of(index, result)
        losers = [first, *self._sops.losers(sop)]
        for loser in losers:
            # a loser comes later in input order, so it has not been released yet
            record = self._kept.get(loser.index) or self._waiting.get(loser.index) or \
                InstanceResult(
                    path=loser.path, status=loser.status, sop_uid=sop, sha256=loser.sha256,
                    bytes_in=loser.bytes_in)
            was = record.status
            _mark_duplicate(record, winner)
            if record.status != was or record.reason != loser.reason:
                summary.changed(loser.index, record, was=was)
            loser.status, loser.reason = record.status, record.reason
        self._sops.replace(sop, winner, sorted(losers, key=lambda c: c.index))
        if self.keep_results:
            self._kept[index] = result

    def _remember(self, sop: str, index: int, result: InstanceResult, *, winner: bool) -> None:
        assert self._sops is not None
        self._sops.add(sop, Committed.of(index, result), winner=winner)
        if self.keep_results:
            self._kept[index] = result

    def _run_pool(self, paths: InputSpool, staging: StagingArea, summary: RunSummary) -> None:
        if self.scheduler is not None:
            self._run_dask(paths, staging, summary)
            return
        # several files per task (less inter-process traffic per file), fewer as the
        # inputs run out, so that no worker is left with a long task while the others idle
        window = self.jobs * 4  # bounded submission: memory stays flat for huge batches
        batches = _Batches(paths, self.jobs)
        if workers_need_pydicom(self.options, self.pm, next(iter(paths), None)):
            import pydicom  # noqa: F401 - imported once, before the workers fork: shared
        while batches.more:
            crashed: list[tuple[int, str]] = []
            with _worker_pool(self.jobs, (self.options, self.pm, staging)) as pool:
                running: dict[Future[list[InstanceResult]], list[tuple[int, str]]] = {}
                while not crashed:
                    while batches.more and len(running) < window:
                        items = batches.next()
                        if items:
                            future = pool.submit(_convert_chunk, [p for _, p in items])
                            running[future] = items
                    if not running:
                        break
                    done, _ = wait(running, STOP_POLL_SECONDS, FIRST_COMPLETED)
                    self._stop.check()
                    for future in done:
                        items = running.pop(future)
                        try:
                            results = future.result()
                        except BrokenProcessPool:
                            crashed.extend(items)
                            continue
                        for (index, _), result in zip(items, results, strict=True):
                            self._finish(index, result, summary)
                    self._aggregate_left_behind(summary)
                for items in running.values():
                    crashed.extend(items)
            for index, path in sorted(crashed):
                self._run_isolated(index, path, staging, summary)

    def _run_dask(self, paths: InputSpool, staging: StagingArea, summary: RunSummary) -> None:
        """Batches of files on a Dask cluster (`run.dask_pool`), whose workers stage each
        instance in the store's staging area and return only its result; the parent
        commits in input order (so the first of several files with one SOP Instance UID
        is always committed first and the others are only judged: nothing the workers
        found stored is replaced in between). Dask reruns a batch whose worker died; a
        batch that kills its workers every time fails its files."""
        from .dask_pool import convert_batch, dask_executor, store_target

        assert self.scheduler is not None
        target = store_target(self.store, staging)
        with dask_executor(self.scheduler, self.jobs) as (pool, threads):
            window = threads * 4  # batches submitted and not yet committed
            batches = _Batches(paths, threads)
            running: deque[tuple[Future[list[InstanceResult]], list[tuple[int, str]]]] = deque()
            while batches.more or running:
                while batches.more and len(running) < window:
                    items = batches.next()
                    if items:
                        running.append((pool.submit(convert_batch, self.options, target,
                                                    [p for _, p in items]), items))
                if not running:
                    break
                future, items = running[0]
                while not wait([future], STOP_POLL_SECONDS).done:
                    self._stop.check()
                running.popleft()
                try:
                    results = future.result()
                except Exception as exc:  # KilledWorker, a lost scheduler
                    reason = f"the Dask workers failed on its batch: {exc}".splitlines()[0]
                    results = [InstanceResult(path=path, status="failed", reason=reason)
                               for _, path in items]
                for (index, _), result in zip(items, results, strict=True):
                    if result.staging is not None and \
                            os.path.dirname(result.staging) != staging.path:
                        result.status, result.staging = "failed", None  # another version's
                        result.reason = "a Dask worker staged it outside the run's staging area"
                    self._finish(index, result, summary)

    def _run_isolated(self, index: int, path: str, staging: StagingArea,
                      summary: RunSummary) -> None:
        with _worker_pool(1, (self.options, self.pm, staging)) as pool:
            future = pool.submit(_convert_in_worker, path)
            while not wait([future], STOP_POLL_SECONDS).done:
                self._stop.check()
            try:
                result = future.result()
            except BrokenProcessPool:
                result = InstanceResult(path=path, status="failed",
                                        reason="the worker process died while converting it")
        self._finish(index, result, summary)
