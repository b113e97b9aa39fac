"""Decoding photos into upright RGB images, the same way for every caller.

Everything that turns "something the user handed us" into pixels lives here: paths, bytes, file objects, PIL
images and numpy arrays; EXIF orientation; every PIL mode (L, LA, P with transparency, RGBA, CMYK, I;16, F, ...);
JPEG draft decoding; and a guard against decompression bombs that fails *before* any pixel is decoded.
"""

from __future__ import annotations

import io
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "ImageSource",
    "ImageDecodeError",
    "DEFAULT_MAX_PIXELS",
    "Decoded",
    "ORIENTATION_TRANSPOSES",
    "decode",
    "open_image",
    "orient",
    "to_rgb",
    "load_rgb",
    "decode_rgb",
]

logger = logging.getLogger(__name__)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray]

#: Largest image (in pixels) we agree to decode: 2.5x a 100 MP medium-format frame. A PNG header claiming
#: 60000x60000 (3.6 GP, ~10 GB as RGB) is refused before decoding.
DEFAULT_MAX_PIXELS = 256_000_000


class ImageDecodeError(ValueError):
    """A photo could not be turned into pixels. ``source`` names it and ``reason`` says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


#: EXIF orientation -> the Pillow transposition that makes the stored pixels upright (what
#: ``ImageOps.exif_transpose`` applies). Orientations 5..8 swap width and height.
ORIENTATION_TRANSPOSES: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Decoded:
    """A decoded photo still in its stored orientation.

    Attributes:
        image: The pixels as stored in the file, in their original PIL mode.
        orientation: EXIF orientation (1..8) that :func:`orient` applies to make them upright.
        scaled: True when the JPEG decoder downscaled while decoding (draft), i.e. the pixels are already an
            approximation of a full decode.
    """

    image: Image.Image
    orientation: int = 1
    scaled: bool = False

    def upright(self) -> Image.Image:
        """The image with its EXIF orientation applied."""
        return orient(self.image, self.orientation)


def orient(img: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation (1..8) to ``img``; orientation 1 returns ``img`` itself, not a copy.

    The transposed image's metadata no longer carries the orientation (as with ``ImageOps.exif_transpose``),
    so handing it back to any EXIF-aware reader does not rotate it a second time.
    """
    method = ORIENTATION_TRANSPOSES.get(orientation)
    if method is None:
        return img
    out = img.transpose(method)
    try:
        exif = out.getexif()
        if 0x0112 in exif:
            del exif[0x0112]
            if "exif" in out.info:
                out.info["exif"] = exif.tobytes()
    except Exception:  # an EXIF block Pillow cannot rewrite: drop it rather than keep a stale orientation
        out.info.pop("exif", None)
    for key in ("XML:com.adobe.xmp", "xmp"):  # Pillow also reads the orientation from XMP
        if key in out.info:
            out.info[key] = _strip_xmp_orientation(out.info[key])
    return out


def _strip_xmp_orientation(xmp: Any) -> Any:
    if isinstance(xmp, tuple):
        return tuple(_strip_xmp_orientation(v) for v in xmp)
    text = isinstance(xmp, str)
    data = xmp.encode() if text else bytes(xmp)
    for pattern in (rb'tiff:Orientation="[0-9]"', rb"<tiff:Orientation>[0-9]</tiff:Orientation>"):
        data = re.sub(pattern, b"", data)
    return data.decode() if text else data


