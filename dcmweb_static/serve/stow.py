"""STOW-RS (PS3.18 10.5) for `dcmweb serve --stow`: `POST /studies[/{study}]` of
`multipart/related; type="application/dicom"`, straight into the tree being served.

The body is read as it arrives (`request.stream()`), split by `multipart_body`, and each
part is spooled into an unnamed temp file in the store's staging area (same file system
as the tree, gone with the process even after `kill -9`): a study is never whole in
memory. Each part is then identified (its UIDs, checked) and handed to the receive
seam (`receive.ingest.Ingest.receive`, the code path of the batch), off the event loop in
a worker thread; an instance is listed as stored only after the ingest has committed it
(one rename: readers see it whole or not at all) — the study, series and QIDO files
follow, debounced and atomic. The answer is the Store Instances Response (PS3.18
10.5.3) in DICOM JSON: 200 all stored, 202 some failed, 409 none stored; a request that
is no such message is 400 or 415 and nothing is read of it.

Writes need protection: with a token (`--token-file`) every POST must carry
`Authorization: Bearer <token>` (compared in constant time) or gets 401 before a byte of
its body is read. Reads (GET) stay open, as a static server's are.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio.to_thread
import pluggy
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..encode import jsonio
from ..errors import OptionError, describe
from ..p10.parse import parse_p10
from ..p10.uids import InvalidUIDError, check_uid
from ..receive.ingest import CANNOT_UNDERSTAND, DATA_SET_MISMATCH, OUT_OF_RESOURCES, Ingest, Receipt
from ..run.options import ConvertOptions
from ..run.source import Source
from ..store import StagingArea, Store, describe_os_error
from ..tree import urls
from .accept import accepts
from .multipart_body import (
    BadMultipart,
    MultipartReader,
    PartData,
    PartEnd,
    PartStart,
    UnsupportedType,
    multipart_boundary,
)

log = logging.getLogger("dcmweb.stow")

DICOM_JSON = urls.DICOM_JSON
#: Failure Reasons (PS3.18 10.5.3: the C-STORE statuses of PS3.4 B.2.3 and PS3.7 C), as
#: the C-STORE listener answers them (`receive.ingest`): out of resources (a part over the
#: size limit or past the part limit, a tree that cannot be written), data set mismatch
#: (an instance of another study than the request's target), cannot understand (no DICOM
#: data set we can convert, or not application/dicom), duplicate SOP instance (the SOP
#: Instance UID is stored with other content)
#: a private block of the response carrying the failure's one-line reason as text
REASON_CREATOR = ("00090010", "DCMWEB")
REASON_TAG = "00091001"
#: a minimum so that a token file holding a placeholder is refused
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class StowSettings:
    """What `--stow` was asked for."""

    #: the bearer token every POST must carry; None: no check (loopback use)
    token: str | None = None
    #: parts per request; those past it fail with OUT_OF_RESOURCES, unread
    max_parts: int = 10_000
    #: bytes per part; a larger part fails with OUT_OF_RESOURCES (the rest is skipped)
    max_part_bytes: int = 4 << 30
    #: the base of the response's RetrieveURLs (`--base-url`); else the address the
    #: server listens on (never the request's Host header, which the client makes up)
    base_url: str | None = None


@dataclass(frozen=True)
class StowConfig:
    """`dcmweb serve --stow`: how received instances are converted, and the checks."""

    options: ConvertOptions
    plugin_manager: pluggy.PluginManager
    settings: StowSettings = field(default_factory=StowSettings)
    #: seconds after a study's last instance before its study/series/QIDO files follow
    debounce_seconds: float = 2.0

    @contextmanager
    def running(self, store: Store) -> Iterator[StowReceiver]:
        """The receiver for the server's life: the store's session (the spools' staging
        area, opened first so it outlives the ingest's) and the ingest, closed (its
        pending studies aggregated) when the server stops."""
        with store.session() as staging, Ingest(store, self.options, self.plugin_manager,
                                                debounce_seconds=self.debounce_seconds) as ingest:
            yield StowReceiver(ingest.store_instance, staging, self.settings)


def read_token(path: Path) -> str:
    """The token in `path` (surrounding white space dropped). The file must be a regular
    file no other user can read or write (as ssh demands of a key): a token anyone on the
    machine can read protects nothing. Raises OptionError with a one-line reason."""
    try:
        info = os.stat(path)
        with open(path, "rb") as handle:
            raw = handle.read(4097)
    except OSError as exc:
        raise OptionError(f"token file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OptionError(f"token file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise OptionError(f"token file {path} is readable or writable by others "
                          f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise OptionError(f"token file {path} is not ASCII text") from None
    if len(raw) > 4096 or not token.isprintable() or " " in token:
        raise OptionError(f"token file {path} must hold one token of printable characters")
    if len(token) < MIN_TOKEN_LENGTH:
        raise OptionError(f"token in {path} is shorter than {MIN_TOKEN_LENGTH} characters")
    return token


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` as a Bearer credential (RFC 6750),
    compared in constant time."""
    scheme, _, credential = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credential.strip().encode(), token.encode())


