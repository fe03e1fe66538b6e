"""The least any Python converter of our layout pays per single-frame file, for
`bench_convert.py`: no parsing, no JSON encoding, no staging, no aggregation.

    python benchmarks/layout_floor.py SOURCE_FOLDER OUT [-j JOBS]

For each file, in JOBS forked processes (convert's default: one per core): read it
through one buffer and SHA-256 it (the tree's info records the source's checksum), make
the instance folder, write `frames/1` as one multipart part whose payload the kernel
copies from the source (the bytes after the top-level Pixel Data header, found by a
search, not a parse), a gzip-compressed `metadata.gz` (stand-in: the data set's header
bytes, about the size of the real document) and an `info` JSON with the checksum. That
is the same files, folders and bytes per instance as `dcmweb convert` writes, with
nothing of what makes them correct: it bounds from below what the conversion can cost,
so a target can be judged against it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import zlib

PIXEL_DATA_OW = b"\xe0\x7f\x10\x00OW\x00\x00"  # (7FE0,0010) OW, explicit VR little endian
PART_HEADER = b"--b\r\nContent-Type: application/octet-stream\r\n\r\n"
PART_FOOTER = b"\r\n--b--\r\n"
BLOCK = 1 << 20


def write_instance(source: str, out: str, number: int, buffer: bytearray) -> None:
    digest, size, view = hashlib.sha256(), 0, memoryview(buffer)
    head = b""
    with open(source, "rb") as stream:
        while n := stream.readinto(buffer):
            digest.update(view[:n])
            if not size:
                head = bytes(view[:min(n, 64 << 10)])
            size += n
        pixel = head.rfind(PIXEL_DATA_OW)
        if pixel < 0:
            raise SystemExit(f"{source}: no explicit VR little endian Pixel Data in its "
                             "first 64 KiB (the floor handles single-frame native files)")
        start = pixel + len(PIXEL_DATA_OW) + 4
        folder = os.path.join(out, "instances", str(number))
        os.makedirs(os.path.join(folder, "frames"))
        with open(os.path.join(folder, "frames", "1"), "wb", buffering=0) as part:
            part.write(PART_HEADER)
            left, offset = size - start, start
            while left:
                copied = os.copy_file_range(stream.fileno(), part.fileno(), left, offset)
                if not copied:
                    break
                left, offset = left - copied, offset + copied
            part.seek(0, os.SEEK_END)
            part.write(PART_FOOTER)
    packer = zlib.compressobj(3, zlib.DEFLATED, 31)  # convert's gzip level
    with open(os.path.join(folder, "metadata.gz"), "wb") as metadata:
        metadata.write(packer.compress(head[:pixel]) + packer.flush())
    with open(os.path.join(folder, "info"), "wb") as info:
        info.write(json.dumps({"source": {"path": source, "size": size,
                                          "sha256": digest.hexdigest()}}).encode())


def write_share(sources: list[tuple[int, str]], out: str) -> None:
    buffer = bytearray(BLOCK)
    for number, source in sources:
        write_instance(source, out, number, buffer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    sources = list(enumerate(sorted(os.path.join(args.source, name)
                                    for name in os.listdir(args.source))))
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=write_share, args=(sources[i::args.jobs], args.out))
               for i in range(args.jobs)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    sys.exit(max(worker.exitcode or 0 for worker in workers))


if __name__ == "__main__":
    main()
