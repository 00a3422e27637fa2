"""Loading radiographs (PNG, JPEG, DICOM) into display intensities, and preprocessing them for a model card.

`load_image` returns float32 in [0, 1], bright = dense (as radiographs are read), patient's right on the image
left when the DICOM says how it is oriented. DICOM: modality LUT (rescale), then the file's VOI window or LUT, else
the card's window, else the full range; MONOCHROME1 is inverted; 8-to-16-bit data. PNG/JPEG: 8-bit scaled by 255,
16-bit by its own range. Anything unreadable raises ImageError with the reason (a tool turns it into an error
observation; the CLI into one message).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinseek.errors import UserError

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


class ImageError(UserError):
    """An image file that cannot be used: missing, corrupt or of an unsupported kind."""


@dataclass
class LoadedImage:
    pixels: np.ndarray  # float32 HxW in [0, 1], bright = dense
    sha256: str  # of the file's bytes: the cache key with the model's hash
    kind: str  # png | jpeg | dicom
    notes: tuple[str, ...] = ()  # what was done on the way (window used, inversion, flips)


def image_kind(data: bytes, name: str = "") -> str | None:
    if data.startswith(_PNG):
        return "png"
    if data.startswith(_JPEG):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if name.lower().endswith((".dcm", ".dicom")):
        return "dicom"  # DICOM without the preamble; pydicom decides
    return None


def load_image(path: str | Path, window: tuple[float, float] | None = None) -> LoadedImage:
    """Read an image file. `window` (center, width) is used for DICOM files that carry no window of their own."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"image file not found: {path}") from None
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror or exc}") from None
    return load_image_bytes(data, name=str(path), window=window)