def _describe(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    if isinstance(src, Image.Image):
        return f"<PIL {src.mode} {src.width}x{src.height}>"
    if isinstance(src, np.ndarray):
        return f"<ndarray {src.dtype} {tuple(src.shape)}>"
    return getattr(src, "name", None) or f"<{type(src).__name__}>"


def open_image(
    src: ImageSource,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Open ``src`` as an upright PIL image with all pixels loaded.

    Args:
        src: A path, encoded bytes, a binary file object, a PIL image or an HxW / HxWxC uint8/uint16/float array.
            Arrays are taken as RGB(A) in pixel order, already upright.
        draft_size: If given and ``src`` is a JPEG, let the decoder downscale by a power of two while keeping at
            least this (width, height) *after* EXIF rotation. Much faster for 12 MP photos.
        max_pixels: Refuse images with more pixels than this, read from the header before decoding.
        name: Name used in error messages (defaults to the path or a description of ``src``).

    Returns:
        The decoded image, EXIF orientation applied, in its original PIL mode.

    Raises:
        ImageDecodeError: naming the source and the reason (empty, truncated, not an image, too large, ...).
    """
    return decode(src, draft_size=draft_size, max_pixels=max_pixels, name=name).upright()


def decode(
    src: ImageSource,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Decoded:
    """Decode ``src`` with all pixels loaded, leaving the EXIF orientation to the caller.

    Same arguments and errors as :func:`open_image`. Keeping the stored orientation lets a caller that is about
    to shrink the image rotate the small result instead of the full-size pixels.
    """
    label = name or _describe(src)
    if isinstance(src, np.ndarray):
        return Decoded(_from_array(src, label))
    if isinstance(src, Image.Image):
        _check_size(src, max_pixels, label)
        return Decoded(src, _orientation(src, label))

    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise ImageDecodeError(label, "file not found")
        if path.is_dir():
            raise ImageDecodeError(label, "is a directory, not an image")
        if path.stat().st_size == 0:
            raise ImageDecodeError(label, "empty file (0 bytes)")
        fp: IO[bytes] = open(path, "rb")
        close = True
    elif isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise ImageDecodeError(label, "empty input (0 bytes)")
        fp = io.BytesIO(bytes(src))
        close = True
    elif hasattr(src, "read"):
        fp = src  # type: ignore[assignment]
        close = False
    else:
        raise ImageDecodeError(label, f"unsupported input type {type(src).__name__}")

    try:
        try:
            # Our own limit replaces Pillow's global one so a library import never changes process-wide state.
            img = Image.open(fp, formats=None)
        except UnidentifiedImageError:
            raise ImageDecodeError(label, "not a recognised image format") from None
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(label, f"decompression bomb refused ({exc})") from None
        except OSError as exc:
            raise ImageDecodeError(label, f"cannot read image header ({exc})") from None
        _check_size(img, max_pixels, label)
        orientation = _orientation(img, label)
        stored_size = img.size
        if draft_size is not None and img.format == "JPEG":
            _apply_draft(img, draft_size, orientation)
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(label, f"decompression bomb refused ({exc})") from None
        except (OSError, SyntaxError, ValueError) as exc:
            msg = str(exc)
            if "truncated" in msg or "broken data stream" in msg or "image file is" in msg:
                raise ImageDecodeError(label, f"truncated or corrupt image data ({msg})") from None
            raise ImageDecodeError(label, f"cannot decode image ({msg})") from None
        return Decoded(img, orientation, scaled=img.size != stored_size)
    finally:
        if close:
            fp.close()


def _check_size(img: Image.Image, max_pixels: int, label: str) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(label, f"invalid image size {w}x{h}")
    if w * h > max_pixels:
        raise ImageDecodeError(
            label,
            f"image is {w}x{h} = {w * h / 1e6:.0f} MP, over the {max_pixels / 1e6:.0f} MP limit "
            "(possible decompression bomb; raise max_pixels if the photo is genuine)",
        )


def _orientation(img: Image.Image, label: str = "") -> int:
    try:
        value = int(img.getexif().get(0x0112, 1) or 1)
    except Exception as exc:  # a damaged EXIF block must not sink the photo; its pixels are still usable
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", label or "image", exc)
        return 1
    return value if value in ORIENTATION_TRANSPOSES else 1


def _apply_draft(img: Image.Image, min_size: tuple[int, int], orientation: int) -> None:
    # EXIF orientations 5..8 swap width and height: ask the decoder for the size the upright image needs.
    w, h = min_size
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    mode = img.mode if img.mode in ("RGB", "L", "CMYK") else None
    img.draft(mode, (w, h))


def _from_array(arr: np.ndarray, label: str) -> Image.Image:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageDecodeError(label, f"array must be HxW, HxWx1, HxWx3 or HxWx4 (got shape {arr.shape})")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageDecodeError(label, f"array has an empty side (shape {arr.shape})")
    if arr.dtype == np.uint8:
        a8 = arr
    elif arr.dtype == np.uint16:
        a8 = (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageDecodeError(label, "array contains NaN or infinity")
        # Floats are taken as 0..1 (the convention of most imaging libraries).
        a8 = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ImageDecodeError(label, f"unsupported array dtype {arr.dtype} (use uint8, uint16 or float 0..1)")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[a8.shape[2]]
    return Image.fromarray(np.ascontiguousarray(a8[:, :, 0] if mode == "L" else a8), mode)


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, compositing transparency onto ``background``.

    Handles: 1, L, LA, La, P (with or without a transparency entry), PA, RGB, RGBA, RGBa, RGBX, CMYK, YCbCr,
    LAB, HSV, I, I;16 variants and F. 16-bit and 32-bit greyscale are scaled by their nominal range rather
    than clipped, which is what Pillow's own ``convert('L')`` gets wrong for I;16.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    elif mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    elif mode in ("LA", "La"):
        img = img.convert("RGBA")
        mode = "RGBA"
    elif mode == "RGBa":
        img = img.convert("RGBA")
        mode = "RGBA"
    elif mode == "L" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    elif mode == "RGB" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        base = Image.new("RGB", img.size, tuple(background))
        base.paste(img, mask=img.getchannel("A"))
        return base
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        a8 = (np.clip(arr / top, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        a8 = (np.clip(arr / top, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    # 1, L, CMYK, YCbCr, LAB, HSV, RGBX: Pillow's own conversions are correct.
    return img.convert("RGB")


def load_rgb(
    src: ImageSource,
    background: tuple[int, int, int] = (255, 255, 255),
    draft_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Open ``src`` (see :func:`open_image`) and return an upright 8-bit RGB image."""
    return decode_rgb(src, background, draft_size, max_pixels, name).upright()


def decode_rgb(
    src: ImageSource,
    background: tuple[int, int, int] = (255, 255, 255),
    draft_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Decoded:
    """:func:`decode` then :func:`to_rgb`: the 8-bit RGB image, still in its stored orientation."""
    d = decode(src, draft_size=draft_size, max_pixels=max_pixels, name=name)
    try:
        return replace(d, image=to_rgb(d.image, background))
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(name or _describe(src), f"cannot convert mode {d.image.mode} to RGB ({exc})") from None
