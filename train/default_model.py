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