def load_image_bytes(data: bytes, name: str = "image", window: tuple[float, float] | None = None) -> LoadedImage:
    digest = hashlib.sha256(data).hexdigest()
    kind = image_kind(data, name)
    if kind is None:
        raise ImageError(f"{name}: unsupported image format (expected PNG, JPEG or DICOM)")
    try:
        if kind == "dicom":
            pixels, notes = _decode_dicom(data, window)
        else:
            pixels, notes = _decode_pil(data)
    except ImageError as exc:
        raise ImageError(f"{name}: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many types for corrupt data; all mean the same here
        raise ImageError(f"{name}: corrupt or unreadable {kind.upper()} image ({type(exc).__name__}: {exc})") \
            from None
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise ImageError(f"{name}: image of shape {pixels.shape} is too small or not 2-D")
    if not np.isfinite(pixels).all():
        raise ImageError(f"{name}: image holds non-finite values")
    return LoadedImage(pixels=pixels.astype(np.float32), sha256=digest, kind=kind, notes=tuple(notes))


def _normalise(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(a.shape, np.float32)
    return np.clip((a.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def _decode_pil(data: bytes) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()  # decode now, so a truncated file fails here
        notes = []
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float32)
            lo, hi = float(a.min()), float(a.max())
            notes.append(f"16-bit scaled by its range [{lo:g}, {hi:g}]")
            return _normalise(a, lo, hi), notes
        if im.mode == "F":
            a = np.asarray(im, dtype=np.float32)
            return _normalise(a, float(a.min()), float(a.max())), ["float image scaled by its range"]
        if im.mode != "L":
            notes.append(f"converted from {im.mode} to grayscale")
            im = im.convert("L")
        return np.asarray(im, dtype=np.float32) / 255.0, notes


def _decode_dicom(data: bytes, window: tuple[float, float] | None) -> tuple[np.ndarray, list[str]]:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"not a readable DICOM file ({exc})") from None
    if "PixelData" not in ds:
        raise ImageError("DICOM file holds no pixel data")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing codec or damaged pixel data
        tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(tsuid, "name", tsuid)
        raise ImageError(f"cannot decode DICOM pixel data (transfer syntax {name}): {exc}") from None
    notes: list[str] = []
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]
        notes.append(f"first of {frames} frames")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim == 3 and arr.shape[-1] == 3:
            if photometric.startswith("YBR"):
                from pydicom.pixels import convert_color_space

                arr = convert_color_space(arr, photometric, "RGB")
            arr = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            notes.append(f"converted from {photometric} to grayscale")
        else:
            raise ImageError(f"unsupported photometric interpretation {photometric}")
        values = arr.astype(np.float32)
        lo, hi = float(values.min()), float(values.max())
        return _normalise(values, lo, hi), notes
    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    file_window = _file_window(ds)
    if file_window is not None:
        center, width = file_window
        pixels = _normalise(values, center - width / 2, center + width / 2)
        notes.append(f"window from the file (center {center:g}, width {width:g})")
    elif "VOILUTSequence" in ds:
        out = np.asarray(apply_voi_lut(arr, ds, index=0), dtype=np.float64)
        pixels = _normalise(out, float(out.min()), float(out.max()))
        notes.append("VOI LUT from the file")
    elif window is not None:
        center, width = window
        pixels = _normalise(values, center - width / 2, center + width / 2)
        notes.append(f"window from the model card (center {center:g}, width {width:g})")
    else:
        lo, hi = float(values.min()), float(values.max())
        pixels = _normalise(values, lo, hi)
        notes.append("no window: full range")
    if photometric == "MONOCHROME1":  # high values are dark on MONOCHROME1: invert so dense is bright
        pixels = 1.0 - pixels
        notes.append("MONOCHROME1 inverted")
    pixels, flips = _orient(pixels, ds.get("PatientOrientation"))
    notes.extend(flips)
    return pixels, notes


def _file_window(ds) -> tuple[float, float] | None:
    """The file's first (linear) window, after the modality LUT, as PS3.3 C.11.2 defines it."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None

    def first(v):  # a window may be multi-valued; the first is the default
        try:
            return float(v)
        except TypeError:
            return float(v[0])

    try:
        center, width = first(ds.WindowCenter), first(ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        return None
    return (center, width) if width > 0 else None


def _orient(pixels: np.ndarray, orientation) -> tuple[np.ndarray, list[str]]:
    """Flip to the radiographic convention: columns run towards the patient's left (L), rows towards the feet (F).

    PatientOrientation (0020,0020) gives the patient direction of the rows and the columns; a film stored the
    other way round ('R' or 'H' first) is flipped so every image reaches the model the same way.
    """
    notes = []
    try:
        row_dir, col_dir = (str(v).upper() for v in list(orientation)[:2])
    except (TypeError, ValueError):
        return pixels, notes
    if row_dir.startswith("R"):
        pixels = pixels[:, ::-1]
        notes.append("flipped left-right (PatientOrientation)")
    if col_dir.startswith("H"):
        pixels = pixels[::-1, :]
        notes.append("flipped top-bottom (PatientOrientation)")
    return np.ascontiguousarray(pixels), notes


def preprocess(pixels: np.ndarray, card) -> np.ndarray:
    """Display intensities -> the model's input tensor (C, H, W) float32, as the card's `preprocess` says."""
    from PIL import Image

    pp, size, channels = card.preprocess, card.input.size, card.input.channels
    im = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    h, w = pixels.shape
    if pp.crop == "center":
        short = pp.resize or size
        scale = short / min(h, w)
        nh, nw = max(short, round(h * scale)), max(short, round(w * scale))
        im = im.resize((nw, nh), Image.BILINEAR) if (nh, nw) != (h, w) else im
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    else:  # squash to the input size (the aspect ratio changes)
        im = im.resize((size, size), Image.BILINEAR) if (h, w) != (size, size) else im
    x = np.asarray(im, dtype=np.float32)
    if pp.scaling == "xrv":
        x = (2.0 * x - 1.0) * 1024.0
    x = np.repeat(x[None], channels, axis=0)
    if pp.scaling == "mean_std":
        mean = np.asarray(pp.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(pp.std, np.float32).reshape(-1, 1, 1)
        x = (x - mean) / std
    return np.ascontiguousarray(x, dtype=np.float32)
