"""Converting on a Dask cluster (`dcmweb convert --scheduler tcp://HOST:8786`, or `local`
for a LocalCluster): Dask schedules the batches of files, retries a batch whose worker
died, and moves the (small) results; nothing here is a cluster of its own.

A worker builds its own plugin manager (the installed plugins: a manager does not pickle)
and `InstanceConverter` once per options, and writes each converted instance through the
run's store itself, into the run's staging area of that store — never into the tree:

- a folder: straight into the parent's staging folder `OUT/.tmp/run-*/` (the workers are
  on this machine or share its file system at the same path); the parent commits each
  instance with one rename, as for its own process pool;
- an object store: into the run's hidden prefix `.tmp/run-*/` of the bucket, which the
  worker opens itself from the URL and storage options (`store.opening.open_store`); the
  parent commits by server-side copies (`run.commit.commit_staged_instance`).

A worker returns only `InstanceResult`s (the staged folder's path, or the staged keys and
content hashes). The parent's reduce step — the SOP-UID registry (first in input order
wins), the commits, the study/series aggregation and the QIDO files — is the one of a
one-machine run, so the tree is the same. What a killed worker staged is debris of the
run's staging area: removed when the run ends, or by a later run's `clean_stale`.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import OptionError
from ..store import LocalStore, StagedInstance, StagingArea, Store, open_store
from ..store.objects import HEADER_PROTOCOLS, ObjectStore
from .commit import stage_instance
from .options import ConvertOptions
from .prefetch import prefetch
from .result import InstanceResult, peak_rss_kib
from .source import source_for


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


@dataclass(frozen=True)
class StoreTarget:
    """What a worker needs to write through the run's store — not the live store, which
    holds the parent's session, lock and connections."""

    #: a folder tree: the parent's staging folder (in the tree's `.tmp/`)
    staging: str | None = None
    #: an object store: what opens it, and the run's staging prefix in it
    url: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    cache_control: str | None = None
    run_prefix: str | None = None


def check_store(store: Store) -> None:
    """Refuse (OptionError, one line) a store that Dask workers cannot open: a
    `MemoryStore` or a `memory://` one lives in this process only."""
    if isinstance(store, LocalStore):
        return
    if isinstance(store, ObjectStore) and store.protocol in HEADER_PROTOCOLS:
        return
    name = getattr(store, "url", None) or type(store).__name__
    raise OptionError(f"{name}: Dask workers cannot write into this store (it lives in this "
                      "process only); use a folder on a shared file system, or s3://")


def store_target(store: Store, staging: StagingArea) -> StoreTarget:
    """The `StoreTarget` of `store` during its session (whose staging area is `staging`)."""
    check_store(store)
    if isinstance(store, LocalStore):
        return StoreTarget(staging=staging.path)
    assert isinstance(store, ObjectStore) and store.run_prefix is not None
    return StoreTarget(url=store.url, storage_options=store.options,
                       cache_control=store.cache_control, run_prefix=store.run_prefix)


class _WorkerState:
    """Per worker process: one converter per options, one store per target, a local
    staging folder (for an object store: the instance is staged here, then uploaded)."""

    converters: dict[bytes, object] = {}
    stores: dict[str, ObjectStore] = {}
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


def _store(target: StoreTarget) -> ObjectStore:
    key = json.dumps([target.url, target.storage_options, target.cache_control],
                     sort_keys=True, default=str)
    store = _WorkerState.stores.get(key)
    if store is None:
        opened = open_store(target.url or "", target.storage_options, target.cache_control)
        assert isinstance(opened, ObjectStore)
        store = _WorkerState.stores[key] = opened
    return store


def convert_batch(options: ConvertOptions, target: StoreTarget, paths: list[str]
                  ) -> list[InstanceResult]:
    """Run on a Dask worker: convert `paths` into the run's staging area of its store.
    Never raises for a file (the converter does not; a failed upload fails its file)."""
    converter = _converter(options)
    prefetch(paths)  # the batch's local files: read ahead while the first converts
    if target.staging is not None:
        results = [_into_folder(converter, options, target.staging, path) for path in paths]
    else:
        if _WorkerState.staging is None:
            _WorkerState.staging = StagingArea(tempfile.mkdtemp(prefix="dcmweb-dask-"))
        store = _store(target)
        results = [_into_objects(converter, options, store, target, path) for path in paths]
    if results:
        results[-1].worker_peak_rss_kib = peak_rss_kib()
    return results


def _into_folder(converter, options: ConvertOptions, staging: str, path: str
                 ) -> InstanceResult:
    if not os.path.isdir(staging):  # the parent's staging folder is not visible here
        return InstanceResult(path=path, status="failed", reason=(
            f"the run's staging folder {staging} is not on this Dask worker (a run into a "
            "folder needs it shared at the same path)"))
    return converter.convert(source_for(path, options.storage_options), StagingArea(staging))


def _into_objects(converter, options: ConvertOptions, store: ObjectStore,
                  target: StoreTarget, path: str) -> InstanceResult:
    assert _WorkerState.staging is not None and target.run_prefix is not None
    result = converter.convert(source_for(path, options.storage_options),
                               _WorkerState.staging)
    if result.staging is None:
        return result
    staged, result.staging = StagedInstance(result.staging), None
    assert result.study_uid and result.series_uid and result.sop_uid
    started = time.perf_counter()
    label = f"{result.sop_uid}.{os.getpid()}.{secrets.token_hex(6)}"
    try:
        result.uploads = stage_instance(store, staged, f"{target.run_prefix}/{label}",
                                        result.study_uid, result.series_uid, result.sop_uid)
    except Exception as exc:  # workers never raise: the file fails with the reason
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result.status, result.reason = "failed", f"cannot stage it in {target.url}: {reason}"
    result.timings["stage"] = time.perf_counter() - started
    return result
