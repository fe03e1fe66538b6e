"""File names as text for reports, logs and JSON records.

POSIX names are bytes; Python keeps those that are not UTF-8 as lone surrogates
(``os.fsdecode``), which no UTF-8 encoder (orjson, SQLite, a terminal) accepts. They are
shown with the odd bytes escaped (``a\\xff.dcm``) and, since that form is ambiguous, also
kept exactly as base64 of the raw bytes, only for such names.
"""

from __future__ import annotations

import base64
import os


def display_path(text: str) -> str:
    """`text` with bytes that are not UTF-8 shown as ``\\xNN``: always encodable."""
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # a surrogate that surrogateescape did not make
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def path_fields(path: str, key: str = "path") -> dict[str, str]:
    """``{key: shown}``, plus ``{key}_base64`` (the exact bytes) when the name is not UTF-8."""
    shown = display_path(path)
    if shown == path:
        return {key: path}
    return {key: shown, f"{key}_base64": base64.b64encode(os.fsencode(path)).decode("ascii")}
