"""OHIF Viewer's prebuilt `dist/` (npm package @ohif/app, no build) in headless Chromium,
shared by the OHIF tests: the viewer's app, a server for it, the browser session that
records what OHIF showed and fetched, and the comparisons of its viewport."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from starlette.applications import Starlette
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dcmweb_static.serve.app import make_app

OHIF_VERSION = "3.13.2"
CACHE = Path(os.environ.get("DCMWEB_TEST_CACHE", Path.home() / ".cache" / "dcmweb-tests"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
T = TypeVar("T")


def ohif_dist() -> Path:
    """`npm pack @ohif/app@VERSION`, unpacked once into the cache; its dist/ folder."""
    target = CACHE / f"ohif-app-{OHIF_VERSION}"
    dist = target / "package" / "dist"
    if (dist / "index.html").exists():
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "pack", f"@ohif/app@{OHIF_VERSION}", "--silent"], cwd=target,
                   check=True, capture_output=True, timeout=600)
    (archive,) = target.glob("ohif-app-*.tgz")
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    archive.unlink()
    return dist


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/run installs it")
    pytest.skip(reason)


def require_viewer() -> Path:
    """OHIF's dist/ when Chromium and npm are there; a skip (a failure on CI) if not."""
    if CHROMIUM is None:
        _unavailable("Chromium is not installed (Debian package chromium)")
    try:
        return ohif_dist()
    except FileNotFoundError:
        _unavailable("npm is not installed: cannot fetch @ohif/app")
    raise AssertionError("unreachable")


def app_config(wado_root: str) -> str:
    """OHIF's `app-config.js` for a static tree at `wado_root`. `omitQuotationForMultipartRequest`
    keeps every request CORS-simple (an `Accept` without quotes), so a viewer on another
    origin than the tree sends no preflight."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "dcmweb",
        "configuration": {
            "friendlyName": "dcmweb static tree", "name": "dcmweb",
            "wadoUriRoot": wado_root, "qidoRoot": wado_root, "wadoRoot": wado_root,
            "qidoSupportsIncludeField": False, "imageRendering": "wadors",
            "thumbnailRendering": "thumbnailDirect", "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False, "supportsWildcard": True, "staticWado": True,
            "singlepart": "bulkdata,video", "bulkDataURI": {"enabled": True},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {
        "routerBasename": "/", "extensions": [], "modes": [], "showStudyList": True,
        "maxNumberOfWebWorkers": 1, "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False, "showLoadingIndicator": True,
        "defaultDataSourceName": "dcmweb", "dataSources": [source],
    }
    return "window.config = " + json.dumps(config, indent=2) + ";\n"


def viewer_app(dist: Path, wado_root: str, tree: Path | None = None) -> Starlette:
    """OHIF at /, its configuration pointing at `wado_root`; with `tree`, that tree is
    served under /dicomweb by `dcmweb serve`'s app (then `wado_root` is ORIGIN/dicomweb)."""
    index = dist / "index.html"

    async def config(request) -> Response:
        return Response(app_config(wado_root), media_type="application/javascript")

    async def spa(request, exc) -> Response:  # client-side routes such as /viewer
        return FileResponse(index)

    routes = [Route("/app-config.js", config)]
    if tree is not None:
        routes.append(Mount("/dicomweb", make_app(tree)))
    routes.append(Mount("/", StaticFiles(directory=dist, html=True)))
    return Starlette(routes=routes, exception_handlers={404: spa})


@dataclass
class Fetched:
    """One response the browser received: its URL, status and headers (lower-case names)."""

    url: str
    status: int
    headers: dict[str, str]


@dataclass
class Shown:
    """What OHIF showed: the best viewport's bright fraction and screenshot, the thumbnail
    images of its study browser (src, natural width) once loaded, the study list's text
    (when asked for) and every response the browser received."""

    bright: float = 0.0
    canvas: bytes = b""
    thumbnails: list[tuple[str, int]] = field(default_factory=list)
    study_list: str = ""
    fetched: list[Fetched] = field(default_factory=list)


