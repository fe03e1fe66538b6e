"""Convert one P10 file into a staged instance folder (metadata, frames, bulk data, info).

The folder is built under the output's staging area and moved into the tree by
`commit_instance`, so an instance appears whole or not at all. `convert_file` never
raises: every outcome, failures included, is a `InstanceResult`.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydicom.dataset import Dataset

from . import dedup, jsonio, layout, plugins
from .errors import ConversionError, UnframeableError
from .frames import FrameLayout, frame_layout
from .fsutil import GZIP_LEVEL, gzip_bytes
from .info import build_info
from .inputs import NotRegularFile, open_regular
from .jsonmodel import AVAILABLE_TRANSFER_SYNTAX_UID, BulkThresholds, JsonEncoder
from .kept_header import bulk_cuts, frame_cuts, write_kept_header
from .multipart import (
    COPY_BLOCK,
    PayloadCopier,
    content_type,
    part_header,
    read_part_body,
)
from .p10 import MAX_INFLATED_SIZE, ParsedP10, parse_p10
from .parts_writer import BulkWriter, frame_copy_threads, write_frames
from .pathnames import display_path, path_fields
from .results import InstanceView, write_results
from .source_scan import OVERLAP_SCAN_BYTES, ScanThread, scan_source
from .transfer_syntax import EXPLICIT_VR_LITTLE_ENDIAN, lookup
from .uids import InvalidUIDError, check_uid

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class ConvertOptions:
    """Everything a worker needs; small and picklable."""

    output: Path
    gzip: bool = True
    gzip_level: int = GZIP_LEVEL
    thresholds: BulkThresholds = field(default_factory=BulkThresholds)
    base_url: str | None = None
    #: write the deduplicated form; with `instances` also the per-instance metadata files
    deduplicate: bool = False
    instances: bool = True
    #: named transforms (``--plugin``), applied in this order, and their options
    plugins: tuple[str, ...] = ()
    plugin_options: dict[str, dict[str, str]] = field(default_factory=dict)
    #: a deflated data set inflating to more bytes fails (``--max-inflated-size``)
    max_inflated_size: int = MAX_INFLATED_SIZE


@dataclass(slots=True)
class InstanceResult:
    path: str
    status: str  # "converted", "failed", "skipped" (and "duplicate", decided when committing)
    reason: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    sha256: str | None = None
    frames: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    staging: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: seconds per stage (scan, parse, encode, frames, gzip, write), for the benchmark
    timings: dict[str, float] = field(default_factory=dict)
    #: the worker's peak RSS after this file (set on the last file of a task)
    worker_peak_rss_kib: int = 0

    def report_record(self) -> dict[str, Any]:
        record = {
            **path_fields(self.path),
            "status": self.status,
            "reason": display_path(self.reason) if self.reason else None,
            "study_instance_uid": self.study_uid,
            "series_instance_uid": self.series_uid,
            "sop_instance_uid": self.sop_uid,
            "sha256": self.sha256,
            "frames": self.frames,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "warnings": [display_path(w) for w in self.warnings] or None,
        }
        return {k: v for k, v in record.items() if v is not None}


class _Clock:
    """Adds the time since the last lap to a stage of `timings`."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
        self.last = now


def _pixel_vr(parsed: ParsedP10) -> str:
    pixel = parsed.pixel_data
    assert pixel is not None
    if pixel.tag == 0x7FE00008:
        return "OF"
    if pixel.tag == 0x7FE00009:
        return "OD"
    if pixel.encapsulated:
        return "OB"
    if pixel.vr in ("OB", "OW"):
        return pixel.vr
    bits = parsed.dataset.get("BitsAllocated", 16)
    return "OW" if int(bits or 16) > 8 else "OB"


