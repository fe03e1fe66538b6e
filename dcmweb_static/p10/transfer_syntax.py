"""What dcmweb needs to know about each transfer syntax: how frames are stored and
which media type a frame has in a WADO-RS response (PS3.18 Table 8.7.3-2 and -5)."""

from __future__ import annotations

from dataclasses import dataclass

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class TransferSyntax:
    uid: str
    media_type: str
    encapsulated: bool
    video: bool = False
    #: every frame is exactly one fragment (PS3.5 A.4.2 for RLE)
    one_fragment_per_frame: bool = False


_KNOWN: dict[str, TransferSyntax] = {}


def _add(uids: list[str], media_type: str, encapsulated: bool, **kw: bool) -> None:
    for uid in uids:
        _KNOWN[uid] = TransferSyntax(uid, media_type, encapsulated, **kw)


_add(
    [
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_LITTLE_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
    ],
    OCTET_STREAM,
    False,
)
# Encapsulated Uncompressed Explicit VR Little Endian and Deflated Image Frame Compression
_add(["1.2.840.10008.1.2.1.98", "1.2.840.10008.1.2.8.1"], OCTET_STREAM, True)
_add(
    [
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    ],
    "image/jpeg",
    True,
)
_add(["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"], "image/jls", True)
_add(["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"], "image/jp2", True)
_add(["1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"], "image/jpx", True)
_add(
    ["1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"],
    "image/jphc",
    True,
)
_add(
    ["1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112"],
    "image/jxl",
    True,
)
_add([RLE_LOSSLESS], "image/dicom-rle", True, one_fragment_per_frame=True)
_add(
    [
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.100.1",
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.101.1",
    ],
    "video/mpeg",
    True,
    video=True,
)
_add(
    [
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.102.1",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.103.1",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.104.1",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.105.1",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.106.1",
    ],
    "video/mp4",
    True,
    video=True,
)
_add(["1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"], "video/H265", True, video=True)


#: every transfer syntax described here (a receiver accepts these)
KNOWN_TRANSFER_SYNTAXES = tuple(_KNOWN)

#: the media types frames can have besides application/octet-stream (a static server
#: sends one of them in a frame response's header)
FRAME_MEDIA_TYPES = tuple(sorted({ts.media_type for ts in _KNOWN.values()} - {OCTET_STREAM}))


def lookup(uid: str, *, pixel_length_undefined: bool | None = None) -> TransferSyntax:
    """Describe `uid`; an unknown syntax is described from how its Pixel Data is stored,
    so a private or future syntax is still converted without guessing a media type."""
    known = _KNOWN.get(uid)
    if known is not None:
        return known
    return TransferSyntax(uid, OCTET_STREAM, bool(pixel_length_undefined))
