"""JSON in and out for instance documents (metadata, QIDO records, deduplicated parts).

orjson writes and reads every ordinary document, but refuses to write one nested deeper
than 254 levels, and a DICOM sequence costs three (element object, Value array, item
object): about 84 nested sequences, which pydicom and dcmtk read. `dumps` keeps orjson
for every part it can write and joins those parts itself, so output stays byte for byte
what orjson alone writes. orjson reads up to 1024 levels, more than a document of
MAX_SEQUENCE_DEPTH sequences needs, so `loads` is orjson's.
"""

from __future__ import annotations

from typing import Any

import orjson

from .p10 import MAX_SEQUENCE_DEPTH

#: JSON levels of an instance's metadata array at that depth: orjson.loads takes 1024
assert 2 + 3 * MAX_SEQUENCE_DEPTH + 3 < 1024

_RECURSION = "Recursion limit reached"


def dumps(obj: Any) -> bytes:
    """orjson.dumps(obj), also for objects nested deeper than orjson writes."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:
        if str(exc) != _RECURSION:
            raise
    parts: list[bytes] = []
    _write(obj, parts)
    return b"".join(parts)


def _write(obj: Any, parts: list[bytes]) -> None:
    """Containers too deep for orjson written here, everything inside them by orjson."""
    try:
        parts.append(orjson.dumps(obj))
        return
    except orjson.JSONEncodeError as exc:
        if str(exc) != _RECURSION:
            raise
    if isinstance(obj, dict):
        parts.append(b"{")
        for i, (key, value) in enumerate(obj.items()):
            parts.append(b"," + orjson.dumps(key) + b":" if i else orjson.dumps(key) + b":")
            _write(value, parts)
        parts.append(b"}")
    else:  # a list or tuple: the only other containers a document holds
        parts.append(b"[")
        for i, value in enumerate(obj):
            if i:
                parts.append(b",")
            _write(value, parts)
        parts.append(b"]")


loads = orjson.loads
