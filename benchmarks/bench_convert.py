"""Benchmark `dcmweb convert` against `cp -r` of the very tree it wrote (the layout's I/O floor).

    python benchmarks/bench_convert.py [--quick] [--repeat N] [--only NAME ...] [--work DIR]

Inputs are generated deterministically (dcmweb_static.synthetic) and kept in --work: a
500-slice CT series (512x512, 16-bit), a ~1 GB native multi-frame file, a 200-frame RLE
multi-frame, and 5,000 small files (with 1,000 of them as a second input, to show that
memory does not grow with the number of files); --quick: 100 slices, ~100 MB, 50 frames,
1,000 and 200 small files, one round.

Method (see docs/performance.md): the package is byte-compiled first, as an install
does; every timed command runs from dropped page caches (`sync; echo 3 >
/proc/sys/vm/drop_caches`, when run as root; otherwise it says so) and is timed together
with its own `sync`; CPU-seconds are user + system time of all its processes
(`getrusage(RUSAGE_CHILDREN)` around it: the converter's workers included). In each
round, for each input: `dcmweb convert` into a fresh folder, `cp -r` of the latest tree
a conversion wrote (an untimed conversion before the first round), (multi-frame inputs)
`cp` of the input file and (the CT series) `layout_floor.py`, the least a Python writer
of the same files pays (hash, kernel copy, gzip, no parse), rotated one place per round
so that each command runs in each place equally often (the place alone moved the 1 GB
conversion by 1.6 CPU-s, see `Bench`). Medians over the rounds; every output is kept
until the end (deleting many files makes creating files dearer on ext4 for a while). It
prints per input the medians, the peak RSS of the converter's parent and largest worker
(from the run report), the per-stage worker time per file, the serial aggregation and
the start-up; then a table of the ratios against the targets of issue 16.
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


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def can_drop_caches() -> bool:
    return os.geteuid() == 0 and os.access(DROP_CACHES, os.W_OK)


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    DROP_CACHES.write_text("3\n")


@dataclass(frozen=True)
class Run:
    """One timed command: wall seconds including its `sync`, and CPU-seconds (user +
    system) of all its processes."""

    wall: float
    cpu: float


def timed(command: list[str], cold: bool) -> Run:
    """Run `command` (from dropped caches when `cold`) and the `sync` after it."""
    if cold:
        drop_caches()
    else:
        subprocess.run(["sync"], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["sync"], check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu)


def size_of(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def convert_command(source: Path, out: Path, report: Path, jobs: int | None) -> list[str]:
    command = [sys.executable, "-m", "dcmweb_static.cli", "convert", str(source), "-d",
               str(out), "-q", "--report", str(report)]
    return command + (["-j", str(jobs)] if jobs else [])


def median(values) -> float:
    return statistics.median(list(values))


@dataclass
class Input:
    """One benchmark input and what its rounds measured."""

    key: str
    title: str
    folder: Path
    #: the one file of a multi-frame input: also compared with `cp` of that file
    single_file: bool = False
    #: also timed: benchmarks/layout_floor.py, the least a Python writer of the layout pays
    floor: bool = False
    convert: list[Run] = field(default_factory=list)
    layout_floor: list[Run] = field(default_factory=list)
    cp_tree: list[Run] = field(default_factory=list)
    cp_input: list[Run] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)

    @property
    def instances(self) -> int:
        return self.reports[0]["counts"]["converted"] if self.reports else 0

    def cpu_ratio(self) -> float:
        return median(r.cpu for r in self.convert) / median(r.cpu for r in self.cp_tree)

    def wall_ratio(self, floor: list[Run]) -> float:
        return median(r.wall for r in self.convert) / median(r.wall for r in floor)

    def cpu_per_instance_ms(self) -> float:
        return median(r.cpu for r in self.convert) / max(1, self.instances) * 1e3

    def peak_rss_mib(self) -> tuple[float, float]:
        parent = max(r["peak_rss_kib"]["parent"] for r in self.reports) / 1024
        worker = max(r["peak_rss_kib"]["workers"] for r in self.reports) / 1024
        return parent, worker


def spread(runs: list[Run], what: str) -> str:
    values = [getattr(r, what) for r in runs]
    return f"{median(values):6.2f} [{min(values):.2f}-{max(values):.2f}]"


class Bench:
    """Runs every command in fresh folders under `runs`, removed only at the end.

    The position of a command in the sequence matters on this machine as much as the
    command: the same conversion of the 1 GB file took a median 4.75 CPU-s right after the
    previous round's `cp -r` and 2.97-3.15 CPU-s in the next two places (3 rounds of three
    identical conversions). So the timed commands of an input are rotated, one place per
    round, and `cp -r` copies the tree of the latest conversion (an untimed one first), so
    that every command takes every place equally often."""

    def __init__(self, runs: Path, rounds: int, cold: bool, jobs: int | None) -> None:
        self.runs, self.rounds, self.cold, self.jobs = runs, rounds, cold, jobs
        self._n = 0
        #: per input: the latest tree `dcmweb convert` wrote
        self._trees: dict[str, Path] = {}

    def target(self, label: str) -> Path:
        self._n += 1
        return self.runs / f"{self._n:03d}-{label}"

    def _convert(self, item: Input) -> Run:
        out = self.target(f"{item.key}-dcmweb")
        report = self.runs / f"{self._n:03d}-report.json"
        run = timed(convert_command(item.folder, out, report, self.jobs), self.cold)
        item.reports.append(json.loads(report.read_text()))
        self._trees[item.key] = out
        return run

    def prepare(self, item: Input) -> None:
        """An untimed conversion: the tree the first `cp -r` copies."""
        self._convert(item)
        item.reports.clear()

    def round(self, item: Input, number: int) -> None:
        """convert, `cp -r` of the latest tree it wrote and `cp` of a single input file,
        rotated by `number` places."""
        def cp_tree() -> None:
            tree = self._trees[item.key]
            item.cp_tree.append(timed(["cp", "-r", str(tree), str(self.target("cp-tree"))],
                                      self.cold))

        def cp_input() -> None:
            file, = item.folder.iterdir()
            item.cp_input.append(timed(["cp", str(file), str(self.target("cp-input"))],
                                       self.cold))

        def layout_floor() -> None:
            command = [sys.executable, str(Path(__file__).with_name("layout_floor.py")),
                       str(item.folder), str(self.target("floor"))]
            item.layout_floor.append(timed(
                command + (["-j", str(self.jobs)] if self.jobs else []), self.cold))

        commands = [lambda: item.convert.append(self._convert(item)), cp_tree]
        if item.single_file:
            commands.append(cp_input)
        if item.floor:
            commands.append(layout_floor)
        shift = number % len(commands)
        for command in commands[shift:] + commands[:shift]:
            command()


def print_input(item: Input) -> None:
    count, size = size_of(item.folder)
    n = item.instances
    print(f"{item.title}: {count} files, {size / 1e6:.0f} MB in; median of "
          f"{len(item.convert)} [range]")
    print(f"  dcmweb convert     wall+sync {spread(item.convert, 'wall')} s  "
          f"CPU {spread(item.convert, 'cpu')} s  ({item.cpu_per_instance_ms():.2f} CPU-ms "
          f"per instance)")
    print(f"  cp -r of its tree  wall+sync {spread(item.cp_tree, 'wall')} s  "
          f"CPU {spread(item.cp_tree, 'cpu')} s  -> convert/cp: "
          f"{item.wall_ratio(item.cp_tree):.2f}x wall, {item.cpu_ratio():.2f}x CPU")
    if item.cp_input:
        print(f"  cp of the file     wall+sync {spread(item.cp_input, 'wall')} s  "
              f"CPU {spread(item.cp_input, 'cpu')} s  -> convert/cp: "
              f"{item.wall_ratio(item.cp_input):.2f}x wall")
    if item.layout_floor:
        def ratio(what: str) -> float:
            return median(getattr(r, what) for r in item.layout_floor) / \
                median(getattr(r, what) for r in item.cp_tree)
        print(f"  layout floor       wall+sync {spread(item.layout_floor, 'wall')} s  "
              f"CPU {spread(item.layout_floor, 'cpu')} s  -> floor/cp: {ratio('wall'):.2f}x "
              f"wall, {ratio('cpu'):.2f}x CPU (layout_floor.py: hash, copy, write; no parse)")
    parent, worker = item.peak_rss_mib()
    print(f"  peak RSS: parent {parent:.0f} MiB, largest worker {worker:.0f} MiB")
    stages = {}
    for report in item.reports:
        for stage, ms in report["worker_timings_ms"].items():
            stages.setdefault(stage, []).append(ms / max(1, n))
    print("  worker ms per file (median): " + ", ".join(
        f"{stage} {median(v):.2f}" for stage, v in stages.items()))
    parent_ms = {}
    for report in item.reports:
        for stage, ms in report["timings_ms"].items():
            parent_ms.setdefault(stage, []).append(ms / 1e3)
    startup = median(r.wall - rep["seconds"] for r, rep in zip(item.convert, item.reports))
    print("  parent s (median): " + ", ".join(
        f"{stage} {median(v):.3f}" for stage, v in parent_ms.items())
          + f"; start-up and sync (wall+sync - run's own seconds) {startup:.2f}", flush=True)


def target_table(items: dict[str, Input]) -> None:
    """The ratios of issue 16 against its targets."""
    rows: list[tuple[str, str, str, bool]] = []
    if ct := items.get("ct"):
        ratio = ct.cpu_ratio()
        rows.append(("CT series: CPU-s convert / cp -r of its tree", f"{ratio:.2f}x",
                     "<= 2.5x", ratio <= 2.5))
        ratio = ct.wall_ratio(ct.cp_tree)
        rows.append(("CT series: wall+sync convert / cp -r of its tree", f"{ratio:.2f}x",
                     "<= 1.3x", ratio <= 1.3))
    if (small := items.get("small")) and ct:
        ratio = small.cpu_per_instance_ms() / ct.cpu_per_instance_ms()
        rows.append(("small files: CPU-ms per instance / the CT series'",
                     f"{ratio:.2f}x ({small.cpu_per_instance_ms():.2f} / "
                     f"{ct.cpu_per_instance_ms():.2f})", "<= 2x", ratio <= 2))
    if small and (fewer := items.get("fewer")):
        grow = [b - a for a, b in zip(fewer.peak_rss_mib(), small.peak_rss_mib())]
        rows.append((f"small files: peak RSS growth {fewer.instances} -> {small.instances} "
                     "files (parent, worker)", f"{grow[0]:+.0f}, {grow[1]:+.0f} MiB",
                     "flat (<= +4 MiB)", max(grow) <= 4))
    if mf := items.get("multiframe"):
        ratio = mf.wall_ratio(mf.cp_input)
        rows.append(("1 GB multi-frame: wall+sync convert / cp of the file", f"{ratio:.2f}x",
                     "<= 1.1x", ratio <= 1.1))
        peak = max(mf.peak_rss_mib())
        rows.append(("1 GB multi-frame: peak RSS of any process", f"{peak:.0f} MiB",
                     "< 100 MiB", peak < 100))
    if not rows:
        return
    width = max(len(r[0]) for r in rows)
    print(f"\n{'target (issue 16)':<{width}}  {'measured':<22} {'target':<16} met")
    for what, measured, goal, met in rows:
        print(f"{what:<{width}}  {measured:<22} {goal:<16} {'yes' if met else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, one round")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--only", nargs="+", choices=["ct", "multiframe", "rle", "small"])
    parser.add_argument("--repeat", type=int, help="interleaved rounds (default 5, --quick 1)")
    parser.add_argument("-j", "--jobs", type=int, help="convert's -j (default: its default)")
    parser.add_argument("--warm", action="store_true",
                        help="do not drop page caches (numbers then swing with its state)")
    args = parser.parse_args()
    slices, frames, rle_frames, small = (100, 200, 50, 1000) if args.quick else \
        (500, 2000, 200, 5000)
    rounds = args.repeat or (1 if args.quick else 5)
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    cold = not args.warm and can_drop_caches()
    try:
        import numpy  # noqa: F401
        install = "numpy importable (not a plain install: pydicom's start-up is dearer)"
    except ImportError:
        install = "plain install (no numpy)"
    package = subprocess.run(
        [sys.executable, "-c", "import dcmweb_static, os; print(os.path.dirname("
         "dcmweb_static.__file__))"], check=True, capture_output=True, text=True).stdout.strip()
    # as `pip install` does; an editable install under PYTHONDONTWRITEBYTECODE (set in
    # this project's environment) would otherwise compile every module at every start
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)
    startup = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "--version"], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"dcmweb benchmark: {os.cpu_count()} cores, pydicom {pydicom.__version__}, {install}, "
          f"{package} byte-compiled; "
          f"`dcmweb --version` {time.perf_counter() - startup:.2f} s; "
          + ("page caches dropped before every command" if cold else
             "page caches NOT dropped (" + ("--warm" if args.warm else "not root") + ")"),
          flush=True)
    started = time.perf_counter()
    makers = {
        "ct": lambda: Input("ct", f"CT series ({slices} slices)", make_ct(work / "ct", slices),
                            floor=True),
        "multiframe": lambda: Input("multiframe", f"native multi-frame ({frames} frames)",
                                    make_multiframe(work / "multiframe", frames),
                                    single_file=True),
        "rle": lambda: Input("rle", f"RLE multi-frame ({rle_frames} frames)",
                             make_rle(work / "rle", rle_frames), single_file=True),
        "small": lambda: Input("small", f"small files ({small})",
                               make_small(work / f"small{small}", small)),
    }
    chosen = args.only or list(makers)
    items = {name: makers[name]() for name in chosen}
    if "small" in items:
        items["fewer"] = Input("fewer", f"small files ({small // 5})",
                               make_small(work / f"small{small // 5}", small // 5))
    print(f"(inputs ready in {time.perf_counter() - started:.1f} s)", flush=True)
    runs = work / f"runs-{os.getpid()}"
    runs.mkdir()
    bench = Bench(runs, rounds, cold, args.jobs)
    try:
        for item in items.values():
            bench.prepare(item)
        for n in range(rounds):
            print(f"round {n + 1}/{rounds}", flush=True)
            for item in items.values():
                bench.round(item, n)
        print()
        for item in items.values():
            print_input(item)
        target_table(items)
    finally:
        shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
