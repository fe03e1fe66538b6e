"""Files without a File Meta header: a bare data set from byte 0 (PS3.10 7.1 says every
file has one, but older systems and some tools write none). The transfer syntax is told
from the first element, as dcmtk's DcmItem::checkTransferSyntax does: a valid VR after
the tag means explicit VR; the byte order is the one in which the tag is known."""

from __future__ import annotations

import struct

from pydicom.datadict import dictionary_has_tag
from pydicom.filereader import ENCODED_VR

from .transfer_syntax import (
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)


def _known(tag: int) -> bool:
    group = tag >> 16
    if group in (0, 2):
        return False  # command and meta groups never open a bare data set
    return dictionary_has_tag(tag) or (tag & 0xFFFF == 0 and group % 2 == 0)


def detect_transfer_syntax(head: bytes) -> str | None:
    """The transfer syntax of a data set that starts with `head` (its first 6+ bytes), or
    None when the first element is no tag of the dictionary in either byte order: then
    the file is not taken for a data set at all (dcmtk would still try; a clear "not
    DICOM" is the better answer for a stray file)."""
    if len(head) < 8:
        return None
    little = struct.unpack("<HH", head[:4])
    big = struct.unpack(">HH", head[:4])
    little_known = _known(little[0] << 16 | little[1])
    big_known = _known(big[0] << 16 | big[1])
    if not little_known and not big_known:
        return None
    explicit = head[4:6] in ENCODED_VR
    if big_known and not little_known:
        # implicit VR big endian is no transfer syntax: dcmtk's guess, not taken here
        return EXPLICIT_VR_BIG_ENDIAN if explicit else None
    return EXPLICIT_VR_LITTLE_ENDIAN if explicit else IMPLICIT_VR_LITTLE_ENDIAN
