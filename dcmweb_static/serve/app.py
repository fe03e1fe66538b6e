"""`dcmweb serve`: the static tree as DICOMweb for local use (Starlette + uvicorn).

Every response is a file of the tree (QIDO queries are filtered from the index files),
sent with the headers a static server would send: application/dicom+json for metadata
and QIDO, multipart/related with the tree's boundary for frames and bulk data, gzip as
stored when the client accepts it, CORS for browser viewers, Range for bulk data. Studies,
series and instances themselves (WADO-RS retrieval of DICOM objects) are rebuilt from the
tree and streamed (`retrieve.py`).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..encode import jsonio
from ..encode.multipart import PART_FOOTER, response_content_type
from ..index.qido_match import QueryError, apply_query
from ..p10.transfer_syntax import OCTET_STREAM
from ..p10.uids import InvalidUIDError, check_uid
from ..store import LocalStore
from ..tree import urls
from ..tree.reader import TreeReader
from .accept import accepts
from .retrieve import retrieve
from .stow import StowConfig

DICOM_JSON = urls.DICOM_JSON
_SEGMENT_NAMES = {"study": "Study Instance UID", "series": "Series Instance UID",
                  "sop": "SOP Instance UID"}
_OTHER_PARAMETERS = ("frame", "name")


class NotFound(Exception):
    pass


def _uids(request: Request) -> dict[str, str]:
    """The UIDs of the path, checked: a malformed one is a 400, never a path."""
    checked = {key: check_uid(request.path_params[key], name)
               for key, name in _SEGMENT_NAMES.items() if key in request.path_params}
    checked.update((key, request.path_params[key]) for key in _OTHER_PARAMETERS
                   if key in request.path_params)
    return checked


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def make_app(root: Path, stow: StowConfig | None = None) -> Starlette:
    """The app; its routes are made from the URL table (`tree.urls.RESOURCES`), as the nginx
    config is, so both answer every URL from the same stored name. With `stow`, the
    `tree.urls.STORES` targets also take STOW-RS POSTs into the tree (`stow.py`); without
    it a POST is 405."""
    root = root.resolve()

    def stored_path(resource: urls.Resource, u: dict[str, str]) -> Path:
        return root / resource.stored_name("folder", False, **u)

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

    store = LocalStore(root)
    reader = TreeReader(store)

    def qido(request: Request, resource: urls.Resource, u: dict[str, str]) -> Response:
        data = reader.resource(resource.key, **u)
        if data is None:
            raise NotFound
        records = jsonio.loads(data)
        selected = apply_query(records, list(request.query_params.multi_items()))
        return Response(jsonio.dumps(selected), media_type=DICOM_JSON)

    def query_response(resource: urls.Resource, request: Request, u: dict[str, str]) -> Response:
        record = urls.STUDY_RECORD
        wanted = request.query_params.get(record.query or "")
        if resource.url == record.url and wanted and "," not in wanted and "\\" not in wanted:
            try:  # one study: its own record
                uid = check_uid(wanted, "UID")
            except InvalidUIDError:
                return Response(b"[]", media_type=DICOM_JSON)
            try:
                return qido(request, record, {"study": uid})
            except NotFound:
                return Response(b"[]", media_type=DICOM_JSON)
        if "study" in u and not (root / urls.study_path(u["study"])).is_dir():
            raise NotFound
        return qido(request, resource, u)

    def frames_response(resource: urls.Resource, u: dict[str, str]) -> Response:
        numbers = u.pop("frame").split(",")
        if not all(n.isdigit() and int(n) > 0 for n in numbers):
            return Response("frame numbers must be positive integers", status_code=400)
        files = [stored_path(resource, {**u, "frame": str(int(n))}) for n in numbers]
        if not all(f.is_file() for f in files):
            raise NotFound
        content_type = response_content_type(_part_media_type(files[0]))
        if len(files) == 1:
            return FileResponse(files[0], media_type=content_type)
        # several frames: one message; each part's closing delimiter dropped but the last
        body = b"".join(f.read_bytes()[: -len(PART_FOOTER)] + b"\r\n" for f in files)
        return Response(body[:-2] + PART_FOOTER, media_type=content_type)

    def bulkdata_response(resource: urls.Resource, u: dict[str, str]) -> Response:
        if not re.fullmatch(urls.PARAMETERS["name"], u["name"]):
            return Response("bad bulk data name", status_code=400)
        path = stored_path(resource, u)
        if not path.is_file():
            raise NotFound
        return FileResponse(path, media_type=response_content_type(OCTET_STREAM))

    def rendered_response(request: Request, resource: urls.Resource,
                          u: dict[str, str]) -> Response:
        for suffix, media_type in urls.RENDERED_TYPES.items():
            path = root / resource.stored_name("folder", False, ext=suffix, **u)
            if path.is_file():
                # the `accept` query parameter (PS3.18 8.3.3.1) overrides the header
                wanted = request.query_params.get("accept") or request.headers.get("accept")
                if not accepts(wanted, media_type):
                    return Response(f"stored as {media_type} only", status_code=406)
                return FileResponse(path, media_type=media_type)
        raise NotFound

    def endpoint(resource: urls.Resource):
        async def respond(request: Request) -> Response:
            u = _uids(request)
            if resource.kind == "qido":
                return query_response(resource, request, u)
            if resource.kind == "metadata":
                return resource_response(request, stored_path(resource, u), DICOM_JSON)
            if resource.kind == "frame":
                return frames_response(resource, u)
            if resource.kind == "dicom":
                return retrieve(root, request.headers.get("accept"), **u)
            if resource.kind == "rendered":
                return rendered_response(request, resource, u)
            return bulkdata_response(resource, u)
        return respond

    async def not_found(request: Request, exc: Exception) -> Response:
        return Response("not found", status_code=404)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return Response(str(exc), status_code=400)

    routes = [Route("/" + resource.url, endpoint(resource))
              for resource in (*urls.RESOURCES, *urls.RETRIEVALS)]
    methods = ["GET", "HEAD", "OPTIONS"]
    lifespan = None
    if stow is not None:
        async def store_instances(request: Request) -> Response:
            return await request.app.state.stow(request)

        # a POST to a URL that also answers GET: Starlette takes the route whose method
        # matches, so these sit beside the GET routes of the same paths
        routes += [Route("/" + resource.url, store_instances, methods=["POST"])
                   for resource in urls.STORES]
        methods.append("POST")

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            with stow.running(store) as receiver:  # the ingest lives as long as the server
                app.state.stow = receiver
                yield

    middleware = [Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=methods,
                  allow_headers=["*"], expose_headers=["Content-Encoding",
                  "Content-Length", "Content-Range", "Content-Type"])]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers={NotFound: not_found, InvalidUIDError: bad_request,
                                         QueryError: bad_request, 404: not_found})


def _part_media_type(path: Path) -> str:
    """The media type named in a frame file's part header (without parameters)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-type:"):
            return line.split(b":", 1)[1].split(b";")[0].strip().decode("ascii")
    return "application/octet-stream"


def serve(root: Path, host: str = "127.0.0.1", port: int = 8080,
          stow: StowConfig | None = None) -> None:
    import uvicorn

    uvicorn.run(make_app(root, stow), host=host, port=port, log_level="warning")
