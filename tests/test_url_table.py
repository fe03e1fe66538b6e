"""The one URL table: every stored file of a converted tree is reached at the same URL, with
the same bytes and headers, from `dcmweb serve` and from nginx with `dcmweb nginx-config`."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest

from dcmweb_static.encode.multipart import BOUNDARY
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.serve.nginx import TYPED_PREFIX
from dcmweb_static.tree import urls

from .servers import dcmweb_serve, nginx
from .treeutil import read_part

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("table") / "out"
    summary = Converter(ConvertOptions(output=out, part10=True, rendered=True, thumbnails=True),
                        jobs=2).run(
        sorted((ROOT / "samples").rglob("*.dcm")))
    assert summary.count("failed") == 0
    return out


def _resources(root: Path) -> list[tuple[urls.Resource, dict[str, str], Path, bool]]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        matched = urls.match_stored(path.relative_to(root).as_posix())
        if matched is not None:
            found.append((*matched[:2], path, matched[2]))
    return found


def test_every_stored_name_is_one_resource(converted: Path) -> None:
    found = _resources(converted)
    kinds = {resource.key for resource, *_ in found}
    assert kinds == {r.key for r in urls.RESOURCES} | {urls.STUDY_RECORD.key}
    for resource, values, path, packed in found:
        name = resource.stored_name("folder", packed, **values)
        assert converted / name == path
        assert urls.match(urls.request_target(resource, values).split("?")[0])[0].url \
            == resource.url


def test_serve_and_nginx_answer_each_url_alike(converted: Path, tmp_path: Path) -> None:
    found = _resources(converted)
    typed = {}
    with dcmweb_serve(converted) as serve_url, nginx(converted, tmp_path / "nginx") as nginx_url:
        for resource, values, path, packed in found:
            target = urls.request_target(resource, values)
            answers = [httpx.get(base + target, headers={"Accept-Encoding": "identity"})
                       for base in (serve_url, nginx_url)]
            stored = path.read_bytes()
            expected = gzip.decompress(stored) if packed else stored
            for answer in answers:
                assert answer.status_code == 200, (target, answer.status_code)
                assert answer.content == expected, target
            types = [a.headers["content-type"] for a in answers]
            assert types[0] == types[1], target  # frames too: the real media type
            if resource.kind == "frame":
                media = read_part(path)[0]["content-type"].split(";")[0]
                assert types[0].startswith(f'multipart/related; type="{media}"; boundary=')
                typed[media] = target
        assert {"application/octet-stream", "image/jls", "image/jp2", "image/dicom-rle"} \
            <= typed.keys()
        # the typed frame locations are internal: not reachable from outside
        hidden = httpx.get(f"{nginx_url}/{TYPED_PREFIX}/image-jls{typed['image/jls']}")
        assert hidden.status_code == 404


def test_study_and_series_retrieval_need_dcmweb_serve(converted: Path, tmp_path: Path) -> None:
    """The retrieval rows without a stored file: `dcmweb serve` streams every instance
    below the folder, one part each; nginx cannot join files and answers 404."""
    targets = []
    for series in sorted(converted.glob("studies/*/series/*/")):
        values = {"study": series.parent.parent.name, "series": series.name}
        for resource in urls.RETRIEVALS:
            folder = converted / resource.stored_name("folder", False, **values)
            targets.append((resource.url_path(**values), len(list(folder.rglob("info")))))
    assert len(targets) >= 4
    delimiter = f"--{BOUNDARY}\r\nContent-Type: application/dicom;".encode()
    with dcmweb_serve(converted) as serve_url, nginx(converted, tmp_path / "nginx") as nginx_url:
        for target, count in targets:
            answer = httpx.get(f"{serve_url}/{target}")
            assert answer.status_code == 200, target
            assert answer.content.count(delimiter) == count > 0, target
            assert httpx.get(f"{nginx_url}/{target}").status_code == 404
