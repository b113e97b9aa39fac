import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cskd_runtime.imageio import ImageDecodeError, decode, load_rgb, open_image, orient, to_rgb
from cskd_runtime.manifest import InputSpec
from cskd_runtime.preprocess import preprocess, resize_and_crop, resize_and_crop_stored

# For each EXIF orientation, the PIL operation that turns the upright picture into what is stored on disk.
STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored_with_orientation(upright: Image.Image, orientation: int, fmt: str = "PNG") -> bytes:
    op = STORE[orientation]
    stored = upright.transpose(op) if op is not None else upright.copy()
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, fmt, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_restores_upright_pixels(make_photo, orientation):
    upright = make_photo(120, 80, seed=orientation)
    data = stored_with_orientation(upright, orientation)
    got = load_rgb(data)
    assert got.size == upright.size
    assert np.array_equal(np.asarray(got), np.asarray(upright))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_upright_image_handed_back_is_not_rotated_again(make_photo, orientation):
    upright = make_photo(120, 80, seed=orientation)
    once = load_rgb(stored_with_orientation(upright, orientation))
    assert once.getexif().get(0x0112) is None
    twice = load_rgb(once)
    assert np.array_equal(np.asarray(twice), np.asarray(upright))


def test_draft_respects_orientation(make_photo):
    # A portrait photo stored landscape (orientation 6): draft must keep enough pixels on the *upright* sides.
    upright = make_photo(900, 1600, seed=3)
    data = stored_with_orientation(upright, 6, fmt="JPEG")
    img = open_image(data, draft_size=(300, 300))
    assert img.size[0] >= 300 and img.size[1] >= 300
    assert img.size[1] > img.size[0]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("spec", [
    InputSpec(resize_width=256, resize_height=200, width=224, height=180),  # non-square stretch, odd crop offset
    InputSpec(resize_mode="shorter_side", resize_width=129, resize_height=129, width=112, height=112),
    InputSpec(resize_width=96, resize_height=64, width=96, height=64, crop_mode="none"),
], ids=["stretch", "shorter_side", "no_crop"])
def test_resize_before_orientation_matches_contract_order(orientation, spec):
    # Resampling the crop region of the stored pixels then transposing must give the upright geometry of the contract (transpose,
    # resize, crop) and the same values up to the rounding between Pillow's two resize passes.
    rng = np.random.default_rng(orientation)
    base = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    stored = Image.fromarray(np.kron(base, np.ones((23, 19, 1), dtype=np.uint8)))  # 851x1007, blocky detail
    exact = np.asarray(resize_and_crop(orient(stored, orientation), spec)).astype(int)
    fast = np.asarray(resize_and_crop_stored(stored, spec, orientation)).astype(int)
    assert fast.shape == exact.shape == (spec.height, spec.width, 3)
    assert np.abs(fast - exact).max() <= 1
    assert (fast != exact).mean() < 0.2  # a wrong geometry would differ almost everywhere, by far more than 1


def test_decode_reports_orientation_and_draft_scaling(make_photo):
    upright = make_photo(900, 1600, seed=4)
    data = stored_with_orientation(upright, 6, fmt="JPEG")
    small = decode(data, draft_size=(300, 300))
    assert small.orientation == 6 and small.scaled
    assert small.image.size == (800, 450)  # stored landscape, halved by the decoder
    assert small.upright().size == (450, 800)
    full = decode(data)
    assert full.orientation == 6 and not full.scaled and full.image.size == (1600, 900)
    png = decode(stored_with_orientation(upright, 3), draft_size=(300, 300))
    assert png.orientation == 3 and not png.scaled


def _rgb(img):
    return np.asarray(to_rgb(img)).astype(int)


def test_modes_are_converted_correctly():
    # L: grey replicated on three channels.
    g = Image.fromarray(np.full((4, 4), 100, np.uint8), "L")
    assert (_rgb(g) == 100).all()
    # RGBA: fully transparent pixels take the background, opaque keep their colour, half blend.
    a = np.zeros((2, 3, 4), np.uint8)
    a[..., :3] = (200, 0, 0)
    a[0, 0, 3], a[0, 1, 3], a[0, 2, 3] = 0, 255, 128
    out = np.asarray(to_rgb(Image.fromarray(a, "RGBA"), background=(0, 0, 255))).astype(int)
    assert tuple(out[0, 0]) == (0, 0, 255)
    assert tuple(out[0, 1]) == (200, 0, 0)
    assert abs(out[0, 2, 0] - 100) <= 1 and abs(out[0, 2, 2] - 127) <= 1
    # LA behaves like RGBA with grey colour.
    la = Image.fromarray(np.dstack([np.full((2, 2), 50, np.uint8), np.zeros((2, 2), np.uint8)]), "LA")
    assert (np.asarray(to_rgb(la, (10, 20, 30))) == (10, 20, 30)).all()
    # P with a transparent palette index.
    p = Image.new("P", (2, 2), 1)
    p.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    p.info["transparency"] = 1
    assert (np.asarray(to_rgb(p, (1, 2, 3))) == (1, 2, 3)).all()
    # P without transparency keeps palette colours.
    p2 = Image.new("P", (2, 2), 1)
    p2.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    assert (np.asarray(to_rgb(p2)) == (255, 255, 0)).all()
    # CMYK: no ink is white.
    c = Image.new("CMYK", (2, 2), (0, 0, 0, 0))
    assert (np.asarray(to_rgb(c)) == 255).all()
    # I;16: full-scale 16-bit white stays white (Pillow's convert('L') would clip it).
    i16 = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    assert i16.mode.startswith("I;16")
    assert (np.asarray(to_rgb(i16)) == 255).all()
    mid = Image.fromarray(np.full((2, 2), 32768, np.uint16))
    assert abs(int(np.asarray(to_rgb(mid))[0, 0, 0]) - 128) <= 1


def test_16bit_png_roundtrip(tmp_path):
    arr = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    out = np.asarray(load_rgb(path)).astype(int)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_arrays_and_bytes_and_pil_agree(make_photo):
    img = make_photo(64, 48)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    spec = InputSpec(height=32, width=32, resize_height=32, resize_width=32, crop_mode="none")
    a = preprocess(img, spec)
    b = preprocess(buf.getvalue(), spec)
    c = preprocess(np.asarray(img), spec)
    d = preprocess(np.asarray(img).astype(np.float32) / 255.0, spec)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert np.abs(a - d).max() < 0.02


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"this is not an image", "not a recognised image format"),
        (_png_header_only(60000, 60000), "decompression bomb"),
    ],
)
def test_bad_inputs_raise_named_errors(tmp_path, data, reason):
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError) as err:
        load_rgb(path)
    assert reason in err.value.reason
    assert str(path) in str(err.value)


def test_truncated_jpeg_is_refused(tmp_path, make_photo):
    buf = io.BytesIO()
    make_photo(400, 300).save(buf, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_rgb(path)


def test_bomb_refused_before_decoding_with_custom_limit(make_photo):
    buf = io.BytesIO()
    make_photo(200, 200).save(buf, "PNG")
    with pytest.raises(ImageDecodeError, match="over the"):
        load_rgb(buf.getvalue(), max_pixels=10_000)
