"""The tree served by `dcmweb serve` and by a real nginx, read by dicomweb-client."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from dcmweb_static import synthetic as syn
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions

from . import corpus
from .reference import reference_frames
from .servers import dcmweb_serve, nginx

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    base = tmp_path_factory.mktemp("served")
    files = corpus.build(base / "corpus")
    chosen = {}
    for i, name in enumerate(("mono16", "jpegls_lossless", "jpeg2000", "rle", "ct_rich",
                              "jpeg_baseline")):
        ds = pydicom.dcmread(files[name])  # lossless dcmtk output keeps the SOP UID: renew
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = syn.uid(600, 1, i + 1)
        ds.save_as(base / f"{name}.dcm")
        chosen[name] = base / f"{name}.dcm"
    # a public value over the threshold, so there is public bulk data too
    ds = pydicom.dcmread(files["ct_rich"])
    ds.add_new(0x00420011, "OB", bytes(range(256)) * 600)
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".5"
    chosen["with_bulk"] = syn.save(ds, base / "with_bulk.dcm")
    out = base / "out"
    summary = Converter(ConvertOptions(output=out, part10=True), jobs=2).run(
        list(chosen.values()))
    assert summary.count("converted") == len(chosen)
    (base / "secret.txt").write_text("outside the tree")
    return out, chosen


@pytest.fixture(scope="module", params=["dcmweb-serve", "nginx"])
def server(request, tree, tmp_path_factory) -> str:
    out, _ = tree
    if request.param == "dcmweb-serve":
        with dcmweb_serve(out) as url:
            yield url
    else:
        with nginx(out, tmp_path_factory.mktemp("nginx")) as url:
            yield url


def uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_search_for_studies_series_instances(server: str, tree) -> None:
    client = DICOMwebClient(server)
    _, files = tree
    studies = client.search_for_studies()
    study_uids = {s["0020000D"]["Value"][0] for s in studies}
    assert {uids(p)[0] for p in files.values()} <= study_uids
    st, se, sop = uids(files["jpegls_lossless"])
    (one,) = client.search_for_studies(search_filters={"StudyInstanceUID": st})
    assert one["0020000D"]["Value"] == [st]
    series = client.search_for_series(st)
    assert se in {s["0020000E"]["Value"][0] for s in series}
    instances = client.search_for_instances(st, se)
    assert sop in {i["00080018"]["Value"][0] for i in instances}
    # the levels across studies and series: every series, every instance of a study
    every_series = client.search_for_series()
    assert {(s["0020000D"]["Value"][0], s["0020000E"]["Value"][0]) for s in every_series} \
        == {uids(p)[:2] for p in files.values()}
    study_instances = client.search_for_instances(st)
    assert {i["00080018"]["Value"][0] for i in study_instances} \
        == {uids(p)[2] for p in files.values() if uids(p)[0] == st}
    assert all(i["0020000D"]["Value"] == [st] for i in study_instances)


def test_metadata_at_every_level(server: str, tree) -> None:
    client = DICOMwebClient(server)
    out, files = tree
    st, se, sop = uids(files["ct_rich"])
    instance = client.retrieve_instance_metadata(st, se, sop)
    folder = out / "studies" / st / "series" / se / "instances" / sop
    assert instance == json.loads(gzip.decompress((folder / "metadata.gz").read_bytes()))[0]
    series = client.retrieve_series_metadata(st, se)
    assert sop in {i["00080018"]["Value"][0] for i in series}
    study = client.retrieve_study_metadata(st)
    assert len(study) >= len(series)


@pytest.mark.parametrize("name", ["mono16", "jpegls_lossless", "jpeg2000", "rle",
                                  "jpeg_baseline"])
def test_frames_equal_the_source(server: str, tree, name: str) -> None:
    client = DICOMwebClient(server)
    _, files = tree
    st, se, sop = uids(files[name])
    source = pydicom.dcmread(files[name])
    expected = reference_frames(source)
    ts = str(source.file_meta.TransferSyntaxUID)
    media = "application/octet-stream" if not source.file_meta.TransferSyntaxUID.is_compressed \
        else {"1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.90": "image/jp2",
              "1.2.840.10008.1.2.5": "image/dicom-rle"}.get(ts, "image/jpeg")
    for number in range(1, len(expected) + 1):
        (frame,) = client.retrieve_instance_frames(st, se, sop, frame_numbers=[number],
                                                   media_types=((media, ts),))
        assert frame == expected[number - 1]


def test_bulkdata_from_a_metadata_uri(server: str, tree) -> None:
    client = DICOMwebClient(server)
    _, files = tree
    st, se, sop = uids(files["with_bulk"])
    instance = client.retrieve_instance_metadata(st, se, sop)
    base = f"{server}/studies/{st}/series/{se}/instances/{sop}/metadata"
    for tag, expected in (("00420011", bytes(range(256)) * 600),
                          ("00091012", bytes(range(256)) * 2)):
        url = urljoin(base, instance[tag]["BulkDataURI"])
        assert client.retrieve_bulkdata(url) == [expected]
        # the offset/length in the URI select the same bytes with a Range request
        query = dict(p.split("=") for p in url.split("?")[1].split("&"))
        start, length = int(query["offset"]), int(query["length"])
        ranged = httpx.get(url.split("?")[0],
                           headers={"Range": f"bytes={start}-{start + length - 1}"})
        assert ranged.status_code == 206 and ranged.content == expected


def test_headers_gzip_and_cors(server: str, tree) -> None:
    _, files = tree
    st, se, sop = uids(files["ct_rich"])
    url = f"{server}/studies/{st}/series/{se}/metadata"
    packed = httpx.get(url, headers={"Accept-Encoding": "gzip", "Origin": "http://viewer"})
    assert packed.status_code == 200
    assert packed.headers["content-type"].startswith("application/dicom+json")
    assert packed.headers.get("content-encoding") == "gzip"
    assert packed.headers["access-control-allow-origin"] in ("*", "http://viewer")
    plain = httpx.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert json.loads(plain.content) == json.loads(packed.content)  # httpx decodes gzip
    frame = httpx.get(f"{server}/studies/{st}/series/{se}/instances/{sop}/frames/1")
    assert frame.headers["content-type"].startswith("multipart/related;")
    assert "boundary=dcmweb-static-" in frame.headers["content-type"]
    preflight = httpx.options(url, headers={"Origin": "http://viewer",
                                            "Access-Control-Request-Method": "GET"})
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] in ("*", "http://viewer")


@pytest.mark.parametrize("path", [
    "/studies/../../secret.txt", "/studies/%2e%2e/%2e%2e/secret.txt",
    "/studies/..%2F..%2Fsecret.txt/metadata", "/studies/1.2.3/series/abc/metadata",
    "/studies/1.2.3/metadata", "/secret.txt", "/../secret.txt",
    "/studies/1.2/series/1.2/instances/1.2/bulkdata/..%2F..%2F..%2F..%2Fsecret.txt",
])
def test_bad_paths_never_leave_the_tree(server: str, path: str) -> None:
    response = httpx.get(server + path)
    assert response.status_code in (400, 404)
    assert b"outside the tree" not in response.content


def test_qido_queries_on_dcmweb_serve(tree) -> None:
    out, files = tree
    st = uids(files["ct_rich"])[0]
    with dcmweb_serve(out) as url:
        client = DICOMwebClient(url)
        every = client.search_for_studies()
        assert len(every) == len({uids(p)[0] for p in files.values()})
        by_name = client.search_for_studies(search_filters={"PatientName": "mül*"})
        assert [s["0020000D"]["Value"][0] for s in by_name] == [st] or st in \
            [s["0020000D"]["Value"][0] for s in by_name]
        assert client.search_for_studies(search_filters={"PatientName": "nobody*"}) == []
        assert client.search_for_studies(search_filters={"PatientID": "DCMWEB-001"})
        assert client.search_for_studies(search_filters={"StudyDate": "20250101-20261231"})
        assert client.search_for_studies(search_filters={"StudyDate": "20270101-"}) == []
        assert client.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})
        assert client.search_for_studies(search_filters={"AccessionNumber": "none"}) == []
        assert len(client.search_for_studies(limit=1)) == 1
        assert len(client.search_for_studies(offset=1)) == len(every) - 1
        assert client.search_for_studies(fields=["StudyDescription"])
        assert httpx.get(url + "/studies?limit=x").status_code == 400


def test_series_and_instance_queries_on_dcmweb_serve(tree) -> None:
    out, files = tree
    st, se, _ = uids(files["mono16"])
    with dcmweb_serve(out) as url:
        client = DICOMwebClient(url)
        every = client.search_for_series(st)
        other = client.search_for_series(st, search_filters={"Modality": "OT"})
        assert other and all(s["00080060"]["Value"] == ["OT"] for s in other)
        assert client.search_for_series(st, search_filters={"Modality": "MR"}) == []
        assert len(client.search_for_series(st, search_filters={"SeriesInstanceUID": se})) == 1
        assert len(every) >= len(other)
        numbered = client.search_for_instances(st, se, search_filters={"InstanceNumber": "1"})
        assert numbered and all(i["00200013"]["Value"] == [1] for i in numbered)
        assert client.search_for_instances(st, se, search_filters={"InstanceNumber": "99"}) == []
        assert httpx.get(f"{url}/studies/{st}/series?NoSuchAttribute=1").status_code == 400


def _parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related response, split by hand."""
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"').encode()
    body = response.content
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    pieces = body[len(boundary) + 4: -(len(boundary) + 8)].split(
        b"\r\n--" + boundary + b"\r\n")
    out = []
    for piece in pieces:
        head, _, payload = piece.partition(b"\r\n\r\n")
        assert head.lower().startswith(b"content-type: ")
        out.append((head[len(b"content-type: "):].decode(), payload))
    return out


