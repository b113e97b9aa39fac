"""INT8 calibration data: real photos through the runtime's own preprocessing.

Quantization ranges are only as good as the tensors they are measured on, so the calibration tensors are made by
:func:`cskd_runtime.preprocess.preprocess` with the artifact's manifest, exactly as the phone will make them.
By default the pinned ``calib`` photos (never used for training or evaluation) are used; the "more calibration
photos" fallback adds the pinned training photos. ``--calibration DIR`` replaces both with the user's photos.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from cskd_runtime.manifest import InputSpec

__all__ = ["IMAGE_SUFFIXES", "DEFAULT_COUNT", "MORE_COUNT", "list_photos", "spread", "CalibrationSet"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
#: Photos in the default calibration set. Min/max calibration saturates quickly; more mostly costs time.
DEFAULT_COUNT = 16
#: Photos in the extended set of the second INT8 fallback.
MORE_COUNT = 64


def list_photos(directory: str | os.PathLike, what: str = "photo") -> list[Path]:
    """Image files directly inside ``directory`` (sorted by name).

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it holds no image file.
    """
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: {what} folder not found")
    photos = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise ValueError(f"{d}: no {what}s found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return photos


def spread(items: Sequence[Path], count: int) -> list[Path]:
    """At most ``count`` items evenly spread over the (sorted) list, so a subset still covers every scene."""
    if len(items) <= count:
        return list(items)
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in sorted(set(idx.tolist()))]


@dataclass
class CalibrationSet:
    """The photos INT8 calibration uses, and their tensors per input layout (computed once, then reused).

    Args:
        directory: The user's calibration photos, or None for the pinned ``calib`` (+ ``train``) photos.
        count: Photos in the default set.
        more_count: Photos in the extended set.
    """

    directory: Path | None = None
    count: int = DEFAULT_COUNT
    more_count: int = MORE_COUNT
    _cache: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)

    def photos(self, more: bool = False) -> list[Path]:
        """The photo files of the default (``more=False``) or extended set."""
        if self.directory is not None:
            return spread(list_photos(self.directory, "calibration photo"), self.more_count if more else self.count)
        from cskd_train import assets

        base = assets.photo_paths("calib")
        if not more:
            return spread(base, self.count)
        return base + spread(assets.photo_paths("train"), max(0, self.more_count - len(base)))

    def describe(self, more: bool = False) -> str:
        src = str(self.directory) if self.directory is not None else (
            "pinned calib + train photos" if more else "pinned calib photos")
        return f"{len(self.photos(more))} photos ({src})"

    def tensors(self, spec: InputSpec, more: bool = False) -> np.ndarray:
        """Float32 batch (N, ...) in ``spec``'s layout, before any input quantization.

        Raises:
            cskd_runtime.ImageDecodeError: naming a calibration photo that cannot be decoded.
        """
        from cskd_runtime.preprocess import preprocess

        key = (spec.to_dict().__repr__(), more)
        if key not in self._cache:
            photos = self.photos(more)
            from tqdm.auto import tqdm

            xs = [preprocess(p, spec, name=str(p))
                  for p in tqdm(photos, desc="calibration photos", unit="photo", leave=False, disable=None)]
            self._cache[key] = np.concatenate(xs, axis=0)
            logger.info("calibration: %s -> tensor %s", self.describe(more), self._cache[key].shape)
        return self._cache[key]
