"""Converting on a Dask cluster (`dcmweb convert --scheduler tcp://HOST:8786`, or `local`
for a LocalCluster): Dask schedules the batches of files, retries a batch whose worker
died, and moves the data; nothing here is a cluster of its own.

A worker builds its own plugin manager (the installed plugins: a manager does not pickle)
and `InstanceConverter` once per options, converts each file of its batch into a staged
folder on its own disk, and returns the staged files' bytes with the result (a worker may
be on another machine: the parent cannot read its disk). The parent puts them into its
own staging area and goes on as for a local worker: the SOP-UID registry, the commit
through the store and the study/series aggregation are the reduce step, so the tree is
the one a one-machine run writes.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

from ..store import StagedInstance, StagingArea
from .options import ConvertOptions
from .result import InstanceResult, peak_rss_kib
from .source import source_for

#: the staged files of one converted instance: (name relative to its folder, bytes)
Packed = list[tuple[str, bytes]]


@contextmanager
def dask_executor(scheduler: str, jobs: int) -> Iterator[tuple[Executor, int]]:
    """A `concurrent.futures` executor on the cluster at `scheduler` (`local`: a
    LocalCluster of `jobs` single-threaded worker processes on this machine), and the
    cluster's worker threads now (for the batch size and the submission window)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError("dask distributed is not installed (pip install "
                          "'dcmweb-static[dask]')", name="distributed") from exc
    if scheduler == "local":
        with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client.get_executor(pure=False), jobs
        return
    with Client(scheduler) as client:
        threads = sum(client.nthreads().values())
        yield client.get_executor(pure=False), max(1, threads)


class _WorkerState:
    """Per worker process: one converter per options, one staging folder."""

    converters: dict[bytes, object] = {}
    staging: StagingArea | None = None


def _converter(options: ConvertOptions):
    from ..plugins.manager import get_plugin_manager
    from .instance import InstanceConverter

    key = pickle.dumps(options)
    converter = _WorkerState.converters.get(key)
    if converter is None:
        converter = InstanceConverter(options, get_plugin_manager())
        _WorkerState.converters = {key: converter}  # one run's options at a time
    return converter


def convert_batch(options: ConvertOptions, paths: list[str]
                  ) -> list[tuple[InstanceResult, Packed | None]]:
    """Run on a Dask worker: convert `paths`, return each result with its staged files.
    Never raises for a file (the converter does not); the staged folders are removed."""
    if _WorkerState.staging is None:
        _WorkerState.staging = StagingArea(tempfile.mkdtemp(prefix="dcmweb-dask-"))
    converter = _converter(options)
    out: list[tuple[InstanceResult, Packed | None]] = []
    for path in paths:
        result = converter.convert(source_for(path, options.storage_options), _WorkerState.staging)
        packed = None
        if result.staging is not None:
            staged = StagedInstance(result.staging)
            packed = [(name, staged.read(name)) for name in staged.files()]
            staged.remove()
            result.staging = None
        out.append((result, packed))
    if out:
        out[-1][0].worker_peak_rss_kib = peak_rss_kib()
    return out


def unpack(packed: Packed, staging: StagingArea, label: str) -> StagedInstance:
    """The staged files a worker returned, as a staged instance in the parent's area. The
    names were made by the converter; each is checked to stay inside the folder."""
    staged = staging.new_instance(label)
    for name, data in packed:
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in name:
            staged.remove()
            raise ValueError(f"a worker returned the staged name {name!r}")
        staged.put(os.path.join(*parts), data)
    return staged
