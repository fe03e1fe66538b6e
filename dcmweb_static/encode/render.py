"""Rendered frames and thumbnails (PS3.18 10.4.1.1.3/10.4.1.1.4): one frame decoded at a
time and turned into 8-bit JPEG or PNG the way dcmtk's `dcmj2pnm +Wi 1` (else `+Wm`)
renders it, so its output is the reference in tests.

The pipeline, per frame: decode (pydicom's pixel handlers and the pylibjpeg / pyjpegls
plugins of the `[render]` extra; YBR_FULL/YBR_FULL_422 to RGB, planar configuration, 1-bit
and float data are theirs), then for monochrome the Modality LUT (rescale slope and
intercept), the first VOI window of the file (LINEAR, LINEAR_EXACT or SIGMOID) or else the
frame's own min-max window, MONOCHROME1 inverted; palette colour through its LUTs; RGB of
more than 8 bits scaled to 8. A frame is decoded from its own bytes only (the frames the
tree stores), never the whole Pixel Data, so a 3,000-frame file stays one frame in memory.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian

Format = Literal["jpeg", "png"]
MEDIA_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png"}
#: the stored name's suffix for each format (nginx maps it to the content type)
SUFFIXES: dict[str, str] = {"jpeg": "jpg", "png": "png"}
THUMBNAIL_SIZE = 256
#: JPEG quality: rendered frames are compared with dcmtk's rendering (PSNR over 30 dB
#: at 90, 4:4:4); thumbnails only need to be recognisable and small (<= 20 KB typical)
RENDERED_QUALITY = 90
THUMBNAIL_QUALITY = 75

#: what of a data set the renderer needs: the Image Pixel module, Modality LUT, VOI LUT
#: (windows) and palette colour LUTs; never the pixel data itself
_KEPT = (
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope",
    "RescaleIntercept", "WindowCenter", "WindowWidth", "VOILUTFunction",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData", "PaletteColorLookupTableUID",
)
#: Encapsulated Uncompressed Explicit VR Little Endian (PS3.5 A.4.11)
ENCAPSULATED_UNCOMPRESSED = "1.2.840.10008.1.2.1.98"
_PIXEL_KEYWORDS = {0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}


class RenderError(Exception):
    """A frame that cannot be rendered; its message is the one-line reason."""


@dataclass
class PixelModule:
    """The attributes a frame is rendered with, taken from the data set once per instance
    (small: the palette LUTs are the largest part)."""

    dataset: Dataset
    pixel_keyword: str

    @classmethod
    def from_dataset(cls, ds: Dataset, pixel_tag: int = 0x7FE00010) -> PixelModule:
        kept = Dataset()
        for keyword in _KEPT:
            element = ds.get(keyword)  # read deferred values now: no file is kept open
            if element is not None:
                setattr(kept, keyword, element)
        kept.NumberOfFrames = 1
        return cls(kept, _PIXEL_KEYWORDS.get(pixel_tag, "PixelData"))


def decode_frame(module: PixelModule, frame: bytes, transfer_syntax: str):
    """One frame's samples (numpy; YBR converted to RGB) from its stored bytes."""
    from pydicom.pixels import get_decoder

    ds = Dataset()
    ds.update(module.dataset)
    ds.file_meta = FileMetaDataset()
    syntax = UID(transfer_syntax)
    if syntax == ENCAPSULATED_UNCOMPRESSED:  # each fragment holds one native frame
        syntax = ExplicitVRLittleEndian
    ds.file_meta.TransferSyntaxUID = syntax
    if syntax.is_encapsulated:
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
    else:
        setattr(ds, module.pixel_keyword, frame)
        if module.pixel_keyword == "PixelData":
            ds["PixelData"].VR = "OW" if int(ds.get("BitsAllocated", 8)) > 8 else "OB"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise RenderError(f"no decoder for transfer syntax {syntax}") from exc
    try:
        array, meta = decoder.as_array(ds, index=0, as_rgb=True)
    except Exception as exc:  # noqa: BLE001 - every decoder failure is a one-line reason
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__  # one line
        raise RenderError(f"frame cannot be decoded ({syntax.name}): {reason}") from exc
    return array, str(meta.get("photometric_interpretation", ""))


def _window(module: PixelModule) -> tuple[float, float, str] | None:
    """The first VOI window of the data set (`+Wi 1`), or None."""
    ds = module.dataset
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    first = [v[0] if hasattr(v, "__len__") and not isinstance(v, str) else v
             for v in (center, width)]
    try:
        c, w = float(first[0]), float(first[1])
    except (TypeError, ValueError):
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0 or (
            function == "LINEAR" and w < 1):
        return None
    return c, w, function


def _apply_window(values, center: float, width: float, function: str):
    """PS3.3 C.11.2.1.2 to 0..255 (as floats)."""
    import numpy as np

    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        low, high = center - width / 2, center + width / 2
        out = ((values - center) / width + 0.5) * 255.0
    else:
        low = center - 0.5 - (width - 1) / 2
        high = center - 0.5 + (width - 1) / 2
        out = ((values - (center - 0.5)) / max(width - 1, 1e-12) + 0.5) * 255.0
    out = np.where(values <= low, 0.0, out)
    return np.where(values > high, 255.0, out)


