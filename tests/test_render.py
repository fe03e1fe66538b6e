"""Rendered frames and thumbnails, checked against dcmtk: frame 1 of pydicom's test files
of every photometric interpretation and transfer syntax dcmtk decodes (`dcmj2pnm`,
`dcml2pnm` for JPEG-LS) rendered by a real conversion and compared with dcmtk's PNG
(`+Wi 1`, else `+Wm`); JPEG 2000, which dcmtk cannot decode, against pydicom's own
`pixel_array` pipeline."""

from __future__ import annotations

import io
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from PIL import Image
from pydicom.pixels import apply_modality_lut

from dcmweb_static import synthetic as syn
from dcmweb_static.cli.main import main
from dcmweb_static.encode.render import THUMBNAIL_SIZE, encode_image
from dcmweb_static.errors import OptionError
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.instance import convert_file
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.serve.app import accepts
from dcmweb_static.store import MemoryStore
from dcmweb_static.tree.publish import publish_rendered, remove_rendered
from dcmweb_static.tree.reader import TreeReader

from . import corpus
from .conftest import PYDICOM_DATA, require_tool
from .servers import dcmweb_serve

ROOT = Path(__file__).resolve().parent.parent
FILES = PYDICOM_DATA / "test_files"

#: dcmtk's rendering equals ours within one grey level (name -> the file dcmtk renders:
#: itself, or for 32-bit big endian OW its little endian twin, which dcmtk 3.6 reads right)
DCMTK_EXACT = {name: name for name in (
    "CT_small.dcm", "ExplVR_BigEnd.dcm", "JPEGLSNearLossless_08.dcm",
    "JPEGLSNearLossless_16.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
    "MR_small_expb.dcm", "MR_small_implicit.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_padded.dcm", "SC_jpeg_no_color_transform.dcm", "SC_jpeg_no_color_transform_2.dcm",
    "SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_dcmtk_+eb+cy+n2.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_dcmtk_+eb+cy+s4.dcm", "SC_rgb_jls_lossy_line.dcm", "SC_rgb_jls_lossy_sample.dcm",
    "SC_rgb_jpeg_app14_dcmd.dcm", "SC_rgb_jpeg_dcmd.dcm", "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_16bit_2frame.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_rle_32bit.dcm",
    "SC_rgb_rle_32bit_2frame.dcm", "SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm",
    "SC_rgb_small_odd_jpeg.dcm", "SC_ybr_full_422_uncompressed.dcm",
    "examples_overlay.dcm", "examples_palette.dcm", "examples_rgb_color.dcm", "image_dfl.dcm",
    "liver_1frame.dcm", "liver_expb_1frame.dcm", "rtdose.dcm", "rtdose_1frame.dcm",
    "rtdose_rle.dcm", "rtdose_rle_1frame.dcm")}
DCMTK_EXACT.update({"rtdose_expb.dcm": "rtdose.dcm",
                    "rtdose_expb_1frame.dcm": "rtdose_1frame.dcm"})
#: lossy JPEG: libjpeg (pylibjpeg) and dcmtk's IJG decoder differ in IDCT and chroma
#: upsampling, by up to 3 levels on a few pixels; the rendering on top is the same
DCMTK_LOSSY = ("JPGExtended.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm",
               "SC_rgb_jpeg_lossy_gdcm.dcm", "examples_ybr_color.dcm")
#: JPEG 2000: dcmtk has no decoder; compared with pydicom's pixel_array pipeline
JPEG2000 = ("693_J2KI.dcm", "GDCMJ2K_TextGBR.dcm", "J2K_pixelrep_mismatch.dcm",
            "JPEG2000.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_gdcm_KY.dcm",
            "examples_jpeg2k.dcm")
SAMPLES = ("bitpacked_3frames.dcm", "jpegls_8frames.dcm", "rle_rgb_4frames.dcm",
           "implicit.dcm", "deflated.dcm")
UNDECODABLE = "JPEG-lossy.dcm"  # its JPEG stream fails every decoder pydicom has
#: JPEG-LS files without Study/Series Instance UIDs: converted from a copy given them
NO_UIDS = ("JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm",
           "SC_rgb_jls_lossy_line.dcm", "SC_rgb_jls_lossy_sample.dcm")


