"""A conversion reads a `Source`: a path, or bytes or a stream handed over by a receiver;
all three give the same instance (only `info`'s source path differs)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from dcmweb_static import ConvertOptions, Source, get_plugin_manager
from dcmweb_static.run.instance import InstanceConverter
from dcmweb_static.store import StagedInstance, StagingArea

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").rglob("*.dcm"))


def _staged_files(result) -> dict[str, bytes]:
    staged = StagedInstance(result.staging)
    files = {name: staged.read(name) for name in staged.files()}
    info = orjson.loads(files.pop("info"))
    info["source"].pop("path", None)
    files["info"] = orjson.dumps(info)
    return files


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_bytes_and_stream_sources_convert_like_the_path(tmp_path: Path, path: Path) -> None:
    converter = InstanceConverter(ConvertOptions(output=tmp_path / "out"), get_plugin_manager())
    staging = StagingArea.at(tmp_path / "staging")
    data = path.read_bytes()
    results = [converter.convert(Source.from_path(path), staging),
               converter.convert(Source.from_bytes(data, "received #1"), staging),
               converter.convert(Source.from_stream(io.BytesIO(data), "received #2"), staging)]
    assert [r.status for r in results] == ["converted"] * 3, [r.reason for r in results]
    assert [r.path for r in results] == [str(path), "received #1", "received #2"]
    expected = _staged_files(results[0])
    for result in results[1:]:
        assert result.sha256 == results[0].sha256
        assert _staged_files(result) == expected


def test_a_stream_source_is_not_closed_by_the_conversion(tmp_path: Path) -> None:
    stream = io.BytesIO(SAMPLES[0].read_bytes())
    converter = InstanceConverter(ConvertOptions(output=tmp_path / "out"), get_plugin_manager())
    result = converter.convert(Source.from_stream(stream, "held by a receiver"),
                               StagingArea.at(tmp_path / "staging"))
    assert result.status == "converted" and not stream.closed


def test_bad_bytes_are_a_reason_not_an_exception(tmp_path: Path) -> None:
    converter = InstanceConverter(ConvertOptions(output=tmp_path / "out"), get_plugin_manager())
    result = converter.convert(Source.from_bytes(b"not dicom at all", "junk"),
                               StagingArea.at(tmp_path / "staging"))
    assert result.status == "failed" and "not a DICOM" in result.reason
