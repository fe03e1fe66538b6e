"""End to end: OHIF Viewer (prebuilt, from npm) in headless Chromium shows converted
studies read from the tree in static DICOMweb mode: a CT series and a compressed
multi-frame image, each viewport compared with our own rendering of the frame, and the
study browser showing the tree's thumbnails (`thumbnailRendering: 'thumbnailDirect'`).
Screenshots are saved in the test's tmp_path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEGLSLossless

from dcmweb_static import synthetic as syn
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions

from .ohif import correlation, first_shown, require_viewer, show, viewer_app, windowed_ct
from .servers import free_port, serving


@pytest.fixture(scope="module")
def dist() -> Path:
    return require_viewer()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    base = tmp_path_factory.mktemp("ohif")
    ct = windowed_ct(base / "in" / "ct", 700)
    ds = syn.base_dataset(syn.uid(701), syn.uid(701, 1), syn.uid(701, 1, 1),
                          sop_class="1.2.840.10008.5.1.4.1.1.7.3", modality="OT")
    syn.add_pixels(ds, rows=64, columns=64, bits=12, frames=8, seed=3)
    ds.WindowCenter, ds.WindowWidth = "2048", "4096"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    multiframe = syn.save(ds, base / "in" / "jpegls_8frames.dcm", JPEGLSLossless)
    out = base / "out"
    summary = Converter(ConvertOptions(output=out, thumbnails=True, rendered=True),
                        jobs=2).run([*ct, multiframe])
    assert summary.count("converted") == 6
    return out, syn.uid(700), syn.uid(701)


@pytest.mark.parametrize("which", ["ct", "jpegls-multiframe"])
def test_ohif_shows_the_converted_image(dist: Path, tree, tmp_path: Path, which: str) -> None:
    """A CT series and a compressed (JPEG-LS) multi-frame image each render as we render
    them (correlation of the viewport with our rendering of the frame OHIF shows first),
    and the study browser shows the tree's thumbnails."""
    out, ct_study, multiframe_study = tree
    study = ct_study if which == "ct" else multiframe_study
    screenshot = tmp_path / f"ohif-{which}.png"
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with serving(viewer_app(dist, origin + "/dicomweb", out), port):
        shown = show(origin, study, screenshot)
    print(f"screenshot: {screenshot}")
    assert shown.bright > 0.2, f"viewport mostly blank ({shown.bright:.1%} bright); see " \
        f"{screenshot}"
    loaded = [src for src, width in shown.thumbnails if width > 0]
    assert loaded, f"no thumbnail of the tree shown: {shown.thumbnails}; see {screenshot}"
    assert all("/dicomweb/studies/" + study in src for src in loaded)
    # OHIF shows the middle image of a stack first, frame 1 of a multi-frame image
    instances = [p for p in out.glob(f"studies/{study}/series/*/instances/*") if p.is_dir()]
    first = first_shown([(_instance_number(p), p) for p in instances])
    similar = correlation(shown.canvas, (first / "rendered-frames/1.jpg").read_bytes())
    print(f"correlation with our rendering: {similar:.3f}")
    assert similar > 0.9, f"viewport unlike our rendering ({similar:.3f}); see {screenshot}"


def _instance_number(folder: Path) -> int:
    metadata = json.loads(gzip.decompress((folder / "metadata.gz").read_bytes()))[0]
    return metadata["00200013"]["Value"][0]
