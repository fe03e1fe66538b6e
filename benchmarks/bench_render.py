"""What `--thumbnails` and `--rendered` add to `dcmweb convert`: time and bytes per instance.

    python benchmarks/bench_render.py [--quick] [--work DIR] [--repeat N]

On the CT series (512x512, 16-bit; --quick: 100 slices, else 500) and on a compressed
multi-frame file (RLE, 512x512 12-bit; --quick: 50 frames, else 200), each converted
plainly, with --thumbnails and with --rendered (JPEG; and PNG for the CT), interleaved in
each round. Prints per variant: wall seconds, converting seconds (start-up excluded), the
added converting time per instance and per frame, the added bytes per instance, and the
workers' `render` stage per instance (decoding, windowing, encoding; the added time
is noisy on a shared machine, the stage is measured inside the workers).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_convert import convert_command, make_ct, make_rle, size_of

VARIANTS = {
    "plain": [],
    "--thumbnails": ["--thumbnails"],
    "--rendered": ["--rendered"],
    "--rendered png": ["--rendered", "--rendered-format", "png"],
}


def run(source: Path, out: Path, report: Path, flags: list[str]) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run(convert_command(source, out, report, None) + flags, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, json.loads(report.read_text())


def measure(name: str, source: Path, instances: int, frames: int, runs: Path, repeat: int,
            variants: dict[str, list[str]]) -> None:
    walls: dict[str, list[float]] = {v: [] for v in variants}
    converting: dict[str, list[float]] = {v: [] for v in variants}
    render: dict[str, list[float]] = {v: [] for v in variants}
    sizes: dict[str, int] = {}
    for round_ in range(repeat):
        for label, flags in variants.items():
            out = runs / f"{name}-{round_}-{label.replace(' ', '_')}"
            wall, report = run(source, out, runs / "report.json", flags)
            walls[label].append(wall)
            converting[label].append(report["seconds"])
            render[label].append(report["worker_timings_ms"].get("render", 0.0) / 1e3)
            sizes[label] = size_of(out)[1]
            shutil.rmtree(out)
    base = statistics.median(converting["plain"])
    print(f"{name}: {instances} instance(s), {frames} frame(s) (median of {repeat})")
    for label in variants:
        seconds = statistics.median(converting[label])
        added = seconds - base
        extra = (sizes[label] - sizes["plain"]) / instances
        print(f"  {label:15s} wall {statistics.median(walls[label]):6.2f} s  converting "
              f"{seconds:6.2f} s  added {added * 1e3 / instances:7.1f} ms/instance "
              f"({added * 1e3 / frames:6.2f} ms/frame)  +{extra / 1024:8.1f} KiB/instance  "
              f"render stage {statistics.median(render[label]) * 1e3 / instances:7.1f} ms/instance",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--repeat", type=int, help="runs per variant (default 3, --quick 1)")
    args = parser.parse_args()
    slices, rle_frames = (100, 50) if args.quick else (500, 200)
    repeat = args.repeat or (1 if args.quick else 3)
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    ct, rle = make_ct(work / "ct", slices), make_rle(work / "rle", rle_frames)
    runs = work / "render-runs"
    runs.mkdir(exist_ok=True)
    try:
        print(f"dcmweb render benchmark ({sys.executable})", flush=True)
        measure(f"CT series ({slices} slices)", ct, slices, slices, runs, repeat, VARIANTS)
        measure(f"RLE multi-frame ({rle_frames} frames)", rle, 1, rle_frames, runs, repeat,
                {k: v for k, v in VARIANTS.items() if k != "--rendered png"})
    finally:
        shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
