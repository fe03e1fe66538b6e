"""Hand-built P10 files for the parser's hardening tests: what pydicom would refuse to
write (a malformed Transfer Syntax UID) or would hold in memory (a deflated giant)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

from dcmweb_static import synthetic as syn

DEFLATED = "1.2.840.10008.1.2.1.99"


def _header_dataset(n: int):
    ds = syn.base_dataset(syn.uid(900, n), syn.uid(900, n, 1), syn.uid(900, n, 1, 1),
                          rich=False)
    return ds


def _meta_bytes(ds, transfer_syntax: str) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()


def _dataset_bytes(ds) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def with_transfer_syntax(path: Path, transfer_syntax: str, n: int = 1) -> Path:
    """A small explicit VR little endian file whose file meta names `transfer_syntax`
    verbatim (any bytes, even CR/LF): pydicom's writer would not let it through."""
    ds = _header_dataset(n)
    meta = _meta_bytes(ds, "1.2.840.10008.1.2.1")
    old = b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\x00"
    assert meta.count(old) == 1
    value = transfer_syntax.encode("latin-1")
    value += b"\0" * (len(value) % 2)
    new = b"\x02\x00\x10\x00UI" + struct.pack("<H", len(value)) + value
    meta = meta.replace(old, new)
    # group length (0002,0000) follows the 'DICM' prefix: fix it for the new value size
    (group_length,) = struct.unpack("<L", meta[140:144])
    meta = meta[:140] + struct.pack("<L", group_length + len(new) - len(old)) + meta[144:]
    path.write_bytes(meta + _dataset_bytes(ds))
    return path


def deflated_with_ob(path: Path, ob_size: int, n: int = 2) -> Path:
    """A deflated file whose data set ends with an OB value of `ob_size` zero bytes,
    compressed as a stream: a 1 GiB value costs a few MB on disk and in memory here."""
    ds = _header_dataset(n)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as fp:
        fp.write(_meta_bytes(ds, DEFLATED))
        fp.write(packer.compress(_dataset_bytes(ds)))
        # (0042,0011) Encapsulated Document, OB
        fp.write(packer.compress(struct.pack("<HH2sHL", 0x0042, 0x0011, b"OB", 0, ob_size)))
        block = bytes(1 << 20)
        left = ob_size
        while left:
            n_ = min(left, len(block))
            fp.write(packer.compress(block[:n_]))
            left -= n_
        fp.write(packer.flush())
    return path
