"""A reproducible label protocol from unlabeled photos: synthetic degradations with a known order of severity.

No human aesthetic labels can be obtained here (no AVA images). What *can* be known for sure is that a photo
gets worse when it is blurred, noised, JPEG-blocked, under- or over-exposed, colour-cast, washed out or tilted,
and worse the stronger the damage. This module turns that fact into training labels and evaluation pairs.

Protocol (version ``PROTOCOL_VERSION``):
    1. The photo is first brought to a working size of ``WORK_SIDE`` px on its longer side (bicubic): damage is
       applied at about twice the scale the model sees (the manifest resizes to 256), so it stays visible.
    2. Each degradation ``t`` has a severity ``s`` in [0, 1] mapped to a physical strength (see ``STRENGTH``).
       Evaluation uses the levels 1/3, 2/3 and 1 ("mild", "moderate", "strong").
    3. Several degradations combine into ``S = 1 - prod(1 - s_i)``.
    4. The label is a 10-bin distribution over scores 1..10: a Gaussian with mean ``7 - 4.5 * S`` and
       std ``1.2``, discretised on the bins and normalised. An undamaged photo therefore gets mean 7 (we do not
       know how good it really is; we only know it is better than its damaged copies), a photo at full severity
       2.5.
What this teaches is a *technical quality* ranking, not AVA aesthetics; the model card says so.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFilter

from cskd_train.data.items import gaussian_distribution

__all__ = [
    "PROTOCOL_VERSION",
    "WORK_SIDE",
    "TYPES",
    "LEVELS",
    "Degradation",
    "to_work_size",
    "apply",
    "combined_severity",
    "target_mean",
    "target_distribution",
    "random_degradations",
]

PROTOCOL_VERSION = 1
WORK_SIDE = 512
LEVELS = (1 / 3, 2 / 3, 1.0)
BINS = np.arange(1, 11, dtype=np.float64)
TOP_MEAN = 7.0
SPAN = 4.5
LABEL_STD = 1.2


def _blur(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=4.0 * s))


def _noise(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, dtype=np.float32)
    a = a + rng.normal(0.0, 40.0 * s, size=a.shape).astype(np.float32)
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "RGB")


def _jpeg(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    quality = max(2, int(round(60 - 57 * s)))  # mild 41, moderate 22, strong 3
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _dark(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = (a ** (1.0 + 1.5 * s)) * (1.0 - 0.6 * s)  # crushed shadows, then lower exposure
    return Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")


def _bright(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = 1.0 - (1.0 - a) ** (1.0 + 2.0 * s)  # lifted midtones ...
    a = a * (1.0 + 0.8 * s)  # ... and clipped highlights
    return Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")


def _cast(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, dtype=np.float32)
    hue = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(hue), math.cos(hue - 2.094), math.cos(hue + 2.094)], np.float32)
    a = a + 70.0 * s * direction
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "RGB")


def _haze(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, dtype=np.float32)
    grey = a.mean()
    a = grey + (a - grey) * (1.0 - 0.75 * s) + 40.0 * s  # washed-out contrast, milky veil
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "RGB")


def _tilt(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    angle = 12.0 * s * (1 if rng.random() < 0.5 else -1)
    w, h = img.size
    rot = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False)
    # Keep the largest axis-aligned box free of the black corners, then restore the frame size.
    a = math.radians(abs(angle))
    cw = (w * math.cos(a) - h * math.sin(a)) / math.cos(2 * a) if a < math.pi / 4 else w
    ch = (h * math.cos(a) - w * math.sin(a)) / math.cos(2 * a) if a < math.pi / 4 else h
    cw, ch = max(8, min(w, int(cw))), max(8, min(h, int(ch)))
    box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
    return rot.crop(box).resize((w, h), Image.Resampling.BICUBIC)


STRENGTH: dict[str, str] = {
    "blur": "Gaussian blur, radius 4*s px at 512 px",
    "noise": "additive Gaussian noise, sigma 40*s (0..255)",
    "jpeg": "JPEG re-encoding at quality 60-57*s",
    "dark": "gamma 1+1.5*s then exposure x(1-0.6*s)",
    "bright": "inverse gamma 1+2*s then exposure x(1+0.8*s), clipped",
    "cast": "colour shift of 70*s along a random hue",
    "haze": "contrast x(1-0.75*s) around the mean, +40*s veil",
    "tilt": "rotation by 12*s degrees, cropped to the inner box",
}

_FUNCS: dict[str, Callable[[Image.Image, float, np.random.Generator], Image.Image]] = {
    "blur": _blur, "noise": _noise, "jpeg": _jpeg, "dark": _dark, "bright": _bright, "cast": _cast,
    "haze": _haze, "tilt": _tilt,
}
TYPES = tuple(_FUNCS)


@dataclass(frozen=True)
class Degradation:
    """One damage applied to a photo: its type and severity in [0, 1]."""

    kind: str
    severity: float


def to_work_size(img: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    """RGB image with its longer side at ``side`` px (aspect ratio kept)."""
    img = img.convert("RGB")
    w, h = img.size
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if size == (w, h) else img.resize(size, Image.Resampling.BICUBIC)


def apply(img: Image.Image, degradations: Sequence[Degradation], seed: int = 0) -> Image.Image:
    """Apply degradations in order (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    out = img.convert("RGB")
    for d in degradations:
        if d.kind not in _FUNCS:
            raise ValueError(f"unknown degradation {d.kind!r}; choose from {', '.join(TYPES)}")
        if not 0.0 <= d.severity <= 1.0:
            raise ValueError(f"severity must be in [0, 1], got {d.severity}")
        if d.severity > 0:
            out = _FUNCS[d.kind](out, float(d.severity), rng)
    return out


def combined_severity(degradations: Sequence[Degradation]) -> float:
    """``1 - prod(1 - s_i)``: two mild defects are worse than one, never worse than total ruin."""
    keep = 1.0
    for d in degradations:
        keep *= 1.0 - d.severity
    return 1.0 - keep


def target_mean(degradations: Sequence[Degradation]) -> float:
    return TOP_MEAN - SPAN * combined_severity(degradations)


def target_distribution(mean: float, std: float = LABEL_STD) -> np.ndarray:
    """Discretised Gaussian over bins 1..10 (normalised)."""
    return gaussian_distribution(mean, std, len(BINS)).astype(np.float64)


def random_degradations(rng: np.random.Generator, p_clean: float = 0.2, max_count: int = 2) -> list[Degradation]:
    """A random training damage: clean with probability ``p_clean``, else 1..max_count types, s ~ U(0.1, 1)."""
    if rng.random() < p_clean:
        return []
    count = int(rng.integers(1, max_count + 1))
    kinds = rng.choice(len(TYPES), size=count, replace=False)
    return [Degradation(TYPES[k], float(rng.uniform(0.1, 1.0))) for k in sorted(kinds)]


def build_dataset(
    photos: Sequence["os.PathLike[str] | str"],
    out_dir: "os.PathLike[str] | str",
    variants: int = 12,
    seed: int = 0,
    labeled: bool = True,
    p_clean: float = 0.2,
) -> "Path":
    """Write ``variants`` randomly degraded copies of each photo and a CSV describing them.

    Args:
        photos: Source photographs (any size; brought to the working size first).
        out_dir: Folder for PNG copies (lossless, so the JPEG degradation is the only JPEG damage) and the CSV.
        variants: Copies per photo (the first is always the clean photo).
        seed: Everything is reproducible from this seed and the photo order.
        labeled: Write label columns (``mean`` and ``p1..p10``); unlabeled sets only get ``path``.
        p_clean: Probability that a later copy is left undamaged.

    Returns:
        Path of ``labels.csv`` (columns: path, mean, p1..p10, damage), written atomically after all images.
    """
    import csv
    import os
    from pathlib import Path

    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, src in enumerate(tqdm(list(photos), desc=f"degrading into {out.name}", leave=False)):
        rng = np.random.default_rng([seed, i])
        with Image.open(src) as im:
            from PIL import ImageOps

            base = to_work_size(ImageOps.exif_transpose(im))
        stem = Path(src).stem
        for v in range(variants):
            damage = [] if v == 0 else random_degradations(rng, p_clean=p_clean)
            img = apply(base, damage, seed=int(rng.integers(2**31)))
            if rng.random() < 0.5:  # mirror half of the copies: more views of the same scene
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            name = f"{i:04d}_{stem[:40]}_{v:02d}.png"
            img.save(out / name)
            mean = target_mean(damage)
            rows.append((name, mean, target_distribution(mean),
                         "+".join(f"{d.kind}:{d.severity:.2f}" for d in damage) or "clean"))
    csv_path = out / "labels.csv"
    tmp = out / ".labels.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        if labeled:
            w.writerow(["path", "mean", *[f"p{k}" for k in range(1, 11)], "damage"])
            for name, mean, dist, dmg in rows:
                w.writerow([name, f"{mean:.4f}", *[f"{p:.6f}" for p in dist], dmg])
        else:
            w.writerow(["path"])
            for name, *_ in rows:
                w.writerow([name])
    os.replace(tmp, csv_path)
    return csv_path
