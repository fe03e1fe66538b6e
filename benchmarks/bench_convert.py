"""Benchmark `dcmweb convert` against `cp -r` of the same input, in the same run.

    python benchmarks/bench_convert.py [--quick] [--jobs N] [--work DIR]

Inputs are generated deterministically (dcmweb_static.synthetic): a 500-slice CT series
(512x512, 16-bit) and a ~1 GB native multi-frame file. For each, prints wall time,
files/s, MB/s, the ratio to `cp -r`, and the peak RSS of the converter's processes.
Inputs are read from the page cache in both cases (generated just before); the output
is written to the same file system as the `cp -r` copy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pydicom

from dcmweb_static import synthetic as syn


def make_ct(folder: Path, slices: int) -> None:
    if not (folder / f"CT{slices:05d}.dcm").exists():
        shutil.rmtree(folder, ignore_errors=True)
        syn.ct_series(folder, slices, study_index=500, rich=False)


def make_multiframe(folder: Path, frames: int) -> None:
    path = folder / "multiframe.dcm"
    if path.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    ds = syn.base_dataset(syn.uid(501), syn.uid(501, 1), syn.uid(501, 1, 1), rich=False)
    ds.Rows = ds.Columns = 512
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.NumberOfFrames = frames
    frame = syn.smooth_pixels(512, 512, 12, 0)
    ds.PixelData = frame * frames
    ds["PixelData"].VR = "OW"
    syn.save(ds, path)


def measure(command: list[str]) -> tuple[float, int]:
    """Run `command` in a child that reports its descendants' peak RSS; (seconds, KiB)."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe, *command], check=True,
                         capture_output=True, text=True)
    seconds, rss = run.stdout.split()
    return float(seconds), int(rss)


def size_of(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def bench(name: str, source: Path, work: Path, jobs: int | None) -> None:
    count, size = size_of(source)
    copy, out = work / f"{name}.cp", work / f"{name}.out"
    for target in (copy, out):
        shutil.rmtree(target, ignore_errors=True)
    cp_seconds, _ = measure(["cp", "-r", str(source), str(copy)])
    command = [sys.executable, "-m", "dcmweb_static.cli", "convert", str(source), "-d", str(out),
               "-q"]
    if jobs:
        command += ["-j", str(jobs)]
    seconds, rss = measure(command)
    mb = size / 1e6
    print(f"{name}: {count} files, {mb:.0f} MB")
    print(f"  cp -r          {cp_seconds:7.2f} s  {count / cp_seconds:8.0f} files/s  "
          f"{mb / cp_seconds:7.0f} MB/s")
    print(f"  dcmweb convert {seconds:7.2f} s  {count / seconds:8.0f} files/s  "
          f"{mb / seconds:7.0f} MB/s  = {cp_seconds / seconds:.2f}x cp -r throughput, "
          f"peak RSS {rss / 1024:.0f} MiB (largest process)")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 slices and a ~100 MB file")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    slices, frames = (50, 200) if args.quick else (500, 2000)
    work = args.work / ("quick" if args.quick else "full")
    print(f"dcmweb benchmark: {os.cpu_count()} cores, pydicom {pydicom.__version__}, "
          f"jobs={args.jobs or 'all cores'}", flush=True)
    started = time.perf_counter()
    make_ct(work / "ct", slices)
    make_multiframe(work / "multiframe", frames)
    print(f"(inputs ready in {time.perf_counter() - started:.1f} s)", flush=True)
    bench(f"CT series ({slices} slices)", work / "ct", work, args.jobs)
    bench(f"multi-frame ({frames} frames)", work / "multiframe", work, args.jobs)


if __name__ == "__main__":
    main()
