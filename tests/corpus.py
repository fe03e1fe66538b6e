"""Generated files covering every transfer syntax dcmweb must handle, made with dcmtk's
dcmconv/dcmcjpeg/dcmcjpls/dcmcrle and pydicom's encoders (JPEG 2000, Extended Offset
Table), plus hand-built encapsulations for cases no encoder here writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from dcmweb_static import synthetic as syn

from .conftest import require_tool

ENCAPSULATED_UNCOMPRESSED = "1.2.840.10008.1.2.1.98"
MPEG4_HP41 = "1.2.840.10008.1.2.4.102"


def _dcmtk(tool: str, *args: str | Path) -> None:
    subprocess.run([require_tool(tool), *map(str, args)], check=True, capture_output=True)


def _image(index: int, *, bits: int, frames: int, samples: int = 1, rows: int = 64,
           columns: int = 48) -> pydicom.Dataset:
    ds = syn.base_dataset(syn.uid(100), syn.uid(100, index), syn.uid(100, index, 1),
                          sop_class="1.2.840.10008.5.1.4.1.1.7", modality="OT",
                          series_number=index)
    syn.add_pixels(ds, rows=rows, columns=columns, bits=bits, frames=frames, samples=samples,
                   seed=index)
    return ds


def build(folder: Path) -> dict[str, Path]:
    """Write the corpus into `folder`; returns name → file."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    mono16 = syn.save(_image(1, bits=12, frames=3), folder / "mono16_explicit_le.dcm")
    mono8 = syn.save(_image(2, bits=8, frames=2), folder / "mono8_explicit_le.dcm")
    rgb8 = syn.save(_image(3, bits=8, frames=2, samples=3), folder / "rgb8_explicit_le.dcm")
    files.update(mono16=mono16, mono8=mono8, rgb8=rgb8)
    files["bits1"] = syn.bit_packed(folder / "bits1.dcm")
    files["float"] = syn.float_pixels(folder / "float.dcm")
    files["ct_rich"] = syn.ct_series(folder / "ct", 1, rows=16, columns=16, rich=True)[0]

    conversions = {
        "implicit": ("dcmconv", "+ti", mono16),
        "big_endian": ("dcmconv", "+tb", mono16),
        "deflated": ("dcmconv", "+td", mono16),
        "undefined_lengths": ("dcmconv", "-e", files["ct_rich"]),
        "jpeg_baseline": ("dcmcjpeg", "+eb", mono8),
        "jpeg_baseline_rgb": ("dcmcjpeg", "+eb", rgb8),
        "jpeg_extended": ("dcmcjpeg", "+ee", mono16),
        "jpeg_lossless_sv1": ("dcmcjpeg", "+e1", mono16),
        "jpeg_lossless_fragments": ("dcmcjpeg", "+e1", "+fs", "1", mono16),
        "jpeg_lossless_fragments_no_bot": ("dcmcjpeg", "+e1", "+fs", "1", "-ot", mono16),
        "jpeg_lossless_no_bot": ("dcmcjpeg", "+e1", "-ot", mono16),
        "jpegls_lossless": ("dcmcjpls", "+el", mono16),
        "jpegls_near_lossless": ("dcmcjpls", "+en", mono8),
        "jpegls_fragments_no_bot": ("dcmcjpls", "+el", "+fs", "1", "-ot", mono16),
        "rle": ("dcmcrle", mono16),
        "rle_no_bot": ("dcmcrle", "-ot", rgb8),
    }
    for name, (tool, *args) in conversions.items():
        out = folder / f"{name}.dcm"
        _dcmtk(tool, *args, out)
        files[name] = out

    # pydicom's encoders: JPEG 2000 (openjpeg), RLE (pydicom's own)
    ds = pydicom.dcmread(mono16)
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    ds.SOPInstanceUID = syn.uid(100, 1, 2)
    files["jpeg2000"] = _save(ds, folder / "jpeg2000.dcm")

    ds = pydicom.dcmread(rgb8)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.SOPInstanceUID = syn.uid(100, 3, 2)
    files["rle_pydicom"] = _save(ds, folder / "rle_pydicom.dcm")

    # Extended Offset Table with JPEG-LS frames, empty Basic Offset Table
    ds = pydicom.dcmread(mono16)
    ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=3))
    data, offsets, lengths = encapsulate_extended(frames)
    ds.PixelData = data
    ds.ExtendedOffsetTable = offsets
    ds.ExtendedOffsetTableLengths = lengths
    ds.SOPInstanceUID = syn.uid(100, 1, 3)
    files["jpegls_extended_offset_table"] = _save(ds, folder / "jpegls_eot.dcm")

    # Encapsulated Uncompressed Explicit VR Little Endian: native frames in fragments
    ds = pydicom.dcmread(mono16)
    size = len(ds.PixelData) // 3
    ds.PixelData = encapsulate([ds.PixelData[i * size:(i + 1) * size] for i in range(3)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = ENCAPSULATED_UNCOMPRESSED
    ds.SOPInstanceUID = syn.uid(100, 1, 4)
    files["encapsulated_uncompressed"] = _save(ds, folder / "encaps_uncompressed.dcm")

    # A video syntax: the whole stream is one resource, whatever NumberOfFrames says
    ds = pydicom.dcmread(mono8)
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(range(200)), bytes(300)],
                               has_bot=False)
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 25
    ds.file_meta.TransferSyntaxUID = MPEG4_HP41
    ds.SOPInstanceUID = syn.uid(100, 2, 5)
    files["video_mpeg4"] = _save(ds, folder / "video_mpeg4.dcm")
    return files


def _save(ds: pydicom.Dataset, path: Path) -> Path:
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path
