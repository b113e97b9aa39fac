"""Phase I, CFA: align a timm backbone (through an MLP projector) to a frozen image encoder on unlabeled images
with the cosine loss of Eq. 1.

With ``cfa.encoder.view: eval`` (default) the teacher embeds each image once with its own deterministic
preprocessing; the embeddings are cached on disk and looked up every step, so the teacher never runs during
training. ``view: same`` runs the teacher on the student's random crop every step instead (re-normalised for
the teacher). Streamed shards always use the online path.

The output checkpoint is a full :class:`~cskd_train.model.AestheticModel` (its head untrained) whose backbone
the next stages take with ``model.from_checkpoint``; the projector is stored under ``extra_modules``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from . import distributed as D
from .common import build_model, init_run, reseed_for_rank
from .config import Config
from .data.datasets import ShardStream, TrainView, UnlabeledDataset
from .data.loaders import iterable_loader, labeled_loader, labeled_steps
from .data.sources import load_unlabeled
from .encoders import FrozenEncoder, build_encoder, compute_outputs
from .engine import Task, TrainNet, fit
from .losses import cosine_alignment_loss

__all__ = ["CFATask", "run_cfa", "projector"]

logger = logging.getLogger(__name__)


def projector(in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    """The MLP projector from backbone features to the teacher's embedding width."""
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class _PairView:
    """Student training view + the teacher's eval view of the same decoded image (streamed shards)."""

    def __init__(self, train: TrainView, teacher_spec: Any) -> None:
        from .data.datasets import EvalView

        self.train = train
        self.teacher = EvalView(teacher_spec)

    def __call__(self, img: Any, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train(img, epoch, index), self.teacher(img)


class CFATask(Task):
    """CLIP feature alignment of ``cfg.model`` to ``cfg.cfa.encoder`` on ``cfg.data.unlabeled``."""

    stage = "cfa"

    def __init__(self, cfg: Config, info: D.DistInfo, encoder: FrozenEncoder | None = None) -> None:
        self.cfg, self.info = cfg, info
        if not cfg.data.unlabeled:
            raise ValueError("cfa: the recipe needs data.unlabeled (images to align on)")
        model, self.spec, self.init_prov = build_model(cfg)
        # The head is not trained in CFA; freezing it also keeps DDP from waiting for its gradients.
        model.head.requires_grad_(False)
        self.encoder = (encoder or build_encoder(cfg.cfa.encoder, seed=cfg.run.seed, base_dir=cfg.base_dir)).to(info.device)
        proj = projector(model.feature_dim, self.encoder.dim, cfg.cfa.projector_hidden)
        self.net = TrainNet(model, {"projector": proj}, outputs=("proj",))
        reseed_for_rank(cfg, info)
        view = TrainView(self.spec, cfg.data.image_size, cfg.data.resize, cfg.data.hflip, cfg.run.seed)
        source = load_unlabeled(cfg.data.unlabeled, cfg.base_dir)
        self.targets: torch.Tensor | None = None
        if isinstance(source, list):
            self.paths = source
            self.dataset: Any = UnlabeledDataset(source, view)
            self.streamed = False
            self.online = cfg.cfa.encoder.view == "same"
            if cfg.cfa.encoder.view not in ("eval", "same"):
                raise ValueError(f"cfa.encoder.view must be eval or same (got {cfg.cfa.encoder.view!r})")
            if not self.online:
                cache = cfg.resolve(cfg.cfa.encoder.cache_dir) if cfg.cfa.encoder.cache_dir else cfg.out_dir() / "cache"
                self.targets = compute_outputs(self.encoder, source, info, cfg.cfa.encoder.batch_size, cfg.data.workers,
                                               cache if cfg.cfa.encoder.cache else None, "CFA teacher embeddings",
                                               cfg.run.progress).to(info.device)  # fmt: skip
        else:
            if cfg.optim.steps_per_epoch <= 0:
                raise ValueError("cfa: streamed shards need optim.steps_per_epoch (an epoch has no natural length)")
            self.paths = []
            self.streamed = True
            self.online = True
            self.dataset = ShardStream(source, _PairView(view, self.encoder.spec))

    def steps_per_epoch(self) -> int:
        if self.cfg.optim.steps_per_epoch > 0:
            return self.cfg.optim.steps_per_epoch if self.streamed else min(
                self.cfg.optim.steps_per_epoch, labeled_steps(len(self.paths), self.cfg.optim.batch_size))
        return labeled_steps(len(self.paths), self.cfg.optim.batch_size)

    def batches(self, epoch: int, skip_steps: int) -> Iterable[Any]:
        c = self.cfg
        if self.streamed:
            self.dataset.set_epoch(epoch)
            self.dataset.skip = skip_steps * (c.optim.batch_size // self.info.world)
            return iterable_loader(self.dataset, c.optim.batch_size, self.info, c.data.workers)
        return labeled_loader(self.dataset, c.optim.batch_size, self.info, c.run.seed, epoch, skip_steps, c.data.workers)

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the student's normalisation: 0..1 RGB, for the teacher's own normalisation."""
        s = self.spec
        mean = torch.tensor(s.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(s.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return ((x * std + mean) / (255.0 * s.scale)).clamp(0, 1)

    def loss(self, net: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        if self.streamed:
            (x, xt), _keys = batch
            with torch.no_grad():
                target = self.encoder.encode(xt)
        else:
            x, idx = batch
            if self.online:
                with torch.no_grad():
                    target = self.encoder.encode_pixels(self._pixels(x.float()))
            else:
                target = self.targets[idx]
        ok = ~torch.isnan(target).any(dim=1)
        if not bool(ok.all()):  # an image the teacher pass could not decode (it decoded now: e.g. a late copy)
            x, target = x[ok], target[ok]
        pred = net(x)["proj"]
        return {"loss": cosine_alignment_loss(target, pred)}

    def provenance(self) -> dict[str, Any]:
        e = self.cfg.cfa.encoder
        return {"init": self.init_prov, "cfa": {"encoder": self.encoder.id, "view": e.view, "embed_dim": self.encoder.dim,
                "projector_hidden": self.cfg.cfa.projector_hidden, "images": len(self.paths) or "streamed"}}  # fmt: skip


def run_cfa(cfg: Config, encoder: FrozenEncoder | None = None) -> Path:
    """Run CFA; returns the final checkpoint ``<out>/cfa.pt``.

    Args:
        cfg: Config with ``stage`` cfa (forced here).
        encoder: An already built teacher encoder (default: from ``cfg.cfa.encoder``).
    """
    cfg = cfg.copy()
    cfg.stage = "cfa"
    info = init_run(cfg)
    return fit(CFATask(cfg, info, encoder), cfg, info)