def _rendered(source: Path, tmp: Path, fmt: str = "png") -> np.ndarray:
    """Frame 1 as a conversion renders it (one file, staged: pydicom's test files share
    SOP Instance UIDs, so they are not converted into one tree)."""
    if source.name in NO_UIDS:
        copy = tmp / source.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, copy)
        subprocess.run([require_tool("dcmodify"), "-nb", "-i", "(0020,000D)=1.2.3.4",
                        "-i", "(0020,000E)=1.2.3.4.5", str(copy)], check=True,
                       capture_output=True)
        source = copy
    result = convert_file(source, ConvertOptions(output=tmp / "out", rendered=True,
                                                 rendered_format=fmt), tmp / "staging")
    assert result.status == "converted", result.reason
    suffix = {"png": "png", "jpeg": "jpg"}[fmt]
    return np.asarray(Image.open(Path(result.staging) / f"rendered-frames/1.{suffix}"))


def _instance(tree: Path, source: Path) -> Path:
    sop = pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID
    found = list(tree.glob(f"studies/*/series/*/instances/{sop}"))
    assert len(found) == 1, source
    return found[0]


def _wide_image(path: Path) -> Path:
    """A 384x512 12-bit image (smooth, with noise, like a real one) windowed to show it."""
    ds = syn.base_dataset(syn.uid(710), syn.uid(710, 1), syn.uid(710, 1, 1), rich=False)
    syn.add_pixels(ds, rows=384, columns=512, bits=12, seed=5)
    ds.WindowCenter, ds.WindowWidth = "2048", "4096"
    return syn.save(ds, path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CT series and the JPEG-LS multi-frame sample, converted with --rendered and
    --thumbnails."""
    base = tmp_path_factory.mktemp("tree")
    out = base / "out"
    files = [*sorted((ROOT / "samples" / "ct").glob("*.dcm")),
             ROOT / "samples" / "jpegls_8frames.dcm", _wide_image(base / "wide.dcm")]
    summary = Converter(ConvertOptions(output=out, rendered=True, thumbnails=True),
                        jobs=2).run(files)
    assert summary.count("converted") == len(files)
    return out


def _dcmtk(source: Path, out: Path) -> np.ndarray:
    """dcmtk's 8-bit PNG of frame 1: the first VOI window, else min-max; no overlays."""
    syntax = pydicom.dcmread(source, stop_before_pixels=True).file_meta.TransferSyntaxUID
    tool = require_tool("dcml2pnm" if syntax.startswith("1.2.840.10008.1.2.4.8")
                        else "dcmj2pnm")
    for window in (["+Wi", "1"], ["+Wm"]):
        run = subprocess.run([tool, "+on", "-O", *window, str(source), str(out)],
                             capture_output=True)
        if run.returncode == 0:
            return np.asarray(Image.open(out))
    raise AssertionError(f"dcmtk cannot render {source}: {run.stderr.decode()}")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255.0 ** 2 / error)


@pytest.mark.parametrize("name", sorted(DCMTK_EXACT))
def test_png_equals_dcmtk(name: str, tmp_path: Path) -> None:
    reference = _dcmtk(FILES / DCMTK_EXACT[name], tmp_path / "dcmtk.png")
    ours = _rendered(FILES / name, tmp_path / "png")
    assert ours.shape == reference.shape
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1
    assert _psnr(_rendered(FILES / name, tmp_path / "jpeg", "jpeg"), reference) >= 30


@pytest.mark.parametrize("name", DCMTK_LOSSY)
def test_lossy_jpeg_sources_equal_dcmtk_up_to_the_decoder(name: str, tmp_path: Path) -> None:
    reference = _dcmtk(FILES / name, tmp_path / "dcmtk.png")
    ours = _rendered(FILES / name, tmp_path)
    difference = np.abs(ours.astype(int) - reference.astype(int))
    assert difference.max() <= 3 and difference.mean() < 0.2
    assert _psnr(ours, reference) >= 40


