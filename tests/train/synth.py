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


def build_data(root: Path) -> Path:
    """Labeled (96), held-out validation (48) and unlabeled (192) images under ``root``."""
    make_images(root / "lab", 96, seed=1)
    make_images(root / "val", 48, seed=2)
    make_images(root / "unl", 192, seed=3, labels=False)
    return root


#: Tiny but real: a timm ResNet-10-T student at 32 px, a randomly initialised timm EfficientNet as CFA teacher.
COMMON = ["model.backbone=resnet10t", "model.hidden=32", "model.dropout=0", "data.image_size=32", "data.resize=40",
          "data.workers=0", "run.progress=false", "optim.lr=1e-3", "optim.milestones=[]"]  # fmt: skip


def stage_overrides(stage: str, out: str, cfa: str | None = None, teacher: str | None = None,
                    threads: int = 1) -> list[str]:  # fmt: skip
    """``--set`` overrides of one stage of the tiny end-to-end run (the same for 1 process and torchrun)."""
    o = COMMON + [f"run.threads={threads}", f"run.out={out}/{stage}"]
    if stage == "cfa":
        return o + ["data.unlabeled={format: folder, path: unl}", "cfa.encoder.kind=timm",
                    "cfa.encoder.name=test_efficientnet", "cfa.encoder.pretrained=false", "cfa.encoder.size=32",
                    "cfa.encoder.resize=40", "cfa.projector_hidden=64", "optim.epochs=3", "optim.batch_size=32"]
    lab = ["data.labeled={format: csv, path: lab/labels.csv}", "data.val={format: csv, path: val/labels.csv}",
           f"model.from_checkpoint={cfa}"]
    if stage == "teacher":
        return o + lab + ["optim.epochs=4", "optim.batch_size=16"]
    if stage == "skd":
        return o + lab + ["data.unlabeled={format: folder, path: unl}", f"skd.teacher={teacher}", "skd.mu=3",
                          "optim.epochs=4", "optim.batch_size=8"]
    raise ValueError(stage)


def run_pipeline(root: Path, out: str, threads: int = 1) -> dict[str, Path]:
    """cfa -> teacher -> skd on the data under ``root`` (run in-process, or by each torchrun worker)."""
    from cskd_train.cfa import run_cfa
    from cskd_train.config import load_config
    from cskd_train.skd import run_skd
    from cskd_train.teacher import run_teacher

    cfa = run_cfa(load_config(None, stage_overrides("cfa", out, threads=threads), stage="cfa", base_dir=root))
    teacher = run_teacher(load_config(None, stage_overrides("teacher", out, str(cfa), threads=threads),
                                      stage="teacher", base_dir=root))  # fmt: skip
    skd = run_skd(load_config(None, stage_overrides("skd", out, str(cfa), str(teacher), threads=threads),
                              stage="skd", base_dir=root))  # fmt: skip
    return {"cfa": cfa, "teacher": teacher, "skd": skd}