RETRIEVED = ["mono16", "jpegls_lossless", "jpeg2000", "rle", "ct_rich", "with_bulk"]


@pytest.mark.parametrize("name", RETRIEVED)
def test_retrieve_instance_gives_the_source(server: str, tree, name: str) -> None:
    """WADO-RS instance retrieval (PS3.18 10.4): dcmweb serve rebuilds and streams it,
    nginx sends the `convert --part10` file; both are the source byte for byte."""
    _, files = tree
    st, se, sop = uids(files[name])
    retrieved = DICOMwebClient(server).retrieve_instance(st, se, sop)
    source = pydicom.dcmread(files[name])
    assert retrieved == source
    assert retrieved.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    url = f"{server}/studies/{st}/series/{se}/instances/{sop}"
    response = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        'multipart/related; type="application/dicom"; boundary=')
    ((part_type, payload),) = _parts(response)
    ts = str(source.file_meta.TransferSyntaxUID)
    assert part_type == f"application/dicom; transfer-syntax={ts}"
    assert payload == files[name].read_bytes()


def test_retrieve_series_and_study_on_dcmweb_serve(tree) -> None:
    """Series and study retrieval stream one part per instance, each the source's bytes."""
    _, files = tree
    st, se, _ = uids(files["ct_rich"])
    sources = {uids(p)[2]: p for p in files.values()}
    in_series = {sop for sop, p in sources.items() if uids(p)[:2] == (st, se)}
    in_study = {sop for sop, p in sources.items() if uids(p)[0] == st}
    assert len(in_series) >= 2
    with dcmweb_serve(tree[0]) as url:
        client = DICOMwebClient(url)
        series = client.retrieve_series(st, se)
        assert {ds.SOPInstanceUID for ds in series} == in_series
        for ds in series:
            assert ds == pydicom.dcmread(sources[ds.SOPInstanceUID])
        study = client.retrieve_study(st)
        assert {ds.SOPInstanceUID for ds in study} == in_study
        response = httpx.get(f"{url}/studies/{st}")
        assert response.headers.get("transfer-encoding") == "chunked"  # streamed
        raw = {pydicom.dcmread(io.BytesIO(payload)).SOPInstanceUID: payload
               for _, payload in _parts(response)}
        assert raw == {sop: sources[sop].read_bytes() for sop in in_study}


