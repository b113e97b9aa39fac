"""Synthetic training data whose labels are learnable: a photo-like image's score is its brightness."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from cskd_train.data.items import gaussian_distribution


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    img = np.zeros((side, side, 3), np.float32)
    base = rng.uniform(0.4, 0.9, size=3)
    for c in range(3):
        img[..., c] = base[c] + 0.25 * np.sin(2 * np.pi * (xx * rng.uniform(0.5, 2) + yy * rng.uniform(0.5, 2)))
    for _ in range(3):
        cx, cy, r = rng.uniform(0, 1, size=3) * (1, 1, 0.3) + (0, 0, 0.05)
        img += np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))[..., None] * rng.uniform(-0.3, 0.3, 3)
    return np.clip(img, 0, 1)


def brightness_score(b: float) -> float:
    """Score on 1..10 of an image at brightness ``b`` in [0.1, 1]."""
    return 2.0 + 6.5 * (b - 0.1) / 0.9


def make_images(folder: Path, n: int, seed: int, side: int = 40, labels: bool = True) -> Path:
    """``n`` images in ``folder`` plus ``labels.csv`` (path, mean, p1..p10 or path only)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        b = float(rng.uniform(0.1, 1.0))
        arr = (_texture(rng, side) * b * 255).astype(np.uint8)
        name = f"img_{seed}_{i:04d}.png"
        Image.fromarray(arr, "RGB").save(folder / name)
        m = brightness_score(b)
        rows.append((name, m, gaussian_distribution(m, 1.0, 10)))
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "mean", *[f"p{k}" for k in range(1, 11)]] if labels else ["path"])
        for name, m, d in rows:
            w.writerow([name, f"{m:.4f}", *[f"{p:.6f}" for p in d]] if labels else [name])
    return folder / "labels.csv"
