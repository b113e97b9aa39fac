"""Supervised EMD training: the SKD teacher (CFA backbone + MLP head) and the NIMA* baseline.

Both minimise the EMD (r = 2, Eq. 2) between the predicted and the ground-truth score distributions on labeled
data; they differ only in the initialisation the recipe gives (``teacher``: ``model.from_checkpoint`` = a CFA
checkpoint; ``nima``: ImageNet / offline init, no CFA).
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
from .data.datasets import LabeledDataset, TrainView
from .data.loaders import labeled_loader, labeled_steps
from .engine import Task, TrainNet, fit
from .losses import emd_loss

__all__ = ["SupervisedTask", "run_teacher", "run_nima"]

logger = logging.getLogger(__name__)


class SupervisedTask(Task):
    """EMD fine-tuning on ``data.labeled``, validated on ``data.val`` and tested on ``data.test``."""

    def __init__(self, cfg: Config, info: D.DistInfo, stage: str) -> None:
        self.cfg, self.info, self.stage = cfg, info, stage
        items = load_items(cfg, "labeled")
        if not items:
            raise ValueError(f"{stage}: the recipe needs data.labeled")
        model, self.spec, self.init_prov = build_model(cfg)
        self.net = TrainNet(model, outputs=("dist",))
        reseed_for_rank(cfg, info)
        view = TrainView(self.spec, cfg.data.image_size, cfg.data.resize, cfg.data.hflip, cfg.run.seed)
        self.dataset = LabeledDataset(items, view)
        self.val = load_items(cfg, "val")
        self.test = load_items(cfg, "test")

    def steps_per_epoch(self) -> int:
        n = labeled_steps(len(self.dataset), self.cfg.optim.batch_size)
        return min(n, self.cfg.optim.steps_per_epoch) if self.cfg.optim.steps_per_epoch > 0 else n

    def batches(self, epoch: int, skip_steps: int) -> Iterable[Any]:
        c = self.cfg
        return labeled_loader(self.dataset, c.optim.batch_size, self.info, c.run.seed, epoch, skip_steps, c.data.workers)

    def loss(self, net: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, y, _ = batch
        return {"loss": emd_loss(net(x)["dist"], y, r=self.cfg.skd.r)}

    def evaluate(self, final: bool = False) -> dict[str, Any] | None:
        items = self.test if final else self.val
        if not items:
            return None
        return evaluate_items(self.net.model, items, self.spec, self.info, self.cfg, "test" if final else "validate")

    def provenance(self) -> dict[str, Any]:
        return {"init": self.init_prov, "labeled_images": len(self.dataset)}


def run_teacher(cfg: Config) -> Path:
    """Fine-tune the teacher (CFA backbone + MLP head) with EMD; returns ``<out>/teacher.pt``."""
    cfg = cfg.copy()
    cfg.stage = "teacher"
    info = init_run(cfg)
    return fit(SupervisedTask(cfg, info, "teacher"), cfg, info)


def run_nima(cfg: Config) -> Path:
    """The NIMA* baseline: supervised EMD from ImageNet / offline init; returns ``<out>/nima.pt``."""
    cfg = cfg.copy()
    cfg.stage = "nima"
    info = init_run(cfg)
    return fit(SupervisedTask(cfg, info, "nima"), cfg, info)
