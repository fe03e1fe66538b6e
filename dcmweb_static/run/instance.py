"""Convert one source into a staged instance folder (metadata, frames, bulk data, info).

The folder is staged in the run's staging area and committed into the tree by the
parent, so an instance appears whole or not at all. `InstanceConverter.convert` never
raises: every outcome, failures included, is an `InstanceResult`.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson
import pluggy

from ..encode import dedup, jsonio
from ..encode.dicom_json import AVAILABLE_TRANSFER_SYNTAX_UID, JsonEncoder
from ..encode.gzip_stream import gzip_bytes
from ..encode.info_record import build_info
from ..encode.kept_header import bulk_cuts, frame_cuts, write_kept_header
from ..encode.multipart import (
    COPY_BLOCK,
    DelimiterScan,
    PayloadCopier,
    content_type,
    dicom_message,
    part_body,
    part_header,
)
from ..encode.p10_writer import RebuildError
from ..encode.parts import BulkWriter, frame_copy_threads, write_frames
from ..errors import ConversionError, InvalidUIDError, NotRegularFile, UnframeableError
from ..p10.datasets import int_value, uid_value
from ..p10.frames import FrameLayout, frame_layout
from ..p10.parse import MAX_SEQUENCE_DEPTH, ParsedP10, parse_p10, parse_plain
from ..p10.plain import NotPlain
from ..p10.transfer_syntax import EXPLICIT_VR_LITTLE_ENDIAN, FRAME_MEDIA_TYPES, lookup
from ..p10.uids import check_uid
from ..plugins.api import InstanceView, by_folder
from ..plugins.manager import PluginError, Transform, get_plugin_manager, run_hook, transforms
from ..store import StagedInstance, StagingArea
from ..tree import names, urls
from ..tree.part10 import folder_chunks, transfer_syntax
from .inputs import open_regular
from .options import ConvertOptions
from .result import InstanceResult
from .source import Source
from .source_scan import (
    MAP_SCAN_BYTES,
    OVERLAP_SCAN_BYTES,
    ScanThread,
    scan_mapped,
    scan_source,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


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
    bits = int_value(parsed.dataset, "BitsAllocated", 16)
    return "OW" if int(bits or 16) > 8 else "OB"


def plain_possible(options: ConvertOptions, plugin_manager: pluggy.PluginManager) -> bool:
    """Whether a run's sources are tried as plain files (p10/plain.py: no pydicom):
    not when something needs pydicom's Dataset anyway (a transform, the renderer, a
    plugin that sees the instance)."""
    return not (options.plugins or options.rendered or options.thumbnails
                or plugin_manager.hook.instance_results.get_hookimpls())


#: the largest first input the parent reads on trial (a 512² 16-bit slice and its header;
#: a hostile file of tiny elements then costs the parent tens of MB for a moment), and
#: the most top-level elements it encodes (a CT header has a few hundred)
TRIAL_BYTES = 1 << 20
TRIAL_ELEMENTS = 4096


def workers_need_pydicom(options: ConvertOptions, plugin_manager: pluggy.PluginManager,
                         first: str | None) -> bool:
    """Whether the workers of a run will import pydicom, judged from the options and the
    first input (a batch is mostly files like its first): its metadata is encoded here
    the plain way, nothing written; True when the file is not plain or its encoding
    needs pydicom (NotPlain: an explicit UN element, an ambiguous VR in an implicit VR
    file, say; an implicit VR file's dictionary lookups need no pydicom: p10/dictionary.py).
    Then the parent imports it before the workers fork and they share it: each worker
    importing it itself would cost 0.2–0.35 CPU-s. The trial loads the dictionary tables
    the first file needs (p10/dictionary.py), so the workers share those too.
    Never raises (the worker reports what is wrong with the file); a first file over
    TRIAL_BYTES or TRIAL_ELEMENTS is not judged (the parent's memory stays bounded
    whatever the file holds)."""
    if not plain_possible(options, plugin_manager):
        return True
    if first is None or "://" in first:
        return False
    thresholds = options.thresholds
    try:
        with open_regular(first) as stream:
            size = stream.seek(0, os.SEEK_END)
            if size > TRIAL_BYTES:
                return False
            stream.seek(0)
            parsed = parse_plain(stream, size, thresholds.defer_size)
            if parsed is None:
                return True
            if len(parsed.dataset._dict) > TRIAL_ELEMENTS:
                return False
            JsonEncoder(thresholds, _NoBulk(), stream).dataset(parsed.dataset)
    except NotPlain:
        return True
    except Exception:  # noqa: BLE001 - a guess only: the conversion judges the file
        return False
    return False


class _NoBulk:
    """A BulkSink that keeps nothing (metadata encoded only to see whether it can be)."""

    def add(self, name: str, data: bytes | None, source_range: tuple[int, int] | None) -> str:
        return ""


class InstanceConverter:
    """Converts sources for one run: the options, the plugin manager, the transforms
    looked up once (not per instance) and one reused copy buffer. Built once per worker
    process; picklable parts only cross process boundaries."""

    def __init__(self, options: ConvertOptions, plugin_manager: pluggy.PluginManager) -> None:
        self.options = options
        self.pm = plugin_manager
        registry = transforms(plugin_manager) if options.plugins else {}
        self.transforms: list[tuple[str, Transform | None]] = [
            (name, registry.get(name)) for name in options.plugins]
        self.buffer = bytearray(COPY_BLOCK)
        #: try each source as a plain file first (p10/plain.py: no pydicom), unless
        #: something needs pydicom's Dataset anyway: a transform, the renderer, a plugin
        #: that sees the instance
        self.plain = plain_possible(options, plugin_manager)
        #: instances converted the plain way and started again with pydicom (tests)
        self.plain_counts = {"plain": 0, "general": 0}

    def convert(self, source: Source, staging: StagingArea) -> InstanceResult:
        """Convert `source` into a new folder of `staging`. Never raises.

        pydicom's warnings about the file (invalid values, VR mismatches) are kept in the
        result for the report instead of being printed from the worker processes."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = self._convert(source, staging)
        result.warnings = sorted(set(result.warnings) | {str(w.message) for w in caught})
        return result

    def _convert(self, source: Source, staging: StagingArea) -> InstanceResult:
        started = time.perf_counter()
        result = InstanceResult(path=source.name, status="failed")
        staged: StagedInstance | None = None
        try:
            with source.open() as fp, ExitStack() as cleanup:
                staged = self._stage(source, fp, staging, result, cleanup)
            if staged is not None:
                result.status = "converted"
                result.staging, result.staged_files = staged.path, staged.file_count
        except (ConversionError, InvalidUIDError) as exc:
            result.reason = str(exc)
        except NotImplementedError as exc:  # pydicom converting a value of an unknown VR
            result.reason = f"malformed data set: {exc}"
        except NotRegularFile as exc:
            result.status, result.reason = "skipped", str(exc)
        except OSError as exc:
            result.reason = f"{type(exc).__name__}: {exc.strerror or exc}"
        except RecursionError:  # only nesting recurses: pydicom reads undefined-length
            # items by recursion, and jsonmodel refuses deeper nesting before it recurses
            result.reason = (f"sequences nested more than {MAX_SEQUENCE_DEPTH} levels deep "
                             "(too deep to read)")
        except Exception as exc:  # an input must never stop the batch; keep the reason
            last = traceback.extract_tb(exc.__traceback__)[-1]
            result.reason = (f"unexpected {type(exc).__name__}: {exc} "
                             f"(at {Path(last.filename).name}:{last.lineno})")
        finally:
            result.seconds = time.perf_counter() - started
            if result.status != "converted" and staged is not None:
                staged.remove()
        return result

    def _stage(self, source: Source, fp: BinaryIO, staging: StagingArea,
               result: InstanceResult, cleanup: ExitStack) -> StagedInstance | None:
        """Scan, parse, transform and write one instance; None when it is skipped."""
        buffer = self.buffer
        clock = _Clock(result.timings)
        size = fp.seek(0, os.SEEK_END)
        fp.seek(0)
        scan: ScanThread | None = None
        if size >= OVERLAP_SCAN_BYTES and source.path is not None:
            # a big file: checksum it on a second core while its frames are copied
            scan = ScanThread(source.path)
            scan.start()
            has_delimiter = False  # assumed; checked when the scan is done
        else:
            scanned = scan_mapped(fp, size) if size >= MAP_SCAN_BYTES else None
            if scanned is None:  # by reads: it leaves the file at its end
                scanned = scan_source(fp, buffer)
                fp.seek(0)
            result.sha256, result.bytes_in, has_delimiter = scanned
            clock.lap("scan")
        warnings_before = list(result.warnings)
        if self.plain:
            try:
                staged = self._write(source, fp, staging, result, cleanup, size, scan,
                                     has_delimiter, plain=True)
                self.plain_counts["plain"] += 1
                return staged
            except NotPlain:  # nothing of it kept: the general path from the start
                fp.seek(0)
                result.warnings[:] = warnings_before
        self.plain_counts["general"] += 1
        return self._write(source, fp, staging, result, cleanup, size, scan, has_delimiter,
                           plain=False)

    def _write(self, source: Source, fp: BinaryIO, staging: StagingArea,
               result: InstanceResult, cleanup: ExitStack, size: int,
               scan: ScanThread | None, has_delimiter: bool, plain: bool
               ) -> StagedInstance | None:
        """Parse, transform and write one scanned instance; None when it is skipped.
        `plain`: read as a plain file (p10/plain.py); raises NotPlain, its staged folder
        removed, where the file needs pydicom."""
        options, buffer = self.options, self.buffer
        clock = _Clock(result.timings)
        inflated = DelimiterScan()
        parsed = parse_p10(fp, defer_size=options.thresholds.defer_size,
                           spool=staging.temporary_file,
                           max_inflated_size=options.max_inflated_size, inspect=inflated.feed,
                           size=size, plain=plain)
        cleanup.callback(parsed.stream.close)  # a deflated file's inflated copy
        if str(uid_value(parsed.file_meta, "MediaStorageSOPClassUID") or "") \
                == DICOMDIR_SOP_CLASS:
            result.status = "skipped"
            result.reason = "DICOMDIR (media directory), not an instance"
            return None
        ds = parsed.dataset
        self.apply_transforms(ds)
        result.study_uid = check_uid(uid_value(ds, "StudyInstanceUID"), "Study Instance UID")
        result.series_uid = check_uid(uid_value(ds, "SeriesInstanceUID"), "Series Instance UID")
        result.sop_uid = check_uid(uid_value(ds, "SOPInstanceUID"), "SOP Instance UID")
        staged = staging.new_instance(result.sop_uid)
        try:
            if parsed.deflated:  # the payloads are the inflated bytes
                has_delimiter = inflated.found
            copier = PayloadCopier(parsed.stream, buffer, kernel=not has_delimiter)
            clock.lap("parse")
            written, frames, media_type, bulk_ranges, metadata = self._write_instance(
                parsed, result, staged, copier, clock)
            if scan is not None:
                result.sha256, result.bytes_in, has_delimiter = scan.outcome()
                clock.lap("scan")
                if has_delimiter:  # rare: write it again, every payload checked
                    staged.clear()
                    copier = PayloadCopier(parsed.stream, buffer, kernel=False)
                    written, frames, media_type, bulk_ranges, metadata = \
                        self._write_instance(parsed, result, staged, copier, clock)
            kept, rebuild = 0, None
            if not options.plugins:  # never for a transformed instance: original values
                clock.lap("write")  # what came since the frames (plugin results) is writing
                kept, rebuild = _keep_header(parsed, fp, staged, frames, bulk_ranges)
                clock.lap("header")
            # info last: it records the checksum, known only now for an overlapped scan
            info = self._info(source, parsed, result, frames, media_type, rebuild)
            result.bytes_out = written + kept + staged.put(
                names.INFO, orjson.dumps(info, option=orjson.OPT_INDENT_2))
            clock.lap("write")
            if options.part10:  # only now are the files it is rebuilt from complete
                result.bytes_out += _write_part10(staged, info, metadata, result)
                clock.lap("part10")
        except BaseException:
            staged.remove()
            raise
        return staged

    def apply_transforms(self, ds: Dataset) -> None:
        for name, transform in self.transforms:
            if transform is None:
                raise ConversionError(f"no transform named {name!r} is installed")
            try:
                transform.function(ds, self.options.plugin_options.get(name, {}))
            except Exception as exc:  # named, so the report says which plugin to look at
                raise PluginError(transform.plugin, f"transform {name!r}", exc) from exc

    def _write_instance(self, parsed: ParsedP10, result: InstanceResult,
                        staged: StagedInstance, copier: PayloadCopier, clock: _Clock
                        ) -> tuple[int, FrameLayout | None, str, list[tuple[str, int, int]],
                                   dict[str, Any]]:
        """Write metadata, frames, bulk data and plugin results into `staged`; sets
        result.frames; returns (bytes written, the frame layout, the frames' media type,
        the bulk values copied from source ranges, the instance's metadata object)."""
        assert result.study_uid and result.series_uid and result.sop_uid
        options = self.options
        pixel = parsed.pixel_data
        ts = lookup(parsed.transfer_syntax_uid,
                    pixel_length_undefined=pixel.encapsulated if pixel else None)
        uri_prefix = ""
        if options.base_url:
            uri_prefix = (options.base_url.rstrip("/") + "/"
                          + urls.instance_path(result.study_uid, result.series_uid,
                                               result.sop_uid) + "/")
        bulk = BulkWriter(staged, uri_prefix, copier)
        encoder = JsonEncoder(options.thresholds, bulk, parsed.stream)
        metadata = encoder.dataset(parsed.dataset)
        result.warnings.extend(encoder.warnings)
        # Frames of a deflated file are the inflated, explicit VR little endian bytes: the
        # syntax named in metadata and in each frame's part always describes those bytes.
        frame_syntax = (EXPLICIT_VR_LITTLE_ENDIAN if parsed.deflated
                        else parsed.transfer_syntax_uid)
        metadata[f"{AVAILABLE_TRANSFER_SYNTAX_UID:08X}"] = {"vr": "UI", "Value": [frame_syntax]}
        clock.lap("encode")
        layout = self._frame_layout(parsed, ts, bulk, metadata, result)
        written = bulk.written
        if layout is not None:
            assert pixel is not None
            metadata[f"{pixel.tag:08X}"] = {"vr": _pixel_vr(parsed),
                                            "BulkDataURI": f"{uri_prefix}frames"}
            header = part_header(content_type(ts.media_type, frame_syntax))
            threads = frame_copy_threads(pixel.end_offset - pixel.value_offset)
            written += write_frames(staged, header, layout.frames, copier, threads)
            if ts.media_type in FRAME_MEDIA_TYPES:
                staged.put(names.frames_type_marker(ts.media_type), b"")
            clock.lap("frames")
            if options.rendered or options.thumbnails:
                written += self._render(parsed, len(layout.frames), frame_syntax, staged,
                                        result)
                clock.lap("render")
        clock.lap("frames")
        metadata = dict(sorted(metadata.items()))
        written += self._write_metadata(metadata, staged, clock)
        frame_count = len(layout.frames) if layout else 0
        view = InstanceView(result.study_uid, result.series_uid, result.sop_uid, frame_syntax,
                            parsed.dataset, metadata, frame_count, Path(staged.path),
                            _frame_reader(staged))
        for results in run_hook(self.pm, "instance_results", {"instance": view}):
            for folder, files in by_folder(results).items():
                for item in files:
                    staged.put(f"{folder}/{item.name}", item.data)
        result.frames = frame_count
        return written, layout, ts.media_type, bulk.source_ranges, metadata

    def _render(self, parsed: ParsedP10, frame_count: int, frame_syntax: str,
                staged: StagedInstance, result: InstanceResult) -> int:
        """Rendered frames and the thumbnail (encode/render.py), decoded one frame at a
        time from the staged frame files; a frame that cannot be rendered is a warning and
        the instance is converted without rendered files."""
        from ..encode import render

        options = self.options
        assert parsed.pixel_data is not None
        suffix = render.SUFFIXES[options.rendered_format]
        try:  # the attributes read now (deferred values included) may be unreadable
            module = render.PixelModule.from_dataset(parsed.dataset, parsed.pixel_data.tag)
        except Exception as exc:  # noqa: BLE001 - never fails the instance
            result.warnings.append(f"not rendered: {type(exc).__name__}: {exc}")
            return 0
        done = render.render_instance(
            module, frame_count, _frame_reader(staged), frame_syntax,
            staged.put, lambda stored: [staged.remove_file(name) for name in stored],
            fmt=options.rendered_format, rendered=options.rendered,
            thumbnail=options.thumbnails,
            names=lambda key, n: urls.instance_file(key, ext=suffix, **(
                {"frame": str(n)} if n is not None and key == "rendered_frame" else {})))
        if done.warning:
            result.warnings.append(done.warning)
        return done.written

    @staticmethod
    def _frame_layout(parsed: ParsedP10, ts, bulk: BulkWriter, metadata: dict,
                      result: InstanceResult) -> FrameLayout | None:
        pixel = parsed.pixel_data
        if pixel is None:
            return None
        try:
            return frame_layout(parsed.dataset, pixel, ts, parsed.stream)
        except UnframeableError as exc:
            # Without Rows/Columns/... there are no frames to cut, but the value is still
            # published whole as bulk data: nothing in the source is dropped.
            result.warnings.append(f"{exc}; Pixel Data published as one bulk data value")
            start, end = pixel.value_offset, pixel.end_offset
            uri = bulk.add(f"{pixel.tag:08X}", None, (start, end - start))
            metadata[f"{pixel.tag:08X}"] = {"vr": _pixel_vr(parsed), "BulkDataURI": uri}
            return None

    def _write_metadata(self, metadata: dict, staged: StagedInstance, clock: _Clock) -> int:
        """The instance's metadata file and/or its deduplicated parts; returns the bytes
        of the metadata file written."""
        options = self.options
        if options.deduplicate:
            extracts, record = dedup.instance_parts(metadata)
            for digest, data in extracts.items():
                staged.put(names.staged_extract(digest), data)
            staged.put(names.STAGED_RECORD, record)
        if not (options.instances or not options.deduplicate):
            return 0
        document = jsonio.dumps([metadata])
        clock.lap("encode")
        if options.gzip:
            document = gzip_bytes(document, options.gzip_level)
            clock.lap("gzip")
        return staged.put(urls.instance_file("instance_metadata", options.gzip), document)

    def _info(self, source: Source, parsed: ParsedP10, result: InstanceResult,
              frames: FrameLayout | None, media_type: str, rebuild: dict[str, Any] | None
              ) -> dict[str, Any]:
        info = build_info(parsed, source_path=source.recorded_path,
                          source_size=result.bytes_in, sha256=result.sha256 or "",
                          frames=frames, gzip=self.options.gzip, media_type=media_type,
                          transforms=self.options.plugins)
        if rebuild is not None:
            info["rebuild"] = rebuild
        return info


def _write_part10(staged: StagedInstance, info: dict[str, Any], metadata: dict[str, Any],
                  result: InstanceResult) -> int:
    """`convert --part10`: the instance's P10 as one ready multipart part (what a static
    server sends for the instance URL), streamed from the staged files exactly as
    `tree.part10.open_instance(...).chunks()` gives them. An untransformed rebuild is
    checked against the source's SHA-256. When it cannot be written (the bytes hold the
    multipart delimiter, or the rebuild fails) the instance is still converted, without
    the file, and the result says why; an OSError (a full disk) fails the instance as any
    other write does. Returns the bytes written."""
    name = urls.resource("instance_dicom").folder_name.rsplit("/", 1)[-1]
    # what a reader of the tree gets for the metadata file (lists, not tuples)
    document = jsonio.loads(jsonio.dumps(metadata)) if info.get("transforms") else None
    digest, size = hashlib.sha256(), 0

    def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal size
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            yield chunk

    try:
        chunks = hashed(folder_chunks(Path(staged.path), info, document))
        with staged.open(name) as out:  # blocks of about 1 MiB: no buffer needed
            for block in dicom_message([(transfer_syntax(info), chunks)]):
                out.write(block)
        if document is None and (digest.hexdigest(), size) != (result.sha256, result.bytes_in):
            raise RebuildError("the rebuilt bytes differ from the source")
    except OSError:  # the disk, not the instance: it fails like any other write
        raise
    except Exception as exc:  # the instance's own files are fine: keep it without the file
        if staged.exists(name):
            staged.remove_file(name)
        kind = "" if isinstance(exc, (ConversionError, RebuildError, InvalidUIDError)) \
            else f"unexpected {type(exc).__name__}: "
        result.warnings.append(f"no {name} file: {kind}{exc}")
        return 0
    return staged.size(name)


def _frame_reader(staged: StagedInstance) -> Callable[[int], bytes]:
    """Frame n's bytes read back from its staged part file (plugins, the renderer)."""
    return lambda number: part_body(staged.read(f"frames/{number}"))


def _keep_header(parsed: ParsedP10, source: BinaryIO, staged: StagedInstance,
                 frames: FrameLayout | None, bulk_ranges: list[tuple[str, int, int]]
                 ) -> tuple[int, dict[str, Any]]:
    """Write the kept header (encode/kept_header.py): the data set bytes the tree does not
    hold, so `dcmweb part10` rebuilds the source byte for byte."""
    cuts = bulk_cuts(bulk_ranges) + (frame_cuts(frames.frames) if frames else [])
    size = parsed.stream.seek(0, os.SEEK_END)
    if parsed.deflated:  # offsets are in the inflated data set; the source is deflated
        return write_kept_header(parsed.stream, 0, size, cuts, staged, source=source,
                                 deflated_from=parsed.dataset_offset)
    return write_kept_header(parsed.stream, parsed.dataset_offset, size, cuts, staged)


def convert_file(path: str | os.PathLike[str], options: ConvertOptions,
                 staging_root: str | os.PathLike[str],
                 plugin_manager: pluggy.PluginManager | None = None) -> InstanceResult:
    """Convert one file into a new folder under `staging_root` (made if missing), outside
    any batch: for scripts and tests. A batch uses `Converter`; a receiver, one
    `InstanceConverter` and `Source.from_bytes` / `from_stream`."""
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    return InstanceConverter(options, pm).convert(Source.from_path(path),
                                                  StagingArea.at(staging_root))
