"""Rebuild throughput of `dcmweb part10` and the bytes the lossless round trip adds.

    python benchmarks/bench_rebuild.py [--instances 200] [--rows 512] [--rounds 3]

Converts a synthetic CT series (scanner-like headers) and one 48 MiB multi-frame file,
then rebuilds every instance from the tree with the library's `write_part10` (the code
behind `dcmweb part10`), untransformed (spliced, checked against the source SHA-256)
and after `--plugin strip-private` (encoded anew from the metadata). Prints the median
of `--rounds` runs as files/s and MB/s of rebuilt P10 bytes, and per instance the bytes
the round trip adds: the `rebuild` record in `info` (with the kept header in base64 when
it is small) and the `p10-header` files of the others; and with `convert --part10`, the
ready multipart P10 file of each instance (what nginx sends for the instance URL) on top,
with the conversion time it costs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from dcmweb_static import synthetic as syn
from dcmweb_static.encode.kept_header import HEADER_NAME
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.tree.part10 import write_part10


def multiframe(path: Path) -> Path:
    ds = syn.base_dataset(syn.uid(900), syn.uid(900, 1), syn.uid(900, 1, 1))
    syn.add_pixels(ds, rows=512, columns=512, bits=16, frames=96)
    return syn.save(ds, path)


def added_bytes(out: Path) -> tuple[int, float, float]:
    """(instances, mean bytes of p10-header files, mean bytes of info's `rebuild` record)."""
    headers, records, count = 0, 0, 0
    for info in out.glob("studies/*/series/*/instances/*/info"):
        count += 1
        record = json.loads(info.read_bytes()).get("rebuild")
        if record is not None:
            # as written inside the indented info: measured by dumping it the same way
            records += len(json.dumps({"rebuild": record}, indent=2)) - 4
        header = info.parent / HEADER_NAME
        if header.exists():
            headers += header.stat().st_size
    return count, headers / max(count, 1), records / max(count, 1)


def part10_bytes(out: Path) -> tuple[int, float]:
    """(instances, mean bytes of the `--part10` files)."""
    sizes = [p.stat().st_size for p in out.glob("studies/*/series/*/instances/*/part10")]
    return len(sizes), sum(sizes) / max(len(sizes), 1)


def timed_convert(inputs: list[Path], out: Path, **options: object) -> float:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    Converter(ConvertOptions(output=out, **options), jobs=1).run(inputs)  # type: ignore[arg-type]
    return time.perf_counter() - started


def timed_rebuild(out: Path, dest: Path, rounds: int) -> tuple[float, int, int]:
    """(median seconds, instances, bytes) of rebuilding every instance of `out`."""
    times, size, count = [], 0, 0
    for _ in range(rounds):
        shutil.rmtree(dest, ignore_errors=True)
        started = time.perf_counter()
        results = write_part10(out, dest)
        times.append(time.perf_counter() - started)
        failed = [r for r in results if r.status != "written"]
        if failed:
            raise SystemExit(f"rebuild failed: {failed[0].sop_uid}: {failed[0].reason}")
        size, count = sum(r.bytes for r in results), len(results)
    return statistics.median(times), count, size


def report(label: str, seconds: float, count: int, size: int) -> None:
    print(f"{label:<34} {count:5d} files {size / 1e6:8.1f} MB  {seconds:6.2f} s  "
          f"{count / seconds:7.1f} files/s  {size / 1e6 / seconds:7.1f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dcmweb-rebuild-"))
    try:
        series = syn.ct_series(work / "in", args.instances, rows=args.rows, columns=args.rows,
                               rich=True)
        big = multiframe(work / "big" / "multiframe.dcm")
        source_bytes = sum(p.stat().st_size for p in series) / len(series)
        for name, inputs in (("CT series", series), ("multi-frame", [big])):
            for plugins in ((), ("strip-private",)):
                out = work / f"out-{name}-{len(plugins)}"
                plain = timed_convert(inputs, out, plugins=plugins)
                label = f"{name}, {'strip-private' if plugins else 'untransformed'}"
                report(label, *timed_rebuild(out, work / "p10", args.rounds))
                if name == "CT series" and not plugins:
                    count, header, record = added_bytes(out)
                    print(f"  added per instance: p10-header files {header:.0f} B + info record "
                          f"{record:.0f} B = {header + record:.0f} B "
                          f"({100 * (header + record) / source_bytes:.2f}% of a "
                          f"{source_bytes / 1e3:.0f} kB source)")
                    with_part10 = timed_convert(inputs, work / "out-part10", part10=True)
                    files, size = part10_bytes(work / "out-part10")
                    assert files == count, "every instance has its part10 file"
                    added = header + record + size
                    print(f"  with --part10: + part10 file {size:.0f} B (the source and "
                          f"{size - source_bytes:.0f} B of part header and delimiter) = "
                          f"{added:.0f} B ({100 * added / source_bytes:.1f}% of the source); "
                          f"conversion {plain:.2f} s -> {with_part10:.2f} s "
                          f"(+{100 * (with_part10 / plain - 1):.0f}%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