def convert_file(path: str | os.PathLike[str], options: ConvertOptions, staging_root: Path,
                 buffer: bytearray | None = None) -> InstanceResult:
    """Convert `path` into a new folder under `staging_root`. Never raises.

    pydicom's warnings about the file (invalid values, VR mismatches) are kept in the
    result for the report instead of being printed from the worker processes.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _convert_file(path, options, staging_root, buffer)
    result.warnings = sorted(set(result.warnings) | {str(w.message) for w in caught})
    return result


def _convert_file(path: str | os.PathLike[str], options: ConvertOptions, staging_root: Path,
                  buffer: bytearray | None) -> InstanceResult:
    started = time.perf_counter()
    result = InstanceResult(path=str(path), status="failed")
    clock = _Clock(result.timings)
    staging: Path | None = None
    buffer = buffer if buffer is not None else bytearray(COPY_BLOCK)
    try:
        with open_regular(path) as fp, ExitStack() as cleanup:
            size = os.fstat(fp.fileno()).st_size
            scan: ScanThread | None = None
            if size >= OVERLAP_SCAN_BYTES:
                # a big file: checksum it on a second core while its frames are copied
                scan = ScanThread(path)
                scan.start()
                has_delimiter = False  # assumed; checked when the scan is done
            else:
                result.sha256, result.bytes_in, has_delimiter = scan_source(fp, buffer)
                clock.lap("scan")
            fp.seek(0)
            defer = max(options.thresholds.public, options.thresholds.private)
            parsed = parse_p10(fp, defer_size=defer, scratch_dir=staging_root,
                               max_inflated_size=options.max_inflated_size)
            cleanup.callback(parsed.stream.close)  # a deflated file's inflated copy
            if str(parsed.file_meta.get("MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS:
                result.status = "skipped"
                result.reason = "DICOMDIR (media directory), not an instance"
                return result
            ds = parsed.dataset
            apply_transforms(ds, options)
            result.study_uid = check_uid(ds.get("StudyInstanceUID"), "Study Instance UID")
            result.series_uid = check_uid(ds.get("SeriesInstanceUID"), "Series Instance UID")
            result.sop_uid = check_uid(ds.get("SOPInstanceUID"), "SOP Instance UID")
            staging = Path(staging_root) / f"{result.sop_uid}.{os.getpid()}.{time.monotonic_ns()}"
            staging.mkdir(parents=True)
            if parsed.payload_has_delimiter is not None:  # payloads are the inflated bytes
                has_delimiter = parsed.payload_has_delimiter
            copier = PayloadCopier(parsed.stream, buffer, kernel=not has_delimiter)
            clock.lap("parse")
            written, frames, media_type, bulk_ranges = _write_instance(
                parsed, result, options, staging, copier, clock)
            if scan is not None:
                result.sha256, result.bytes_in, has_delimiter = scan.outcome()
                clock.lap("scan")
                if has_delimiter:  # rare: write it again, every payload checked
                    shutil.rmtree(staging)
                    staging.mkdir()
                    copier = PayloadCopier(parsed.stream, buffer, kernel=False)
                    written, frames, media_type, bulk_ranges = _write_instance(
                        parsed, result, options, staging, copier, clock)
            kept, rebuild = 0, None
            if not options.plugins:  # never for a transformed instance: original values
                clock.lap("write")  # what came since the frames (plugin results) is writing
                kept, rebuild = _keep_header(parsed, fp, staging, frames, bulk_ranges)
                clock.lap("header")
            # info last: it records the checksum, known only now for an overlapped scan
            result.bytes_out = written + kept + _write_info(parsed, result, options, staging,
                                                            frames, media_type, rebuild)
            clock.lap("write")
        result.status = "converted"
        result.staging = str(staging)
    except (ConversionError, InvalidUIDError) as exc:
        result.reason = str(exc)
    except NotImplementedError as exc:  # pydicom converting a value of an unknown VR
        result.reason = f"malformed data set: {exc}"
    except NotRegularFile as exc:
        result.status, result.reason = "skipped", str(exc)
    except OSError as exc:
        result.reason = f"{type(exc).__name__}: {exc.strerror or exc}"
    except RecursionError:  # only sequence nesting recurses this deep (pydicom's reader)
        result.reason = (f"sequences nested more than {jsonio.MAX_SEQUENCE_DEPTH} levels deep "
                         "(too deep to read)")
    except Exception as exc:  # an input must never stop the batch; keep the reason
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result.reason = (f"unexpected {type(exc).__name__}: {exc} "
                         f"(at {Path(last.filename).name}:{last.lineno})")
    finally:
        result.seconds = time.perf_counter() - started
        if result.status != "converted" and staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return result


def apply_transforms(ds: Dataset, options: ConvertOptions) -> None:
    if not options.plugins:
        return
    registry = plugins.transforms()
    for name in options.plugins:
        transform = registry.get(name)
        if transform is None:
            raise ConversionError(f"no transform named {name!r} is installed")
        try:
            transform.function(ds, options.plugin_options.get(name, {}))
        except Exception as exc:  # named, so the report says which plugin to look at
            raise plugins.PluginError(transform.plugin, f"transform {name!r}", exc) from exc


def _write_instance(parsed: ParsedP10, result: InstanceResult, options: ConvertOptions,
                    staging: Path, copier: PayloadCopier, clock: _Clock
                    ) -> tuple[int, FrameLayout | None, str, list[tuple[str, int, int]]]:
    """Write metadata, frames, bulk data and plugin results into `staging`; sets
    result.frames; returns (bytes written, the frame layout, the frames' media type, the
    bulk values copied from source ranges)."""
    assert result.study_uid and result.series_uid and result.sop_uid
    ds = parsed.dataset
    pixel = parsed.pixel_data
    ts = lookup(parsed.transfer_syntax_uid,
                pixel_length_undefined=pixel.encapsulated if pixel else None)
    uri_prefix = ""
    if options.base_url:
        uri_prefix = (options.base_url.rstrip("/") + "/"
                      + layout.instance_url_path(result.study_uid, result.series_uid,
                                                 result.sop_uid) + "/")
    bulk = BulkWriter(staging / "bulkdata", uri_prefix, copier)
    encoder = JsonEncoder(options.thresholds, bulk, parsed.stream)
    metadata = encoder.dataset(ds)
    result.warnings.extend(encoder.warnings)
    # Frames of a deflated file are the inflated, explicit VR little endian bytes: the
    # syntax named in metadata and in each frame's part always describes those bytes.
    frame_syntax = EXPLICIT_VR_LITTLE_ENDIAN if parsed.deflated else parsed.transfer_syntax_uid
    metadata[f"{AVAILABLE_TRANSFER_SYNTAX_UID:08X}"] = {"vr": "UI", "Value": [frame_syntax]}
    written = bulk.written
    clock.lap("encode")
    layout_: FrameLayout | None = None
    if pixel is not None:
        try:
            layout_ = frame_layout(ds, pixel, ts, parsed.stream)
        except UnframeableError as exc:
            # Without Rows/Columns/... there are no frames to cut, but the value is still
            # published whole as bulk data: nothing in the source is dropped.
            result.warnings.append(f"{exc}; Pixel Data published as one bulk data value")
            start = pixel.value_offset
            end = pixel.end_offset
            uri = bulk.add(f"{pixel.tag:08X}", None, (start, end - start))
            metadata[f"{pixel.tag:08X}"] = {"vr": _pixel_vr(parsed), "BulkDataURI": uri}
            written = bulk.written
    if layout_ is not None:
        assert pixel is not None
        metadata[f"{pixel.tag:08X}"] = {"vr": _pixel_vr(parsed),
                                        "BulkDataURI": f"{uri_prefix}frames"}
        frames_dir = staging / "frames"
        frames_dir.mkdir()
        header = part_header(content_type(ts.media_type, frame_syntax))
        threads = frame_copy_threads(pixel.end_offset - pixel.value_offset)
        written += write_frames(frames_dir, header, layout_.frames, copier, threads)
    clock.lap("frames")
    metadata = dict(sorted(metadata.items()))
    document = b""
    if options.deduplicate:
        record = dedup.instance_record(options.output, metadata)
        (staging / dedup.STAGED_RECORD).write_bytes(gzip_bytes(record))
    if options.instances or not options.deduplicate:
        document = jsonio.dumps([metadata])
        clock.lap("encode")
        if options.gzip:
            document = gzip_bytes(document, options.gzip_level)
            clock.lap("gzip")
        (staging / layout.metadata_name(options.gzip)).write_bytes(document)
    view = InstanceView(result.study_uid, result.series_uid, result.sop_uid, frame_syntax, ds,
                        metadata, len(layout_.frames) if layout_ else 0, staging,
                        lambda n: read_part_body(staging / "frames" / str(n)))
    for results in plugins.run_hook(plugins.get_plugin_manager(), "instance_results",
                                    {"instance": view}):
        write_results(options.output, staging, results)
    result.frames = len(layout_.frames) if layout_ else 0
    return written + len(document), layout_, ts.media_type, bulk.source_ranges


def _keep_header(parsed: ParsedP10, source: BinaryIO, staging: Path,
                 frames: FrameLayout | None, bulk_ranges: list[tuple[str, int, int]]
                 ) -> tuple[int, dict[str, Any]]:
    """Write the kept header (kept_header.py): the data set bytes the tree does not hold."""
    cuts = bulk_cuts(bulk_ranges) + (frame_cuts(frames.frames) if frames else [])
    if parsed.deflated:  # offsets are in the inflated data set; the source is deflated
        return write_kept_header(parsed.stream, 0, parsed.stream_size, cuts, staging,
                                 source=source, deflated_from=parsed.dataset_offset)
    return write_kept_header(parsed.stream, parsed.dataset_offset, parsed.stream_size, cuts,
                             staging)


def _write_info(parsed: ParsedP10, result: InstanceResult, options: ConvertOptions,
                staging: Path, frames: FrameLayout | None, media_type: str,
                rebuild: dict[str, Any] | None = None) -> int:
    info = build_info(parsed, source_path=os.path.abspath(result.path),
                      source_size=result.bytes_in, sha256=result.sha256 or "",
                      frames=frames, gzip=options.gzip, media_type=media_type,
                      transforms=options.plugins)
    if rebuild is not None:
        info["rebuild"] = rebuild
    info_bytes = orjson.dumps(info, option=orjson.OPT_INDENT_2)
    (staging / "info").write_bytes(info_bytes)
    return len(info_bytes)

