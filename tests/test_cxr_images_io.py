"""Loading radiographs: PNG/JPEG/DICOM, MONOCHROME1, windowing, 16-bit, orientation, corrupt files; preprocessing."""
import io

import numpy as np
import pytest
from PIL import Image

from clinseek_cxr.card import ModelCard
from clinseek_cxr.images import ImageError, load_image, load_image_bytes, preprocess


def _png(a: np.ndarray, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _dicom(tmp_path, pixels: np.ndarray, photometric="MONOCHROME2", window=None, rescale=None,
           orientation=None, name="x.dcm"):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / name
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if orientation:
        ds.PatientOrientation = orientation
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _ramp(h=32, w=48, hi=4000):
    return np.tile(np.linspace(0, hi, w), (h, 1)).astype(np.uint16)


# PNG / JPEG ----------------------------------------------------------------------------------------------------
def test_png_8bit_scaled_by_255_and_hash_is_of_the_bytes(tmp_path):
    a = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))
    data = _png(a)
    img = load_image_bytes(data, "a.png")
    assert img.kind == "png" and img.pixels.dtype == np.float32
    np.testing.assert_allclose(img.pixels, a / 255.0, atol=1e-6)
    import hashlib

    assert img.sha256 == hashlib.sha256(data).hexdigest()


def test_png_16bit_uses_its_range(tmp_path):
    a = np.tile(np.linspace(1000, 3000, 40), (20, 1)).astype(np.uint16)
    p = tmp_path / "a16.png"
    Image.fromarray(a).save(p)
    img = load_image(p)
    assert img.pixels.min() == pytest.approx(0.0) and img.pixels.max() == pytest.approx(1.0)
    assert any("16-bit" in n for n in img.notes)


