"""dcmtk's dcm2json as an independent reference for the JSON model."""

from __future__ import annotations

import base64
import json
import math
import struct
import subprocess
from pathlib import Path
from typing import Any

import pydicom

from .conftest import require_tool
from .treeutil import resolve_bulk

NUMBER_FORMATS = {"FL": "f", "FD": "d", "SL": "l", "SS": "h", "UL": "L", "US": "H",
                  "SV": "q", "UV": "Q"}


def dcm2json(source: Path, tmp_path: Path) -> dict[str, Any]:
    """dcm2json's JSON for `source`. dcm2json cannot write encapsulated Pixel Data, so for
    those files dcmtk's own dcmodify first removes it from a copy."""
    if pydicom.dcmread(source, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_encapsulated:
        copy = tmp_path / ("nopixels-" + source.name)
        copy.write_bytes(source.read_bytes())
        subprocess.run([require_tool("dcmodify"), "-nb", "-ea", "(7fe0,0010)", str(copy)],
                       capture_output=True, check=True)
        source = copy
    run = subprocess.run([require_tool("dcm2json"), "-fc", str(source)],
                         capture_output=True, check=True)
    return json.loads(run.stdout)


# Deliberate differences, documented in docs/layout.md:
#  * (0008,3002) Available Transfer Syntax UID is added by dcmweb;
#  * Pixel Data is a BulkDataURI to the frames, not InlineBinary;
#  * values over the bulk thresholds are BulkDataURI (compared here as resolved bytes);
#  * FL: dcm2json prints float32 precision; dcmweb the exact stored value as a double;
#  * FD: dcm2json 3.6.7 prints some doubles 1 ulp off; dcmweb writes the shortest
#    decimal that reads back to the exact stored value, so numbers compare with rel 1e-15;
#  * (0008,0005) keeps the source's Specific Character Set (dcm2json rewrites it to
#    ISO_IR 192): values in JSON are Unicode either way, and the original is kept;
#  * UN elements of a known tag are re-typed to the dictionary VR (dcm2json keeps UN).


def _same(ours: dict[str, Any], theirs: dict[str, Any], folder: Path, where: str) -> None:
    if where == "00080005" or (theirs["vr"] == "UN" and ours["vr"] != "UN"):
        return
    assert ours["vr"] == theirs["vr"], f"{where}: VR {ours['vr']} != {theirs['vr']}"
    if "BulkDataURI" in ours:
        data = resolve_bulk(folder, ours["BulkDataURI"])
        if "InlineBinary" in theirs:
            assert base64.b64decode(theirs["InlineBinary"]) == data, where
            return
        ours = {"vr": ours["vr"], "Value": _values_of(ours["vr"], data)}
    if "InlineBinary" in theirs:
        assert ours["InlineBinary"] == theirs["InlineBinary"], where
        return
    a, b = ours.get("Value", []), theirs.get("Value", [])
    assert len(a) == len(b), f"{where}: {a} != {b}"
    if ours["vr"] == "SQ":
        for i, (x, y) in enumerate(zip(a, b)):
            assert_agrees_with_dcm2json(x, y, folder, f"{where}[{i}].")
        return
    for x, y in zip(a, b):
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            tolerance = 1e-7 if ours["vr"] == "FL" else 1e-15  # dcm2json prints FL as float32
            assert math.isclose(x, y, rel_tol=tolerance), f"{where}: {x} != {y}"
        else:
            assert x == y, f"{where}: {x!r} != {y!r}"


def _values_of(vr: str, data: bytes) -> list[Any]:
    """Bulk data bytes (little endian) as the JSON values dcm2json writes inline."""
    if vr in NUMBER_FORMATS:
        size = struct.calcsize(NUMBER_FORMATS[vr])
        return list(struct.unpack(f"<{len(data) // size}{NUMBER_FORMATS[vr]}", data))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    text = text.rstrip(" \0")
    return [text] if vr in ("LT", "ST", "UT") else text.split("\\")


def assert_agrees_with_dcm2json(ours: dict, theirs: dict, folder: Path, where: str = "") -> None:
    skip = {"00083002", "7FE00010", "7FE00008", "7FE00009"} if not where else set()
    skip.add("FFFCFFFC")  # trailing padding carries nothing (PS3.10 7.2); dcm2json keeps it
    assert set(ours) - skip == set(theirs) - skip, where
    for tag in sorted(set(theirs) - skip):
        _same(ours[tag], theirs[tag], folder, where + tag)


