"""``cskd-train evaluate``: the paper's metrics for a checkpoint (or an exported .onnx/.tflite) on labeled data.

Checkpoints run in PyTorch with the runtime contract's preprocessing (their manifest); exported artifacts run
through :class:`cskd_runtime.Scorer`, i.e. exactly as on a phone. Output: ``metrics.json`` and ``metrics.md``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .metrics import compute_metrics, metrics_markdown

__all__ = ["evaluate_model_file", "write_report"]

logger = logging.getLogger(__name__)


def _predict_checkpoint(path: Path, paths: Sequence[str], batch_size: int, workers: int, device: str) -> np.ndarray:
    import torch

    from . import distributed as D
    from .common import predict
    from .model import model_from_checkpoint

    model, manifest = model_from_checkpoint(path)
    info = D.DistInfo(device=D._pick_device(device, 0))
    model.to(info.device)
    with torch.no_grad():
        return predict(model, paths, manifest.input, info, batch_size=batch_size, workers=workers, progress=True)


def _predict_artifact(path: Path, paths: Sequence[str], batch_size: int) -> np.ndarray:
    from cskd_runtime import Scorer

    scorer = Scorer(path)
    out = np.full((len(paths), len(scorer.manifest.output.bins)), np.nan)
    for i, res in enumerate(scorer.iter_scores(paths, batch_size=batch_size)):
        if getattr(res, "ok", False):
            out[i] = res.distribution
        else:
            logger.warning("skipping %s: %s", paths[i], getattr(res, "reason", "not scored"))
    return out


def evaluate_model_file(
    model_path: str | os.PathLike,
    data: Mapping[str, Any],
    root: str | os.PathLike | None = None,
    num_bins: int | None = None,
    cutoff: float = 5.0,
    t: float = 0.5,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Metrics of a checkpoint or exported artifact on a labeled data spec.

    Args:
        model_path: ``.pt`` checkpoint, ``.onnx`` or ``.tflite``.
        data: Labeled spec (``{format: csv, path: labels.csv}``, ``{format: ava, ...}``).
        root: Folder relative paths in ``data`` resolve against.
        num_bins: Bins of the labels (default: the model's).
        cutoff: Binary accuracy cut-off.
        t: Interval error threshold.
        batch_size: Images per forward pass.
        workers: Decode workers (checkpoints).
        device: ``auto``, ``cpu`` or ``cuda`` (checkpoints).
    """
    from .data.sources import load_labeled

    p = Path(model_path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: model not found")
    if num_bins is None:
        num_bins = _model_bins(p)
    items = load_labeled(data, root, num_bins)
    paths = [it.path for it in items]
    if p.suffix in (".onnx", ".tflite"):
        pred = _predict_artifact(p, paths, batch_size)
    else:
        pred = _predict_checkpoint(p, paths, batch_size, workers, device)
    true = np.stack([it.dist for it in items])
    ok = ~np.isnan(pred).any(axis=1)
    metrics = compute_metrics(pred[ok], true[ok], cutoff=cutoff, t=t)
    metrics["skipped"] = int((~ok).sum())
    metrics["model"] = str(p)
    metrics["data"] = dict(data)
    return metrics


def _model_bins(p: Path) -> int:
    if p.suffix in (".onnx", ".tflite"):
        from cskd_runtime import Scorer

        return len(Scorer(p).manifest.output.bins)
    from .model import load_checkpoint

    return int(load_checkpoint(p)["model_config"]["num_bins"])


def write_report(metrics: dict[str, Any], out: str | os.PathLike, title: str = "evaluation") -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.md`` atomically into ``out``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    paths = (d / "metrics.json", d / "metrics.md")
    texts = (json.dumps(metrics, indent=2, default=str) + "\n", metrics_markdown(metrics, title) + "\n")
    for path, text in zip(paths, texts):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return paths
