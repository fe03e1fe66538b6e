"""End to end: OHIF Viewer (prebuilt, from npm) in headless Chromium shows converted
studies read from the tree in static DICOMweb mode: a CT series and a compressed
multi-frame image. Screenshots are saved in the test's tmp_path."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from pathlib import Path

import pydicom
import pytest
import uvicorn
from pydicom.uid import JPEGLSLossless

from dcmweb_static import synthetic as syn
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions

from .ohif import ohif_dist, viewer_app
from .servers import free_port, wait_for_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/run installs it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def dist() -> Path:
    if CHROMIUM is None:
        _unavailable("Chromium is not installed (Debian package chromium)")
    try:
        return ohif_dist()
    except FileNotFoundError:
        _unavailable("npm is not installed: cannot fetch @ohif/app")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    base = tmp_path_factory.mktemp("ohif")
    ct = syn.ct_series(base / "in" / "ct", 5, rows=64, columns=64, study_index=700)
    ds = syn.base_dataset(syn.uid(701), syn.uid(701, 1), syn.uid(701, 1, 1),
                          sop_class="1.2.840.10008.5.1.4.1.1.7.3", modality="OT")
    syn.add_pixels(ds, rows=64, columns=64, bits=12, frames=8, seed=3)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    multiframe = syn.save(ds, base / "in" / "jpegls_8frames.dcm", JPEGLSLossless)
    out = base / "out"
    summary = Converter(ConvertOptions(output=out), jobs=2).run([*ct, multiframe])
    assert summary.count("converted") == 6
    return out, syn.uid(700), syn.uid(701)


def _bright_fraction(png: bytes) -> float:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return sum(histogram[40:]) / (image.size[0] * image.size[1])


def _show(dist: Path, tree: Path, study: str, screenshot: Path) -> float:
    from playwright.sync_api import sync_playwright

    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(viewer_app(dist, tree, origin), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    best = 0.0
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{origin}/viewer?StudyInstanceUIDs={study}")
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and best < 0.2:
                time.sleep(1)
                canvas = page.locator("canvas.cornerstone-canvas")
                if canvas.count():
                    best = max(best, _bright_fraction(canvas.first.screenshot()))
            page.screenshot(path=str(screenshot))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return best


@pytest.mark.parametrize("which", ["ct", "jpegls-multiframe"])
def test_ohif_shows_the_converted_image(dist: Path, tree, tmp_path: Path, which: str) -> None:
    """A CT series and a compressed (JPEG-LS) multi-frame image each render."""
    out, ct_study, multiframe_study = tree
    study = ct_study if which == "ct" else multiframe_study
    screenshot = tmp_path / f"ohif-{which}.png"
    fraction = _show(dist, out, study, screenshot)
    print(f"screenshot: {screenshot}")
    assert fraction > 0.2, f"viewport mostly blank ({fraction:.1%} bright); see {screenshot}"
