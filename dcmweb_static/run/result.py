"""The outcome of converting one input: what a worker returns (workers never raise) and
what the report records."""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from typing import Any

from ..pathnames import display_path, path_fields
from ..store import StagedUpload


@dataclass(frozen=True)
class StagedObjects:
    """What a Dask worker staged in an object store for one instance
    (`run.commit.stage_instance`), for the parent's commit: no bytes, only keys."""

    uploads: list[StagedUpload]
    #: the keys below the instance's folder when the worker looked (relative to it)
    stored: list[str]
    #: an earlier deduplicated record is stored, and this conversion has none
    stale_record: bool = False


@dataclass(slots=True)
class InstanceResult:
    path: str
    status: str  # "converted", "failed", "skipped" (and "duplicate", decided when committing)
    reason: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    sha256: str | None = None
    frames: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    #: the staged folder (a path in the run's staging area) of a converted instance
    staging: str | None = None
    #: how many files the staged folder holds (`StagedInstance.file_count`; None: unknown)
    staged_files: int | None = None
    #: or, from a Dask worker writing into an object store: what it staged there
    uploads: StagedObjects | None = None
    warnings: list[str] = field(default_factory=list)
    #: seconds per stage (scan, parse, encode, frames, gzip, write), for the benchmark
    timings: dict[str, float] = field(default_factory=dict)
    #: the worker's peak RSS after this file (set on the last file of a task)
    worker_peak_rss_kib: int = 0

    def report_record(self) -> dict[str, Any]:
        record = {
            **path_fields(self.path),
            "status": self.status,
            "reason": display_path(self.reason) if self.reason else None,
            "study_instance_uid": self.study_uid,
            "series_instance_uid": self.series_uid,
            "sop_instance_uid": self.sop_uid,
            "sha256": self.sha256,
            "frames": self.frames,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "warnings": [display_path(w) for w in self.warnings] or None,
        }
        return {k: v for k, v in record.items() if v is not None}


def peak_rss_kib() -> int:
    """This process's peak resident set size. VmHWM, unlike getrusage's ru_maxrss, is
    not inherited from the process that started this one."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
