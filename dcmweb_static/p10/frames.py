"""Where each frame's bytes lie in the source stream (PS3.5 8.2 and A.4).

A frame is a list of (offset, length) segments to be joined: one slice of native Pixel
Data, or the values of one or more fragments. 1-bit native frames that do not start on
a byte boundary carry a bit offset and are re-packed when copied. 8-bit samples in big
endian OW words are stored byte-swapped per word (PS3.5 7.3): their frames name whole words
and are swapped back when copied, so a frame gives the samples in order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ..errors import ConversionError, TruncatedError, UnframeableError
from .datasets import code_value, int_value
from .parse import PixelDataElement
from .transfer_syntax import EXPLICIT_VR_BIG_ENDIAN, TransferSyntax

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: bytes per word of 8-bit samples stored as big endian OW
SWAP_WORD = 2


@dataclass(frozen=True)
class Frame:
    segments: tuple[tuple[int, int], ...]
    #: for bit-packed frames: first bit (0-7) inside the first byte, and the bit count
    bit_offset: int = 0
    bit_length: int | None = None
    #: for byte-swapped words: the frame is `swapped_length` bytes, `swapped_skip` (0 or 1)
    #: bytes into its one segment once each word of it is swapped back
    swapped_skip: int = 0
    swapped_length: int | None = None

    @property
    def length(self) -> int:
        if self.swapped_length is not None:
            return self.swapped_length
        if self.bit_length is not None:
            return (self.bit_length + 7) // 8
        return sum(length for _, length in self.segments)


@dataclass(frozen=True)
class FrameLayout:
    frames: list[Frame]
    method: str  # how the frame boundaries were found, recorded in info
    #: SWAP_WORD when the frames are 8-bit samples swapped back out of big endian OW words
    byte_swap: int = 0


def _int_attr(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = int_value(ds, keyword, default)
    if value in (None, ""):
        if default is None:
            raise UnframeableError(f"Pixel Data present but {keyword} is missing")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConversionError(f"{keyword} has an unusable value {value!r}") from None


def number_of_frames(ds: Dataset) -> int:
    frames = _int_attr(ds, "NumberOfFrames", 1)
    if frames < 1:
        raise ConversionError(f"NumberOfFrames is {frames}")
    return frames


def native_frames(ds: Dataset, pixel: PixelDataElement,
                  big_endian: bool = False) -> FrameLayout:
    """Slice native Pixel Data (also Float/Double Float Pixel Data) into frames."""
    rows = _int_attr(ds, "Rows")
    columns = _int_attr(ds, "Columns")
    samples = _int_attr(ds, "SamplesPerPixel", 1)
    default_bits = {0x7FE00008: 32, 0x7FE00009: 64}.get(pixel.tag)
    bits = _int_attr(ds, "BitsAllocated", default_bits)
    frames = number_of_frames(ds)
    if str(code_value(ds, "PhotometricInterpretation")).strip() == "YBR_FULL_422":
        samples = 2  # two samples per pixel on average once chroma is subsampled
    frame_bits = rows * columns * samples * bits
    needed = (frames * frame_bits + 7) // 8
    assert pixel.length is not None
    if pixel.length < needed:
        raise TruncatedError(
            f"Pixel Data holds {pixel.length} bytes but {frames} frame(s) of "
            f"{rows}x{columns}x{samples} at {bits} bits need {needed}"
        )
    start = pixel.value_offset
    if big_endian and bits == 8 and pixel.vr == "OW" and pixel.tag == 0x7FE00010:
        return _swapped_frames(start, pixel.length, frames, frame_bits // 8)
    if frame_bits % 8 == 0:
        size = frame_bits // 8
        return FrameLayout(
            [Frame(((start + i * size, size),)) for i in range(frames)], "native"
        )
    out = []
    for i in range(frames):
        first_bit = i * frame_bits
        first_byte = first_bit // 8
        last_byte = (first_bit + frame_bits + 7) // 8
        out.append(
            Frame(((start + first_byte, last_byte - first_byte),), first_bit % 8, frame_bits)
        )
    return FrameLayout(out, "native-bit-packed")


def _swapped_frames(start: int, length: int, frames: int, size: int) -> FrameLayout:
    """Frames of 8-bit samples held in big endian OW words (what pydicom's pixel handling
    undoes too): sample j of the value is stored at byte j ^ 1, so each frame covers the
    whole words holding its samples, which may begin or end mid-word."""
    if length % SWAP_WORD:
        raise ConversionError(f"OW Pixel Data has an odd length ({length} bytes)")
    out = []
    for i in range(frames):
        first, end = i * size, (i + 1) * size
        word_start = first - first % SWAP_WORD
        word_end = end + (-end) % SWAP_WORD
        out.append(Frame(((start + word_start, word_end - word_start),),
                         swapped_skip=first - word_start, swapped_length=size))
    return FrameLayout(out, "native", byte_swap=SWAP_WORD)


# The first bytes that open a frame's codestream, for PS3.5 A.4 frame counting when there
# is no offset table: JPEG and JPEG-LS SOI, JPEG 2000 SOC+SIZ, JP2 signature box, JPEG XL.
_FRAME_STARTS = (b"\xff\xd8\xff", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ", b"\xff\x0a",
                 b"\x00\x00\x00\x0cJXL ")


def encapsulated_frames(
    ds: Dataset, pixel: PixelDataElement, ts: TransferSyntax, stream: BinaryIO
) -> FrameLayout:
    """Group fragments into frames: Extended Offset Table, else Basic Offset Table, else
    the counting rules of PS3.5 A.4 (one frame; one fragment each; codestream starts)."""
    fragments = pixel.fragments
    if ts.video:
        return FrameLayout([Frame(tuple((f.value_offset, f.length) for f in fragments))],
                           "video-stream")
    frames = number_of_frames(ds)
    if not fragments:
        raise ConversionError("encapsulated Pixel Data has no fragments")
    first_item = fragments[0].item_offset
    index_of = {f.item_offset - first_item: i for i, f in enumerate(fragments)}

    def by_offsets(offsets: list[int]) -> list[Frame] | None:
        if len(offsets) != frames or any(o not in index_of for o in offsets):
            return None
        starts = [index_of[o] for o in offsets]
        if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
            return None
        ends = starts[1:] + [len(fragments)]
        return [
            Frame(tuple((f.value_offset, f.length) for f in fragments[s:e]))
            for s, e in zip(starts, ends)
        ]

    eot = ds.get_item(0x7FE00001, keep_deferred=True)
    if eot is not None and (eot.value or getattr(eot, "length", 0)):
        if eot.value is None:  # a very long table the reader deferred
            stream.seek(eot.value_tell)
            raw = stream.read(eot.length)
        else:
            raw = bytes(eot.value)
        found = by_offsets(list(struct.unpack(f"<{len(raw) // 8}Q", raw)))
        if found is not None:
            return FrameLayout(found, "extended-offset-table")
    if pixel.basic_offset_table:
        found = by_offsets(pixel.basic_offset_table)
        if found is not None:
            return FrameLayout(found, "basic-offset-table")
    if frames == 1:
        return FrameLayout(
            [Frame(tuple((f.value_offset, f.length) for f in fragments))], "single-frame"
        )
    if len(fragments) == frames:
        return FrameLayout(
            [Frame(((f.value_offset, f.length),)) for f in fragments], "fragment-per-frame"
        )
    if not ts.one_fragment_per_frame:
        starts = []
        for f in fragments:
            stream.seek(f.value_offset)
            head = stream.read(12)
            if any(head.startswith(marker) for marker in _FRAME_STARTS):
                starts.append(f.item_offset - first_item)
        found = by_offsets(starts)
        if found is not None:
            return FrameLayout(found, "codestream-markers")
    raise ConversionError(
        f"cannot find frame boundaries: {frames} frames in {len(fragments)} fragments "
        "with no usable offset table"
    )


def frame_layout(
    ds: Dataset, pixel: PixelDataElement, ts: TransferSyntax, stream: BinaryIO
) -> FrameLayout:
    if pixel.encapsulated:
        return encapsulated_frames(ds, pixel, ts, stream)
    return native_frames(ds, pixel, big_endian=ts.uid == EXPLICIT_VR_BIG_ENDIAN)
