"""The parity gate: does the written artifact score photos like the PyTorch model it came from?

Each artifact is run end to end from the *encoded* photo: the runtime (:class:`cskd_runtime.Scorer`) reads the
manifest embedded in the file, decodes and preprocesses the photo by it and runs the model. PyTorch then runs the
very same preprocessed tensors, so any difference is the artifact's alone (conversion, quantization, a wrong
manifest), never a decoder difference. CoreML packages, which the runtime does not run, go through
:mod:`cskd_export.coreml` (``predict`` on macOS, the numpy MIL evaluator elsewhere) on tensors made from the
package's own embedded manifest.

The tolerances per precision live in :data:`DEFAULT_TOLERANCES`, the one table; ``--tolerance`` overrides it.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_TOLERANCES",
    "METRICS",
    "Tolerances",
    "parse_tolerances",
    "ParityImage",
    "parity_images",
    "metrics",
    "gate",
    "torch_distributions",
]

logger = logging.getLogger(__name__)

#: metric -> ("max" | "min", what it measures). "max" metrics must stay at or below the tolerance, "min" ones at
#: or above it.
METRICS: dict[str, tuple[str, str]] = {
    "max_abs_delta": ("max", "largest |mean score (artifact) - mean score (PyTorch)|"),
    "mean_abs_delta": ("max", "average |mean score difference|"),
    "max_abs_dist_delta": ("max", "largest |probability difference| in any bin"),
    "spearman": ("min", "Spearman rank correlation of the mean scores with PyTorch fp32"),
    "pearson": ("min", "Pearson correlation of the mean scores with PyTorch fp32"),
}

#: THE tolerance table. Mean scores are on the model's scale (1..10 for AVA-style bins). INT8 is judged by rank
#: agreement: its absolute error is expected (and reported), what must survive is the ordering of photos.
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_delta": 1e-4},
    "fp16": {"max_abs_delta": 1e-2},
    "int8": {"spearman": 0.99},
}

Tolerances = dict[str, dict[str, float]]


def parse_tolerances(overrides: Sequence[str] | None, base: Mapping[str, Mapping[str, float]] | None = None
                     ) -> Tolerances:
    """The tolerance table with ``precision.metric=value`` overrides applied (e.g. ``int8.spearman=0.98``).

    Raises:
        ValueError: for a malformed override, an unknown precision or metric, or a non-numeric value.
    """
    table = {p: dict(v) for p, v in (base or DEFAULT_TOLERANCES).items()}
    for item in overrides or ():
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            prec, dot, metric = key.strip().partition(".")
            if not sep or not dot:
                raise ValueError(f"--tolerance {part!r}: expected PRECISION.METRIC=VALUE, e.g. int8.spearman=0.98")
            if prec not in table:
                raise ValueError(f"--tolerance {part!r}: unknown precision {prec!r}; choose from {', '.join(table)}")
            if metric not in METRICS:
                raise ValueError(f"--tolerance {part!r}: unknown metric {metric!r}; choose from {', '.join(METRICS)}")
            try:
                v = float(value)
            except ValueError:
                raise ValueError(f"--tolerance {part!r}: {value!r} is not a number") from None
            if not math.isfinite(v):
                raise ValueError(f"--tolerance {part!r}: value must be finite")
            table[prec][metric] = v
    return table


# ------------------------------------------------------------------------------------------------ parity photos
@dataclass(frozen=True)
class ParityImage:
    """An encoded photo of the parity set (file bytes, so the runtime decodes it as the phone would)."""

    name: str
    data: bytes


def parity_images(directory: str | Path | None = None, variants: int | None = None) -> list[ParityImage]:
    """The photos the gate runs on.

    Default: the pinned ``parity`` photos plus ``variants`` (default 3) degraded copies of each, made with the
    label protocol's degradations (:mod:`cskd_train.data.degrade`) at mild/moderate/strong severity and encoded
    as JPEG. The copies spread the scores over the model's range, so rank correlation means something with a
    small bundled set. With ``directory``, the user's photos are used as they are (``variants`` default 0).
    """
    if directory is not None:
        from .calibration import list_photos

        paths = list_photos(directory, "parity photo")
        variants = 0 if variants is None else variants
    else:
        from cskd_train import assets

        paths = assets.photo_paths("parity")
        variants = 3 if variants is None else variants
    out = [ParityImage(p.name, Path(p).read_bytes()) for p in paths]
    if variants > 0:
        from PIL import Image

        from cskd_runtime.imageio import load_rgb
        from cskd_train.data import degrade

        for i, p in enumerate(paths):
            base = degrade.to_work_size(load_rgb(p, name=str(p)))
            for k in range(variants):
                kind = degrade.TYPES[(i * variants + k) % len(degrade.TYPES)]
                level = degrade.LEVELS[(i + k) % len(degrade.LEVELS)]
                img: Image.Image = degrade.apply(base, [degrade.Degradation(kind, level)], seed=i * 31 + k)
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=92)
                out.append(ParityImage(f"{p.name}#{kind}-{level:.2f}", buf.getvalue()))
    return out


# ---------------------------------------------------------------------------------------------------- numbers
def torch_distributions(model: Any, x_nchw: np.ndarray, batch: int = 16) -> np.ndarray:
    """PyTorch fp32 distributions for a float32 NCHW batch (the reference side of every comparison)."""
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, x_nchw.shape[0], batch):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x_nchw[i : i + batch]))).float().numpy())
    return np.concatenate(outs).astype(np.float64)


def metrics(artifact_dist: np.ndarray, reference_dist: np.ndarray, bins: Sequence[float]) -> dict[str, Any]:
    """Parity numbers between two (N, bins) distribution arrays.

    Correlations are NaN when either side's scores are constant (a collapsed model); the gate treats NaN as a
    failure.
    """
    from scipy import stats

    a = np.asarray(artifact_dist, np.float64)
    r = np.asarray(reference_dist, np.float64)
    b = np.asarray(bins, np.float64)
    sa, sr = a @ b, r @ b
    d = np.abs(sa - sr)
    out: dict[str, Any] = {
        "photos": int(a.shape[0]),
        "max_abs_delta": float(d.max()),
        "mean_abs_delta": float(d.mean()),
        "max_abs_dist_delta": float(np.abs(a - r).max()),
        "spearman": float("nan"),
        "pearson": float("nan"),
        "reference_score_std": float(sr.std()),
        "reference_score_range": [float(sr.min()), float(sr.max())],
    }
    if a.shape[0] >= 3 and sa.std() > 0 and sr.std() > 0:
        out["spearman"] = float(stats.spearmanr(sa, sr)[0])
        out["pearson"] = float(stats.pearsonr(sa, sr)[0])
    return out


def gate(numbers: Mapping[str, Any], precision: str, tolerances: Tolerances) -> list[str]:
    """Every tolerance of ``precision`` that ``numbers`` violate, as readable strings (empty: passed)."""
    failures = []
    for metric, limit in tolerances.get(precision, {}).items():
        kind = METRICS[metric][0]
        value = numbers.get(metric)
        if value is None or not math.isfinite(float(value)):
            why = " (scores are constant)" if metric in ("spearman", "pearson") else ""
            failures.append(f"{metric} is undefined{why}, required {'>=' if kind == 'min' else '<='} {limit:g}")
        elif kind == "max" and value > limit:
            failures.append(f"{metric} {value:.3g} > {limit:g}")
        elif kind == "min" and value < limit:
            failures.append(f"{metric} {value:.4f} < {limit:g}")
    return failures


@dataclass
class ParityRun:
    """What one artifact produced on the parity set (artifact side and reference side)."""

    artifact_dist: np.ndarray
    reference_dist: np.ndarray
    method: str
    numbers: dict[str, Any] = field(default_factory=dict)


def run_parity(
    artifact: Path,
    runner: Callable[[Path, Sequence[ParityImage]], tuple[np.ndarray, np.ndarray, str]],
    model: Any,
    images: Sequence[ParityImage],
    bins: Sequence[float],
) -> ParityRun:
    """Run ``runner`` (artifact side) and PyTorch (reference side) on the same tensors and compare.

    Args:
        artifact: The file (or package) to check.
        runner: Returns the artifact's (N, bins) distributions, the NCHW float32 tensors it ran on, and a
            description of how it was run.
        model: The PyTorch model (eval mode).
        images: Encoded parity photos.
        bins: Score value of each output bin.
    """
    dist, x_nchw, method = runner(artifact, images)
    ref = torch_distributions(model, x_nchw)
    return ParityRun(dist, ref, method, metrics(dist, ref, bins))


def runtime_runner(threads: int | None = None, batch: int = 16
                   ) -> Callable[[Path, Sequence[ParityImage]], tuple[np.ndarray, np.ndarray, str]]:
    """Artifact side through cskd-runtime: ``Scorer`` opens the file alone, preprocesses from its manifest."""

    def run(path: Path, images: Sequence[ParityImage]) -> tuple[np.ndarray, np.ndarray, str]:
        from cskd_runtime import Scorer

        scorer = Scorer(path, threads=threads)
        xs, dists = [], []
        for i in range(0, len(images), batch):
            chunk = images[i : i + batch]
            x = np.concatenate([scorer.preprocess(im.data, name=im.name) for im in chunk])
            results = scorer.score_tensor(x, [im.name for im in chunk])
            dists.append(np.asarray([r.distribution for r in results], np.float64))
            xs.append(x if scorer.manifest.input.layout == "NCHW" else x.transpose(0, 3, 1, 2))
        return np.concatenate(dists), np.ascontiguousarray(np.concatenate(xs)), f"cskd-runtime Scorer ({scorer.backend.format})"

    return run
