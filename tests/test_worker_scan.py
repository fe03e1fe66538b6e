"""The source scan's mapped path (run/source_scan.scan_mapped): the same checksum, size and
delimiter verdict as the read path, taken for a CT slice, and the same staged files."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import pytest

from dcmweb_static import synthetic as syn
from dcmweb_static.encode.multipart import BOUNDARY, COPY_BLOCK
from dcmweb_static.run import instance
from dcmweb_static.run.instance import convert_file
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.run.source_scan import MAP_SCAN_BYTES, scan_mapped, scan_source

DELIMITER = b"--" + BOUNDARY.encode()


def _files(tmp_path: Path) -> list[tuple[Path, bytes]]:
    rng = random.Random(16)
    body = rng.randbytes(COPY_BLOCK + 4096)
    cases = {
        "plain": body,
        "at_start": DELIMITER + body,
        "at_end": body + DELIMITER,
        # across the read path's block edge: found only through the carried tail
        "across_block": body[:COPY_BLOCK - 5] + DELIMITER + body[COPY_BLOCK:],
        "almost": body[:5000] + DELIMITER[:-1] + b"X" + body[5000:],
        "small_map": rng.randbytes(MAP_SCAN_BYTES),
    }
    found = []
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        found.append((path, data))
    return found


def test_the_mapped_scan_equals_the_read_scan(tmp_path: Path) -> None:
    for path, data in _files(tmp_path):
        expected = (hashlib.sha256(data).hexdigest(), len(data), DELIMITER in data)
        with path.open("rb") as stream:
            assert scan_source(stream, bytearray(COPY_BLOCK)) == expected, path.name
            assert scan_mapped(stream, len(data)) == expected, path.name


def test_a_stream_without_a_file_is_scanned_by_reads() -> None:
    assert scan_mapped(io.BytesIO(b"\0" * MAP_SCAN_BYTES), MAP_SCAN_BYTES) is None


def _staged_files(staged: Path) -> dict[str, bytes]:
    return {str(p.relative_to(staged)): p.read_bytes()
            for p in sorted(staged.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("rows, mapped", [(512, True), (16, False)])
def test_the_scan_a_conversion_takes_and_its_files(tmp_path: Path, monkeypatch,
                                                   rows: int, mapped: bool) -> None:
    """A CT slice (512 KiB) is scanned through the mapping, a 16x16 one by one read;
    the staged files are byte for byte those of the read path."""
    source = syn.ct_series(tmp_path / "in", 1, rows=rows, columns=rows, rich=True)[0]
    taken: list[str] = []
    real_mapped, real_read = instance.scan_mapped, instance.scan_source

    def spy_mapped(*args):
        outcome = real_mapped(*args)
        taken.append("mapped" if outcome is not None else "declined")
        return outcome

    def spy_read(*args):
        taken.append("read")
        return real_read(*args)

    monkeypatch.setattr(instance, "scan_mapped", spy_mapped)
    monkeypatch.setattr(instance, "scan_source", spy_read)
    options = ConvertOptions(output=tmp_path / "out")
    fast = convert_file(source, options, tmp_path / "fast")
    assert fast.status == "converted", fast.reason
    assert taken == (["mapped"] if mapped else ["read"])
    monkeypatch.setattr(instance, "MAP_SCAN_BYTES", 1 << 62)  # every file by reads
    slow = convert_file(source, options, tmp_path / "slow")
    assert taken[-1] == "read"
    assert (fast.sha256, fast.bytes_in) == (slow.sha256, slow.bytes_in) == (
        hashlib.sha256(source.read_bytes()).hexdigest(), source.stat().st_size)
    fast_files, slow_files = _staged_files(Path(fast.staging)), _staged_files(Path(slow.staging))
    assert set(fast_files) >= {"info", "metadata.gz", "frames/1"}
    assert fast_files == slow_files
