"""The one URL table: every stored file of a converted tree is reached at the same URL, with
the same bytes and headers, from `dcmweb serve` and from nginx with `dcmweb nginx-config`."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest

from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.tree import urls

from .servers import dcmweb_serve, nginx

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("table") / "out"
    summary = Converter(ConvertOptions(output=out, rendered=True, thumbnails=True), jobs=2).run(
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
            if resource.kind == "frame":
                # nginx names no per-frame media type in the outer header (one type per
                # location); both are multipart/related with the tree's boundary
                assert all(t.startswith("multipart/related;") and "boundary=" in t
                           for t in types)
            else:
                assert types[0] == types[1], target
