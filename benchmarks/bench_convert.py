"""Benchmark `dcmweb convert` against `cp -r` of the same input, in the same run.

    python benchmarks/bench_convert.py [--quick] [--work DIR] [--only NAME]

Inputs are generated deterministically (dcmweb_static.synthetic) and kept in --work:
a 500-slice CT series (512x512, 16-bit), a ~1 GB native multi-frame file, a 200-frame
RLE multi-frame, and 5,000 small files (--quick: 100 slices, ~100 MB, 50 frames, 1,000
small files; under a minute). For each input it prints, for `cp -r` and for
`dcmweb convert` run one after the other: wall time, files/s, MB/s, the ratio, and the
time of the `sync` that follows (what the page cache still had to write); the peak RSS of
the converter's parent and workers (from the run report); and where the time went per
stage (summed over workers: scan = checksum pass, parse, encode = JSON model and bulk
data, frames, gzip, write; parent: commit, aggregate). The CT series is also converted
with -j 1 for the 1 -> 2 jobs speed-up, and the small files at two counts to show that
memory does not grow with the number of files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pydicom
from pydicom.uid import RLELossless

from dcmweb_static import synthetic as syn


def make_ct(folder: Path, slices: int) -> Path:
    if not (folder / f"CT{slices:05d}.dcm").exists():
        shutil.rmtree(folder, ignore_errors=True)
        syn.ct_series(folder, slices, study_index=500, rich=False)
    return folder


def _multiframe_file(path: Path, frames: int, index: int, compress: bool) -> None:
    """A 512x512 12-bit multi-frame file; RLE-compressed (one frame encoded, repeated)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = syn.base_dataset(syn.uid(index), syn.uid(index, 1), syn.uid(index, 1, 1), rich=False)
    syn.add_pixels(ds, rows=512, columns=512, bits=12, frames=1)
    syntax = pydicom.uid.ExplicitVRLittleEndian
    frame = ds.PixelData
    if compress:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
        ds.compress(RLELossless, encoding_plugin="pydicom")
        frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
        syntax = RLELossless
    ds.NumberOfFrames = frames
    ds.PixelData = pydicom.encaps.encapsulate([frame] * frames) if compress else frame * frames
    syn.save(ds, path, syntax)


def make_multiframe(folder: Path, frames: int) -> Path:
    if not (folder / "multiframe.dcm").exists():
        _multiframe_file(folder / "multiframe.dcm", frames, 501, compress=False)
    return folder


def make_rle(folder: Path, frames: int) -> Path:
    if not (folder / "rle.dcm").exists():
        _multiframe_file(folder / "rle.dcm", frames, 502, compress=True)
    return folder


def make_small(folder: Path, count: int) -> Path:
    if not (folder / f"CT{count:05d}.dcm").exists():
        shutil.rmtree(folder, ignore_errors=True)
        syn.ct_series(folder, count, rows=16, columns=16, study_index=503, rich=True)
    return folder


def timed(command: list[str]) -> tuple[float, float]:
    """(seconds of the command, seconds of the sync after it); page cache flushed before."""
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    ran = time.perf_counter() - started
    subprocess.run(["sync"], check=True)
    return ran, time.perf_counter() - started - ran


def size_of(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def convert(source: Path, out: Path, report: Path, jobs: int | None) -> tuple[float, float]:
    command = [sys.executable, "-m", "dcmweb_static.cli", "convert", str(source), "-d",
               str(out), "-q", "--report", str(report)]
    if jobs:
        command += ["-j", str(jobs)]
    return timed(command)


def stages(report: dict) -> str:
    worker = ", ".join(f"{k} {v / 1e3:.2f}" for k, v in report["worker_timings_ms"].items())
    parent = ", ".join(f"{k} {v / 1e3:.2f}" for k, v in report["timings_ms"].items())
    return f"workers (s, summed): {worker}; parent (s): {parent}"


def bench(name: str, source: Path, work: Path, jobs: int | None) -> tuple[float, float]:
    """Returns (wall seconds, conversion seconds without interpreter start-up)."""
    count, size = size_of(source)
    copy, out, report = work / "cp.out", work / "dcmweb.out", work / "report.json"
    for target in (copy, out):
        shutil.rmtree(target, ignore_errors=True)
    cp_run, cp_sync = timed(["cp", "-r", str(source), str(copy)])
    shutil.rmtree(copy)  # both runs start from the same page-cache state
    run, flush = convert(source, out, report, jobs)
    data = json.loads(report.read_text())
    mb = size / 1e6
    print(f"{name}: {count} files, {mb:.0f} MB")
    print(f"  cp -r          {cp_run:6.2f} s (+{cp_sync:5.2f} s sync)  "
          f"{count / cp_run:7.0f} files/s  {mb / cp_run:6.0f} MB/s")
    print(f"  dcmweb convert {run:6.2f} s (+{flush:5.2f} s sync)  {count / run:7.0f} files/s"
          f"  {mb / run:6.0f} MB/s  = {cp_run / run:.2f}x cp -r "
          f"({(cp_run + cp_sync) / (run + flush):.2f}x with sync)")
    print(f"  of which converting (start-up excluded) {data['seconds']:.2f} s = "
          f"{count / data['seconds']:.0f} files/s, {mb / data['seconds']:.0f} MB/s")
    rss = data["peak_rss_kib"]
    print(f"  peak RSS: parent {rss['parent'] / 1024:.0f} MiB, largest worker "
          f"{rss['workers'] / 1024:.0f} MiB")
    print(f"  {stages(data)}")
    shutil.rmtree(out, ignore_errors=True)
    return run, data["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, < 1 minute")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--only", choices=["ct", "multiframe", "rle", "small"])
    args = parser.parse_args()
    slices, frames, rle_frames, small = (100, 200, 50, 1000) if args.quick else \
        (500, 2000, 200, 5000)
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    startup = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "--version"], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"dcmweb benchmark: {os.cpu_count()} cores, pydicom {pydicom.__version__}; "
          f"`dcmweb --version` takes {time.perf_counter() - startup:.2f} s (start-up)",
          flush=True)
    started = time.perf_counter()
    inputs = {
        "ct": lambda: make_ct(work / "ct", slices),
        "multiframe": lambda: make_multiframe(work / "multiframe", frames),
        "rle": lambda: make_rle(work / "rle", rle_frames),
        "small": lambda: make_small(work / f"small{small}", small),
    }
    chosen = [args.only] if args.only else list(inputs)
    folders = {name: inputs[name]() for name in chosen}
    print(f"(inputs ready in {time.perf_counter() - started:.1f} s)", flush=True)
    if "ct" in folders:
        two = bench(f"CT series ({slices} slices), default jobs", folders["ct"], work, None)
        one = bench(f"CT series ({slices} slices), -j 1", folders["ct"], work, 1)
        print(f"  => 1 -> 2 jobs speed-up: {one[0] / two[0]:.2f}x wall, "
              f"{one[1] / two[1]:.2f}x converting (start-up excluded)")
    if "multiframe" in folders:
        bench(f"native multi-frame ({frames} frames)", folders["multiframe"], work, None)
    if "rle" in folders:
        bench(f"RLE multi-frame ({rle_frames} frames)", folders["rle"], work, None)
    if "small" in folders:
        fewer = make_small(work / f"small{small // 5}", small // 5)
        bench(f"small files ({small // 5})", fewer, work, None)
        bench(f"small files ({small})", folders["small"], work, None)


if __name__ == "__main__":
    main()
