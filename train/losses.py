"""The CSKD losses: CLIP feature alignment (Eq. 1), EMD (Eq. 2), the SKD student loss (Eq. 3-5) and the optional
feature-level KD term of Hou et al. (Eq. 7).

Equation numbers refer to the CSKD paper (Xu et al.) unless marked Hou; see ``shared/research/method.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cosine_alignment_loss", "emd_loss", "skd_loss", "feature_kd_loss"]


def cosine_alignment_loss(target: torch.Tensor, pred: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 1: ``1 - x1.x2 / max(||x1|| * ||x2||, eps)``, averaged over the batch.

    Args:
        target: Teacher (CLIP) embeddings ``x1``, shape ``(N, D)``.
        pred: Projected backbone features ``x2``, shape ``(N, D)``.
        eps: Floor of the norm product (the paper's 1e-8), so a zero vector gives loss 1, not NaN.
    """
    if target.shape != pred.shape:
        raise ValueError(f"alignment needs equal shapes, got teacher {tuple(target.shape)} vs student {tuple(pred.shape)}")
    # Float32 even under autocast: the norm product of 768-d fp16 vectors can overflow.
    t, p = target.float(), pred.float()
    dot = (t * p).sum(-1)
    denom = (t.norm(dim=-1) * p.norm(dim=-1)).clamp_min(eps)
    return (1.0 - dot / denom).mean()


def emd_loss(pred: torch.Tensor, target: torch.Tensor, r: float = 2.0, reduction: str = "mean") -> torch.Tensor:
    """Eq. 2: ``(1/d * sum_i |CDF_p(i) - CDF_q(i)|^r)^(1/r)`` between two distributions over ``d`` ordered bins.

    Args:
        pred: Predicted distributions, shape ``(N, d)`` (rows sum to 1).
        target: Target distributions, shape ``(N, d)``.
        r: The norm; the paper uses r = 2.
        reduction: ``mean`` over the batch, or ``none`` for per-sample values.
    """
    if pred.shape != target.shape:
        raise ValueError(f"EMD needs equal shapes, got {tuple(pred.shape)} vs {tuple(target.shape)}")
    cdf_diff = torch.cumsum(pred.float(), dim=-1) - torch.cumsum(target.float(), dim=-1)
    inner = cdf_diff.abs().pow(r).mean(dim=-1)
    # The root's gradient is infinite at exactly 0 (prediction == target); a tiny floor keeps it finite.
    per_sample = inner.clamp_min(1e-12).pow(1.0 / r)
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def skd_loss(
    student_labeled: torch.Tensor,
    labels: torch.Tensor,
    student_all: torch.Tensor,
    teacher_all: torch.Tensor,
    beta: float = 15.0,
    r: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Eq. 3-5: ``L = L_s + beta * L_kd``.

    Args:
        student_labeled: Student distributions on the ``B_s`` labeled images.
        labels: Ground-truth distributions of those images.
        student_all: Student distributions on all ``B_s + mu * B_s`` images (labeled and unlabeled).
        teacher_all: Teacher pseudo-distributions of the same images.
        beta: Weight of the distillation term (paper: 15).
        r: EMD norm.

    Returns:
        ``loss`` (the total), ``l_s`` and ``l_kd`` (detached, for logging).
    """
    l_s = emd_loss(student_labeled, labels, r) if student_labeled.numel() else student_all.sum() * 0.0
    l_kd = emd_loss(student_all, teacher_all, r)
    return {"loss": l_s + beta * l_kd, "l_s": l_s.detach(), "l_kd": l_kd.detach()}


def feature_kd_loss(student_feat_projected: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Hou et al. Eq. 7, feature term: ``MSE(f_t, FC(f_s))``, the student feature projected to the teacher width."""
    return F.mse_loss(student_feat_projected.float(), teacher_feat.float())