def test_monochrome1_is_inverted_as_dcmtk_does(tmp_path: Path) -> None:
    source = tmp_path / "MR_small_mono1.dcm"
    shutil.copy(FILES / "MR_small.dcm", source)
    subprocess.run([require_tool("dcmodify"), "-nb", "-m", "(0028,0004)=MONOCHROME1",
                    str(source)], check=True, capture_output=True)
    ours = _rendered(source, tmp_path / "mono1")
    assert np.abs(ours.astype(int) - _dcmtk(source, tmp_path / "d.png")).max() <= 1
    plain = _rendered(FILES / "MR_small.dcm", tmp_path / "mono2")
    assert np.abs(ours.astype(int) - (255 - plain.astype(int))).max() <= 1


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_equal_dcmtk(name: str, tmp_path: Path) -> None:
    """1-bit, JPEG-LS, RLE RGB, implicit and deflated multi-frame samples: frame 1."""
    source = ROOT / "samples" / name
    ours = _rendered(source, tmp_path)
    assert np.abs(ours.astype(int) - _dcmtk(source, tmp_path / "d.png")).max() <= 1


def _pydicom_rendering(source: Path) -> np.ndarray:
    """Frame 1 through pydicom's own pipeline: pixel_array, modality LUT, then the first
    window (or min-max) mapped linearly to 0..255."""
    ds = pydicom.dcmread(source)
    pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if ds.SamplesPerPixel == 3:
        return pixels.astype(np.uint8)
    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = float(np.atleast_1d(ds.WindowCenter)[0])
        width = float(np.atleast_1d(ds.WindowWidth)[0])
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    else:
        low, high = values.min(), values.max()
    out = np.clip((values - low) / max(high - low, 1e-12) * 255.0, 0, 255)
    return out.astype(np.uint8)


@pytest.mark.parametrize("name", JPEG2000)
def test_jpeg2000_equals_pydicoms_pipeline(name: str, tmp_path: Path) -> None:
    ours = _rendered(FILES / name, tmp_path)
    expected = _pydicom_rendering(FILES / name)
    assert ours.shape == expected.shape
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1


def test_undecodable_frame_is_a_warning_and_the_instance_converts(tmp_path: Path) -> None:
    results = []
    out = tmp_path / "out"
    Converter(ConvertOptions(output=out, rendered=True, thumbnails=True), jobs=1,
              on_result=results.append).run([FILES / UNDECODABLE])
    (result,) = results
    assert result.status == "converted"
    warning = [w for w in result.warnings if "not rendered" in w]
    assert len(warning) == 1 and "\n" not in warning[0]
    folder = _instance(out, FILES / UNDECODABLE)
    assert (folder / "metadata.gz").is_file() and (folder / "frames/1").is_file()
    assert not list(folder.glob("rendered*")) and not list(folder.glob("thumbnail*"))


