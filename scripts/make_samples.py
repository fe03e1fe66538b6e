"""Write the small sample DICOM files kept in `samples/` (deterministic; re-run to refresh).

Several transfer syntaxes and multi-frame images, made with pydicom's encoders:
    pip install -e '.[test]' && python scripts/make_samples.py
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pydicom
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from dcmweb_static import synthetic as syn

OUT = Path(__file__).resolve().parent.parent / "samples"


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    # a CT series of 4 slices, explicit VR little endian, with the rich header
    syn.ct_series(OUT / "ct", 4, rows=64, columns=64, study_index=1, series_index=1, rich=True)
    study, n = syn.uid(1), 2

    def image(name: str, bits: int, frames: int, samples: int = 1) -> pydicom.Dataset:
        nonlocal n
        ds = syn.base_dataset(study, syn.uid(1, n), syn.uid(1, n, 1),
                              sop_class="1.2.840.10008.5.1.4.1.1.7", modality="OT",
                              series_number=n)
        ds.SeriesDescription = name
        syn.add_pixels(ds, rows=64, columns=64, bits=bits, frames=frames, samples=samples,
                       seed=n)
        n += 1
        return ds

    syn.save(image("implicit VR", 12, 1), OUT / "implicit.dcm", ImplicitVRLittleEndian)
    syn.save(image("deflated", 8, 1), OUT / "deflated.dcm", DeflatedExplicitVRLittleEndian)
    for file_name, name, syntax, plugin, bits, samples in (
        ("jpegls_8frames.dcm", "JPEG-LS lossless, 8 frames", JPEGLSLossless, "pyjpegls", 12, 1),
        ("rle_rgb_4frames.dcm", "RLE lossless RGB, 4 frames", RLELossless, "pydicom", 8, 3),
        ("jpeg2000_3frames.dcm", "JPEG 2000 lossless, 3 frames", JPEG2000Lossless, "pylibjpeg",
         12, 1),
    ):
        frames = int(name.split(", ")[1].split()[0])
        ds = image(name, bits, frames, samples)
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.compress(syntax, encoding_plugin=plugin)
        syn.save(ds, OUT / file_name, syntax)
    syn.bit_packed(OUT / "bitpacked_3frames.dcm")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {sum(1 for p in OUT.rglob('*.dcm'))} files, {total / 1024:.0f} KiB, in {OUT}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
