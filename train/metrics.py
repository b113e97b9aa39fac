"""Evaluation metrics of the CSKD paper (Sec. 4.3, 5.4) on predicted vs true mean scores.

SRCC and PLCC come from ``scipy.stats``; MSE, binary accuracy at a cut-off (Hou et al.: 5 on AVA's 1..10 scale)
and the interval error rate of Eq. 6 (the test set split by true-score interval, the share of samples whose
prediction misses by more than ``t``) are computed here.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["compute_metrics", "metrics_markdown", "default_intervals"]


def default_intervals(num_bins: int = 10) -> list[tuple[float, float]]:
    """Unit-wide true-score intervals covering scores 1..K: ``[1, 2), [2, 3), ..., [K-1, K]``."""
    return [(float(k), float(k + 1)) for k in range(1, num_bins)]


def _scores(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:  # distributions over bins 1..K -> mean score
        return a @ np.arange(1, a.shape[1] + 1, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"expected mean scores (N,) or distributions (N, K), got shape {a.shape}")
    return a


def compute_metrics(
    pred: np.ndarray,
    true: np.ndarray,
    cutoff: float = 5.0,
    t: float = 0.5,
    intervals: Sequence[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """All paper metrics at once.

    Args:
        pred: Predicted mean scores ``(N,)`` or distributions ``(N, K)`` (bins are scores 1..K).
        true: Ground-truth mean scores or distributions, same convention.
        cutoff: Binary accuracy threshold: a photo is "good" when its score exceeds ``cutoff``.
        t: Interval error threshold of Eq. 6.
        intervals: True-score intervals for the interval error rate (default: unit intervals over 1..K; the last
            interval is closed on the right).

    Returns:
        ``n, srcc, plcc, mse, accuracy, error_rate`` (overall share with ``|pred - true| > t``) and ``intervals``:
        one ``{low, high, n, error_rate}`` per interval (``error_rate`` None for an empty interval). Correlations are
        None (JSON null) when undefined (fewer than 2 samples or constant input).
    """
    from scipy import stats

    p, y = _scores(pred), _scores(true)
    if p.shape != y.shape:
        raise ValueError(f"pred and true differ in length: {p.shape} vs {y.shape}")
    n = int(p.size)
    if intervals is None:
        k = np.asarray(pred).shape[1] if np.asarray(pred).ndim == 2 else 10
        intervals = default_intervals(k)

    def corr(fn: Any) -> float | None:
        if n < 2 or np.ptp(p) == 0 or np.ptp(y) == 0:
            return None
        v = float(fn(p, y)[0])
        return v if math.isfinite(v) else None

    err = np.abs(p - y) > t
    rows = []
    for i, (lo, hi) in enumerate(intervals):
        last = i == len(intervals) - 1
        mask = (y >= lo) & ((y <= hi) if last else (y < hi))
        m = int(mask.sum())
        rows.append({"low": float(lo), "high": float(hi), "n": m, "error_rate": float(err[mask].mean()) if m else None})
    return {
        "n": n,
        "srcc": corr(stats.spearmanr),
        "plcc": corr(stats.pearsonr),
        "mse": float(np.mean((p - y) ** 2)) if n else None,
        "accuracy": float(np.mean((p > cutoff) == (y > cutoff))) if n else None,
        "cutoff": float(cutoff),
        "t": float(t),
        "error_rate": float(err.mean()) if n else None,
        "intervals": rows,
    }


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def metrics_markdown(metrics: dict[str, Any], title: str | None = None) -> str:
    """A readable markdown rendering: headline metrics, then the interval error rates."""
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| n | SRCC | PLCC | MSE | accuracy (cut-off {}) | error rate (t = {}) |".format(
            _fmt(metrics["cutoff"]), _fmt(metrics["t"])
        ),
        "|---|---|---|---|---|---|",
        "| {} | {} | {} | {} | {} | {} |".format(
            metrics["n"], *(_fmt(metrics[k]) for k in ("srcc", "plcc", "mse", "accuracy", "error_rate"))
        ),
        "",
        "| true score interval | n | interval error rate |",
        "|---|---|---|",
    ]
    for row in metrics["intervals"]:
        lines.append(f"| [{row['low']:g}, {row['high']:g}) | {row['n']} | {_fmt(row['error_rate'])} |")
    return "\n".join(lines)
