"""Explicit VR little endian P10 files with sequences nested to any depth, written byte
by byte (pydicom's writer recurses once per level and cannot make the deepest ones)."""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

CONCEPT_NAME_CODE_SEQUENCE = (0x0040, 0xA043)
UNDEFINED = 0xFFFFFFFF


def _short(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" " if vr != b"UI" else b"\0"
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _leaf(level: int) -> bytes:
    return _short(0x0008, 0x0100, b"SH", str(level).encode())


def nested_body(depth: int, undefined: bool) -> bytes:
    """A Concept Name Code Sequence `depth` levels deep, one item per level, each item
    holding a Code Value (its level) and the next level's sequence."""
    body = _leaf(depth)
    for level in range(depth - 1, -1, -1):
        if undefined:
            item = (struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED) + body
                    + struct.pack("<HHL", 0xFFFE, 0xE00D, 0))
            seq = (struct.pack("<HH2sHL", *CONCEPT_NAME_CODE_SEQUENCE, b"SQ", 0, UNDEFINED)
                   + item + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
        else:
            item = struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body
            seq = struct.pack("<HH2sHL", *CONCEPT_NAME_CODE_SEQUENCE, b"SQ", 0, len(item)) + item
        body = _leaf(level) + seq
    return body


def deep_file(path: Path, depth: int, undefined: bool = False) -> Path:
    sop_class, sop = "1.2.840.10008.5.1.4.1.1.88.11", f"1.2.826.0.1.3680043.8.498.{depth}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta)
    body = nested_body(depth, undefined)
    leaf = _leaf(0)
    assert body.startswith(leaf)
    data = (_short(0x0008, 0x0016, b"UI", sop_class.encode())
            + _short(0x0008, 0x0018, b"UI", sop.encode()) + leaf
            + _short(0x0020, 0x000D, b"UI", b"1.2.826.0.1.3680043.8.498.1")
            + _short(0x0020, 0x000E, b"UI", b"1.2.826.0.1.3680043.8.498.2")
            + body[len(leaf):])
    path.write_bytes(b"\0" * 128 + b"DICM" + buffer.getvalue() + data)
    return path
