"""Benchmark Dask runs: 1 vs 2 workers (a LocalCluster, `--scheduler local -j N`), into a
local folder and into moto S3, optionally for several source trees (e.g. main and a
branch) in interleaved rounds, medians reported (the machine may be shared: CPU seconds
tell more than wall time).

    python benchmarks/bench_dask.py [--slices N] [--rounds R] [--tree NAME=DIR ...]
                                    [--external]

Each run is `dcmweb convert` in a subprocess (with `PYTHONPATH=DIR` for a `--tree`, run
from a neutral folder so that DIR's package is the one imported); CPU seconds are the
converter's whole process tree (RUSAGE_CHILDREN: parent, the LocalCluster's workers),
the S3 server's apart (psutil on moto's process). Every S3 run writes into a new prefix:
a full conversion, not an incremental one. With `--external` the cluster is a `dask
scheduler` and N `dask worker --nthreads 1 --no-nanny` processes started per run, so the
parent's own CPU (the `dcmweb convert` process: what bounds a scale-out) and the workers'
(psutil, from their registration to the end of the run) are reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_objstore import CREDENTIALS, _moto  # noqa: E402

from dcmweb_static import synthetic as syn  # noqa: E402

CASES = (("folder, Dask 1 worker", "folder", 1), ("folder, Dask 2 workers", "folder", 2),
         ("S3 (moto), Dask 1 worker", "s3", 1), ("S3 (moto), Dask 2 workers", "s3", 2))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(inputs: Path, target: str, workers: int, env: dict[str, str], work: Path,
         scheduler: str = "local") -> tuple[float, float, int]:
    report = work / "report.json"
    cpu, started = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert", str(inputs), "-d",
                    target, "-q", "--report", str(report), "--scheduler", scheduler,
                    "-j", str(workers)], env=env, check=True, cwd=work)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    return seconds, cpu, json.loads(report.read_text())["counts"]["converted"]


def _run_external(inputs: Path, target: str, workers: int, env: dict[str, str], work: Path
                  ) -> tuple[float, float, int, float]:
    """`_run` on a scheduler and `workers` worker processes of its own; also the
    workers' CPU seconds during the run."""
    from distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    port = 19000 + (os.getpid() + workers) % 1000
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env,
             "cwd": work}
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                   str(port), "--no-dashboard"], **quiet)]
    try:
        processes += [subprocess.Popen([dask, "worker", address, "--nthreads", "1",
                                        "--no-nanny", "--no-dashboard", "--host",
                                        "127.0.0.1"], **quiet) for _ in range(workers)]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
        handles = [psutil.Process(p.pid) for p in processes[1:]]
        before = sum(sum(h.cpu_times()[:2]) for h in handles)
        seconds, cpu, converted = _run(inputs, target, workers, env, work, address)
        worker_cpu = sum(sum(h.cpu_times()[:2]) for h in handles) - before
    finally:
        for process in [*processes[1:], processes[0]]:  # workers first, then the scheduler
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return seconds, cpu, converted, worker_cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", action="append", default=[],
                        help="NAME=DIR: a source tree to run (default: the installed one)")
    parser.add_argument("--external", action="store_true",
                        help="a dask scheduler and workers of their own per run")
    args = parser.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.tree] or [("installed", "")]
    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    inputs = work / "ct"
    syn.ct_series(inputs, args.slices, study_index=520, rich=False)
    port = 18000 + os.getpid() % 1000
    server = _moto(port)
    moto = psutil.Process(server.pid)
    rows: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    try:
        for round_ in range(args.rounds):
            for name, folder in trees:
                env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
                if folder:
                    env["PYTHONPATH"] = folder
                for case, kind, workers in CASES:
                    out = work / "out"
                    shutil.rmtree(out, ignore_errors=True)
                    target = str(out) if kind == "folder" else \
                        f"s3://bench/{name}-{round_}-{workers}"
                    before = sum(moto.cpu_times()[:2])
                    if args.external:
                        seconds, cpu, converted, worker_cpu = _run_external(
                            inputs, target, workers, env, work)
                    else:
                        seconds, cpu, converted = _run(inputs, target, workers, env, work)
                        worker_cpu = 0.0
                    assert converted == args.slices, converted
                    server_cpu = sum(moto.cpu_times()[:2]) - before
                    rows.setdefault((name, case), []).append(
                        (seconds, cpu, server_cpu, worker_cpu))
                    print(f"round {round_ + 1} {name:<8} {case:<26} {seconds:6.2f} s "
                          f"{cpu:6.2f} CPU-s{' parent' if args.external else ''} "
                          f"(+ workers {worker_cpu:5.2f}, S3 server {server_cpu:5.2f})",
                          flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    per = 1000 / args.slices
    print(f"\n{args.slices} CT slices 512x512 16-bit, medians of {args.rounds} rounds, "
          f"load average now {os.getloadavg()[0]:.1f}")
    cpu_label = "parent CPU-s / 1,000 | workers' CPU-s / 1,000" if args.external else \
        "CPU-s / 1,000 (parent + LocalCluster)"
    print(f"| tree | case | s | files/s | {cpu_label} | S3 server CPU-s / 1,000 |")
    print("|---|---|---|---|---|---|" + ("---|" if args.external else ""))
    for (name, case), runs in rows.items():
        seconds, cpu, server_cpu, worker_cpu = (statistics.median(r[i] for r in runs)
                                                for i in range(4))
        workers_column = f" {worker_cpu * per:.1f} |" if args.external else ""
        print(f"| {name} | {case} | {seconds:.2f} | {args.slices / seconds:.1f} | "
              f"{cpu * per:.1f} |{workers_column} {server_cpu * per:.1f} |")


if __name__ == "__main__":
    main()
