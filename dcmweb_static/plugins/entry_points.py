"""The installed distributions' entry points of one group, read without importlib.metadata.

Every dcmweb command looks for plugins before it starts. `importlib.metadata` and what it
imports (email, zipfile, csv, socket...) cost about 40 ms of each start-up, 50 ms with the
search, a fifth of `dcmweb --version`; reading the ``entry_points.txt`` of the
distributions on `sys.path` directly costs about 1 ms. The answer is importlib.metadata's
(Python 3.10–3.13, a test holds them equal): the distributions are the ``*.dist-info`` and
``*.egg-info`` entries of each `sys.path` folder, folders in order, and of several with one
normalized name the first wins; an entry point is a ``name = value`` line under the group's
``[section]``. Where this reader would have to follow importlib.metadata further (a zip
file or an ``.egg`` on `sys.path`, a distribution finder other than the path finder, an
upper-case suffix) importlib.metadata answers instead.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from functools import reduce
from typing import Any

_SUFFIXES = (".dist-info", ".egg-info")
_SEPARATORS = re.compile(r"[-_.]+")
#: importlib.metadata.EntryPoint.pattern
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


class EntryPoint:
    """One entry point: what `importlib.metadata.EntryPoint` offers that dcmweb uses."""

    __slots__ = ("name", "value", "group", "_folder")

    def __init__(self, name: str, value: str, group: str, folder: str | None) -> None:
        self.name, self.value, self.group, self._folder = name, value, group, folder

    def load(self) -> Any:
        """The object the value names (``module`` or ``module:attr.attr``)."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"{self.value!r} is not 'module' or 'module:attribute'")
        module = importlib.import_module(match.group("module"))
        return reduce(getattr, filter(None, (match.group("attr") or "").split(".")), module)

    @property
    def version(self) -> str | None:
        """The distribution's version (its metadata's Version header)."""
        if self._folder is None:
            return None
        for name in ("METADATA", "PKG-INFO"):
            text = _read(os.path.join(self._folder, name))
            if text:
                return _header(text, "version")
        return None


def entry_points(group: str) -> list[EntryPoint]:
    """The group's entry points of the distributions on `sys.path`, in importlib.metadata's
    order (a folder's distributions in the order the file system lists them)."""
    if not _readable_here():
        return _from_importlib(group)
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for root in sys.path:
        try:
            children = os.listdir(root or ".")
        except OSError:
            if os.path.isfile(root or "."):  # a zip file: importlib.metadata reads those
                return _from_importlib(group)
            continue
        for child in children:
            low = child.lower()
            if not low.endswith(_SUFFIXES):
                continue
            if not child.endswith(_SUFFIXES):
                return _from_importlib(group)  # it names such a distribution differently
            name = _normalized(low.rpartition(".")[0].partition("-")[0])
            if name in seen:
                continue
            seen.add(name)
            folder = os.path.join(root, child)  # a file of that name has no entry points
            found.extend(_group_entries(_read(os.path.join(folder, "entry_points.txt")),
                                        group, folder))
    return found


def _readable_here() -> bool:
    """Whether every distribution is one this module reads: found by the path finder
    alone, in folders (no ``.egg`` on sys.path)."""
    finders = [finder for finder in sys.meta_path
               if getattr(finder, "find_distributions", None) is not None]
    from importlib.machinery import PathFinder

    if any(finder is not PathFinder for finder in finders):
        return False
    return not any(str(root).lower().endswith(".egg") for root in sys.path)


def _from_importlib(group: str) -> list[EntryPoint]:
    import importlib.metadata

    found = []
    for entry in importlib.metadata.entry_points(group=group):
        folder = getattr(entry.dist, "_path", None)
        found.append(EntryPoint(entry.name, entry.value, entry.group,
                                str(folder) if folder is not None else None))
    return found


def _group_entries(text: str | None, group: str, folder: str) -> list[EntryPoint]:
    """importlib.metadata's `Sectioned` reading of entry_points.txt, for one section."""
    found, section = [], None
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section is None:
            continue
        name, equals, value = (part.strip() for part in line.partition("="))
        if not equals:  # importlib.metadata fails on such a line in any section
            raise ValueError(f"{os.path.join(folder, 'entry_points.txt')}: {line!r} is not "
                             "'name = value'")
        if section == group:
            found.append(EntryPoint(name, value, group, folder))
    return found


def _normalized(name: str) -> str:
    return _SEPARATORS.sub("-", name).lower().replace("-", "_")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def _header(text: str, name: str) -> str | None:
    """The first `name` header of an RFC 822 style metadata file."""
    for line in text.splitlines():
        if not line.strip():
            return None  # the headers end at the first blank line
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None
