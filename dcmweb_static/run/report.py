"""A run's outcome: counts, the per-file report records (spooled to a temporary file so
memory does not grow with the number of inputs), timings, peak memory, the exit code."""

from __future__ import annotations

import enum
import os
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .. import __version__
from ..pathnames import path_fields
from ..plugins.manager import PluginFailures
from ..store import write_file
from .result import InstanceResult


class ExitCode(enum.IntEnum):
    OK = 0
    FILES_FAILED = 1
    USAGE = 2
    #: 128 + the signal that stopped the run, as a shell reports a process it ended
    HANGUP = 128 + signal.SIGHUP
    INTERRUPTED = 128 + signal.SIGINT
    TERMINATED = 128 + signal.SIGTERM


MAX_KEPT_PROBLEMS = 1000
STATUSES = ("converted", "duplicate", "skipped", "failed")


@dataclass
class RunSummary:
    """Counts and records of a run. Every file's report record is spooled to a temporary
    file, so the parent's memory does not grow with the number of inputs; `results` keeps
    the InstanceResult objects too when asked (library use, tests)."""

    #: the output folder, or the object store URL
    output: Path | str
    keep_results: bool = True
    results: list[InstanceResult] = field(default_factory=list)
    #: the first MAX_KEPT_PROBLEMS results that were not converted, for the end summary
    problems: list[InstanceResult] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    bytes_in: int = 0
    touched_studies: set[str] = field(default_factory=set)
    seconds: float = 0.0
    #: objects (files) of the tree written, unchanged (same bytes already there: not
    #: rewritten) and removed by this run
    objects: dict[str, int] = field(default_factory=dict)
    #: parent-side seconds (commit, aggregate) and peak RSS (KiB) of parent and workers
    timings: dict[str, float] = field(default_factory=dict)
    #: seconds per worker stage (scan, parse, encode, frames, gzip, write), summed
    worker_timings: dict[str, float] = field(default_factory=dict)
    peak_rss_kib: dict[str, int] = field(default_factory=dict)
    #: why the run stopped before its end (an I/O error of the tree), one line; None if not
    error: str | None = None
    #: parent-side plugin hooks that raised (the files themselves are fine): exit 1
    plugin_failures: PluginFailures = field(default_factory=PluginFailures)
    #: the signal that stopped the run; records are then those decided before it
    interrupted: int | None = None
    _spool: Any = field(default=None, repr=False)
    _overrides: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    def add(self, index: int, result: InstanceResult) -> None:
        self.counts[result.status] += 1
        if result.status == "converted":
            self.bytes_in += result.bytes_in
            if result.study_uid:
                self.touched_studies.add(result.study_uid)
        else:
            self._problem(result)
        if self._spool is None:
            self._spool = tempfile.TemporaryFile()
        self._spool.write(orjson.dumps([index, result.report_record()]) + b"\n")
        if self.keep_results:
            self.results.append(result)

    def changed(self, index: int, result: InstanceResult, was: str) -> None:
        """An earlier-added result changed status (judged again against the file that
        won its SOP Instance UID)."""
        self.counts[was] -= 1
        self.counts[result.status] += 1
        if was == "converted":
            self.bytes_in -= result.bytes_in
            self._problem(result)
        self._overrides[index] = {"status": result.status, "reason": result.reason}

    def _problem(self, result: InstanceResult) -> None:
        if len(self.problems) < MAX_KEPT_PROBLEMS:
            self.problems.append(result)

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted is not None:
            return ExitCode(128 + self.interrupted)
        failed = self.count("failed") or self.plugin_failures or self.error
        return ExitCode.FILES_FAILED if failed else ExitCode.OK

    def records(self) -> Iterator[dict[str, Any]]:
        """Every input's report record, in completion order."""
        if self._spool is None:
            return
        self._spool.seek(0)
        for line in self._spool:
            index, record = orjson.loads(line)
            record.update(self._overrides.get(index, {}))
            yield record
        self._spool.seek(0, os.SEEK_END)

    def report_head(self) -> dict[str, Any]:
        stopped = {} if self.interrupted is None else {
            "interrupted": signal.Signals(self.interrupted).name}
        head: dict[str, Any] = {
            "tool": {"name": "dcmweb-static", "version": __version__},
            **path_fields(str(self.output), "output"),
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "counts": dict(self.counts),
            "objects": dict(self.objects),
            "timings_ms": {k: round(v * 1e3, 3) for k, v in self.timings.items()},
            "worker_timings_ms": {k: round(v * 1e3, 3) for k, v in self.worker_timings.items()},
            "peak_rss_kib": self.peak_rss_kib,
            **stopped,
        }
        if self.plugin_failures:
            head["plugin_failures"] = self.plugin_failures.records()
        return head

    def report(self) -> dict[str, Any]:
        return {**self.report_head(), "files": list(self.records())}


def write_report(summary: RunSummary, path: Path) -> None:
    """The run report as JSON, streamed from the spool: one record per input; written
    atomically (a full disk leaves no half report beside it)."""
    write_file(path, _report_chunks(summary))


def _report_chunks(summary: RunSummary) -> Iterator[bytes]:
    head = orjson.dumps(summary.report_head(), option=orjson.OPT_INDENT_2)
    yield head[:-2] + b',\n  "files": ['
    for n, record in enumerate(summary.records()):
        yield (b",\n    " if n else b"\n    ") + orjson.dumps(record)
    yield b"\n  ]\n}\n"
