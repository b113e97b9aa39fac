"""Golden files for the Java side, written by the Python runtime from the same model at test time.

Everything the Java core must reproduce is computed here by ``cskd_runtime`` itself (Pillow + numpy +
onnxruntime), never hand-written, and stored in lossless formats:

* 8 PNG photos, one per EXIF orientation (an ``eXIf`` chunk), each a different real photo so scores differ,
  plus RGBA, LA, greyscale and palette-with-transparency PNGs; for each: the stored pixels (raw RGBA), Pillow's
  upright RGB, the preprocessed float32 tensor and the Python :class:`~cskd_runtime.Scorer` result;
* resampling of one photo by every Pillow filter to sizes up and down;
* preprocessing under manifest variants (each filter, ``shorter_side``, NHWC, other mean/std);
* manifests the Python validator accepts (with their parsed fields) and rejects (with its problems);
* postprocessing of raw outputs (softmax, uint8 dequantization, calibration percentiles);
* Pillow's JPEG draft scale for stored sizes and orientations; numpy's median / p90;
* EXIF orientation of JPEG, PNG and WebP files as Pillow reads it.

``goldens.json`` indexes it all; raw arrays are little-endian, row-major, with their sizes in the index.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import struct
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

__all__ = ["write_goldens", "main"]

#: Inverse of Pillow's exif_transpose operation for each orientation: stored = INVERSE[o](upright).
_INVERSE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
FILTERS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")


def _exif_bytes(orientation: int, little_endian: bool = False) -> bytes:
    """An EXIF block (``Exif\\0\\0`` + TIFF) whose IFD0 holds only the orientation, in either byte order."""
    e = "<" if little_endian else ">"
    tiff = (b"II*\x00" if little_endian else b"MM\x00*") + struct.pack(e + "I", 8)
    tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0)
    return b"Exif\x00\x00" + tiff


def _crop_photo(path: Path, size: tuple[int, int], seed: int) -> Image.Image:
    """A ``size`` window of a real photo (scaled so the window keeps detail), upright RGB."""
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = size
    scale = max(w / img.width, h / img.height) * 1.6
    img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(seed)
    left = int(rng.integers(0, img.width - w + 1))
    top = int(rng.integers(0, img.height - h + 1))
    return img.crop((left, top, left + w, top + h))


def _write_raw(path: Path, arr: np.ndarray) -> str:
    path.write_bytes(np.ascontiguousarray(arr).tobytes())
    return path.name


def _stored_rgba(img: Image.Image) -> np.ndarray:
    """Pixels as stored in the file (no EXIF applied) as straight RGBA, the form Java decoders hand over."""
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode == "L":
        img = img.convert("RGB")
    if img.mode == "RGB":
        a = np.asarray(img)
        return np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert img.mode == "RGBA", img.mode
    return np.asarray(img)


def write_goldens(out_dir: str | os.PathLike[str], model_path: str | os.PathLike[str],
                  photos: Sequence[str | os.PathLike[str]]) -> Path:  # fmt: skip
    """Write the golden set into ``out_dir`` (created) and return the path of ``goldens.json``.

    Args:
        out_dir: Destination directory.
        model_path: The exported ``.onnx`` model (with its embedded manifest) whose scores are the reference.
        photos: Real photographs to cut test images from (at least 2; cycled when fewer than 12).
    """
    from cskd_runtime import Scorer
    from cskd_runtime.manifest import Calibration, Manifest, ManifestError, validate
    from cskd_runtime.preprocess import preprocess, resize_and_crop

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photos = [Path(p) for p in photos]
    if len(photos) < 2:
        raise ValueError("write_goldens needs at least 2 photos")
    scorer = Scorer(model_path, threads=1)
    manifest = scorer.manifest
    shutil.copyfile(model_path, out / "model.onnx")
    index: dict[str, Any] = {
        "format": 1,
        "model": "model.onnx",
        "versions": {"pillow": Image.__version__, "numpy": np.__version__, "onnxruntime": _ort_version()},
        "photos": [],
    }

    def manifest_file(name: str, m: Manifest) -> str:
        (out / name).write_text(m.to_json(), encoding="utf-8")
        return name

    def photo_entry(name: str, path: Path, orientation: int) -> dict[str, Any]:
        with Image.open(path) as im:
            stored = _stored_rgba(im)
        upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGBA").convert("RGB"))
        tensor = preprocess(path, manifest.input)
        res = scorer.score(path).to_dict()
        return {
            "file": path.name,
            "orientation": orientation,
            "stored": _write_raw(out / f"{name}.stored.rgba", stored),
            "stored_size": [stored.shape[1], stored.shape[0]],
            "tensor": _write_raw(out / f"{name}.f32", tensor.astype("<f4")),
            "shape": list(tensor.shape),
            "score": {k: res[k] for k in ("mean", "std", "percentile", "calibrated", "distribution")},
            "upright_size": [upright.shape[1], upright.shape[0]],
        }

    # ---- one PNG per EXIF orientation, each from a different photo, non-square, with the eXIf chunk
    for o in range(1, 9):
        base = _crop_photo(photos[o % len(photos)], (300, 200) if o % 2 else (180, 260), seed=o)
        op = _INVERSE[o]
        stored = base.transpose(op) if op is not None else base
        p = out / f"orient_{o}.png"
        stored.save(p, "PNG", exif=_exif_bytes(o))
        check = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        if not np.array_equal(np.asarray(check), np.asarray(base)):
            raise AssertionError(f"{p}: Pillow's exif_transpose does not restore the upright photo")
        index["photos"].append(photo_entry(f"orient_{o}", p, o))

    # ---- modes that need conversion or alpha compositing (EXIF 6 on one of them for good measure)
    rgb = np.asarray(_crop_photo(photos[0], (240, 200), seed=11))
    yy, xx = np.mgrid[0:200, 0:240]
    alpha = ((xx * 255) // 239).astype(np.uint8)
    alpha[yy < 20] = 0
    alpha[yy > 180] = 255
    variants = {
        "mode_rgba": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "mode_la": Image.fromarray(np.dstack([rgb[..., 1], alpha]), "LA"),
        "mode_l": Image.fromarray(rgb[..., 0], "L"),
    }
    pal = Image.fromarray(rgb).quantize(64)
    pal.info["transparency"] = 3
    variants["mode_p"] = pal
    for name, im in variants.items():
        p = out / f"{name}.png"
        kwargs: dict[str, Any] = {"exif": _exif_bytes(6)} if name == "mode_rgba" else {}
        if name == "mode_p":
            kwargs["transparency"] = 3
        im.save(p, "PNG", **kwargs)
        index["photos"].append(photo_entry(name, p, 6 if name == "mode_rgba" else 1))

    # ---- resampling: every filter, down and up, odd ratios
    src = _crop_photo(photos[1], (97, 73), seed=5)
    index["resample"] = {"source": _write_raw(out / "resample_src.rgb", np.asarray(src)), "size": [97, 73],
                         "cases": []}  # fmt: skip
    for f in FILTERS:
        # Both pass orders of Pillow 13 (vertical first when the height shrinks much more than the width).
        for size in ((31, 29), (64, 48), (97, 40), (150, 73), (203, 151), (40, 110), (120, 30), (90, 20)):
            r = src.resize(size, getattr(Image.Resampling, f.upper()), reducing_gap=None)
            name = f"resample_{f}_{size[0]}x{size[1]}.rgb"
            index["resample"]["cases"].append({"filter": f, "size": list(size),
                                               "expected": _write_raw(out / name, np.asarray(r))})  # fmt: skip

    # ---- preprocessing under manifest variants, on two stored photos (orientation 6 and the RGBA one)
    variants_m = [("m_" + f, manifest.replace(input={"interpolation": f})) for f in FILTERS]
    variants_m += [
        ("m_shorter_nhwc", manifest.replace(input={"resize_mode": "shorter_side", "resize_height": 240,
                                                   "resize_width": 240, "height": 224, "width": 224,
                                                   "layout": "NHWC", "interpolation": "bicubic"})),
        ("m_nocrop_odd", manifest.replace(input={"resize_height": 201, "resize_width": 155, "height": 201,
                                                 "width": 155, "crop_mode": "none", "mean": (0.5, 0.5, 0.5),
                                                 "std": (0.5, 0.25, 0.125), "scale": 1.0,
                                                 "background": (0, 128, 255)})),
        ("m_upscale", manifest.replace(input={"resize_height": 512, "resize_width": 384, "height": 500,
                                              "width": 380, "interpolation": "lanczos"})),
    ]  # fmt: skip
    index["preprocess"] = []
    for mname, m in variants_m:
        mf = manifest_file(f"{mname}.json", m)
        for ph in (index["photos"][5], index["photos"][8]):  # orient_6.png, mode_rgba.png
            t = preprocess(out / ph["file"], m.input)
            index["preprocess"].append({"manifest": mf, "photo": ph["file"], "stored": ph["stored"],
                                        "stored_size": ph["stored_size"], "orientation": ph["orientation"],
                                        "tensor": _write_raw(out / f"{mname}_{Path(ph['file']).stem}.f32",
                                                             t.astype("<f4")),
                                        "shape": list(t.shape)})  # fmt: skip
            # Sanity: the variant really changed what the model sees (guards against a no-op replace()).
            assert t.shape == m.input.shape(1)
        _ = resize_and_crop  # the tensor path above uses it; imported to document the dependency

    # ---- manifests: accepted ones with parsed fields, rejected ones with the Python problems
    index["manifests"] = []
    good = {"main": manifest, **dict(variants_m)}
    for name, m in good.items():
        index["manifests"].append({"file": manifest_file(f"valid_{name}.json", m), "valid": True,
                                   "expected": _manifest_fields(m)})  # fmt: skip
    bad_edits = {
        "bad_interp": ("input", "interpolation", "bilinearish"),
        "bad_std": ("input", "std", [0.2, 0.0, 0.2]),
        "bad_crop": ("input", "height", 300),
        "bad_bins": ("output", "bins", [1.0, 3.0, 2.0]),
        "bad_quant": ("input", "dtype", "uint8"),
        "bad_version": (None, "schema_version", 99),
        "bad_shorter": ("input", "resize_mode", "shorter_side"),
    }
    for name, (section, key, value) in bad_edits.items():
        d = json.loads(manifest.to_json())
        if name == "bad_shorter":
            d["input"]["resize_width"] = d["input"]["resize_height"] + 10
        (d[section] if section else d)[key] = value
        problems = validate(d)
        assert problems, name
        fname = f"invalid_{name}.json"
        (out / fname).write_text(json.dumps(d), encoding="utf-8")
        index["manifests"].append({"file": fname, "valid": False, "problems": problems})
    (out / "invalid_not_json.json").write_text("{\"schema\": ", encoding="utf-8")
    index["manifests"].append({"file": "invalid_not_json.json", "valid": False, "problems": ["not valid JSON"]})
    try:
        Manifest.from_json((out / "invalid_not_json.json").read_text())
        raise AssertionError("truncated JSON accepted")
    except ManifestError:
        pass

    # ---- postprocessing: softmax logits, probabilities, uint8 output; with a calibration
    from cskd_runtime.backends.base import postprocess

    rng = np.random.default_rng(3)
    q = np.sort(rng.normal(5.0, 0.6, 101))
    cal = Calibration("synthetic reference", "sorted normal draws", tuple(float(v) for v in q), "ava",
                      tuple(float(v) for v in np.linspace(2.0, 8.0, 101)))  # fmt: skip
    m_soft = manifest.replace(output={"activation": "softmax"}, calibration=cal)
    d_u8 = json.loads(manifest.to_json())
    d_u8["output"].update(dtype="uint8", quantization={"scale": 1 / 255, "zero_point": 0})
    m_u8 = Manifest.from_dict(d_u8)
    index["scores"] = []
    for mname, m, raws in (
        ("scores_softmax.json", m_soft, [rng.normal(0, 2, 10).astype(np.float32) for _ in range(4)]),
        ("scores_probs.json", manifest.replace(calibration=cal), [rng.dirichlet(np.ones(10)).astype(np.float32)
                                                                  for _ in range(4)]),
        ("scores_uint8.json", m_u8, [rng.integers(0, 60, 10).astype(np.uint8) for _ in range(3)]),
    ):  # fmt: skip
        manifest_file(mname, m)
        for raw in raws:
            prob = postprocess(raw[None], m.output)[0]
            bins = np.asarray(m.output.bins, np.float64)
            p64 = prob.astype(np.float64)
            mean = float(p64 @ bins)
            std = float(np.sqrt(max(float(p64 @ bins**2) - mean**2, 0.0)))
            index["scores"].append({
                "manifest": mname, "raw": [int(v) if raw.dtype == np.uint8 else float(v) for v in raw],
                "raw_dtype": str(raw.dtype), "distribution": [float(v) for v in prob], "mean": mean, "std": std,
                "percentile": m.calibration.percentile(mean) if m.calibration else None,
                "calibrated": m.calibration.to_target(mean) if m.calibration else None,
            })  # fmt: skip

    # ---- JPEG draft scale as Pillow picks it (header-only JPEGs are cheap to make)
    index["draft"] = []
    for (w, h), o in (((4032, 3024), 1), ((3024, 4032), 6), ((4032, 3024), 8), ((1200, 900), 1), ((600, 600), 1),
                      ((513, 2000), 1), ((2048, 1536), 5), ((5000, 600), 1)):  # fmt: skip
        buf = io.BytesIO()
        Image.new("RGB", (w, h), (90, 120, 150)).save(buf, "JPEG", quality=30, exif=_exif_bytes(o))
        im = Image.open(io.BytesIO(buf.getvalue()))
        from cskd_runtime.imageio import _apply_draft
        from cskd_runtime.preprocess import draft_size

        _apply_draft(im, draft_size(manifest.input), o)
        scale = im.decoderconfig[0] if im.decoderconfig else 1
        index["draft"].append({"stored_size": [w, h], "orientation": o, "scale": int(scale)})

    # ---- numpy statistics of timing samples
    index["stats"] = []
    for n in (1, 2, 7, 50, 101):
        s = rng.gamma(2.0, 5.0, n)
        index["stats"].append({"samples": [float(v) for v in s], "median": float(np.median(s)),
                               "p90": float(np.percentile(s, 90))})  # fmt: skip

    # ---- EXIF orientation in JPEG, PNG and WebP containers, as Pillow reads it
    index["exif_files"] = []
    small = Image.fromarray(rgb[:40, :60])
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")):
        for o in (1, 3, 6, 8):
            p = out / f"exif_{o}.{ext}"
            small.save(p, fmt, exif=_exif_bytes(o))
            index["exif_files"].append({"file": p.name, "orientation": _pil_orientation(p)})
        p = out / f"exif_none.{ext}"
        small.save(p, fmt)
        index["exif_files"].append({"file": p.name, "orientation": _pil_orientation(p)})
    for o in (2, 7):  # little-endian TIFF (Pillow writes big-endian by default)
        p = out / f"exif_le_{o}.jpg"
        small.save(p, "JPEG", exif=_exif_bytes(o, little_endian=True))
        index["exif_files"].append({"file": p.name, "orientation": _pil_orientation(p)})

    path = out / "goldens.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _pil_orientation(path: Path) -> int:
    with Image.open(path) as im:
        return int(im.getexif().get(0x0112, 1) or 1)


def _manifest_fields(m: Any) -> dict[str, Any]:
    i = m.input
    return {
        "name": m.model.name, "version": m.model.version, "height": i.height, "width": i.width,
        "resize_height": i.resize_height, "resize_width": i.resize_width, "resize_mode": i.resize_mode,
        "crop_mode": i.crop_mode, "interpolation": i.interpolation, "background": list(i.background),
        "scale": i.scale, "mean": list(i.mean), "std": list(i.std), "layout": i.layout, "dtype": i.dtype,
        "draft": i.draft, "draft_factor": i.draft_factor, "bins": list(m.output.bins),
        "activation": m.output.activation, "shape": list(i.shape(1)),
    }  # fmt: skip


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the Android demo's golden files from a model and photos.")
    ap.add_argument("--model", required=True, help="exported .onnx with an embedded cskd manifest")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("photos", nargs="*", help="real photos (default: the pinned 'parity' photos)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    photos = args.photos
    if not photos:
        from cskd_train import assets

        photos = assets.photo_paths("parity")
    print(write_goldens(args.out, args.model, photos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
