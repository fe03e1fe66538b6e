"""From a `-d` value to a store: a local folder, or an object store URL (`s3://bucket/prefix`,
`memory://name`). A URL is never taken for a folder name (`-d s3://bkt/dw` used to make a
local folder `s3:`), and its prefix is checked before anything is written."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .base import Store
from .local import LocalStore

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: bucket and prefix components: no empty, `.` or `..` component, no control character
_COMPONENT = re.compile(r"[A-Za-z0-9!_.*'()=+,;@$&~-]+")


def is_url(target: str | os.PathLike[str]) -> bool:
    """Whether `target` names a URL (`scheme://...`) rather than a local path."""
    return isinstance(target, str) and _SCHEME.match(target) is not None


def check_url(url: str) -> str:
    """`url` with its scheme lower-cased and no trailing `/`; ValueError (one line) for a
    URL whose bucket or prefix could not be a tree's root."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        raise ValueError(f"{url}: not a URL (scheme://bucket/prefix)")
    rest = url[scheme.end():].rstrip("/")
    parts = rest.split("/")
    for part in parts:
        if part in ("", ".", "..") or not _COMPONENT.fullmatch(part):
            raise ValueError(f"{url}: {part!r} cannot be a bucket or prefix component "
                             "(letters, digits and -_.!*'()=+,;@$&~ only, no empty, . or ..)")
    return f"{scheme.group(1).lower()}://{rest}"


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs as fsspec storage options; a VALUE that is JSON (`true`, `3`,
    `{"region_name": "eu-west-1"}`) is decoded, any other stays a string."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"storage option {pair!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def open_store(target: str | os.PathLike[str], options: Mapping[str, Any] | None = None,
               cache_control: str | None = None) -> Store:
    """The store `target` names: a `LocalStore` for a path or `file://` URL (a file system
    has the folder/file clash: folder layout), an `ObjectStore` for an object store URL."""
    if not is_url(target):
        return LocalStore(target)
    url = check_url(str(target))
    if url.startswith("file://"):
        return LocalStore(url[len("file://"):] or "/")
    from .objects import ObjectStore  # fsspec is an optional extra

    return ObjectStore(url, options, cache_control)
