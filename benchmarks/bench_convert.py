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
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
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


def convert_command(source: Path, out: Path, report: Path, jobs: int | None) -> list[str]:
    command = [sys.executable, "-m", "dcmweb_static.cli", "convert", str(source), "-d",
               str(out), "-q", "--report", str(report)]
    return command + (["-j", str(jobs)] if jobs else [])


def stages(report: dict) -> str:
    worker = ", ".join(f"{k} {v / 1e3:.2f}" for k, v in report["worker_timings_ms"].items())
    parent = ", ".join(f"{k} {v / 1e3:.2f}" for k, v in report["timings_ms"].items())
    return f"workers (s, summed): {worker}; parent (s): {parent}"


def create_cost(folder: Path, count: int = 2000) -> float:
    """Microseconds to create one empty file here: the file system's per-file floor.

    On this project's VM (ext4 without a journal) it is ~20 us, but 0.5-0.9 ms for a
    while after many files were deleted (the inode allocator skips recently freed
    inodes), which is why runs keep their outputs until the end."""
    folder.mkdir(parents=True)
    started = time.perf_counter()
    for n in range(count):
        os.close(os.open(folder / str(n), os.O_WRONLY | os.O_CREAT, 0o644))
    return (time.perf_counter() - started) / count * 1e6


@dataclass
class Timing:
    """The runs of one command: wall seconds and the sync after each."""
    runs: list[tuple[float, float]] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(r for r, _ in self.runs)

    @property
    def with_sync(self) -> float:
        return statistics.median(r + s for r, s in self.runs)

    def spread(self) -> str:
        walls = [r for r, _ in self.runs]
        return f"{min(walls):.2f}-{max(walls):.2f}" if len(walls) > 1 else f"{walls[0]:.2f}"


class Bench:
    """Runs every command in fresh folders under `runs`, removed only at the end."""

    def __init__(self, runs: Path, repeat: int) -> None:
        self.runs = runs
        self.repeat = repeat
        self._n = 0

    def target(self, label: str) -> Path:
        self._n += 1
        return self.runs / f"{self._n:03d}-{label}"

    def compare(self, name: str, source: Path, jobs: tuple[int | None, ...] = (None,),
                split_bytes: int | None = None) -> list[tuple[float, float]]:
        """`cp -r` (and `split`, the per-file floor) against `dcmweb convert` with each of
        `jobs` (None: the default), all interleaved in each of `repeat` rounds, so every
        command meets the same page-cache and file-system state. Returns, per `jobs`
        entry, the median (wall seconds, converting seconds)."""
        count, size = size_of(source)
        cp, split = Timing(), Timing()
        dcmweb = {j: Timing() for j in jobs}
        reports: dict[int | None, list[dict]] = {j: [] for j in jobs}
        for _ in range(self.repeat):
            cp.runs.append(timed(["cp", "-r", str(source), str(self.target("cp"))]))
            if split_bytes:
                (target := self.target("split")).mkdir()
                file, = source.iterdir()
                split.runs.append(timed(["split", "-a", "5", "-d", "-b", str(split_bytes),
                                         str(file), str(target / "f")]))
            for j in jobs:
                out, report = self.target("dcmweb"), self.runs / f"report{self._n}.json"
                dcmweb[j].runs.append(timed(convert_command(source, out, report, j)))
                reports[j].append(json.loads(report.read_text()))
        mb = size / 1e6
        runs = f"median of {self.repeat}" if self.repeat > 1 else "1 run"
        print(f"{name}: {count} files, {mb:.0f} MB ({runs}; range in brackets)")
        print(f"  cp -r          {cp.wall:6.2f} s [{cp.spread()}] "
              f"(+{cp.with_sync - cp.wall:5.2f} s sync)  {count / cp.wall:7.0f} files/s  "
              f"{mb / cp.wall:6.0f} MB/s")
        if split_bytes:
            print(f"  split -b {split_bytes} (same bytes as one file per frame, the per-file "
                  f"floor) {split.wall:.2f} s [{split.spread()}] = {cp.wall / split.wall:.2f}x "
                  f"cp -r")
        medians = []
        for j in jobs:
            timing, done = dcmweb[j], reports[j]
            print(f"  dcmweb convert{'' if j is None else f' -j {j}'}: {timing.wall:.2f} s "
                  f"[{timing.spread()}] (+{timing.with_sync - timing.wall:5.2f} s sync)  "
                  f"{count / timing.wall:7.0f} files/s  {mb / timing.wall:6.0f} MB/s  = "
                  f"{cp.wall / timing.wall:.2f}x cp -r "
                  f"({cp.with_sync / timing.with_sync:.2f}x with sync)"
                  + (f", {split.wall / timing.wall:.2f}x split" if split_bytes else ""))
            converting = statistics.median(r["seconds"] for r in done)
            print(f"    of which converting (start-up excluded) {converting:.2f} s = "
                  f"{count / converting:.0f} files/s, {mb / converting:.0f} MB/s")
            parent = max(r["peak_rss_kib"]["parent"] for r in done)
            worker = max(r["peak_rss_kib"]["workers"] for r in done)
            print(f"    peak RSS: parent {parent / 1024:.0f} MiB, largest worker "
                  f"{worker / 1024:.0f} MiB")
            print(f"    {stages(done[len(done) // 2])}", flush=True)
            medians.append((timing.wall, converting))
        return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, < 1 minute")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--only", choices=["ct", "multiframe", "rle", "small"])
    parser.add_argument("--repeat", type=int, help="runs per command (default 3, --quick 1)")
    args = parser.parse_args()
    slices, frames, rle_frames, small = (100, 200, 50, 1000) if args.quick else \
        (500, 2000, 200, 5000)
    repeat = args.repeat or (1 if args.quick else 3)
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
    if "small" in folders:
        folders["fewer"] = make_small(work / f"small{small // 5}", small // 5)
    print(f"(inputs ready in {time.perf_counter() - started:.1f} s)", flush=True)
    runs = work / f"runs-{os.getpid()}"
    bench = Bench(runs, repeat)
    try:
        print(f"creating an empty file here: {create_cost(bench.target('probe')):.0f} us",
              flush=True)
        if "ct" in folders:
            default, one = bench.compare(f"CT series ({slices} slices)", folders["ct"],
                                         jobs=(None, 1))
            print(f"  => 1 -> {os.cpu_count()} jobs (the default) speed-up: "
                  f"{one[0] / default[0]:.2f}x wall, {one[1] / default[1]:.2f}x converting "
                  f"(start-up excluded)")
        if "multiframe" in folders:
            bench.compare(f"native multi-frame ({frames} frames)", folders["multiframe"],
                          split_bytes=512 * 512 * 2)
        if "rle" in folders:
            bench.compare(f"RLE multi-frame ({rle_frames} frames)", folders["rle"])
        if "small" in folders:
            bench.compare(f"small files ({small // 5})", folders["fewer"])
            bench.compare(f"small files ({small})", folders["small"])
    finally:
        shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
