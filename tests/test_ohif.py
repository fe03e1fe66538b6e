"""End to end: OHIF Viewer (prebuilt, from npm) in headless Chromium shows converted
studies read from the tree in static DICOMweb mode: a CT series and a compressed
multi-frame image, each viewport compared with our own rendering of the frame, and the
study browser showing the tree's thumbnails (`thumbnailRendering: 'thumbnailDirect'`).
Screenshots are saved in the test's tmp_path."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
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
    for path in ct:  # a window over the stored range (rescaled -1024..3071) shows it all
        _set_window(path, 1024, 4096)
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


def _set_window(path: Path, center: int, width: int) -> None:
    ds = pydicom.dcmread(path)
    ds.WindowCenter, ds.WindowWidth = str(center), str(width)
    ds.save_as(path)


def _bright_fraction(png: bytes) -> float:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return sum(histogram[40:]) / (image.size[0] * image.size[1])


@dataclass
class Shown:
    """What OHIF showed: the best viewport's bright fraction and screenshot, and the
    thumbnail images of its study browser (src, natural width) once loaded."""

    bright: float = 0.0
    canvas: bytes = b""
    thumbnails: list[tuple[str, int]] = field(default_factory=list)


_THUMBNAILS = """() => Array.from(document.querySelectorAll('img'))
    .filter(img => img.src.includes('/thumbnail'))
    .map(img => [img.src, img.complete ? img.naturalWidth : 0])"""


def _show(dist: Path, tree: Path, study: str, screenshot: Path) -> Shown:
    from playwright.sync_api import sync_playwright

    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(viewer_app(dist, tree, origin), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    shown = Shown()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{origin}/viewer?StudyInstanceUIDs={study}")
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and (
                    shown.bright < 0.2 or not any(w for _, w in shown.thumbnails)):
                time.sleep(1)
                canvas = page.locator("canvas.cornerstone-canvas")
                if canvas.count():
                    png = canvas.first.screenshot()
                    fraction = _bright_fraction(png)
                    if fraction >= shown.bright:
                        shown.bright, shown.canvas = fraction, png
                shown.thumbnails = [tuple(t) for t in page.evaluate(_THUMBNAILS)]
            time.sleep(1)  # the image settles (progressive loading, VOI)
            canvas = page.locator("canvas.cornerstone-canvas")
            if canvas.count():
                shown.canvas = canvas.first.screenshot()
            page.screenshot(path=str(screenshot))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return shown


def _correlation(canvas_png: bytes, rendered: Path) -> float:
    """Pearson correlation of the viewport's image region with our rendering of the same
    frame, resized to it. OHIF fits the image to the viewport, centred: the region is
    the centred square of the viewport's smaller side (our samples are square)."""
    import numpy as np
    from PIL import Image

    canvas = Image.open(io.BytesIO(canvas_png)).convert("L")
    side = min(canvas.size)
    left, top = (canvas.size[0] - side) // 2, (canvas.size[1] - side) // 2
    shown = np.asarray(canvas.crop((left, top, left + side, top + side)), dtype=np.float64)
    ours = np.asarray(Image.open(rendered).convert("L").resize((side, side),
                      Image.Resampling.BILINEAR), dtype=np.float64)
    margin = side // 8  # OHIF's corner overlays (patient, series text) stay outside
    shown, ours = shown[margin:-margin, margin:-margin], ours[margin:-margin, margin:-margin]
    return float(np.corrcoef(shown.ravel(), ours.ravel())[0, 1])


@pytest.mark.parametrize("which", ["ct", "jpegls-multiframe"])
def test_ohif_shows_the_converted_image(dist: Path, tree, tmp_path: Path, which: str) -> None:
    """A CT series and a compressed (JPEG-LS) multi-frame image each render as we render
    them (correlation of the viewport with our rendering of the frame OHIF shows first),
    and the study browser shows the tree's thumbnails."""
    out, ct_study, multiframe_study = tree
    study = ct_study if which == "ct" else multiframe_study
    screenshot = tmp_path / f"ohif-{which}.png"
    shown = _show(dist, out, study, screenshot)
    print(f"screenshot: {screenshot}")
    assert shown.bright > 0.2, f"viewport mostly blank ({shown.bright:.1%} bright); see " \
        f"{screenshot}"
    loaded = [src for src, width in shown.thumbnails if width > 0]
    assert loaded, f"no thumbnail of the tree shown: {shown.thumbnails}; see {screenshot}"
    assert all("/dicomweb/studies/" + study in src for src in loaded)
    # OHIF shows the middle image of a stack first, frame 1 of a multi-frame image
    instances = sorted(p for p in out.glob(f"studies/{study}/series/*/instances/*")
                       if p.is_dir())
    first = _first_shown(instances) / "rendered-frames/1.jpg"
    correlation = _correlation(shown.canvas, first)
    print(f"correlation with our rendering: {correlation:.3f}")
    assert correlation > 0.9, f"viewport unlike our rendering ({correlation:.3f}); " \
        f"see {screenshot}"


def _first_shown(instances: list[Path]) -> Path:
    """The instance OHIF's stack viewport opens on: the middle by Instance Number."""
    if len(instances) == 1:
        return instances[0]
    numbers = []
    for folder in instances:
        metadata = json.loads(gzip.decompress((folder / "metadata.gz").read_bytes()))[0]
        numbers.append((metadata["00200013"]["Value"][0], folder))
    numbers.sort()
    return numbers[len(numbers) // 2][1]