def test_jpeg_and_rgb_are_read_as_grayscale(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    img = load_image_bytes(buf.getvalue(), "c.jpg")
    assert img.kind == "jpeg" and img.pixels.shape == (20, 30)
    assert 0.15 < img.pixels.mean() < 0.3  # 200 * 0.299 / 255 ~ 0.23
    img2 = load_image_bytes(_png(rgb), "c.png")
    assert any("grayscale" in n for n in img2.notes)


@pytest.mark.parametrize("data,match", [
    (b"", "unsupported image format"),
    (b"hello world, not an image", "unsupported image format"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "corrupt or unreadable PNG"),
    (b"\xff\xd8\xff\xe0" + b"\1" * 60, "corrupt or unreadable JPEG"),
])
def test_corrupt_or_unsupported_bytes_give_a_clear_error(data, match):
    with pytest.raises(ImageError, match=match):
        load_image_bytes(data, "bad")


def test_truncated_png_is_an_error_not_a_crash(tmp_path):
    data = _png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    with pytest.raises(ImageError, match="bad.png: corrupt"):
        load_image_bytes(data[: len(data) // 2], "bad.png")


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")


# DICOM ---------------------------------------------------------------------------------------------------------
def test_dicom_16bit_window_from_file(tmp_path):
    p = _dicom(tmp_path, _ramp(), window=(2000, 2000))
    img = load_image(p)
    assert img.kind == "dicom"
    # Values 0..4000 through the window [1000, 3000]: first quarter black, last quarter white, linear between.
    row = img.pixels[0]
    assert row[:10].max() == 0.0 and row[-10:].min() == 1.0
    mid = row[len(row) // 2]
    assert 0.4 < mid < 0.6
    assert any("window from the file" in n for n in img.notes)


def test_dicom_monochrome1_is_inverted(tmp_path):
    a = _ramp()
    m2 = load_image(_dicom(tmp_path, a, "MONOCHROME2", window=(2000, 4000), name="m2.dcm")).pixels
    m1 = load_image(_dicom(tmp_path, a, "MONOCHROME1", window=(2000, 4000), name="m1.dcm"))
    np.testing.assert_allclose(m1.pixels, 1.0 - m2, atol=1e-6)
    assert "MONOCHROME1 inverted" in m1.notes


def test_dicom_without_window_uses_card_window_else_full_range(tmp_path):
    p = _dicom(tmp_path, _ramp())
    full = load_image(p)
    assert full.pixels.min() == 0.0 and full.pixels.max() == 1.0
    assert any("full range" in n for n in full.notes)
    carded = load_image(p, window=(1000, 1000))  # [500, 1500]
    assert (carded.pixels[0] == 1.0).sum() > (full.pixels[0] == 1.0).sum()
    assert any("model card" in n for n in carded.notes)


def test_dicom_rescale_applies_before_the_window(tmp_path):
    a = _ramp(hi=1000)
    # stored 0..1000, rescaled *2 - 1000 -> -1000..1000; window centred on 0 should give a symmetric ramp
    img = load_image(_dicom(tmp_path, a, window=(0, 2000), rescale=(2, -1000)))
    row = img.pixels[0]
    assert row[0] == pytest.approx(0.0, abs=1e-3) and row[-1] == pytest.approx(1.0, abs=1e-3)
    assert row[len(row) // 2] == pytest.approx(0.5, abs=0.05)


def test_dicom_orientation_flipped_to_radiographic_convention(tmp_path):
    a = _ramp()  # increases to the right
    normal = load_image(_dicom(tmp_path, a, orientation=["L", "F"], name="lf.dcm")).pixels
    flipped = load_image(_dicom(tmp_path, a, orientation=["R", "F"], name="rf.dcm"))
    np.testing.assert_allclose(flipped.pixels, normal[:, ::-1])
    assert any("left-right" in n for n in flipped.notes)


def test_dicom_without_pixels_is_an_error(tmp_path):
    p = _dicom(tmp_path, _ramp())
    import pydicom

    ds = pydicom.dcmread(p)
    del ds.PixelData
    ds.save_as(p)
    with pytest.raises(ImageError, match="no pixel data"):
        load_image(p)


def test_real_rg1_chest_radiograph_loads_the_right_way_round():
    from pydicom.data import get_testdata_file

    img = load_image(get_testdata_file("RG1_UNCR.dcm"))  # MONOCHROME1, 15-bit, a PA adult chest
    p = img.pixels
    assert p.shape == (1955, 1841) and "MONOCHROME1 inverted" in img.notes
    h, w = p.shape

    def region(r0, r1, c0, c1):
        return float(p[int(r0 * h):int(r1 * h), int(c0 * w):int(c1 * w)].mean())

    lungs = (region(.3, .5, .2, .35) + region(.3, .5, .65, .8)) / 2
    mediastinum = region(.3, .5, .45, .55)
    assert mediastinum > lungs + 0.15  # dense is bright: not shown as a negative
    # The heart lies on the patient's left, which is the image right.
    assert region(.6, .75, .55, .7) > region(.6, .75, .3, .45)


# preprocessing -------------------------------------------------------------------------------------------------
def _card(**pre) -> ModelCard:
    return ModelCard.model_validate({
        "name": "t", "weights": "t.onnx", "labels": ["a"], "input": {"size": pre.pop("size", 16),
                                                                     "channels": pre.pop("channels", 1)},
        "preprocess": pre, "provenance": {"training_data": "x", "weights_sha256": "0" * 64},
        "intended_use": "tests"})


def test_preprocess_crops_the_centre_of_a_non_square_image():
    a = np.zeros((40, 80), np.float32)
    a[:, 20:60] = 1.0  # the central square is white, the sides black
    x = preprocess(a, _card(resize=16, crop="center"))
    assert x.shape == (1, 16, 16) and x.dtype == np.float32
    assert x.min() > 0.8  # only the bilinear edge blends in a little black
    squashed = preprocess(a, _card(resize=16, crop="none"))
    assert squashed.min() < 0.1  # without the crop the black sides come in


def test_preprocess_scalings_and_channels():
    a = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    xrv = preprocess(a, _card(resize=32, scaling="xrv", size=32))
    assert xrv.min() == pytest.approx(-1024, abs=1) and xrv.max() == pytest.approx(1024, abs=1)
    ms = preprocess(a, _card(resize=32, size=32, scaling="mean_std", mean=[0.5], std=[0.25]))
    np.testing.assert_allclose(ms[0], (a - 0.5) / 0.25, atol=1e-4)
    rgb = preprocess(a, _card(resize=32, size=32, channels=3, scaling="mean_std", mean=[0.4, 0.5, 0.6],
                              std=[1, 1, 1]))
    assert rgb.shape == (3, 32, 32)
    np.testing.assert_allclose(rgb[0] - rgb[2], 0.2, atol=1e-5)
