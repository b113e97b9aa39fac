"""Losses (Eq. 1, 2, 3-5, Hou Eq. 7) and metrics (SRCC, PLCC, MSE, accuracy, interval error rate)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from cskd_train.losses import cosine_alignment_loss, emd_loss, feature_kd_loss, skd_loss
from cskd_train.metrics import compute_metrics, metrics_markdown


def test_cosine_alignment_is_one_minus_cosine_with_eps_floor():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    assert cosine_alignment_loss(a, b).item() == pytest.approx((1 - F.cosine_similarity(a, b)).mean().item(), abs=1e-6)
    assert cosine_alignment_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert cosine_alignment_loss(a, -a).item() == pytest.approx(2.0, abs=1e-6)
    assert cosine_alignment_loss(a, 3.7 * a).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    zero = torch.zeros(5, 16, requires_grad=True)
    loss = cosine_alignment_loss(a, zero)  # eps keeps it finite: exactly 1
    loss.backward()
    assert loss.item() == pytest.approx(1.0) and torch.isfinite(zero.grad).all()
    with pytest.raises(ValueError, match="equal shapes"):
        cosine_alignment_loss(a, b[:, :8])


def test_emd_matches_eq2_by_hand():
    p = torch.tensor([[1.0] + [0.0] * 9])
    q = torch.tensor([[0.0] * 9 + [1.0]])
    # CDFs differ by 1 on bins 1..9 and agree on bin 10: sqrt(9 / 10).
    assert emd_loss(p, q).item() == pytest.approx(math.sqrt(0.9), abs=1e-6)
    assert emd_loss(p, q, r=1).item() == pytest.approx(0.9, abs=1e-6)
    u = torch.full((1, 10), 0.1)
    cdf = np.cumsum([0.1] * 10) - np.cumsum([1.0] + [0.0] * 9)
    assert emd_loss(u, p).item() == pytest.approx(float(np.sqrt(np.mean(cdf**2))), abs=1e-6)
    assert emd_loss(torch.cat([p, u]), torch.cat([q, p]), reduction="none").shape == (2,)
    same = torch.softmax(torch.randn(3, 10), -1).requires_grad_(True)
    loss = emd_loss(same, same.detach())
    loss.backward()
    assert loss.item() < 1e-5 and torch.isfinite(same.grad).all()  # no NaN gradient at p == q


def test_skd_total_is_ls_plus_beta_lkd_and_feature_term_is_mse():
    g = torch.Generator().manual_seed(1)
    d = lambda n: torch.softmax(torch.randn(n, 10, generator=g), -1)  # noqa: E731
    s_all, t_all, y = d(8), d(8), d(2)
    out = skd_loss(s_all[:2], y, s_all, t_all, beta=15.0)
    assert out["loss"].item() == pytest.approx((emd_loss(s_all[:2], y) + 15 * emd_loss(s_all, t_all)).item(), rel=1e-6)
    assert out["l_s"].item() == pytest.approx(emd_loss(s_all[:2], y).item())
    empty = skd_loss(s_all[:0], y[:0], s_all, t_all, beta=2.0)  # no labeled image decoded in this batch
    assert empty["loss"].item() == pytest.approx(2 * emd_loss(s_all, t_all).item(), rel=1e-6)
    f1, f2 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    assert feature_kd_loss(f1, f2).item() == pytest.approx(((f1 - f2) ** 2).mean().item(), rel=1e-6)


def test_metrics_against_scipy_and_by_hand():
    true = np.array([2.0, 3.2, 4.9, 5.1, 5.6, 7.0, 8.4, 9.5])
    pred = np.array([2.9, 3.1, 5.2, 4.8, 5.7, 6.0, 8.3, 9.9])
    m = compute_metrics(pred, true)
    assert m["srcc"] == pytest.approx(stats.spearmanr(pred, true)[0])
    assert m["plcc"] == pytest.approx(stats.pearsonr(pred, true)[0])
    assert m["mse"] == pytest.approx(np.mean((pred - true) ** 2))
    # cut-off 5: (4.9 vs 5.2) and (5.1 vs 4.8) disagree -> 6/8.
    assert m["accuracy"] == pytest.approx(6 / 8)
    # |err| > 0.5: 0.9 (2.0), 1.0 (7.0) -> 2/8; per interval: [2,3) 1/1, [7,8) 1/1, [9,10] 0/1.
    assert m["error_rate"] == pytest.approx(2 / 8)
    rows = {(r["low"], r["high"]): r for r in m["intervals"]}
    assert rows[(2.0, 3.0)]["error_rate"] == 1.0 and rows[(7.0, 8.0)]["error_rate"] == 1.0
    assert rows[(9.0, 10.0)]["n"] == 1 and rows[(9.0, 10.0)]["error_rate"] == 0.0
    assert rows[(1.0, 2.0)]["n"] == 0 and rows[(1.0, 2.0)]["error_rate"] is None
    assert sum(r["n"] for r in m["intervals"]) == 8
    md = metrics_markdown(m, "demo")
    assert "| 8 |" in md and "[9, 10)" in md and "n/a" in md


def test_metrics_take_distributions_and_flag_undefined_correlations():
    bins = np.arange(1, 11)
    d = np.stack([np.eye(10)[k] for k in (1, 4, 8)])  # scores 2, 5, 9
    m = compute_metrics(d, np.array([2.0, 5.0, 9.0]))
    assert m["mse"] == 0.0 and m["srcc"] == pytest.approx(1.0)
    const = compute_metrics(np.full(3, 5.0), np.array([2.0, 5.0, 9.0]))
    assert const["srcc"] is None and const["plcc"] is None
    assert (d @ bins).tolist() == [2, 5, 9]