def _monochrome(module: PixelModule, array, photometric: str):
    """Grey levels of a monochrome frame. Integer samples go through a lookup table over
    the range the frame holds (the pipeline is evaluated once per distinct value: a
    512x512 CT slice in ~1 ms instead of ~12 ms); float samples are mapped directly."""
    import numpy as np

    if array.dtype.kind in "iu":
        low, high = int(array.min()), int(array.max())
        if high - low <= 1 << 20:
            table = _grey_levels(module, np.arange(low, high + 1, dtype=np.float64),
                                 photometric)
            return table[array.astype(np.int64) - low]
    return _grey_levels(module, array.astype(np.float64), photometric)


def _grey_levels(module: PixelModule, values, photometric: str):
    """Modality LUT, VOI window (the file's first, else min-max of `values`, which hold
    the frame's lowest and highest sample), MONOCHROME1 inversion, to uint8."""
    import numpy as np

    ds = module.dataset
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if module.pixel_keyword == "PixelData":
        values = values * slope + intercept
    window = _window(module)
    if window is None:  # `+Wm`: the frame's own min-max window
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise RenderError("frame holds no finite sample")
        low, high = float(finite.min()), float(finite.max())
        window = ((low + high + 1) / 2, high - low + 1, "LINEAR")
        if high - low < 1:  # float data: a window narrower than one step
            window = ((low + high) / 2, max(high - low, 1e-12), "LINEAR_EXACT")
    out = _apply_window(np.nan_to_num(values), *window)
    if photometric == "MONOCHROME1":
        out = 255.0 - out
    # dcmtk truncates (measured: rounding differs from dcmj2pnm by one level on ~half
    # the pixels, truncation matches exactly)
    return np.floor(out).clip(0, 255).astype(np.uint8)


def _to_8bit(module: PixelModule, array, photometric: str):
    """Any decoded frame as uint8 grey (H, W) or RGB (H, W, 3)."""

    ds = module.dataset
    if photometric.startswith("MONOCHROME") or array.ndim == 2:
        if photometric == "PALETTE COLOR":
            from pydicom.pixels.processing import apply_color_lut

            rgb = apply_color_lut(array, ds)
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            return _scale(rgb, 8 if bits == 8 else 16)
        return _monochrome(module, array, photometric)
    if photometric != "RGB":
        raise RenderError(f"photometric interpretation {photometric} is not rendered")
    return _scale(array, int(ds.get("BitsStored", 8) or 8))


def _scale(array, bits: int):
    import numpy as np

    if bits <= 8:
        return array.astype(np.uint8)
    top = float((1 << bits) - 1)
    return np.floor(array.astype(np.float64) * 255.0 / top + 0.5).clip(0, 255).astype(np.uint8)


def render_array(module: PixelModule, frame: bytes, transfer_syntax: str):
    """One frame rendered to 8 bits (numpy uint8, grey or RGB)."""
    array, photometric = decode_frame(module, frame, transfer_syntax)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return _to_8bit(module, array, photometric or str(module.dataset.get(
        "PhotometricInterpretation", "")))


def encode_image(pixels, fmt: Format, *, thumbnail: bool = False) -> bytes:
    """JPEG or PNG bytes of an 8-bit frame; a thumbnail fits in 256x256, aspect kept."""
    from PIL import Image

    image = Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB")
    if thumbnail:
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG", optimize=thumbnail)
    else:
        # rendered frames keep full colour resolution (4:4:4): 4:2:0 smears the sharp
        # colour edges of screen captures and overlays below 30 dB
        image.save(out, "JPEG", quality=THUMBNAIL_QUALITY if thumbnail else RENDERED_QUALITY,
                   optimize=thumbnail, subsampling=2 if thumbnail else 0)
    return out.getvalue()


@dataclass
class RenderedFiles:
    """What `render_instance` wrote: the bytes, and the warning when a frame could not be
    rendered (then nothing rendered is left for the instance)."""

    written: int = 0
    warning: str | None = None


def render_instance(module: PixelModule, frame_count: int, read_frame, transfer_syntax: str,
                    put, remove, *, fmt: Format, rendered: bool, thumbnail: bool,
                    names) -> RenderedFiles:
    """Render an instance's frames one at a time: `read_frame(n)` gives frame n's bytes,
    `put(name, data)` stores a file, `names(key, frame)` names it. Only frame 1 is decoded
    for a thumbnail alone. On a frame that cannot be rendered, what was written is removed
    (`remove(names)`) and the reason returned: the instance converts without it."""
    done = RenderedFiles()
    stored: list[str] = []
    count = frame_count if rendered else min(frame_count, 1)
    try:
        for number in range(1, count + 1):
            pixels = render_array(module, read_frame(number), transfer_syntax)
            files: list[tuple[str, bytes]] = []
            if rendered:
                data = encode_image(pixels, fmt)
                files.append((names("rendered_frame", number), data))
                if number == 1:
                    files.append((names("rendered", None), data))
            if thumbnail and number == 1:
                files.append((names("instance_thumbnail", None),
                              encode_image(pixels, fmt, thumbnail=True)))
            for name, data in files:
                done.written += put(name, data)
                stored.append(name)
    except Exception as exc:  # noqa: BLE001 - a frame never fails its instance
        remove(stored)
        reason = exc if isinstance(exc, RenderError) else f"{type(exc).__name__}: {exc}"
        return RenderedFiles(0, f"frame {number} not rendered: {reason}")
    return done
