"""Benchmark the output and the pool: local folder vs object store, process pool vs Dask
with 1 and 2 workers, on one CT series.

    python benchmarks/bench_objstore.py [--slices N] [--work DIR]

Each case runs `dcmweb convert` in a subprocess and prints wall time, files/s and CPU
seconds per 1,000 instances (the converter's own process tree, from RUSAGE_CHILDREN), and
for the object store the S3 server's CPU apart (moto, on 127.0.0.1 in its own process: a
stand-in for S3, whose own cost is not the converter's). The object store cases also run
a second time: the incremental re-run uploads nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from dcmweb_static import synthetic as syn

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(inputs: Path, target: str, extra: list[str], env: dict[str, str], work: Path
         ) -> dict[str, float]:
    report = work / "report.json"
    cpu, started = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert", str(inputs), "-d",
                    target, "-q", "--report", str(report), *extra], env=env, check=True)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    head = json.loads(report.read_text())
    return {"seconds": seconds, "cpu": cpu, "converted": head["counts"]["converted"],
            **{f"objects_{k}": v for k, v in head["objects"].items()}}


def _moto(port: int) -> subprocess.Popen:
    binary = Path(sys.executable).parent / "moto_server"
    server = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", **{
        "aws_access_key_id": "bench", "aws_secret_access_key": "bench",
        "region_name": "us-east-1"})
    for _ in range(200):
        try:
            client.create_bucket(Bucket="bench")
            return server
        except Exception:  # not listening yet
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("moto_server did not start")


def _line(name: str, row: dict[str, float], server_cpu: float | None = None) -> str:
    per = 1000 / max(row["converted"], 1)
    text = (f"{name:<34} {row['seconds']:7.2f} s {row['converted'] / row['seconds']:7.1f} "
            f"files/s  {row['cpu'] * per:6.1f} CPU-s/1000")
    if server_cpu is not None:
        text += f"  (+ S3 server {server_cpu * per:5.1f} CPU-s/1000)"
    written = row.get("objects_written")
    return text + f"  objects written {written:.0f}, unchanged {row['objects_unchanged']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-objstore-"))
    inputs = work / "ct"
    if not (inputs / f"CT{args.slices:05d}.dcm").exists():
        shutil.rmtree(inputs, ignore_errors=True)
        syn.ct_series(inputs, args.slices, study_index=510, rich=False)
    env = dict(os.environ)
    print(f"{args.slices} CT slices 512x512, {os.cpu_count()} cores")
    for name, extra in (("local folder, process pool -j 1", ["-j", "1"]),
                        ("local folder, process pool -j 2", ["-j", "2"]),
                        ("local folder, Dask 1 worker", ["--scheduler", "local", "-j", "1"]),
                        ("local folder, Dask 2 workers", ["--scheduler", "local", "-j", "2"])):
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        print(_line(name, _run(inputs, str(out), extra, env, work)), flush=True)
    port = 18000 + os.getpid() % 1000
    server = _moto(port)
    try:
        env = {**env, **CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        moto = psutil.Process(server.pid)
        for name, prefix, extra in (("S3 (moto), process pool -j 2", "a", ["-j", "2"]),
                                    ("S3 (moto), re-run (incremental)", "a", ["-j", "2"]),
                                    ("S3 (moto), Dask 2 workers", "b",
                                     ["--scheduler", "local", "-j", "2"])):
            before = sum(moto.cpu_times()[:2])
            row = _run(inputs, f"s3://bench/{prefix}", extra, env, work)
            print(_line(name, row, sum(moto.cpu_times()[:2]) - before), flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
