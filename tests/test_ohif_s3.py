"""End to end, as a user deploys it: `dcmweb convert -d s3://bkt/dw` into a real
S3-compatible HTTP server on 127.0.0.1 (moto's ThreadedMotoServer, public-read bucket with
the CORS rule of docs/deployment.md), and OHIF, served from another origin, reads the tree
straight from the bucket URL: nothing in between rewrites a request or a header. The
browser's responses and moto's request log show that the QIDO files, metadata and frames
came from the bucket's objects with the headers the store set, and OHIF shows the study
(study list, viewport like our rendering, the tree's thumbnail).

OHIF's requests are CORS-simple (GETs whose `Accept` has no quotes, from
`omitQuotationForMultipartRequest`), so the browser sends no preflight: the bucket's CORS
rule only adds `Access-Control-Allow-Origin` to each GET. (moto would answer a preflight
on an existing key with 403, unlike S3: the test would fail, not pass, if one came.)"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dcmweb_static import synthetic as syn

from .ohif import correlation, first_shown, require_viewer, show, viewer_app, windowed_ct
from .s3server import cli_convert, s3_server
from .servers import free_port, serving

for _module in ("s3fs", "moto", "boto3"):  # in the server and CLI processes only
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (pip install -e '.[test]')",
                    allow_module_level=True)

BUCKET = "bkt"
STUDY = syn.uid(710)
#: one line of moto's (werkzeug's) request log; werkzeug colours an error's line
REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3})')
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """The bucket with the converted CT series, and the origin OHIF will be served from
    (the one the bucket's CORS rule allows); yields (tree URL, viewer origin, log)."""
    dist = require_viewer()
    base = tmp_path_factory.mktemp("ohif-s3")
    ct = windowed_ct(base / "in", 710)
    log_path = base / "moto.log"
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log, s3_server(BUCKET, log, cors_origin=origin) as endpoint:
        report = cli_convert(ct, f"s3://{BUCKET}/dw", endpoint, base, "--thumbnails",
                             "--rendered")
        assert report["counts"]["converted"] == len(ct)
        tree = f"{endpoint}/{BUCKET}/dw"
        with serving(viewer_app(dist, tree), port):
            yield tree, origin, log_path


def test_ohif_reads_the_study_straight_from_the_bucket(deployed, tmp_path: Path) -> None:
    """OHIF lists and shows the study, and every byte it showed came from the bucket's
    objects (browser responses and moto's log agree), with the headers the store set."""
    tree, origin, log_path = deployed
    before = log_path.stat().st_size  # the conversion's own requests come before
    screenshot = tmp_path / "ohif-s3.png"
    # the study list names the patient (Test^Patient) as OHIF formats a person name
    shown = show(origin, STUDY, screenshot, study_list_shows="Test, Patient")
    print(f"screenshot: {screenshot}")
    # OHIF shows the study: in its study list, in the viewport, in the study browser
    assert "Test, Patient" in shown.study_list, f"study list without the study: " \
        f"{shown.study_list[:500]!r}"
    assert shown.bright > 0.2, f"viewport mostly blank ({shown.bright:.1%}); see {screenshot}"
    loaded = [src for src, width in shown.thumbnails if width > 0]
    assert loaded and all(src.startswith(f"{tree}/studies/{STUDY}/") for src in loaded), \
        shown.thumbnails
    series = httpx.get(f"{tree}/studies/{STUDY}/series").json()[0]["0020000E"]["Value"][0]
    instances = httpx.get(f"{tree}/studies/{STUDY}/series/{series}/metadata").json()
    first = first_shown([(i["00200013"]["Value"][0], i["00080018"]["Value"][0])
                         for i in instances])
    rendered = httpx.get(f"{tree}/studies/{STUDY}/series/{series}/instances/{first}"
                         "/frames/1/rendered")
    assert rendered.headers["content-type"] == "image/jpeg"
    similar = correlation(shown.canvas, rendered.content)
    print(f"correlation with our rendering: {similar:.3f}")
    assert similar > 0.9, f"viewport unlike our rendering ({similar:.3f}); see {screenshot}"

    # the browser got each resource from the bucket, with the headers the store set. What the
    # bucket serves at each URL the browser fetched is checked as a client sees it; the
    # browser's own record of a response it revalidated (OHIF now and then asks for the
    # study list twice: If-None-Match, 304) lacks the headers a 304 does not repeat
    # (Content-Type, Content-Encoding), so that record must only never say otherwise.
    fetched = [f for f in shown.fetched if f.url.startswith(tree + "/")]
    for response in fetched:
        assert response.status in (200, 304), response
        _never_contradicts(response, "access-control-allow-origin", origin)
    json_urls = [f for f in fetched if f.url.split("?")[0].endswith(("/metadata", "/series",
                                                                     "/studies"))]
    kinds = {re.sub(r".*/", "", f.url.split("?")[0]) for f in json_urls}
    assert kinds == {"studies", "series", "metadata"}, [f.url for f in fetched]
    for response in json_urls:
        served = _served(response.url, origin)
        assert served["content-type"] == "application/dicom+json", served
        assert served["content-encoding"] == "gzip", served
        assert served["access-control-allow-origin"] == origin, served
        for name in ("content-type", "content-encoding"):
            _never_contradicts(response, name, served[name])
    frames = [f for f in fetched if f.url.endswith("/frames/1")]
    assert len(frames) == len(instances), [f.url for f in fetched]
    for response in frames:
        served = _served(response.url, origin)
        assert served["content-type"].startswith(
            'multipart/related; type="application/octet-stream"; transfer-syntax='), served
        assert "content-encoding" not in served, served
        assert served["access-control-allow-origin"] == origin, served
        _never_contradicts(response, "content-type", served["content-type"])
        assert "content-encoding" not in response.headers, response

    # and moto's log shows the viewer's GETs of those keys, each answered 200, no preflight
    with log_path.open() as log:
        log.seek(before)
        requests = [m.groupdict() for m in REQUEST.finditer(COLOUR.sub("", log.read()))]
    prefix = f"/{BUCKET}/dw/studies/{STUDY}/series/{series}"
    paths = {r["path"] for r in requests}
    assert f"{prefix}/metadata" in paths
    assert {f"{prefix}/instances/{i['00080018']['Value'][0]}/frames/1"
            for i in instances} <= paths
    # a resource the viewer asks for again is revalidated (If-None-Match): 304 from the bucket
    assert all(r["method"] == "GET" and r["status"] in ("200", "304") for r in requests), \
        [r for r in requests if r["method"] != "GET" or r["status"] not in ("200", "304")]
    assert all(any(r["path"] == path and r["status"] == "200" for r in requests)
               for path in paths), requests


def _served(url: str, origin: str) -> httpx.Headers:
    """The headers the bucket answers a cross-origin GET of `url` with, as a browser asks."""
    answer = httpx.get(url, headers={"Accept-Encoding": "gzip", "Origin": origin})
    assert answer.status_code == 200, (url, answer.status_code)
    return answer.headers


def _never_contradicts(recorded, name: str, value: str) -> None:
    """The browser's record of a response has no `name` header or has `value`."""
    assert recorded.headers.get(name, value) == value, \
        f"browser saw {name}: {recorded.headers[name]!r}, not {value!r}: {recorded}"
