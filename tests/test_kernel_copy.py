"""Kernel copies and their fallback (`dcmweb_static.kernel_copy`): where the kernel cannot
copy between two files (another file system: EXDEV, an old kernel: ENOSYS), the frame
copier and a staged file with a new header copy through a buffer and get the same bytes;
any other failure (a disk error) is raised, not hidden by the fallback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dcmweb_static import kernel_copy
from dcmweb_static.encode.multipart import PayloadCopier
from dcmweb_static.store.staging import StagingArea

DATA = bytes(range(256)) * 4096  # 1 MiB, more than one copy block of the fallback


def _refusing(code: int, after: int = 0):
    """An os.copy_file_range that copies `after` bytes, then fails with `code`."""
    real = os.copy_file_range
    copied = 0

    def copy(src: int, dst: int, count: int, offset_src: int | None = None, *args) -> int:
        nonlocal copied
        if copied >= after:
            raise OSError(code, os.strerror(code))
        n = real(src, dst, min(count, after - copied), offset_src, *args)
        copied += n
        return n
    return copy


def test_copy_range_copies_and_stops_at_the_end(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(DATA)
    with src.open("rb") as s, dst.open("wb", buffering=0) as d:
        assert kernel_copy.copy_range(s.fileno(), d.fileno(), 100, 1000) == 1000
        assert kernel_copy.copy_range(s.fileno(), d.fileno(), len(DATA) - 10, 50) == 10
    assert dst.read_bytes() == DATA[100:1100] + DATA[-10:]


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP])
def test_what_only_means_not_here(code: int) -> None:
    assert kernel_copy.cannot_copy(OSError(code, "x"))


def test_a_disk_error_is_an_error() -> None:
    assert not kernel_copy.cannot_copy(OSError(errno.EIO, "x"))
    assert not kernel_copy.cannot_copy(OSError(errno.ENOSPC, "x"))


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS])
def test_frames_are_copied_through_a_buffer_where_the_kernel_cannot(
        tmp_path: Path, monkeypatch, code: int) -> None:
    src = tmp_path / "src"
    src.write_bytes(DATA)
    monkeypatch.setattr(os, "copy_file_range", _refusing(code))
    with src.open("rb") as s, (tmp_path / "part").open("wb", buffering=0) as out:
        copier = PayloadCopier(s, bytearray(1 << 16), kernel=True)
        assert copier.copy(out, [(10, 5000), (70000, 300000)]) == 305000
        assert copier.kernel is False  # the next copies go through the buffer at once
    assert (tmp_path / "part").read_bytes() == DATA[10:5010] + DATA[70000:370000]


def test_a_disk_error_of_a_kernel_frame_copy_is_raised(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    src.write_bytes(DATA)
    monkeypatch.setattr(os, "copy_file_range", _refusing(errno.EIO))
    with src.open("rb") as s, (tmp_path / "part").open("wb", buffering=0) as out:
        with pytest.raises(OSError) as raised:
            PayloadCopier(s, bytearray(1 << 16), kernel=True).copy(out, [(0, 100)])
    assert raised.value.errno == errno.EIO


@pytest.mark.parametrize("after", [0, 200_000])
def test_a_spliced_file_is_whole_where_the_kernel_gives_up(tmp_path: Path, monkeypatch,
                                                           after: int) -> None:
    """Also when the kernel copied part of it first: the rest follows, nothing twice."""
    src = tmp_path / "received"
    src.write_bytes(DATA)
    staging = StagingArea(str(tmp_path / "staging"))
    os.mkdir(staging.path)
    monkeypatch.setattr(os, "copy_file_range", _refusing(errno.EXDEV, after))
    spliced = staging.spliced_file(b"HEADER", str(src), 132)
    assert Path(spliced).read_bytes() == b"HEADER" + DATA[132:]


def test_a_disk_error_of_a_splice_is_raised_and_leaves_no_file(tmp_path: Path,
                                                                monkeypatch) -> None:
    src = tmp_path / "received"
    src.write_bytes(DATA)
    staging = StagingArea(str(tmp_path / "staging"))
    os.mkdir(staging.path)
    monkeypatch.setattr(os, "copy_file_range", _refusing(errno.EIO))
    with pytest.raises(OSError):
        staging.spliced_file(b"HEADER", str(src), 132)
    assert os.listdir(staging.path) == []
