"""Read a converted tree back the way a DICOMweb client would, for the tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydicom import config
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.valuerep import DS, IS
from pydicom.values import convert_value

from dcmweb_static import layout
from dcmweb_static.batch import Converter
from dcmweb_static.instance import ConvertOptions, InstanceResult
from dcmweb_static.multipart import BOUNDARY

BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


def convert(paths: list[Path], out: Path, jobs: int = 1, **options: Any) -> list[InstanceResult]:
    summary = Converter(ConvertOptions(output=out, **options), jobs=jobs).run(paths)
    return summary.results


def instance_folder(out: Path, result: InstanceResult) -> Path:
    assert result.study_uid and result.series_uid and result.sop_uid
    return layout.instance_dir(out, result.study_uid, result.series_uid, result.sop_uid)


def read_part(path: Path) -> tuple[dict[str, str], bytes]:
    """Parse a single-part multipart/related file: (headers, body)."""
    data = path.read_bytes()
    opening = f"--{BOUNDARY}\r\n".encode()
    closing = f"\r\n--{BOUNDARY}--\r\n".encode()
    assert data.startswith(opening), f"{path} does not open with the boundary"
    assert data.endswith(closing), f"{path} does not end with the closing delimiter"
    head, _, rest = data[len(opening):].partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("ascii").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, rest[: len(rest) - len(closing)]


def load_metadata(folder: Path) -> list[dict[str, Any]]:
    gz = folder / "metadata.gz"
    if gz.exists():
        return json.loads(gzip.decompress(gz.read_bytes()))
    return json.loads((folder / "metadata").read_bytes())


def resolve_bulk(folder: Path, uri: str) -> bytes:
    """Fetch a BulkDataURI's bytes as a Range request would, and check they equal the
    multipart body."""
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    file = folder / parts.path
    raw = file.read_bytes()
    offset, length = int(query["offset"][0]), int(query["length"][0])
    ranged = raw[offset: offset + length]
    _, body = read_part(file)
    assert ranged == body, f"offset/length of {uri} do not select the part body"
    return body


def dataset_from_tree(folder: Path, *, little_endian: bool = True,
                      encodings: list[str] | None = None) -> Dataset:
    """The instance metadata as a pydicom Dataset, BulkDataURIs resolved against the tree."""
    (document,) = load_metadata(folder)
    # IS/DS text outside its grammar is published as bulk data (docs/layout.md); from_json
    # cannot hold such a value, so it is set afterwards as pydicom reads it from a file
    invalid: list[tuple[str, RawDataElement]] = []

    def handler(tag: str, vr: str, uri: str) -> Any:
        if uri.endswith("frames"):
            return b""
        data = resolve_bulk(folder, uri)
        if vr in BINARY:
            return data
        raw = RawDataElement(Tag(tag), vr, len(data), data, 0, False, little_endian)
        value = convert_value(vr, raw, encodings)
        if vr in ("IS", "DS"):
            try:
                [IS(v) if vr == "IS" else DS(v, validation_mode=config.RAISE)
                 for v in (value if isinstance(value, list) else [value]) if v != ""]
            except (TypeError, ValueError, OverflowError):
                invalid.append((urlsplit(uri).path.rsplit("/", 1)[-1], raw))
                return None
        return value

    loaded = Dataset.from_json(document, bulk_data_uri_handler=handler)
    for name, raw in invalid:  # the bulk data name is the element's path: tag.item.tag...
        parts = name.split(".")
        target = loaded
        for tag, item in zip(parts[0:-1:2], parts[1:-1:2]):
            target = target[int(tag, 16)].value[int(item)]
        target[int(parts[-1], 16)] = convert_raw_data_element(raw, encoding=encodings)
    return loaded


def frame_bodies(folder: Path) -> list[tuple[dict[str, str], bytes]]:
    frames = folder / "frames"
    count = len(list(frames.iterdir()))
    return [read_part(frames / str(n)) for n in range(1, count + 1)]
