"""Benchmark `dcmweb listen`: instances/s received from dcmtk's storescu over 1 and 4
associations, beside dcmtk's own storescp receiving the same files (the transport
alone: it only writes files) and `dcmweb convert` of the same files (files/s).

    python benchmarks/bench_listen.py [--quick] [--rounds N] [--work DIR]

Inputs (dcmweb_static.synthetic, kept in --work): a CT series of 240 slices, 512x512
16-bit (--quick: 120 slices of 256x256). Each round starts every receiver afresh into an
empty folder; a listener's time runs from the first storescu's start to the last one's
end (each instance is acknowledged only after its commit), and "indexed" is when the
study's QIDO instance list lists every instance (the listener's --debounce is 0.5 s).
Prints the median of the rounds (and the spread): the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from dcmweb_static import LocalStore
from dcmweb_static import synthetic as syn
from dcmweb_static.tree.reader import TreeReader


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def _send(port: int, files: list[Path], associations: int) -> float:
    """storescu over `associations` at once; returns the wall time."""
    parts = [files[i::associations] for i in range(associations)]
    started = time.perf_counter()
    senders = [subprocess.Popen(["storescu", "127.0.0.1", str(port), *map(str, part)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for part in parts]
    for sender in senders:
        _, err = sender.communicate()
        if sender.returncode != 0:
            raise SystemExit(f"storescu failed: {err.decode()[-500:]}")
    return time.perf_counter() - started


def _count(out: Path, study: str) -> int:
    data = TreeReader(LocalStore(out)).resource("study_instances", study=study)
    return 0 if data is None else len(orjson.loads(data))


def listen_round(files: list[Path], associations: int, work: Path, study: str
                 ) -> tuple[float, float]:
    """(seconds to send and acknowledge everything, seconds until the index lists it)."""
    out = work / "listen-out"
    shutil.rmtree(out, ignore_errors=True)
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "dcmweb_static.cli", "listen", str(out),
                                "--port", str(port), "--debounce", "0.5", "-q"],
                               stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        started = time.perf_counter()
        sent = _send(port, files, associations)
        while _count(out, study) < len(files):
            time.sleep(0.05)
        indexed = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(60)
    return sent, indexed


def storescp_round(files: list[Path], associations: int, work: Path) -> float:
    out = work / "storescp-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    port = _free_port()
    process = subprocess.Popen(["storescp", "--fork", "-od", str(out), str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        return _send(port, files, associations)
    finally:
        process.terminate()
        process.wait(60)


def convert_round(files: list[Path], work: Path, jobs: int) -> float:
    """The run's own time from its report (conversion, commit, aggregation), without the
    process start-up, which the listener's times do not include either."""
    out = work / "convert-out"
    report = work / "convert-report.json"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert", str(files[0].parent),
                    "-d", str(out), "-q", "-j", str(jobs), "--report", str(report)], check=True)
    return float(orjson.loads(report.read_bytes())["seconds"])


def _median(rounds: int, run: Callable[[], float]) -> tuple[float, float, float]:
    times = [run() for _ in range(rounds)]
    return statistics.median(times), min(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (apt-get install dcmtk)")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-listen-"))
    slices, size = (120, 256) if args.quick else (240, 512)
    folder = work / f"ct-{slices}-{size}"
    if not (folder / f"CT{slices:05d}.dcm").exists():
        shutil.rmtree(folder, ignore_errors=True)
        syn.ct_series(folder, slices, rows=size, columns=size, study_index=600)
    files = sorted(folder.glob("*.dcm"))
    study = syn.uid(600)
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    print(f"{len(files)} files, {size}x{size} 16-bit, {megabytes:.0f} MB; {args.rounds} rounds "
          f"(median [min-max]); {os.cpu_count()} cores, shared")

    def line(label: str, seconds: tuple[float, float, float], extra: str = "") -> None:
        median, low, high = seconds
        print(f"  {label:<34} {len(files) / median:7.1f} files/s  {median:6.2f} s "
              f"[{low:.2f}-{high:.2f}]{extra}")

    for associations in (1, 4):
        results = [listen_round(files, associations, work, study) for _ in range(args.rounds)]
        sent = [r[0] for r in results]
        indexed = [r[1] for r in results]
        line(f"dcmweb listen, {associations} association(s)",
             (statistics.median(sent), min(sent), max(sent)),
             f"; indexed after {statistics.median(indexed):.2f} s")
        line(f"dcmtk storescp, {associations} association(s)",
             _median(args.rounds, lambda a=associations: storescp_round(files, a, work)))
    for jobs in (1, os.cpu_count() or 1):
        line(f"dcmweb convert -j {jobs}", _median(args.rounds,
                                                lambda j=jobs: convert_round(files, work, j)))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