@dataclass
class Outcome:
    """One part's fate: stored (`url` set) or failed (`code`, `reason`)."""

    sop_class: str | None = None
    sop: str | None = None
    url: str | None = None
    study: str | None = None
    code: int | None = None
    reason: str | None = None


@dataclass
class _Part:
    """The part being received: spooled to a temp file unless it is skipped."""

    spool: BinaryIO | None
    size: int = 0
    outcome: Outcome | None = None  # set when it failed before its end (skipped)


@dataclass
class StowReceiver:
    """The POST endpoint: `receive` is the seam's `Ingest.store_instance` (thread-safe,
    returns after the commit with the status to answer), `staging` the store session's
    area for the spools."""

    receive: Callable[[Source], Receipt]
    staging: StagingArea
    settings: StowSettings = field(default_factory=StowSettings)
    #: identification and ingest of one part at a time in this process: the ingest
    #: converts one at a time anyway, and pydicom's warnings of an identification must
    #: not land in the warnings a conversion records (`warnings.catch_warnings` is
    #: process-wide); reading the requests goes on meanwhile
    _one_at_a_time: threading.Lock = field(default_factory=threading.Lock, repr=False)

    async def __call__(self, request: Request) -> Response:
        token = self.settings.token
        if token is not None and not authorized(request.headers.get("authorization"), token):
            return Response("a bearer token is required", status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="dcmweb"'})
        wanted = request.headers.get("accept")
        if not (accepts(wanted, DICOM_JSON) or accepts(wanted, "application/json")):
            return Response(f"the store response is {DICOM_JSON}", status_code=406)
        try:
            target = (check_uid(request.path_params["study"], "Study Instance UID")
                      if "study" in request.path_params else None)
            reader = MultipartReader(multipart_boundary(request.headers.get("content-type"),
                                                        urls.DICOM))
        except UnsupportedType as exc:
            return Response(str(exc), status_code=415)
        except (BadMultipart, InvalidUIDError) as exc:
            return Response(str(exc), status_code=400)
        outcomes: list[Outcome] = []
        part: _Part | None = None
        # the part before this one, converting in a thread while this one arrives: one at
        # a time per request, so outcomes keep the parts' order and two spools at most
        # exist per request
        converting: asyncio.Task[Outcome] | None = None
        base = self.settings.base_url or _server_url(request)

        async def settle() -> None:
            nonlocal converting
            if converting is not None:
                task, converting = converting, None
                outcomes.append(await task)

        try:
            async for chunk in request.stream():
                for event in reader.feed(chunk):
                    if isinstance(event, PartStart):
                        part = self._start(event)
                    elif isinstance(event, PartData):
                        assert part is not None
                        self._write(part, event.data)
                    elif isinstance(event, PartEnd):
                        assert part is not None
                        await settle()
                        converting = asyncio.create_task(self._finish(part, target, base))
                        part = None
            reader.finish()
            await settle()
        except ClientDisconnect:  # nobody to answer; the part before is still stored
            await settle()
            log.warning("STOW-RS: the client went away after %d parts", len(outcomes))
            return Response(status_code=400)
        except BadMultipart as exc:
            await settle()
            if not outcomes:
                return Response(str(exc), status_code=400)
            outcomes.append(Outcome(code=CANNOT_UNDERSTAND, reason=str(exc)))
        finally:
            if part is not None and part.spool is not None:
                part.spool.close()
            if converting is not None:  # the client went away: the thread still ends
                converting.cancel()  # (it is not abandoned), then its spool is closed
                converting.add_done_callback(_retrieved)
        if not outcomes:
            return Response("the message holds no part", status_code=400)
        return store_response(outcomes, base, target)

    def _start(self, event: PartStart) -> _Part:
        number = event.number
        if number > self.settings.max_parts:
            return _Part(None, outcome=Outcome(
                code=OUT_OF_RESOURCES,
                reason=f"more than {self.settings.max_parts} parts in one request"))
        if event.media_type != urls.DICOM:
            return _Part(None, outcome=Outcome(
                code=CANNOT_UNDERSTAND,
                reason=f"part {number} is {event.media_type}, not {urls.DICOM}"))
        try:
            return _Part(self.staging.temporary_file())
        except OSError as exc:
            return _Part(None, outcome=_no_room(exc))

    def _write(self, part: _Part, data: bytes) -> None:
        """Append to the part's spool (on the event loop: a local write of one chunk); a
        part over the limit or a full disk fails alone, the rest of it is skipped."""
        if part.spool is None:
            return
        part.size += len(data)
        try:
            if part.size > self.settings.max_part_bytes:
                part.outcome = Outcome(code=OUT_OF_RESOURCES, reason=(
                    f"part larger than the limit of {self.settings.max_part_bytes} bytes"))
            else:
                part.spool.write(data)
                return
        except OSError as exc:
            part.outcome = _no_room(exc)
        part.spool.close()
        part.spool = None

    async def _finish(self, part: _Part, target: str | None, base: str) -> Outcome:
        if part.spool is None:
            assert part.outcome is not None
            return part.outcome
        spool, part.spool = part.spool, None
        try:
            return await anyio.to_thread.run_sync(self._store, spool, target, base)
        finally:
            spool.close()

    def _store(self, spool: BinaryIO, target: str | None, base: str) -> Outcome:
        """Identify and ingest one spooled part (in a worker thread; never raises)."""
        with self._one_at_a_time:
            return self._store_alone(spool, target, base)

    def _store_alone(self, spool: BinaryIO, target: str | None, base: str) -> Outcome:
        spool.flush()
        try:
            identity = identify(spool, self.staging)
        except Exception as exc:  # a part that is no readable data set
            return Outcome(code=CANNOT_UNDERSTAND, reason=describe(exc))
        sop_class, sop, study = identity
        outcome = Outcome(sop_class=sop_class, sop=sop, study=study)
        if target is not None and study != target:
            outcome.code, outcome.reason = DATA_SET_MISMATCH, (
                f"Study Instance UID {study} is not the request's study {target}")
            return outcome
        try:
            receipt = self.receive(Source.from_stream(spool, f"stow:{sop}"))
        except Exception as exc:  # the seam never raises; a bug must not kill the request
            log.exception("ingest of %s raised", sop)
            outcome.code, outcome.reason = OUT_OF_RESOURCES, describe(exc)
            return outcome
        result = receipt.result
        if receipt.ok:  # converted, or the same bytes again
            outcome.study = result.study_uid or study
            outcome.sop = result.sop_uid or sop
            outcome.url = base + "/" + urls.instance_path(
                outcome.study, result.series_uid or "", outcome.sop)
            return outcome
        outcome.code, outcome.reason = receipt.status, result.reason or result.status
        log.warning("STOW-RS: %s failed: %s", sop, outcome.reason)
        return outcome


def _no_room(exc: OSError) -> Outcome:
    return Outcome(code=OUT_OF_RESOURCES,
                   reason=f"cannot spool the part: {describe_os_error(exc)}")


def _retrieved(task: asyncio.Task[Outcome]) -> None:
    """Collects a cancelled conversion's end (so asyncio logs no unretrieved error)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("STOW-RS conversion ended with %s", task.exception())


def _server_url(request: Request) -> str:
    host, port = request.scope.get("server") or ("127.0.0.1", 80)
    host = f"[{host}]" if ":" in host else host
    return f"{request.url.scheme}://{host}:{port}{request.scope.get('root_path', '')}"


def identify(stream: BinaryIO, staging: StagingArea) -> tuple[str, str, str]:
    """(SOP Class UID, SOP Instance UID, Study Instance UID) of a spooled part, checked
    (they go into the response). Parsed with the batch's reader, values deferred."""
    stream.seek(0)
    parsed = parse_p10(stream, defer_size=256, spool=staging.temporary_file)
    try:
        ds = parsed.dataset
        return (check_uid(ds.get("SOPClassUID"), "SOP Class UID"),
                check_uid(ds.get("SOPInstanceUID"), "SOP Instance UID"),
                check_uid(ds.get("StudyInstanceUID"), "Study Instance UID"))
    finally:
        if parsed.stream is not stream:
            parsed.stream.close()


def _uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


def store_response(outcomes: list[Outcome], base: str, target: str | None) -> Response:
    """The Store Instances Response (PS3.18 10.5.3) as DICOM JSON with its HTTP status."""
    stored = [o for o in outcomes if o.code is None]
    failed = [o for o in outcomes if o.code is not None]
    body: dict[str, Any] = {}
    studies = {o.study for o in stored}
    study = target or (studies.pop() if len(studies) == 1 else None)
    body["00081190"] = {"vr": "UR", **({"Value": [f"{base}/{urls.study_path(study)}"]}
                                       if study and stored else {})}
    if failed:
        items = []
        for o in failed:
            item: dict[str, Any] = {}
            if o.sop_class:
                item["00081150"] = _uid(o.sop_class)
            if o.sop:
                item["00081155"] = _uid(o.sop)
            item["00081197"] = {"vr": "US", "Value": [o.code]}
            item[REASON_CREATOR[0]] = {"vr": "LO", "Value": [REASON_CREATOR[1]]}
            item[REASON_TAG] = {"vr": "LT", "Value": [_one_line(o.reason or "")]}
            items.append(item)
        body["00081198"] = {"vr": "SQ", "Value": items}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [
            {"00081150": _uid(o.sop_class or ""), "00081155": _uid(o.sop or ""),
             "00081190": {"vr": "UR", "Value": [o.url]}} for o in stored]}
    status = 200 if not failed else 202 if stored else 409
    return Response(jsonio.dumps(body), status_code=status, media_type=DICOM_JSON)


def _one_line(text: str) -> str:
    """A reason as one line of at most 1024 characters (LT allows 10240)."""
    line = " ".join(text.split())
    return line if len(line) <= 1024 else line[:1021] + "..."
