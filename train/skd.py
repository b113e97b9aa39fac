"""Phase II, SKD: the student learns from labels and from the teacher's pseudo-distributions (Eq. 3-5).

Each step takes ``B_s`` labeled and ``mu * B_s`` unlabeled images; ``L = L_s + beta * L_kd`` with ``L_s`` the EMD
to the labels on the labeled part and ``L_kd`` the EMD to the teacher on all ``B_s + mu * B_s`` images.

The teacher runs **once**, before training, over every labeled and unlabeled image with its deterministic
evaluation preprocessing (its manifest), as Hou et al. precompute their teacher outputs; the pseudo-distributions
(and, for the optional feature term of Hou et al. Eq. 7, the teacher's pooled features) are cached on disk and
indexed every step. An SKD step therefore costs about what a supervised step on the same number of images costs.

``labeled_only`` gives the paper's "KD" baseline (Table 6): the same loss on labeled images only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from . import distributed as D
from .common import build_model, evaluate_items, init_run, load_items, reseed_for_rank
from .config import Config
from .data.datasets import LabeledDataset, TrainView, UnlabeledDataset
from .data.loaders import labeled_loader, labeled_steps, stream_loader
from .data.sources import load_unlabeled
from .encoders import ModelEncoder, compute_outputs
from .engine import Task, TrainNet, fit
from .losses import emd_loss, feature_kd_loss, skd_loss

__all__ = ["SKDTask", "run_skd", "run_kd"]

logger = logging.getLogger(__name__)


class SKDTask(Task):
    """Semi-supervised distillation of ``skd.teacher`` into ``cfg.model``."""

    def __init__(self, cfg: Config, info: D.DistInfo, stage: str = "skd") -> None:
        self.cfg, self.info, self.stage = cfg, info, stage
        s = cfg.skd
        if not s.teacher:
            raise ValueError(f"{stage}: set skd.teacher to a teacher checkpoint (output of cskd-train teacher)")
        self.labeled_only = stage == "kd" or s.labeled_only
        items = load_items(cfg, "labeled")
        if not items:
            raise ValueError(f"{stage}: the recipe needs data.labeled")
        if not self.labeled_only and not cfg.data.unlabeled:
            raise ValueError("skd: the recipe needs data.unlabeled (or use the kd stage / skd.labeled_only)")
        model, self.spec, self.init_prov = build_model(cfg)
        teacher_path = cfg.resolve(s.teacher)
        teacher = ModelEncoder(teacher_path, features=s.feature_kd > 0).to(info.device)
        if teacher.num_bins != cfg.data.num_bins:
            raise ValueError(f"{teacher_path}: teacher has {teacher.num_bins} bins, data.num_bins is {cfg.data.num_bins}")
        self.teacher_id, self.teacher_path = teacher.id, teacher_path
        self.teacher_feature_dim = teacher.feature_dim
        extras = {}
        if s.feature_kd > 0:
            extras["feature_fc"] = nn.Linear(model.feature_dim, teacher.feature_dim)
        self.net = TrainNet(model, extras, outputs=("dist", "feat_proj") if extras else ("dist",))
        reseed_for_rank(cfg, info)

        view = TrainView(self.spec, cfg.data.image_size, cfg.data.resize, cfg.data.hflip, cfg.run.seed)
        self.labeled = LabeledDataset(items, view)
        self.unlabeled: UnlabeledDataset | None = None
        unl_paths: list[str] = []
        if not self.labeled_only:
            src = load_unlabeled(cfg.data.unlabeled, cfg.base_dir)
            if not isinstance(src, list):
                raise ValueError("skd: unlabeled data must be files (folders/CSV), not streamed shards: the teacher's "
                                 "pseudo-labels are computed once per image")  # fmt: skip
            unl_paths = src
            self.unlabeled = UnlabeledDataset(src, view)

        # The one teacher pass (cached): pseudo-distributions [| features] for labeled then unlabeled images.
        cache = cfg.resolve(s.cache_dir) if s.cache_dir else cfg.out_dir() / "cache"
        paths = [it.path for it in items] + unl_paths
        out = compute_outputs(teacher, paths, info, s.teacher_batch_size, cfg.data.workers, cache,
                              "SKD teacher pseudo-labels", cfg.run.progress)  # fmt: skip
        self.t_lab = out[: len(items)].to(info.device)
        self.t_unl = out[len(items) :].to(info.device)
        del teacher  # never needed again: frees its memory for the student
        self.val = load_items(cfg, "val")
        self.test = load_items(cfg, "test")
        self.mu = int(s.mu)

    def steps_per_epoch(self) -> int:
        n = labeled_steps(len(self.labeled), self.cfg.optim.batch_size)
        return min(n, self.cfg.optim.steps_per_epoch) if self.cfg.optim.steps_per_epoch > 0 else n

    def batches(self, epoch: int, skip_steps: int) -> Iterable[Any]:
        c = self.cfg
        lab = labeled_loader(self.labeled, c.optim.batch_size, self.info, c.run.seed, epoch, skip_steps, c.data.workers)
        if self.labeled_only or self.unlabeled is None or self.mu <= 0:
            return ((b, None) for b in lab)
        unl = stream_loader(self.unlabeled, self.mu * c.optim.batch_size, self.steps_per_epoch(), self.info,
                            c.run.seed, epoch, skip_steps, c.data.workers)  # fmt: skip
        # A batch whose images all failed to decode on both sides is skipped by the engine (None).
        return ((a, b) if (a is not None or b is not None) else None for a, b in zip(lab, unl))

    def loss(self, net: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        lab, unl = batch
        k = self.cfg.data.num_bins
        if lab is None:  # every labeled image of the batch failed to decode
            xl = torch.zeros(0, 3, self.cfg.data.image_size, self.cfg.data.image_size, device=self.t_lab.device)
            y = torch.zeros(0, k, device=xl.device)
            tl = torch.zeros(0, self.t_lab.shape[1], device=xl.device)
        else:
            xl, y, il = lab
            tl = self.t_lab[il]
        xs, ts = [xl], [tl]
        if unl is not None:
            xu, iu = unl
            xs.append(xu)
            ts.append(self.t_unl[iu])
        x, t = torch.cat(xs), torch.cat(ts)
        out = net(x)
        d = out["dist"]
        ok = ~torch.isnan(t).any(dim=1)
        terms = skd_loss(d[: len(xl)], y, d[ok], t[ok, :k], beta=self.cfg.skd.beta, r=self.cfg.skd.r)
        if "feat_proj" in out:
            f = feature_kd_loss(out["feat_proj"][ok], t[ok, k:])
            terms["loss"] = terms["loss"] + self.cfg.skd.feature_kd * f
            terms["l_feat"] = f.detach()
        return terms

    def evaluate(self, final: bool = False) -> dict[str, Any] | None:
        items = self.test if final else self.val
        if not items:
            return None
        return evaluate_items(self.net.model, items, self.spec, self.info, self.cfg, "test" if final else "validate")

    def provenance(self) -> dict[str, Any]:
        s = self.cfg.skd
        return {"init": self.init_prov, "teacher": {"checkpoint": str(self.teacher_path), "id": self.teacher_id},
                "skd": {"beta": s.beta, "mu": 0 if self.labeled_only else s.mu, "labeled_only": self.labeled_only,
                        "feature_kd": s.feature_kd, "labeled_images": len(self.labeled),
                        "unlabeled_images": len(self.unlabeled) if self.unlabeled else 0}}  # fmt: skip


def run_skd(cfg: Config) -> Path:
    """Semi-supervised KD of the student; returns ``<out>/skd.pt``."""
    cfg = cfg.copy()
    cfg.stage = "skd"
    info = init_run(cfg)
    return fit(SKDTask(cfg, info, "skd"), cfg, info)


def run_kd(cfg: Config) -> Path:
    """The "KD" baseline (labeled data only); returns ``<out>/kd.pt``."""
    cfg = cfg.copy()
    cfg.stage = "kd"
    info = init_run(cfg)
    return fit(SKDTask(cfg, info, "kd"), cfg, info)