_THUMBNAILS = """() => Array.from(document.querySelectorAll('img'))
    .filter(img => img.src.includes('/thumbnail'))
    .map(img => [img.src, img.complete ? img.naturalWidth : 0])"""


def bright_fraction(png: bytes) -> float:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return sum(histogram[40:]) / (image.size[0] * image.size[1])


def show(origin: str, study: str, screenshot: Path, *, study_list_shows: str = "") -> Shown:
    """Open OHIF at `origin` on `study` and wait (90 s at most) until a viewport is mostly
    bright and a thumbnail loaded. With `study_list_shows`, the study list (`/`) is opened
    first and its text kept once it contains that string (20 s at most)."""
    from playwright.sync_api import sync_playwright

    shown = Shown()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # no service worker (OHIF's dist registers one): each response is what the
        # network answered, with the server's headers
        page = browser.new_page(viewport={"width": 1280, "height": 900},
                                service_workers="block")
        page.on("response", lambda r: shown.fetched.append(
            Fetched(r.url, r.status, {k.lower(): v for k, v in r.all_headers().items()})))
        if study_list_shows:
            page.goto(f"{origin}/")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and study_list_shows not in shown.study_list:
                time.sleep(0.5)
                shown.study_list = page.inner_text("body")
        page.goto(f"{origin}/viewer?StudyInstanceUIDs={study}")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (
                shown.bright < 0.2 or not any(w for _, w in shown.thumbnails)):
            time.sleep(1)
            canvas = page.locator("canvas.cornerstone-canvas")
            if canvas.count():
                png = canvas.first.screenshot()
                fraction = bright_fraction(png)
                if fraction >= shown.bright:
                    shown.bright, shown.canvas = fraction, png
            shown.thumbnails = [tuple(t) for t in page.evaluate(_THUMBNAILS)]
        time.sleep(1)  # the image settles (progressive loading, VOI)
        canvas = page.locator("canvas.cornerstone-canvas")
        if canvas.count():
            shown.canvas = canvas.first.screenshot()
        page.screenshot(path=str(screenshot))
        browser.close()
    return shown


def correlation(canvas_png: bytes, rendered: bytes) -> float:
    """Pearson correlation of the viewport's image region with our rendering of the same
    frame, resized to it. OHIF fits the image to the viewport, centred: the region is
    the centred square of the viewport's smaller side (our samples are square)."""
    import numpy as np
    from PIL import Image

    canvas = Image.open(io.BytesIO(canvas_png)).convert("L")
    side = min(canvas.size)
    left, top = (canvas.size[0] - side) // 2, (canvas.size[1] - side) // 2
    shown = np.asarray(canvas.crop((left, top, left + side, top + side)), dtype=np.float64)
    ours = np.asarray(Image.open(io.BytesIO(rendered)).convert("L").resize(
        (side, side), Image.Resampling.BILINEAR), dtype=np.float64)
    margin = side // 8  # OHIF's corner overlays (patient, series text) stay outside
    shown, ours = shown[margin:-margin, margin:-margin], ours[margin:-margin, margin:-margin]
    return float(np.corrcoef(shown.ravel(), ours.ravel())[0, 1])


def windowed_ct(folder: Path, study_index: int) -> list[Path]:
    """Five 64x64 CT images of study `syn.uid(study_index)`, with a window over the stored
    range (rescaled -1024..3071) that shows all of it."""
    import pydicom

    from dcmweb_static import synthetic as syn

    paths = syn.ct_series(folder, 5, rows=64, columns=64, study_index=study_index)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.WindowCenter, ds.WindowWidth = "1024", "4096"
        ds.save_as(path)
    return paths


def first_shown(numbered: list[tuple[int, T]]) -> T:
    """The instance OHIF's stack viewport opens on, of (Instance Number, instance) pairs:
    the middle by Instance Number."""
    ordered = sorted(numbered, key=lambda pair: pair[0])
    return ordered[len(ordered) // 2][1]
