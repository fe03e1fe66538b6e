"""Seeded mutants of pydicom's small test files (bit flips, truncations, insertions, huge
lengths, deep nesting), converted in-process: no hang, no traceback, no "unexpected"
reason, and every converted mutant is exact, equal to pydicom's own reading of it.
Refusing a broken file pydicom reads with force is fine; wrong output is not."""

from __future__ import annotations

import random
import shutil
import signal
import struct
import warnings
from pathlib import Path

import pydicom
import pytest

from dcmweb_static import synthetic as syn
from dcmweb_static.instance import ConvertOptions, convert_file

from .conftest import PYDICOM_DATA, pydicom_corpus
from .reference import assert_same_dataset
from .test_pydicom_corpus import _check_frames, _with_uids
from .treeutil import dataset_from_tree

MUTANTS = 300
SECONDS_PER_MUTANT = 10
MAX_SOURCE_BYTES = 64 << 10
SOURCES = [p for p in pydicom_corpus() if p.stat().st_size <= MAX_SOURCE_BYTES
           and p.parent.name == "test_files"]
KINDS = ("flip", "flip", "truncate", "insert", "length", "length", "nest")


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so convert_file's catch-all cannot keep it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang()


def _element_lengths(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of every element's length field pydicom finds, nested ones too."""
    fields = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        implicit = ds.original_encoding[0]
        for elem in ds.iterall():
            tell = getattr(elem, "file_tell", None)
            if tell is None:
                continue
            if implicit or elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UN", "UT",
                                       "UC", "UR", "SV", "UV"):
                fields.append((tell - 4, 4))
            else:
                fields.append((tell - 2, 2))
    return fields


def _nested(depth: int, path: Path) -> Path:
    """A file ending in Content Sequences nested `depth` deep, undefined lengths, written
    by hand (pydicom's writer takes minutes for a few hundred levels)."""
    ds = syn.base_dataset(syn.uid(990, depth), syn.uid(990, depth, 1),
                          syn.uid(990, depth, 1, 1), rich=False)
    syn.save(ds, path)
    sq_open = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item_open = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_close = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    sq_close = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    body = b""
    for level in reversed(range(depth)):
        value = str(level).encode()
        value += b" " * (len(value) % 2)
        code = struct.pack("<HH2sH", 0x0008, 0x0100, b"SH", len(value)) + value
        body = sq_open + item_open + code + body + item_close + sq_close
    with open(path, "ab") as fp:
        fp.write(body)
    return path


def make_mutant(seed: int, folder: Path) -> tuple[Path, str]:
    """The mutant for `seed` and a description of it."""
    rng = random.Random(seed)
    kind = rng.choice(KINDS)
    target = folder / f"mutant-{seed}.dcm"
    if kind == "nest":
        depth = rng.choice((20, 60, 400))
        return _nested(depth, target), f"nesting {depth} deep"
    source = _with_uids(rng.choice(SOURCES), folder)
    data = bytearray(source.read_bytes())
    what = f"{kind} of {source.name}"
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(132, len(data))
            data[at] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        data = data[: rng.randrange(132, len(data))]
    elif kind == "insert":
        at = rng.randrange(132, len(data))
        data[at:at] = rng.randbytes(rng.randint(1, 16))
    elif kind == "length":
        fields = _element_lengths(source) or [(len(data) - 4, 4)]
        offset, size = rng.choice(fields)
        little = not source.read_bytes()[offset - 4:offset].startswith(b"\x00")  # a guess
        value = rng.choice((0xFFFFFFF0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFF, 0xFFFE, 1, 3))
        fmt = ("<" if little else ">") + ("L" if size == 4 else "H")
        data[offset:offset + size] = struct.pack(fmt, value & (0xFFFFFFFF if size == 4
                                                               else 0xFFFF))
        what += f" length at {offset} = {value:#x}"
    target.write_bytes(bytes(data))
    return target, what


def test_fuzz_sources_found() -> None:
    assert len(SOURCES) > 20, PYDICOM_DATA


@pytest.mark.parametrize("seed", range(MUTANTS))
def test_mutant(seed: int, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mutant, what = make_mutant(seed, tmp_path)
    staging = tmp_path / "staging"
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(SECONDS_PER_MUTANT)
    try:
        result = convert_file(mutant, ConvertOptions(output=tmp_path / "out"), staging)
    except Hang:
        pytest.fail(f"seed {seed} ({what}): no result after {SECONDS_PER_MUTANT} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    reason = result.reason or ""
    assert "unexpected" not in reason and "Traceback" not in reason, (seed, what, reason)
    assert "\n" not in reason, (seed, what, reason)
    if result.status != "converted":
        assert result.status in ("failed", "skipped") and reason, (seed, what, result)
        assert not staging.exists() or not any(staging.iterdir()), (seed, what)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            source = pydicom.dcmread(mutant, force=True)
            source.keys()
        except Exception as exc:
            pytest.fail(f"seed {seed} ({what}): converted, but pydicom cannot read it: {exc}")
        folder = Path(result.staging)
        try:
            # a flipped Transfer Syntax UID may be unknown: pydicom read it as it found it
            loaded = dataset_from_tree(folder, little_endian=source.original_encoding[1],
                                       encodings=source._character_set)
            assert_same_dataset(source, loaded)
            _check_frames(source, folder)
        except Exception as exc:  # noqa: BLE001  (the seed and mutation make the message)
            raise AssertionError(f"seed {seed} ({what}): {type(exc).__name__}: {exc}") from exc
        finally:
            shutil.rmtree(folder, ignore_errors=True)
