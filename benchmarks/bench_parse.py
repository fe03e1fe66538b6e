"""Warm `parse_p10` time per file, the raw walk against pydicom's reader, in one process.

    python benchmarks/bench_parse.py [FILE ...] [--iterations N] [--rounds R]

Without files, one slice of the CT benchmark series (dcmweb_static.synthetic.ct_series,
as bench_convert.py makes it) is written to a temporary folder. The two readers are timed
in alternating rounds of N parses each (pydicom's reader by declining every walk), so a
busy shared machine slows both alike; the medians over all parses are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dcmweb_static import synthetic as syn
from dcmweb_static.p10 import raw_walk
from dcmweb_static.p10.parse import parse_p10

DEFER = 131074  # the default public bulk threshold: what a conversion defers at


def timed(path: Path, iterations: int, raw_walk: bool = True) -> list[float]:
    """Seconds per parse_p10 of `path`; raw_walk=False: pydicom's reader, as before the walk."""
    with path.open("rb") as fp:
        times = []
        for _ in range(iterations):
            fp.seek(0)
            start = time.perf_counter()
            parse_p10(fp, defer_size=DEFER, raw_walk=raw_walk)
            times.append(time.perf_counter() - start)
    return times


def bench(path: Path, iterations: int, rounds: int) -> tuple[float, float]:
    """(median µs with pydicom's reader, median µs with the walk)."""
    timed(path, 50)  # warm
    timed(path, 50, raw_walk=False)
    before: list[float] = []
    after: list[float] = []
    for _ in range(rounds):
        before += timed(path, iterations, raw_walk=False)
        after += timed(path, iterations)
    return statistics.median(before) * 1e6, statistics.median(after) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = args.files or syn.ct_series(Path(tmp), 1, study_index=500, rich=False)
        for path in files:
            raw_walk.counts.walked = raw_walk.counts.declined = 0
            before, after = bench(path, args.iterations, args.rounds)
            print(f"{path.name}: pydicom {before:.1f} µs, walk {after:.1f} µs "
                  f"({before / after:.2f}x; walks taken {raw_walk.counts.walked}, "
                  f"declined {raw_walk.counts.declined})")


if __name__ == "__main__":
    main()
