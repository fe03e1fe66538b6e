"""`dcmweb serve`: the static tree as DICOMweb for local use (Starlette + uvicorn).

Every response is a file of the tree (QIDO queries are filtered from the index files),
sent with the headers a static server would send: application/dicom+json for metadata
and QIDO, multipart/related with the tree's boundary for frames and bulk data, gzip as
stored when the client accepts it, CORS for browser viewers, Range for bulk data.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from . import fsutil, jsonio
from .multipart import PART_FOOTER, response_content_type
from .qido_query import QueryError, apply_query
from .transfer_syntax import OCTET_STREAM
from .uids import InvalidUIDError, check_uid

DICOM_JSON = "application/dicom+json"
_SEGMENT_NAMES = {"study": "Study Instance UID", "series": "Series Instance UID",
                  "sop": "SOP Instance UID"}


class NotFound(Exception):
    pass


def _uids(request: Request) -> dict[str, str]:
    """The UIDs of the path, checked: a malformed one is a 400, never a path."""
    return {key: check_uid(request.path_params[key], name)
            for key, name in _SEGMENT_NAMES.items() if key in request.path_params}


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def make_app(root: Path) -> Starlette:
    root = root.resolve()

    def resource_response(request: Request, path: Path, media_type: str) -> Response:
        packed = path.with_name(path.name + ".gz")
        if packed.is_file():
            if _accepts_gzip(request):
                return FileResponse(packed, media_type=media_type,
                                    headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
            return Response(gzip.decompress(packed.read_bytes()), media_type=media_type,
                            headers={"Vary": "Accept-Encoding"})
        if path.is_file():
            return FileResponse(path, media_type=media_type)
        raise NotFound

    def read_resource(path: Path) -> bytes:
        data = fsutil.read_resource(path)
        if data is None:
            raise NotFound
        return data

    def study_dir(u: dict[str, str]) -> Path:
        folder = root / "studies" / u["study"]
        if not folder.is_dir():
            raise NotFound
        return folder

    def qido(request: Request, index: Path) -> Response:
        records = jsonio.loads(read_resource(index))
        selected = apply_query(records, list(request.query_params.multi_items()))
        return Response(jsonio.dumps(selected), media_type=DICOM_JSON)

    async def studies(request: Request) -> Response:
        wanted = request.query_params.get("StudyInstanceUID")
        if wanted and "," not in wanted and "\\" not in wanted:
            try:  # one study: its own index file
                return qido(request, root / "studies" / check_uid(wanted, "UID") / "index.json")
            except (NotFound, InvalidUIDError):
                return Response(b"[]", media_type=DICOM_JSON)
        return qido(request, root / "studies" / "index.json")

    async def series(request: Request) -> Response:
        u = _uids(request)
        return qido(request, study_dir(u) / "series" / "index.json")

    async def instances(request: Request) -> Response:
        u = _uids(request)
        return qido(request, study_dir(u) / "series" / u["series"] / "instances" / "index.json")

    async def metadata(request: Request) -> Response:
        u = _uids(request)
        folder = study_dir(u)
        if "series" in u:
            folder = folder / "series" / u["series"]
        if "sop" in u:
            folder = folder / "instances" / u["sop"]
        return resource_response(request, folder / "metadata", DICOM_JSON)

    def instance_dir(u: dict[str, str]) -> Path:
        return study_dir(u) / "series" / u["series"] / "instances" / u["sop"]

    async def frames(request: Request) -> Response:
        u = _uids(request)
        numbers = request.path_params["frames"].split(",")
        if not all(n.isdigit() and int(n) > 0 for n in numbers):
            return Response("frame numbers must be positive integers", status_code=400)
        files = [instance_dir(u) / "frames" / str(int(n)) for n in numbers]
        if not all(f.is_file() for f in files):
            raise NotFound
        media_type = _part_media_type(files[0])
        content_type = response_content_type(media_type)
        if len(files) == 1:
            return FileResponse(files[0], media_type=content_type)
        # several frames: one message; each part's closing delimiter dropped but the last
        body = b"".join(f.read_bytes()[: -len(PART_FOOTER)] + b"\r\n" for f in files)
        return Response(body[:-2] + PART_FOOTER, media_type=content_type)

    async def bulkdata(request: Request) -> Response:
        u = _uids(request)
        name = request.path_params["name"]
        if "/" in name or name.startswith("."):
            return Response("bad bulk data name", status_code=400)
        path = instance_dir(u) / "bulkdata" / name
        if not path.is_file():
            raise NotFound
        content_type = response_content_type(OCTET_STREAM)
        return FileResponse(path, media_type=content_type)

    async def not_found(request: Request, exc: Exception) -> Response:
        return Response("not found", status_code=404)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return Response(str(exc), status_code=400)

    study = "/studies/{study}"
    series_path = study + "/series/{series}"
    instance = series_path + "/instances/{sop}"
    routes = [
        Route("/studies", studies),
        Route(study + "/metadata", metadata),
        Route(study + "/series", series),
        Route(series_path + "/metadata", metadata),
        Route(series_path + "/instances", instances),
        Route(instance + "/metadata", metadata),
        Route(instance + "/frames/{frames}", frames),
        Route(instance + "/bulkdata/{name}", bulkdata),
    ]
    middleware = [Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD",
                  "OPTIONS"], allow_headers=["*"], expose_headers=["Content-Encoding",
                  "Content-Length", "Content-Range", "Content-Type"])]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={
        NotFound: not_found, InvalidUIDError: bad_request, QueryError: bad_request,
        404: not_found})


def _part_media_type(path: Path) -> str:
    """The media type named in a frame file's part header (without parameters)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-type:"):
            return line.split(b":", 1)[1].split(b";")[0].strip().decode("ascii")
    return "application/octet-stream"


def serve(root: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    import uvicorn

    uvicorn.run(make_app(root), host=host, port=port, log_level="warning")
