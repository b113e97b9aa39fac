"""Held-out evaluation behind the default model's card: does a scorer rank a photo above its damaged copies?

For every held-out photo (never used in training or calibration) and every degradation type of the label
protocol (``cskd_train.data.degrade``), we make copies at the levels mild / moderate / strong and ask each
scorer for a score. Two numbers per type:

* **pairwise accuracy**: over all pairs of versions of one photo at different levels (original < mild <
  moderate < strong damage: 6 pairs), the fraction the scorer orders correctly (ties count half);
* **SRCC vs severity**: Spearman correlation between the scorer's score and minus the damage level, computed
  per photo over its 4 versions and averaged over photos.

Scorers compared in the same run: the default model (through cskd-runtime, as shipped), the same MobileNetV2
trained without CFA and SKD (the paper's ablation), and BRISQUE (OpenCV's implementation with its model
trained on the human scores of the LIVE database; lower is better, so it is negated).
"""

from __future__ import annotations

import logging
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from cskd_train.data import degrade

logger = logging.getLogger(__name__)

__all__ = ["degraded_versions", "evaluate_scorer", "runtime_scorer", "checkpoint_scorer", "brisque_scorer",
           "compare", "markdown"]

ScoreFn = Callable[[Sequence[Image.Image]], np.ndarray]


def degraded_versions(photo: Path, kind: str, seed: int) -> list[Image.Image]:
    """The original (at the protocol's working size) and its mild, moderate and strong copies."""
    base = degrade.to_work_size(Image.open(photo))
    out = [base]
    for level in degrade.LEVELS:
        out.append(degrade.apply(base, [degrade.Degradation(kind, level)], seed=seed))
    return out


def _pairwise(scores: np.ndarray) -> tuple[float, int]:
    good = 0.0
    pairs = 0
    for i, j in combinations(range(len(scores)), 2):  # i less damaged than j
        pairs += 1
        if scores[i] > scores[j]:
            good += 1
        elif scores[i] == scores[j]:
            good += 0.5
    return good, pairs


def evaluate_scorer(score: ScoreFn, photos: Sequence[Path], kinds: Sequence[str] = degrade.TYPES) -> dict[str, Any]:
    """Pairwise accuracy and SRCC vs severity per degradation type, and overall."""
    from scipy import stats

    from tqdm import tqdm

    per_type: dict[str, Any] = {}
    total_good, total_pairs, all_srcc = 0.0, 0, []
    for kind in tqdm(kinds, desc="degradations", leave=False):
        good, pairs, srccs = 0.0, 0, []
        for idx, photo in enumerate(photos):
            versions = degraded_versions(photo, kind, seed=idx)
            s = np.asarray(score(versions), dtype=np.float64)
            g, n = _pairwise(s)
            good += g
            pairs += n
            if np.ptp(s) > 0:
                srccs.append(stats.spearmanr(s, -np.arange(len(s)))[0])
            else:
                srccs.append(0.0)
        per_type[kind] = {"pairwise_accuracy": good / pairs, "srcc_vs_severity": float(np.mean(srccs)),
                          "photos": len(photos)}
        total_good += good
        total_pairs += pairs
        all_srcc += srccs
    return {"per_type": per_type, "pairwise_accuracy": total_good / total_pairs,
            "srcc_vs_severity": float(np.mean(all_srcc)), "photos": len(photos), "pairs": total_pairs}


def runtime_scorer(model_path: Path) -> ScoreFn:
    from cskd_runtime import Scorer

    scorer = Scorer(model_path)
    return lambda imgs: np.asarray([r.mean for r in scorer.score_batch(list(imgs))])


def checkpoint_scorer(checkpoint: Path) -> ScoreFn:
    """PyTorch model from a training checkpoint, with the runtime's preprocessing from its manifest."""
    import torch

    from cskd_runtime.preprocess import preprocess
    from cskd_train.model import model_from_checkpoint

    model, manifest = model_from_checkpoint(checkpoint)
    bins = np.asarray(manifest.output.bins)

    def score(imgs: Sequence[Image.Image]) -> np.ndarray:
        x = np.concatenate([preprocess(im, manifest.input) for im in imgs])
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy().astype(np.float64) @ bins

    return score


def brisque_scorer(model_yml: Path, range_yml: Path) -> ScoreFn:
    """OpenCV BRISQUE (LIVE-trained SVR); negated so that higher means better like our scores."""
    import cv2

    def score(imgs: Sequence[Image.Image]) -> np.ndarray:
        out = []
        for im in imgs:
            bgr = np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
            out.append(-float(cv2.quality.QualityBRISQUE_compute(bgr, str(model_yml), str(range_yml))[0]))
        return np.asarray(out)

    return score


def compare(scorers: dict[str, ScoreFn], photos: Sequence[Path]) -> dict[str, Any]:
    """Evaluate several scorers on the same held-out photos and degradations."""
    results = {}
    for name, fn in scorers.items():
        logger.info("evaluating %s on %d held-out photos", name, len(photos))
        results[name] = evaluate_scorer(fn, photos)
    return {"protocol_version": degrade.PROTOCOL_VERSION, "levels": list(degrade.LEVELS),
            "photos": [Path(p).name for p in photos], "results": results}


def markdown(report: dict[str, Any]) -> str:
    """Table: one row per degradation type, pairwise accuracy / SRCC for each scorer."""
    names = list(report["results"])
    head = "| degradation | " + " | ".join(f"{n} acc / srcc" for n in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    kinds = list(next(iter(report["results"].values()))["per_type"])
    for kind in kinds + ["**all**"]:
        cells = []
        for n in names:
            r = report["results"][n]
            d = r if kind == "**all**" else r["per_type"][kind]
            cells.append(f"{d['pairwise_accuracy']:.3f} / {d['srcc_vs_severity']:.3f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    n_photos = len(report["photos"])
    lines.append("")
    lines.append(f"{n_photos} held-out photos x {len(kinds)} degradations x 4 levels "
                 f"(protocol v{report['protocol_version']}); acc = pairwise ranking accuracy, "
                 "srcc = Spearman vs severity (per photo, averaged).")
    return "\n".join(lines)
