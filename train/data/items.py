"""The one record type every labeled data source produces, and score <-> distribution helpers.

Adapters (AVA, AADB, PARA, CSV, the synthetic label protocol) all turn their native labels into a
:class:`LabeledItem`: an image path and a probability distribution over the score bins (AVA: 10 bins for
scores 1..10). Training, evaluation and the exporter's calibration only ever see this form.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LabeledItem", "mean_score", "normalize_distribution", "gaussian_distribution"]


class LabeledItem(NamedTuple):
    """An image and its ground-truth score distribution.

    Attributes:
        path: Image file path (absolute, or relative to the label file's folder once resolved by the reader).
        dist: float32 array of shape ``(num_bins,)`` summing to 1; bin ``i`` is score ``i + 1``.
    """

    path: str
    dist: np.ndarray


def mean_score(dist: np.ndarray) -> np.ndarray:
    """Mean score ``sum_i p_i * i`` (bins are scores 1..K) over the last axis."""
    d = np.asarray(dist, dtype=np.float64)
    return d @ np.arange(1, d.shape[-1] + 1, dtype=np.float64)


def normalize_distribution(counts: np.ndarray, where: str = "labels") -> np.ndarray:
    """Vote counts (or unnormalised weights) -> a float32 distribution.

    Raises:
        ValueError: naming ``where`` if a count is negative or all counts are zero.
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"{where}: expected a 1-D vector of counts, got shape {c.shape}")
    if (c < 0).any() or not np.isfinite(c).all():
        raise ValueError(f"{where}: counts must be finite and non-negative, got {c.tolist()}")
    total = c.sum()
    if total <= 0:
        raise ValueError(f"{where}: all counts are zero")
    return (c / total).astype(np.float32)


def gaussian_distribution(mean: float, std: float, num_bins: int = 10) -> np.ndarray:
    """A discretised Gaussian over bins 1..K, for sources that only give a mean score."""
    bins = np.arange(1, num_bins + 1, dtype=np.float64)
    w = np.exp(-0.5 * ((bins - float(mean)) / max(float(std), 1e-3)) ** 2)
    return (w / w.sum()).astype(np.float32)
