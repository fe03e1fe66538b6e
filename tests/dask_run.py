"""A conversion on a Dask cluster in a process of its own, for tests/test_dask.py
(`python -m tests.dask_run ADDRESS OUT INPUTS.json [--kill PID] [--cache-control V]
[--workers N]`; OUT a folder or an `s3://` URL; it waits for N workers, 2 by default):
the Dask client stays out of the pytest process, whose size forked converter workers
inherit. With --kill, that worker is killed (SIGKILL) the first time it is seen
holding a batch. Prints a JSON line: each input's status and reason, the batch the killed
worker held, the run's error and object counts, and what the parent itself wrote: every
name of an instance's files it put through the store, every staged file it wrote, and the
commits (renames, server-side copies) it made instead."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from distributed import Client

from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.store import StagedInstance, open_store
from dcmweb_static.store.objects import ObjectStore


def _spy(store, seen: dict[str, list[str]]) -> None:
    """Record, on this store object, each write of a resource's bytes by the parent (put,
    put_new, writer; an object store's every upload goes through `_put`) and each commit."""
    for method in ("put", "put_new", "writer", "_put"):
        original = getattr(store, method, None)
        if original is None:
            continue

        def spied(name, *args, _original=original, **kwargs):
            seen["puts"].append(name)
            return _original(name, *args, **kwargs)
        setattr(store, method, spied)
    for method in ("commit_instance", "commit_staged"):
        original = getattr(store, method, None)
        if original is None:
            continue

        def committed(*args, _original=original, **kwargs):
            seen["commits"].append(str(args[0]))
            return _original(*args, **kwargs)
        setattr(store, method, committed)
    writes = StagedInstance.open

    def staged_write(self, name):  # the parent writing a staged file (the old unpack)
        seen["staged_writes"].append(name)
        return writes(self, name)
    StagedInstance.open = staged_write  # type: ignore[method-assign]


def main(address: str, out: str, inputs: str, kill_pid: int | None,
         cache_control: str | None, workers: int) -> None:
    files = json.loads(Path(inputs).read_text())
    watcher = Client(address, timeout=60)
    watcher.wait_for_workers(workers, timeout=60)
    victim = next((a for a, pid in watcher.run(os.getpid).items() if pid == kill_pid), None)
    killed: list[str] = []

    def on_result(result) -> None:
        if victim is not None and not killed:
            holding = watcher.processing(workers=[victim]).get(victim, ())
            if holding:  # Dask must run this batch again elsewhere
                os.kill(kill_pid, signal.SIGKILL)
                killed.extend(str(key) for key in holding)

    store = open_store(out, cache_control=cache_control)
    seen: dict[str, list[str]] = {"puts": [], "commits": [], "staged_writes": []}
    _spy(store, seen)
    output = Path(out) if not isinstance(store, ObjectStore) else Path("unused")
    summary = Converter(ConvertOptions(output=output), scheduler=address, store=store,
                        on_result=on_result).run(files)
    watcher.close()
    print(json.dumps({"outcomes": {r.path: [r.status, r.reason] for r in summary.results},
                      "killed": killed, "error": summary.error, "objects": summary.objects,
                      "puts": seen["puts"],
                      "staged_writes": seen["staged_writes"],
                      "commits": len(seen["commits"])}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("address", "out", "inputs"):
        parser.add_argument(name)
    parser.add_argument("--kill", type=int)
    parser.add_argument("--cache-control")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(sys.argv[1:])
    main(args.address, args.out, args.inputs, args.kill, args.cache_control, args.workers)
