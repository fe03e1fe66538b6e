"""Independent references: pydicom's own full parse of the source file, element by
element, and pydicom's frame splitting. Nothing here uses dcmweb's code."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue
from pydicom.pixels.utils import get_expected_length

PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}
AMBIGUOUS = {"US or SS", "OB or OW", "US or OW", "US or SS or OW", "OW or OB"}


def _skip(tag: int) -> bool:
    return (tag >> 16) in (0, 2) or (tag & 0xFFFF) == 0 or tag == 0xFFFCFFFC


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, MultiValue)):
        return list(value)
    return [value]


def _strings(value: Any) -> list[str]:
    # padding spaces of each value are not significant (PS3.5 Table 6.2-1)
    out = ["" if v is None else str(v).strip(" ") for v in _listed(value)]
    return [] if out == [""] else out


def _pn(value: Any) -> list[str]:
    out = []
    for v in _listed(value):
        # trailing empty name components are padding (PS3.5 6.2.1)
        groups = getattr(v, "components", (str(v),)) if v is not None else ("",)
        text = "=".join(g.rstrip("^ ") for g in groups)
        out.append(text.rstrip("="))
    return [] if out == [""] else out


def _numbers(value: Any) -> list[float]:
    out = []
    for v in _listed(value):
        if isinstance(v, str):
            v = v.strip()
            if not v:
                continue
        out.append(float(v))
    return out


def _same_numbers(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b)
    )


def assert_same_dataset(source: Dataset, loaded: Dataset, path: str = "",
                        top_level: bool = True) -> None:
    """Every element of `source` is in `loaded` with an equal value (per VR)."""
    allowed_extra = {0x00083002} | (PIXEL_TAGS if top_level else set())
    source_tags = {t for t in source.keys() if not _skip(t)}
    extra = {t for t in loaded.keys() if t not in source_tags and t not in allowed_extra}
    assert not extra, f"{path}: elements not in the source: {sorted(map(hex, extra))}"
    for tag in sorted(source_tags):
        if top_level and tag in PIXEL_TAGS:
            continue
        where = f"{path}({tag >> 16:04X},{tag & 0xFFFF:04X})"
        assert tag in loaded, f"{where} missing from metadata"
        src = source[tag]
        got = loaded[tag]
        vr = src.VR
        if vr not in AMBIGUOUS and src.VR != "UN":
            assert got.VR == vr, f"{where}: VR {got.VR} != {vr}"
        vr = got.VR
        if vr == "SQ":
            assert len(got.value) == len(src.value), f"{where}: item count"
            for i, (a, b) in enumerate(zip(src.value, got.value)):
                assert_same_dataset(a, b, f"{where}[{i}].", top_level=False)
        elif vr in {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}:
            expected = src.value if isinstance(src.value, bytes) else None
            if expected is None:  # pydicom decoded a retyped UN value; compare values
                assert _strings(got.value) == _strings(src.value), where
            else:
                assert bytes(got.value or b"") == expected, f"{where}: bytes differ"
        elif vr == "PN":
            assert _pn(got.value) == _pn(src.value), f"{where}: {got.value!r} != {src.value!r}"
        elif vr in ("DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"):
            a, b = _listed(src.value), _listed(got.value)
            try:
                same = _same_numbers(_numbers(a), _numbers(b))
            except (TypeError, ValueError):  # an invalid IS/DS kept as its string
                same = _strings(a) == _strings(b)
            assert same, f"{where}: {got.value!r} != {src.value!r}"
        elif vr == "AT":
            assert [int(v) for v in _listed(got.value)] == [int(v) for v in _listed(src.value)]
        else:
            assert _strings(got.value) == _strings(src.value), (
                f"{where}: {got.value!r} != {src.value!r}")


def reference_frames(ds: Dataset) -> list[bytes] | None:
    """The stored bytes of each frame, as pydicom splits them; None for 1-bit data."""
    tag = next(t for t in (0x7FE00010, 0x7FE00008, 0x7FE00009) if t in ds)
    data = ds[tag].value
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_encapsulated:
        extended = None
        if "ExtendedOffsetTable" in ds:
            extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        return list(generate_frames(data, number_of_frames=frames, extended_offsets=extended))
    if ds.get("BitsAllocated") == 1:
        return None
    if (tag == 0x7FE00010 and not ts.is_little_endian and ds.BitsAllocated == 8
            and ds[tag].VR == "OW"):
        # 8-bit samples in big endian OW words are stored swapped per word; frames give
        # them in order, as pydicom's pixel handling does (its "be_swap_ow")
        data = np.frombuffer(data, ">u2").astype("<u2").tobytes()
    if tag == 0x7FE00010:
        size = get_expected_length(ds, "bytes") // frames
    else:
        size = ds.Rows * ds.Columns * (4 if tag == 0x7FE00008 else 8)
    return [data[i * size:(i + 1) * size] for i in range(frames)]


def reference_bits(ds: Dataset) -> list[np.ndarray]:
    """1-bit frames as unpacked bit arrays, from the whole Pixel Data."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    per = ds.Rows * ds.Columns * ds.SamplesPerPixel
    bits = np.unpackbits(np.frombuffer(ds.PixelData, np.uint8), bitorder="little")
    return [bits[i * per:(i + 1) * per] for i in range(frames)]


def unpack_frame_bits(body: bytes, count: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(body, np.uint8), bitorder="little")[:count]
