"""UID checks done before a UID from a file is ever used to build a path."""

from __future__ import annotations

import re

from ..errors import InvalidUIDError

_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")




def check_uid(value: object, name: str) -> str:
    """Return `value` as a UID string safe to use as one path component.

    Only digits and dots, at most 64 characters, no empty component (PS3.5 9.1). This
    is what keeps `../../x` or `/etc` in a file from ever reaching the file system.
    """
    if value is None:
        raise InvalidUIDError(f"missing {name}")
    text = str(value).strip("\0 ")
    if not text:
        raise InvalidUIDError(f"missing {name}")
    if len(text) > 64 or not _UID.fullmatch(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidUIDError(f"malformed {name} {shown!r}")
    return text
