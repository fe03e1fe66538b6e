"""OHIF Viewer's prebuilt `dist/` (npm package @ohif/app, no build), served beside a tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dcmweb_static.serve.app import make_app

OHIF_VERSION = "3.13.2"
CACHE = Path(os.environ.get("DCMWEB_TEST_CACHE", Path.home() / ".cache" / "dcmweb-tests"))


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


def app_config(wado_root: str) -> str:
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


def viewer_app(dist: Path, tree: Path, origin: str) -> Starlette:
    """OHIF at /, its configuration pointing at the tree served under /dicomweb."""
    index = dist / "index.html"

    async def config(request) -> Response:
        return Response(app_config(origin + "/dicomweb"), media_type="application/javascript")

    async def spa(request, exc) -> Response:  # client-side routes such as /viewer
        return FileResponse(index)

    return Starlette(routes=[
        Route("/app-config.js", config),
        Mount("/dicomweb", make_app(tree)),
        Mount("/", StaticFiles(directory=dist, html=True)),
    ], exception_handlers={404: spa})
