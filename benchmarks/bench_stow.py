"""Benchmark STOW-RS into `dcmweb serve --stow`: instances/s acknowledged over 1 and 4
concurrent clients, beside the batch converter's files/s on the same CT series.

    python benchmarks/bench_stow.py [--slices N] [--rows R] [--parts P] [--runs K]

Each run starts a fresh `dcmweb serve OUT --stow` process on 127.0.0.1; the clients
(threads, httpx) split the series and send it in requests of P parts each, streamed. The
clock runs from the first request to the last response (every instance acknowledged is
committed), and then until QIDO lists them all (the debounced index). The batch case is
`dcmweb convert SERIES -d OUT -j 2`. The machine may be shared: medians of K runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from dcmweb_static import synthetic as syn

BOUNDARY = "bench-stow-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int) -> None:
    for _ in range(400):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def _message(files: list[Path]) -> Iterator[bytes]:
    for path in files:
        yield f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        yield path.read_bytes()
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _client(url: str, files: list[Path], parts: int, errors: list[str]) -> None:
    with httpx.Client(timeout=600) as client:
        for start in range(0, len(files), parts):
            response = client.post(f"{url}/studies", content=_message(files[start:start + parts]),
                                   headers={"Content-Type": CONTENT_TYPE})
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")


def stow_run(files: list[Path], clients: int, parts: int, work: Path) -> dict[str, float]:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "dcmweb_static.cli", "serve", str(out),
                               "--stow", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        shares = [files[i::clients] for i in range(clients)]
        errors: list[str] = []
        threads = [threading.Thread(target=_client, args=(url, share, parts, errors))
                   for share in shares]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        acknowledged = time.perf_counter() - started
        if errors:
            raise RuntimeError(errors[0])
        study = syn.uid(1)
        while True:
            response = httpx.get(f"{url}/studies/{study}/instances")
            if response.status_code == 200 and len(response.json()) == len(files):
                break
            time.sleep(0.05)
        indexed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {"seconds": acknowledged, "indexed_seconds": indexed,
            "instances_per_s": len(files) / acknowledged}


def batch_run(folder: Path, count: int, work: Path) -> dict[str, float]:
    out = work / "batch-out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert", str(folder), "-d",
                    str(out), "-q", "-j", "2"], check=True)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "instances_per_s": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--parts", type=int, default=10, help="parts per request")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-stow-"))
    folder = work / "series"
    shutil.rmtree(folder, ignore_errors=True)
    files = syn.ct_series(folder, args.slices, rows=args.rows, columns=args.rows)
    size = sum(p.stat().st_size for p in files)
    print(f"{len(files)} CT slices of {args.rows}x{args.rows}, {size / 2**20:.0f} MiB, "
          f"{args.parts} parts per request, median of {args.runs} runs")
    results: dict[str, dict[str, float]] = {}
    cases = {"stow, 1 client": lambda: stow_run(files, 1, args.parts, work),
             "stow, 4 clients": lambda: stow_run(files, 4, args.parts, work),
             "batch convert -j 2": lambda: batch_run(folder, len(files), work)}
    for name, case in cases.items():
        runs = [case() for _ in range(args.runs)]
        results[name] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        extra = (f", QIDO complete after {results[name]['indexed_seconds']:.2f} s"
                 if "indexed_seconds" in results[name] else "")
        print(f"{name:20s} {results[name]['seconds']:7.2f} s  "
              f"{results[name]['instances_per_s']:7.1f} instances/s{extra}")
    print(json.dumps(results, indent=2))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
