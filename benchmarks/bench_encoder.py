"""DICOM JSON encoding speed on a 256-element CT header: dcmweb's encoder against
pydicom's `Dataset.to_json_dict()`.

    python benchmarks/bench_encoder.py [--repeat 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import orjson
import pydicom

from dcmweb_static import synthetic as syn
from dcmweb_static.encode.dicom_json import BulkThresholds, JsonEncoder
from dcmweb_static.p10.parse import parse_p10


class NullSink:
    def add(self, name, data, source_range):
        return f"bulkdata/{name}"


def per_call(function, repeat: int, rounds: int = 5) -> float:
    """Milliseconds per call: the best of `rounds` rounds of `repeat` calls, as timeit
    advises (other load on the machine only ever adds time)."""
    function()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        best = min(best, time.perf_counter() - started)
    return best / repeat * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "wide.dcm"
    syn.save(syn.wide_ct_header(syn.uid(900), 256), path)
    count = len(pydicom.dcmread(path, stop_before_pixels=True))

    def read():
        return pydicom.dcmread(path, stop_before_pixels=True)

    def pydicom_json():
        json.dumps(read().to_json_dict())

    def to_json_dict_only():
        read().to_json_dict()

    def ours(fast: bool):
        def run():
            with open(path, "rb") as stream:
                parsed = parse_p10(stream, defer_size=131074)
                orjson.dumps(JsonEncoder(BulkThresholds(), NullSink(), stream,
                                         fast=fast).dataset(parsed.dataset))
        return run

    def parse_only():
        with open(path, "rb") as stream:
            parse_p10(stream, defer_size=131074)

    r = args.repeat
    t_read = per_call(read, r)
    t_pydicom = per_call(pydicom_json, r)
    t_tjd = per_call(to_json_dict_only, r) - t_read
    t_parse = per_call(parse_only, r)
    t_fast = per_call(ours(True), r)
    t_slow = per_call(ours(False), r)
    enc_fast, enc_slow = t_fast - t_parse, t_slow - t_parse
    print(f"CT header with {count} top-level elements, ms per instance:")
    print(f"  pydicom dcmread(stop_before_pixels)          {t_read:6.3f}")
    print(f"  pydicom to_json_dict()                       {t_tjd:6.3f}")
    print(f"  pydicom read + to_json_dict + json.dumps     {t_pydicom:6.3f}")
    print(f"  dcmweb parse_p10                             {t_parse:6.3f}")
    print(f"  dcmweb encode via pydicom values + orjson    {enc_slow:6.3f}")
    print(f"  dcmweb encode from raw bytes + orjson        {enc_fast:6.3f}")
    print(f"  speed-up of encoding over to_json_dict: {t_tjd / enc_fast:.1f}x; "
          f"whole header {t_pydicom / t_fast:.1f}x")


if __name__ == "__main__":
    main()
