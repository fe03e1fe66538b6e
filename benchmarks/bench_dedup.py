"""How much the deduplicated form saves on a 500-instance series.

    python benchmarks/bench_dedup.py [--instances 500]

Converts a synthetic CT series with `--deduplicate --instances` and compares the bytes
of the per-instance metadata files with the deduplicated store (extracts + records),
gzip-compressed as written and uncompressed.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
from pathlib import Path

from dcmweb_static import synthetic as syn
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions


def sizes(files: list[Path]) -> tuple[int, int]:
    packed = sum(p.stat().st_size for p in files)
    plain = sum(len(gzip.decompress(p.read_bytes())) for p in files)
    return packed, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dcmweb-dedup-"))
    try:
        inputs = syn.ct_series(work / "in", args.instances, rows=64, columns=64, rich=True)
        out = work / "out"
        Converter(ConvertOptions(output=out, deduplicate=True, instances=True)).run(inputs)
        instance_files = list(out.glob("studies/*/series/*/instances/*/metadata.gz"))
        store = list((out / "deduplicated").rglob("*.gz"))
        extracts = list((out / "deduplicated" / "extracts").rglob("*.gz"))
        (ip, iu), (dp, du) = sizes(instance_files), sizes(store)
        print(f"{len(instance_files)} instances; {len(extracts)} shared extracts")
        print(f"instance metadata files: {ip / 1e3:8.1f} kB gzip, {iu / 1e3:8.1f} kB JSON")
        print(f"deduplicated store:      {dp / 1e3:8.1f} kB gzip, {du / 1e3:8.1f} kB JSON")
        print(f"saving: {100 * (1 - dp / ip):.0f}% of gzip bytes, "
              f"{100 * (1 - du / iu):.0f}% of JSON bytes")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