def test_thumbnails_at_three_levels(tree: Path) -> None:
    ct = sorted((ROOT / "samples" / "ct").glob("*.dcm"))
    instance = _instance(tree, ct[0])
    series, study = instance.parent.parent, instance.parent.parent.parent.parent
    numbers = sorted((int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber), p)
                     for p in ct)
    middle = _instance(tree, numbers[(len(numbers) - 1) // 2][1]) / "thumbnail.jpg"
    assert (series / "thumbnail.jpg").read_bytes() == middle.read_bytes()
    assert (study / "thumbnail.jpg").is_file()
    for folder, size in ((instance, (64, 64)),
                         (_instance(tree, tree.parent / "wide.dcm"), (THUMBNAIL_SIZE, 192))):
        image = Image.open(folder / "thumbnail.jpg")  # fits 256x256, aspect kept, small
        assert image.format == "JPEG" and image.size == size
        assert (folder / "thumbnail.jpg").stat().st_size <= 20_000
    with dcmweb_serve(tree) as url:
        base = url + "/" + series.relative_to(tree).as_posix()
        study_url = url + "/" + study.relative_to(tree).as_posix()
        instance_url = base + "/instances/" + instance.name
        for target in (instance_url + "/thumbnail", base + "/thumbnail",
                       study_url + "/thumbnail", instance_url + "/rendered",
                       instance_url + "/frames/1/rendered"):
            answer = httpx.get(target)
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
            assert Image.open(io.BytesIO(answer.content)).format == "JPEG"
        assert httpx.get(base + "/thumbnail", headers={"Accept": "image/png"}).status_code \
            == 406
        assert httpx.get(base + "/thumbnail", headers={"Accept": "image/*"}).status_code == 200
        assert httpx.get(base + "/thumbnail?accept=image/png").status_code == 406
        assert httpx.get(base + "/thumbnail?accept=image/jpeg",
                         headers={"Accept": "image/png"}).status_code == 200
        assert httpx.get(instance_url + "/frames/2/rendered").status_code == 404


def test_png_trees_serve_png(tmp_path: Path) -> None:
    tree = tmp_path / "out"
    Converter(ConvertOptions(output=tree, rendered=True, rendered_format="png"),
              jobs=1).run([ROOT / "samples" / "jpegls_8frames.dcm"])
    instance = _instance(tree, ROOT / "samples" / "jpegls_8frames.dcm")
    assert len(list((instance / "rendered-frames").glob("*.png"))) == 8
    with dcmweb_serve(tree) as url:
        target = url + "/" + instance.relative_to(tree).as_posix() + "/frames/8/rendered"
        answer = httpx.get(target, headers={"Accept": "image/png, image/jpeg;q=0.5"})
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert answer.content == (instance / "rendered-frames/8.png").read_bytes()
        assert httpx.get(target, headers={"Accept": "image/jpeg"}).status_code == 406


@pytest.mark.parametrize(("header", "wanted"), [
    (None, True), ("*/*", True), ("image/*", True), ("image/jpeg", True),
    ("image/png", False), ("image/jpeg;q=0", False), ("text/html, image/*;q=0.1", True),
    ("application/dicom", False)])
def test_accept_header(header: str | None, wanted: bool) -> None:
    assert accepts(header, "image/jpeg") is wanted


def test_float_pixel_data_is_rendered_min_max(tmp_path: Path) -> None:
    """Float Pixel Data (dcmtk renders none): min-max over the frame to 0..255."""
    source = syn.float_pixels(tmp_path / "float.dcm", rows=16, columns=12)
    values = pydicom.dcmread(source).pixel_array[0].astype(np.float64)
    windowed = _rendered(source, tmp_path / "window")  # the first window: 40/80
    low, high = 40 - 0.5 - 79 / 2, 40 - 0.5 + 79 / 2
    expected = np.floor(np.clip((values - low) / (high - low), 0, 1) * 255)
    assert np.abs(windowed.astype(int) - expected).max() <= 1
    ds = pydicom.dcmread(source)
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(source)
    ours = _rendered(source, tmp_path / "minmax")
    expected = np.floor((values - values.min()) / (values.max() - values.min()) * 255)
    assert ours.shape == (16, 12)
    assert np.abs(ours.astype(int) - expected).max() <= 1


def test_frames_are_rendered_one_at_a_time(tmp_path: Path) -> None:
    """A 600-frame file (39 MB of Pixel Data) is rendered with the memory of a few frames,
    never decoded whole (Python allocations, numpy's included, traced)."""
    ds = syn.base_dataset(syn.uid(700), syn.uid(700, 1), syn.uid(700, 1, 1), rich=False)
    syn.add_pixels(ds, rows=256, columns=128, bits=16, frames=1)
    one = bytes(ds.PixelData)
    ds.NumberOfFrames = 600
    ds.PixelData = one * 600
    source = syn.save(ds, tmp_path / "many.dcm")
    del ds, one
    tracemalloc.start()
    try:
        result = convert_file(source, ConvertOptions(output=tmp_path / "out", rendered=True),
                              tmp_path / "staging")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == "converted", result.reason
    assert len(list((Path(result.staging) / "rendered-frames").iterdir())) == 600
    assert "render" in result.timings
    assert peak < 8_000_000, peak


@pytest.mark.parametrize("layout", ["folder", "object"])
def test_thumbnails_through_a_store(layout: str) -> None:
    """Series/study thumbnails written through the store: in an object store the key is
    the URL and the object carries its Content-Type; a later image of the other format
    replaces the earlier; removal takes every format."""
    store = MemoryStore(layout=layout)
    jpeg = encode_image(np.zeros((4, 6), np.uint8), "jpeg", thumbnail=True)
    png = encode_image(np.zeros((4, 6), np.uint8), "png", thumbnail=True)
    publish_rendered(store, "series_thumbnail", jpeg, "jpg", study="1.2", series="1.3")
    publish_rendered(store, "series_thumbnail", png, "png", study="1.2", series="1.3")
    expected = {"folder": "studies/1.2/series/1.3/thumbnail.png",
                "object": "studies/1.2/series/1.3/thumbnail"}[layout]
    assert list(store.objects) == [expected]
    assert store.objects[expected].headers.content_type == "image/png"
    assert TreeReader(store).rendered("series_thumbnail", study="1.2", series="1.3") == (
        png, "png")
    remove_rendered(store, "series_thumbnail", study="1.2", series="1.3")
    assert not store.objects


def test_a_series_converted_again_without_thumbnails_loses_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ct = sorted((ROOT / "samples" / "ct").glob("*.dcm"))
    Converter(ConvertOptions(output=out, thumbnails=True), jobs=1).run(ct)
    assert len(list(out.rglob("thumbnail.jpg"))) == len(ct) + 2
    Converter(ConvertOptions(output=out), jobs=1).run(ct)
    assert not list(out.rglob("thumbnail.*"))


def test_cli_flags(tmp_path: Path) -> None:
    """`dcmweb convert --rendered --thumbnails --rendered-format png`; an unknown format
    is a usage error before anything is converted."""
    out = tmp_path / "out"
    source = ROOT / "samples" / "rle_rgb_4frames.dcm"
    done = CliRunner().invoke(main, ["convert", str(source), "-d", str(out), "-q",
                                     "--rendered", "--thumbnails", "--rendered-format", "png"])
    assert done.exit_code == 0, done.output
    instance = _instance(out, source)
    assert sorted(p.name for p in (instance / "rendered-frames").iterdir()) == [
        f"{n}.png" for n in range(1, 5)]
    assert (instance / "rendered.png").read_bytes() == (
        instance / "rendered-frames/1.png").read_bytes()
    assert (instance.parent.parent / "thumbnail.png").is_file()
    refused = CliRunner().invoke(main, ["convert", str(source), "-d", str(tmp_path / "x"),
                                        "--rendered-format", "gif"])
    assert refused.exit_code == 2 and not (tmp_path / "x" / "studies").exists()
    with pytest.raises(OptionError, match="gif"):
        ConvertOptions(output=out, rendered_format="gif")


#: our corpus (tests/corpus.py): names dcmtk renders no frame of
CORPUS_NOT_DCMTK = {"float", "jpeg2000", "encapsulated_uncompressed", "video_mpeg4"}
#: lossy JPEG: libjpeg and dcmtk's IJG decoder differ slightly (see DCMTK_LOSSY)
CORPUS_LOSSY = {"jpeg_baseline", "jpeg_baseline_rgb", "jpeg_extended"}


def test_every_transfer_syntax_of_the_corpus_is_rendered(tmp_path: Path) -> None:
    """Each corpus file converts with every frame rendered (a video stream, which pydicom
    cannot decode, with the warning); frame 1 equals dcmtk's where dcmtk decodes the
    syntax; the encapsulated uncompressed frames equal their native source's."""
    files = corpus.build(tmp_path / "corpus")
    rendered: dict[str, Path] = {}
    for name, path in files.items():
        result = convert_file(path, ConvertOptions(output=tmp_path / "out", rendered=True,
                                                   rendered_format="png"),
                              tmp_path / "staging")
        assert result.status == "converted", (name, result.reason)
        warnings = [w for w in result.warnings if "not rendered" in w]
        if name == "video_mpeg4":
            assert warnings and "no decoder" in warnings[0]
            continue
        assert not warnings, (name, warnings)
        folder = Path(result.staging) / "rendered-frames"
        assert len(list(folder.iterdir())) == result.frames, name
        rendered[name] = folder
        if name not in CORPUS_NOT_DCMTK:
            ours = np.asarray(Image.open(folder / "1.png"))
            reference = _dcmtk(path, tmp_path / f"{name}.png")
            if name in CORPUS_LOSSY:  # decoders differ, the window magnifies it
                assert _psnr(ours, reference) >= 40, name
            else:
                assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1, name
    for n in (1, 2, 3):
        assert (rendered["encapsulated_uncompressed"] / f"{n}.png").read_bytes() == (
            rendered["mono16"] / f"{n}.png").read_bytes()
