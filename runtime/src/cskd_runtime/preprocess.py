"""Turn an upright RGB image into the exact tensor a model's manifest asks for.

This module is the one implementation of the contract's preprocessing. Training evaluation, the exporter's
calibration and parity checks, the benchmarks and the Android golden files all call it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from .imageio import DEFAULT_MAX_PIXELS, ImageSource, decode_rgb, orient
from .manifest import InputSpec, Quantization

__all__ = ["draft_size", "resize_and_crop", "resize_and_crop_stored", "normalize", "to_layout", "quantize",
           "preprocess", "preprocess_batch"]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def draft_size(spec: InputSpec) -> tuple[int, int] | None:
    """The (width, height) a JPEG decoder may downscale to without leaving the contract's tolerance.

    ``None`` when the manifest forbids draft decoding. For ``shorter_side`` resizing the longer side is not
    known before the header is read, so both sides are bounded by the shorter-side target, which is safe.
    """
    if not spec.draft:
        return None
    f = spec.draft_factor
    return (int(np.ceil(spec.resize_width * f)), int(np.ceil(spec.resize_height * f)))


def _resize_size(w: int, h: int, spec: InputSpec) -> tuple[int, int]:
    if spec.resize_mode == "stretch":
        return (spec.resize_width, spec.resize_height)
    target = spec.resize_height  # shorter_side
    if w <= h:
        return (target, max(target, int(round(h * target / w))))
    return (max(target, int(round(w * target / h))), target)


def _crop_box(rw: int, rh: int, spec: InputSpec) -> tuple[int, int, int, int]:
    if spec.crop_mode != "center" or (rw, rh) == (spec.width, spec.height):
        return (0, 0, rw, rh)
    left, top = (rw - spec.width) // 2, (rh - spec.height) // 2
    return (left, top, left + spec.width, top + spec.height)


def resize_and_crop(img: Image.Image, spec: InputSpec) -> Image.Image:
    """Resize (Pillow, antialiased) then crop as the spec says: the contract, exactly. ``img`` must be RGB."""
    size = _resize_size(*img.size, spec)
    if size != img.size:
        # reducing_gap=None keeps Pillow's exact resampling (no JPEG-style reduce shortcut), so the Java port
        # in the Android demo can reproduce it bit for bit.
        img = img.resize(size, resample=_RESAMPLE[spec.interpolation], reducing_gap=None)
    box = _crop_box(*img.size, spec)
    return img if box == (0, 0, *img.size) else img.crop(box)


def _stored_box(box: tuple[int, int, int, int], orientation: int, w: int, h: int) -> tuple[int, int, int, int]:
    """Where an upright box lies in the stored image (size ``w`` x ``h``) of the given EXIF orientation."""
    l, t, r, b = box
    return {
        1: (l, t, r, b),
        2: (w - r, t, w - l, b),
        3: (w - r, h - b, w - l, h - t),
        4: (l, h - b, r, h - t),
        5: (t, l, b, r),
        6: (t, h - r, b, h - l),
        7: (w - b, h - r, w - t, h - l),
        8: (w - b, l, w - t, r),
    }[orientation]


def resize_and_crop_stored(img: Image.Image, spec: InputSpec, orientation: int) -> Image.Image:
    """:func:`resize_and_crop` of ``orient(img, orientation)``, computed the cheap way: resample only the crop
    region of the stored pixels, then orient the small result.

    The filter geometry is the contract's, but the two resize passes run in the stored orientation and the
    crop box is given to Pillow in floating point, so some pixel values differ by 1 from the exact order.
    :func:`preprocess` uses it only for photos the JPEG decoder has already approximated by downscaling (draft).
    """
    swap = orientation in (5, 6, 7, 8)
    sw, sh = img.size
    rw, rh = _resize_size(*((sh, sw) if swap else (sw, sh)), spec)
    w, h = (rh, rw) if swap else (rw, rh)  # the resized image, in the stored orientation
    x0, y0, x1, y1 = _stored_box(_crop_box(rw, rh, spec), orientation, w, h)
    fx, fy = sw / w, sh / h
    out = img.resize((x1 - x0, y1 - y0), resample=_RESAMPLE[spec.interpolation],
                     box=(x0 * fx, y0 * fy, x1 * fx, y1 * fy), reducing_gap=None)
    return orient(out, orientation)


def normalize(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """HxWx3 uint8 -> HxWx3 float32 ``(pixel * scale - mean) / std``."""
    x = rgb.astype(np.float32) * np.float32(spec.scale)
    x -= np.asarray(spec.mean, dtype=np.float32)
    x /= np.asarray(spec.std, dtype=np.float32)
    return x


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """HxWx3 or NxHxWx3 -> the requested layout (NCHW or NHWC), always with a batch axis."""
    if x.ndim == 3:
        x = x[None]
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def quantize(x: np.ndarray, q: Quantization, dtype: str) -> np.ndarray:
    """Affine-quantize a float tensor with round-half-to-even and saturation, as TFLite does."""
    info = np.iinfo(dtype)
    v = np.rint(x / np.float32(q.scale)) + q.zero_point
    return np.clip(v, info.min, info.max).astype(dtype)


def cast_input(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Float32 normalised tensor -> the dtype (and quantization) the artifact expects."""
    if spec.dtype == "float32":
        return x.astype(np.float32, copy=False)
    if spec.dtype == "float16":
        return x.astype(np.float16)
    if spec.quantization is None:  # validated manifests never get here
        raise ValueError(f"input dtype {spec.dtype} needs quantization parameters")
    return quantize(x, spec.quantization, spec.dtype)


def preprocess(src: ImageSource | Image.Image, spec: InputSpec, name: str | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode (if needed) and preprocess one image into a float32 1x... tensor in the spec's layout.

    The result is the normalised float tensor before any input quantization; see :func:`cast_input`.

    Raises:
        ImageDecodeError: naming the image and the problem.
    """
    d = decode_rgb(src, spec.background, draft_size(spec), max_pixels, name)
    if d.scaled:  # already approximate: resample only what the crop keeps, and rotate the small result
        img = resize_and_crop_stored(d.image, spec, d.orientation)
    else:
        img = resize_and_crop(d.upright(), spec)
    return to_layout(normalize(np.asarray(img), spec), spec.layout)


def preprocess_batch(images: Sequence[ImageSource], spec: InputSpec) -> np.ndarray:
    """Preprocess several images into one float32 batch tensor (raises on the first bad image)."""
    return np.concatenate([preprocess(im, spec) for im in images], axis=0)
