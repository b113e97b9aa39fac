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

__all__ = ["draft_size", "resize_and_crop", "normalize", "to_layout", "quantize", "preprocess", "preprocess_batch"]

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


def resize_and_crop(img: Image.Image, spec: InputSpec, orientation: int = 1) -> Image.Image:
    """Resize (Pillow, antialiased) then crop as the spec says. ``img`` must be RGB.

    Args:
        img: The image to resize.
        spec: The model's input spec.
        orientation: EXIF orientation still to apply to ``img``. The resize then runs on the stored pixels and
            only the small result is transposed. That equals transposing first up to the rounding between
            Pillow's two resize passes (at most 1 on some pixel values), so :func:`preprocess` uses it only for
            photos the JPEG decoder has already approximated by downscaling (draft).
    """
    resample = _RESAMPLE[spec.interpolation]
    swap = orientation in (5, 6, 7, 8)
    w, h = img.size[::-1] if swap else img.size
    if spec.resize_mode == "stretch":
        size = (spec.resize_width, spec.resize_height)
    else:  # shorter_side
        target = spec.resize_height
        if w <= h:
            size = (target, max(target, int(round(h * target / w))))
        else:
            size = (max(target, int(round(w * target / h))), target)
    if size != (w, h):
        # reducing_gap=None keeps Pillow's exact resampling (no JPEG-style reduce shortcut), so the Java port
        # in the Android demo can reproduce it bit for bit.
        img = img.resize(size[::-1] if swap else size, resample=resample, reducing_gap=None)
    img = orient(img, orientation)
    if spec.crop_mode == "center" and img.size != (spec.width, spec.height):
        rw, rh = img.size
        left = (rw - spec.width) // 2
        top = (rh - spec.height) // 2
        img = img.crop((left, top, left + spec.width, top + spec.height))
    return img


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
    rgb, orientation, scaled = decode_rgb(src, spec.background, draft_size(spec), max_pixels, name)
    if scaled:  # already approximate: rotate after shrinking, not the decoded megapixels
        img = resize_and_crop(rgb, spec, orientation)
    else:
        img = resize_and_crop(orient(rgb, orientation), spec)
    return to_layout(normalize(np.asarray(img), spec), spec.layout)


def preprocess_batch(images: Sequence[ImageSource], spec: InputSpec) -> np.ndarray:
    """Preprocess several images into one float32 batch tensor (raises on the first bad image)."""
    return np.concatenate([preprocess(im, spec) for im in images], axis=0)
