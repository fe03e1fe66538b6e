"""QIDO-RS query matching against the static index files (PS3.18 8.3.4, PS3.4 C.2.2.2):
single value, list of UIDs, `*`/`?` wildcards, date and time ranges, limit/offset."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from ..errors import QueryError

Json = dict[str, Any]
PAGING = {"limit", "offset", "includefield", "fuzzymatching"}




def _tag_key(name: str) -> str:
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        return name.upper()
    from pydicom.datadict import tag_for_keyword  # a query by keyword (serving): not an
    # import for every process that aggregates a tree

    tag = tag_for_keyword(name)
    if tag is None:
        raise QueryError(f"unknown attribute {name!r}")
    return f"{tag:08X}"


def _strings(element: Json | None) -> list[str]:
    if not element:
        return []
    out = []
    for value in element.get("Value", []):
        if isinstance(value, dict):  # PN: match any of its groups
            out.extend(str(v) for v in value.values())
        elif value is not None:
            out.append(str(value))
    return out


def _match_one(values: list[str], wanted: str, vr: str | None) -> bool:
    if vr in ("DA", "DT", "TM") and "-" in wanted:
        low, _, high = wanted.partition("-")
        return any((not low or v >= low) and (not high or v[: len(high)] <= high)
                   for v in values)
    if vr == "UI":  # a list of UIDs, comma or backslash separated
        return bool(set(values) & set(re.split(r"[,\\]", wanted)))
    if vr == "PN":  # person names match case-insensitively
        values, wanted = [v.lower() for v in values], wanted.lower()
    if "*" in wanted or "?" in wanted:
        pattern = wanted.replace("[", "[[]")
        return any(fnmatch.fnmatchcase(v, pattern) for v in values)
    return wanted in values


def matches(record: Json, name: str, wanted: str) -> bool:
    key = _tag_key(name)
    element = record.get(key)
    if not wanted:
        return True  # universal matching
    if element is None:
        return False
    return _match_one(_strings(element), wanted, element.get("vr"))


def apply_query(records: list[Json], params: Mapping[str, str] | list[tuple[str, str]],
                ) -> list[Json]:
    """Filter, then page, `records` by QIDO query parameters."""
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    limit = offset = None
    filtered = records
    for name, wanted in items:
        if name == "limit":
            limit = _int(name, wanted)
        elif name == "offset":
            offset = _int(name, wanted)
        elif name in PAGING:
            continue  # includefield: the index files hold every attribute they have
        else:
            filtered = [r for r in filtered if matches(r, name, wanted)]
    start = offset or 0
    return filtered[start: start + limit if limit is not None else None]


def _int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise QueryError(f"{name} must be a whole number") from None
    if number < 0:
        raise QueryError(f"{name} must not be negative")
    return number
