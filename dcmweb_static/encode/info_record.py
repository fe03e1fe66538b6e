"""The `info` record: what a lossless P10 rebuild needs, and where the instance came from."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .. import __version__
from ..p10.frames import Frame, FrameLayout
from ..p10.parse import ParsedP10
from ..pathnames import path_fields
from .multipart import BOUNDARY

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def undefined_length_paths(ds: Dataset, path: str = "") -> list[str]:
    """Sequences and items that were written with undefined length, as tag paths."""
    found: list[str] = []
    # the elements as stored: what get_item(tag, keep_deferred=True) gives for each key
    # (never a deferred read), without its Tag() conversion and lookup per element
    for elem in ds._dict.values():
        if getattr(elem, "VR", None) != "SQ" or not hasattr(elem, "is_undefined_length"):
            continue
        name = f"{path}{elem.tag:08X}"
        if elem.is_undefined_length:
            found.append(name)
        for i, item in enumerate(elem.value or []):
            if getattr(item, "is_undefined_length_sequence_item", False):
                found.append(f"{name}.{i}")
            found.extend(undefined_length_paths(item, f"{name}.{i}."))
    return found


#: longest value tail kept in info (more is extra data after the frames, not padding)
TAIL_LIMIT = 64


def _swapped_tail(parsed: ParsedP10, frames: FrameLayout) -> str | None:
    """The sample-order bytes of the value after the last frame (base64), or None when
    there are more than TAIL_LIMIT."""
    pixel = parsed.pixel_data
    assert pixel is not None and pixel.length is not None
    end = sum(f.length for f in frames.frames)
    start = end - end % frames.byte_swap
    if pixel.length - end > TAIL_LIMIT:
        return None
    parsed.stream.seek(pixel.value_offset + start)
    stored = parsed.stream.read(pixel.length - start)
    swapped = bytearray(len(stored))
    swapped[0::2], swapped[1::2] = stored[1::2], stored[0::2]
    return base64.b64encode(swapped[end - start:]).decode("ascii")


def _frame_record(frame: Frame) -> Any:
    segments = [list(s) for s in frame.segments]
    if frame.swapped_length is not None:
        return {"segments": segments, "skip": frame.swapped_skip,
                "length": frame.swapped_length}
    if frame.bit_length is not None:
        return {"segments": segments, "bit_offset": frame.bit_offset,
                "bit_length": frame.bit_length}
    return segments


def build_info(
    parsed: ParsedP10,
    *,
    source_path: str,
    source_size: int,
    sha256: str,
    frames: FrameLayout | None,
    gzip: bool,
    media_type: str | None,
    transforms: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The info record. After a transform (e.g. deidentify) the dataset no longer matches
    the source, so the source's preamble and file meta bytes (which carry its UIDs) and
    its path are left out: only the transforms' names are recorded."""
    pixel = parsed.pixel_data
    pixel_info: dict[str, Any] | None = None
    if pixel is not None:
        pixel_info = {
            "tag": f"{pixel.tag:08X}",
            "vr": pixel.vr,
            "element_offset": pixel.element_offset,
            "value_offset": pixel.value_offset,
            "length": pixel.length,
            "undefined_length": pixel.encapsulated,
            "end_offset": pixel.end_offset,
        }
        if pixel.encapsulated:
            pixel_info.update(
                basic_offset_table=pixel.basic_offset_table,
                basic_offset_table_item_offset=pixel.bot_item_offset,
                fragments=[[f.item_offset, f.value_offset, f.length] for f in pixel.fragments],
                extended_offset_table=0x7FE00001 in parsed.dataset,
            )
        if frames is not None:
            pixel_info["frame_boundaries_from"] = frames.method
            pixel_info["media_type"] = media_type
            pixel_info["frames"] = [_frame_record(f) for f in frames.frames]
            if frames.byte_swap:
                # each frame is its words' bytes swapped back: a rebuild swaps them again,
                # after the bytes past the last frame (the padding), recorded here
                pixel_info["frames_byte_swapped"] = frames.byte_swap
                pixel_info["swapped_tail"] = _swapped_tail(parsed, frames)
    record: dict[str, Any] = {
        "tool": {"name": "dcmweb-static", "version": __version__},
        "source": {**path_fields(source_path), "size": source_size, "sha256": sha256},
        "preamble": base64.b64encode(parsed.preamble).decode("ascii"),
        "file_meta": base64.b64encode(parsed.file_meta_bytes).decode("ascii"),
        "file_meta_present": parsed.file_meta_present,  # False: syntax detected, none kept
        "transfer_syntax_uid": parsed.transfer_syntax_uid,
        "implicit_vr": parsed.is_implicit_vr,
        "little_endian": parsed.is_little_endian,
        "deflated": parsed.deflated,
        "dataset_offset": parsed.dataset_offset,
        "offsets_relative_to": "inflated data set" if parsed.deflated else "file",
        "undefined_length": undefined_length_paths(parsed.dataset),
        "trailing_padding": 0xFFFCFFFC in parsed.dataset,
        "pixel_data": pixel_info,
        "gzip": gzip,
        "multipart_boundary": BOUNDARY,
    }
    if transforms:
        record["transforms"] = list(transforms)
        record["source"] = {"size": source_size}
        for key in ("preamble", "file_meta", "undefined_length"):
            del record[key]
    return record


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return [entry.path for entry in entries if entry.is_dir()
                    and not entry.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _first_info(instances: str) -> bytes | None:
    """The info of the first instance folder listed (in directory order) that has one."""
    try:
        with os.scandir(instances) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                try:
                    with open(os.path.join(entry.path, "info"), "rb") as fp:
                        return fp.read()
                except OSError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        pass
    return None


def tree_has_transform(root: Path, name: str) -> bool:
    """Whether the tree at `root` holds instances written through transform `name`, as
    recorded in their info. One instance per series is read: a transform that replaces
    UIDs (deidentify) puts its instances in series of their own, so one decides the
    series, and the check costs one file per series, not per instance."""
    needle = orjson.dumps(name)
    for study in _subdirs(os.path.join(root, "studies")):
        for series in _subdirs(os.path.join(study, "series")):
            data = _first_info(os.path.join(series, "instances"))
            if data is None or needle not in data:
                continue
            try:
                if name in orjson.loads(data).get("transforms", []):
                    return True
            except (orjson.JSONDecodeError, AttributeError):
                continue
    return False