def test_retrieval_accept_and_errors_on_dcmweb_serve(tree) -> None:
    """Nothing is transcoded: a transfer syntax other than the stored one is a 406."""
    _, files = tree
    st, se, sop = uids(files["jpeg2000"])
    stored = str(pydicom.dcmread(files["jpeg2000"]).file_meta.TransferSyntaxUID)
    with dcmweb_serve(tree[0]) as url:
        instance = f"{url}/studies/{st}/series/{se}/instances/{sop}"

        def status(target: str, accept: str | None) -> int:
            headers = {"Accept": accept} if accept is not None else {}
            return httpx.get(target, headers=headers).status_code

        dicom = 'multipart/related; type="application/dicom"'
        assert status(instance, None) == 200
        assert status(instance, "*/*") == 200
        assert status(instance, f"{dicom}; transfer-syntax=*") == 200
        assert status(instance, f"{dicom}; transfer-syntax={stored}") == 200
        assert status(instance, f"{dicom}; transfer-syntax=1.2.840.10008.1.2.1") == 406
        assert status(instance, f"{dicom}; transfer-syntax=1.2.840.10008.1.2.1, "
                                f"{dicom}; transfer-syntax={stored}") == 200
        assert status(instance, "application/dicom+json") == 406
        # a study holding other syntaxes than the one asked for
        assert status(f"{url}/studies/{st}", f"{dicom}; transfer-syntax={stored}") == 406
        assert status(f"{url}/studies/1.2.3", None) == 404
        assert status(f"{url}/studies/{st}/series/1.2.3", None) == 404
        assert status(f"{url}/studies/{st}/series/{se}/instances/1.2.3", None) == 404
        assert status(f"{url}/studies/{st}/series/{se}/instances/1..2", None) == 400


@pytest.mark.parametrize("accept,wanted", [
    (None, {"*"}), ("*/*", {"*"}), ('multipart/related; type="application/dicom"', {"*"}),
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90',
     {"1.2.840.10008.1.2.4.90"}),
    ('multipart/related;type=application/dicom;transfer-syntax="1.2"; q=0.5, '
     'multipart/related; type="application/dicom"; transfer-syntax=1.3;q=0', {"1.2"}),
    ('multipart/related; type="image/jpeg", multipart/related; type="application/dicom"',
     {"*"}),
])
def test_accept_header_parsing(accept: str | None, wanted: set[str]) -> None:
    from dcmweb_static.serve.retrieve import accepted_syntaxes
    assert accepted_syntaxes(accept) == wanted


@pytest.mark.parametrize("accept", ["application/dicom+json", "image/jpeg",
                                    'multipart/related; type="image/jpeg"'])
def test_accept_without_dicom_parts_is_not_acceptable(accept: str) -> None:
    from dcmweb_static.serve.retrieve import NotAcceptable, accepted_syntaxes
    with pytest.raises(NotAcceptable):
        accepted_syntaxes(accept)
