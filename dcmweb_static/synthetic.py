"""Deterministic synthetic DICOM files for the samples, tests and benchmarks.

Everything here is made from a seed, so the same call writes the same bytes: the sample
data in the repo, the test corpus and the benchmark inputs can all be re-created.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

ROOT = "1.2.826.0.1.3680043.8.498.7"  # pydicom's UID root, with a dcmweb arc


def uid(*parts: int) -> str:
    return ".".join([ROOT, *(str(p) for p in parts)])


def smooth_pixels(rows: int, columns: int, bits: int, seed: int, samples: int = 1) -> bytes:
    """A smooth gradient with a little noise: compressible like a real image."""
    rng = random.Random(seed)
    top = (1 << bits) - 1
    values = []
    for r in range(rows):
        for c in range(columns):
            base = ((r * 7 + c * 3 + seed * 11) % (rows + columns)) * top // (rows + columns)
            for s in range(samples):
                values.append(min(top, max(0, base + rng.randint(-2, 2) + s * 5)))
    if bits <= 8:
        return bytes(values)
    return struct.pack(f"<{len(values)}H", *values)


def base_dataset(study: str, series: str, sop: str, *, sop_class: str = CTImageStorage,
                 instance_number: int = 1, series_number: int = 1, modality: str = "CT",
                 rich: bool = True) -> Dataset:
    """Header of a synthetic instance; `rich` adds the harder cases for the JSON model:
    UTF-8 person names in three groups, nested sequences, private tags, AT, multi-values."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyDate = "20260101"
    ds.StudyTime = "101500.123"
    ds.AccessionNumber = f"ACC{series_number:04d}"
    ds.Modality = modality
    ds.Manufacturer = "dcmweb synthetic"
    ds.ReferringPhysicianName = "Doe^Jane"
    ds.PatientName = "Müller^Jürgen=ミュラー^ユルゲン=みゅらー^ゆるげん" if rich else "Test^Patient"
    ds.PatientID = "DCMWEB-001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.SliceThickness = "1.50"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = ["-125.0", "-125.0", f"{instance_number * 1.5:.2f}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = study + ".9"
    if rich:
        ds.StudyDescription = "Synthetic study – ümlauts, 漢字 and a back\\slash-free text"
        ds.ImageComments = "Line one\r\nLine two with a \\ backslash kept"
        code = Dataset()
        code.CodeValue = "T-D1100"
        code.CodingSchemeDesignator = "SRT"
        code.CodeMeaning = "Head"
        nested = Dataset()
        nested.ReferencedSOPClassUID = sop_class
        nested.ReferencedSOPInstanceUID = sop + ".1"
        code.ReferencedImageSequence = Sequence([nested])
        ds.AnatomicRegionSequence = Sequence([code, Dataset()])
        ds.FrameIncrementPointer = [0x00181063, 0x00209153]
        ds.WindowCenter = ["40", "400"]
        ds.WindowWidth = ["80", "1500"]
        ds.add_new(0x00091010, "LO", "DCMWEB PRIVATE")
        ds.add_new(0x00091011, "LO", ["first", "", "third"])
        ds.add_new(0x00091012, "OB", bytes(range(256)) * 2)  # private, over 64 bytes: bulk
        ds.add_new(0x00091013, "US", [1, 2, 65535])
        ds.add_new(0x00091014, "FD", [1.5, -2.25e-10])
        ds.add_new(0x00091015, "SQ", Sequence([Dataset()]))
        ds[0x00091015].value[0].add_new(0x00091016, "SH", "inner")
    return ds


def add_pixels(ds: Dataset, *, rows: int, columns: int, bits: int, frames: int = 1,
               samples: int = 1, seed: int = 0) -> None:
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    data = b"".join(smooth_pixels(rows, columns, bits, seed + f, samples) for f in range(frames))
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"


def save(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_series(folder: Path, count: int, *, rows: int = 512, columns: int = 512,
              study_index: int = 1, series_index: int = 1, rich: bool = False) -> list[Path]:
    """A CT series of `count` 16-bit slices, as scanners write them."""
    study = uid(study_index)
    series = uid(study_index, series_index)
    # one pixel buffer reused: the benchmark measures conversion, not image synthesis
    pixels = smooth_pixels(rows, columns, 12, 0) if rows * columns <= 64 * 64 else \
        random.Random(1).randbytes(rows * columns * 2)
    paths = []
    for i in range(1, count + 1):
        ds = base_dataset(study, series, uid(study_index, series_index, i),
                          instance_number=i, series_number=series_index, rich=rich)
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        ds.PixelData = pixels
        ds["PixelData"].VR = "OW"
        paths.append(save(ds, folder / f"CT{i:05d}.dcm"))
    return paths


def bit_packed(path: Path, *, rows: int = 5, columns: int = 5, frames: int = 3) -> Path:
    """1-bit frames whose size is not a whole number of bytes (frames 2.. start mid-byte)."""
    ds = base_dataset(uid(90), uid(90, 1), uid(90, 1, 1), sop_class=SecondaryCaptureImageStorage,
                      modality="OT")
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.NumberOfFrames = frames
    nbits = rows * columns * frames
    rng = random.Random(5)
    bits = rng.getrandbits(nbits)
    data = bits.to_bytes((nbits + 7) // 8, "little")
    ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
    ds["PixelData"].VR = "OB"
    return save(ds, path)


def float_pixels(path: Path, *, rows: int = 8, columns: int = 8, frames: int = 2) -> Path:
    """Float Pixel Data (7FE0,0008), framed like native data."""
    ds = base_dataset(uid(91), uid(91, 1), uid(91, 1, 1), sop_class="1.2.840.10008.5.1.4.1.1.30",
                      modality="OT")
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 32
    ds.NumberOfFrames = frames
    values = [i * 0.25 - 3 for i in range(rows * columns * frames)]
    ds.FloatPixelData = struct.pack(f"<{len(values)}f", *values)
    return save(ds, path)


_WIDE_VALUES = {
    "CS": "VALUE", "LO": "a long string value", "SH": "short", "DS": "1.25", "IS": "42",
    "DA": "20260101", "TM": "101010.5", "DT": "20260101101010", "US": 7, "UL": 70000,
    "SS": -3, "SL": -70000, "FL": 0.5, "FD": 2.25, "UI": "1.2.840.10008.1.2.1",
    "PN": "Wide^Header", "LT": "long text", "ST": "short text", "AE": "STORE_SCP",
}


def wide_ct_header(study: str, elements: int = 256) -> Dataset:
    """A CT instance whose header has `elements` top-level attributes, like real scanners
    write: the rich header plus public dictionary attributes of the common VRs."""
    from pydicom.datadict import DicomDictionary

    ds = base_dataset(study, study + ".1", study + ".1.1", rich=True)
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(16 * 16 * 2)
    ds["PixelData"].VR = "OW"
    for tag, (vr, vm, _name, retired, _keyword) in sorted(DicomDictionary.items()):
        if len(ds) >= elements:
            break
        if retired or tag in ds or vr not in _WIDE_VALUES or (tag >> 16) not in (
                0x0008, 0x0018, 0x0020, 0x0028):
            continue
        value = _WIDE_VALUES[vr]
        ds.add_new(tag, vr, [value, value] if vm not in ("1",) and vr in ("DS", "CS") else value)
    return ds
