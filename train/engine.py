"""The training loop every stage shares: DDP, AMP, gradient accumulation, schedule, checkpoints and resume.

A stage is a :class:`Task`: it owns the trainable network (:class:`TrainNet`: the model plus extra trainable
modules such as the CFA projector), the batches of an epoch and the loss of a batch. :func:`fit` does the rest the
same way for every stage, from one CPU process to ``torchrun`` on many GPUs:

* only the trainable network is wrapped in ``DistributedDataParallel``; frozen teachers are never wrapped;
* the optimizer steps every ``optim.accum_steps`` batches (``no_sync`` in between), with AMP on CUDA;
* ``<out>/last.pt`` is written at every epoch end and, with ``run.checkpoint_every_steps``, every N optimizer
  steps; it holds weights, optimizer, scheduler, grad scaler, RNG states and the position in the epoch, so
  ``run.resume`` continues a killed run on exactly the batches it would have seen and ends with the same weights;
* only rank 0 logs, shows progress bars and writes files.

Test hook: the environment variable ``CSKD_STOP_AFTER_STEPS=N`` makes the run exit (``SystemExit``) right after
its N-th optimizer step of this process, as a crash would, after any checkpoint due at that step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from cskd_runtime.manifest import InputSpec

from . import distributed as D
from .common import make_manifest
from .config import Config, dump_config
from .model import AestheticModel, load_checkpoint, save_checkpoint

__all__ = ["TrainNet", "Task", "fit", "STOP_ENV"]

logger = logging.getLogger(__name__)

STOP_ENV = "CSKD_STOP_AFTER_STEPS"
STATE_VERSION = 1


class TrainNet(nn.Module):
    """The trainable network of a stage: the :class:`AestheticModel` plus extra modules, one DDP unit.

    ``forward`` returns what the stage's loss needs: ``dist`` (softmax over bins), ``proj`` (the CFA projector's
    output) and ``feat_proj`` (student feature projected to the teacher's width, feature KD).
    """

    def __init__(self, model: AestheticModel, extras: dict[str, nn.Module] | None = None,
                 outputs: tuple[str, ...] = ("dist",)) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.extras = nn.ModuleDict(extras or {})
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.model.features(x)
        out: dict[str, torch.Tensor] = {}
        if "dist" in self.outputs:
            out["dist"] = torch.softmax(self.model.head(f).float(), dim=-1)
        if "proj" in self.outputs:
            out["proj"] = self.extras["projector"](f)
        if "feat_proj" in self.outputs:
            out["feat_proj"] = self.extras["feature_fc"](f)
        return out


class Task:
    """What a stage provides to :func:`fit` (see :mod:`cskd_train.cfa`, ``teacher``, ``skd``)."""

    stage: str = ""
    net: TrainNet
    spec: InputSpec

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def batches(self, epoch: int, skip_steps: int) -> Iterable[Any]:
        """The epoch's batches from step ``skip_steps`` on (each rank its own share)."""
        raise NotImplementedError

    def loss(self, net: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """``{'loss': scalar, ...logged terms}`` for one batch; ``net`` may be DDP-wrapped."""
        raise NotImplementedError

    def evaluate(self, final: bool = False) -> dict[str, Any] | None:
        """Validation metrics (all ranks call it); None when the stage has no validation data."""
        return None

    def provenance(self) -> dict[str, Any]:
        """Stage facts for the manifest (teacher, encoder, data sizes...)."""
        return {}


def _to(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _scheduler_state(s: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    # MultiStepLR keeps its milestones in a Counter, which weights_only loading refuses; the milestones come from
    # the config anyway, so only the position is saved.
    return {"last_epoch": int(s.last_epoch), "_last_lr": [float(v) for v in s.get_last_lr()]}


def _optimizer(cfg: Config, net: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in net.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def fit(task: Task, cfg: Config, info: D.DistInfo) -> Path:
    """Train ``task`` per ``cfg`` and write the final checkpoint ``<out>/<stage>.pt`` (returned on every rank)."""
    out = cfg.out_dir()
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(cfg))
    D.barrier()
    net = task.net.to(info.device)
    amp = bool(cfg.optim.amp and info.device.type == "cuda")
    opt = _optimizer(cfg, net)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.optim.milestones), gamma=cfg.optim.gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    accum = max(1, int(cfg.optim.accum_steps))
    steps = task.steps_per_epoch()
    if steps <= 0:
        raise ValueError(f"{task.stage}: no training batches (dataset smaller than one global batch?)")

    start_epoch, start_step, global_step, history = 0, 0, 0, []
    resumed_partial: tuple[dict[str, float], int] | None = None
    last = out / "last.pt"
    if cfg.run.resume and last.is_file():
        ckpt = load_checkpoint(last)
        st = ckpt["train_state"]
        if ckpt.get("stage") != task.stage:
            raise ValueError(f"{last}: a {ckpt.get('stage')} run cannot be resumed as {task.stage}")
        net.model.load_state_dict(ckpt["state_dict"])
        net.extras.load_state_dict(ckpt.get("extra_modules", {}))
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        if amp and st.get("scaler"):
            scaler.load_state_dict(st["scaler"])
        start_epoch, start_step, global_step = int(st["epoch"]), int(st["step"]), int(st["global_step"])
        history = list(st.get("history", []))
        # Each rank restores its own RNG stream (dropout etc.); ranks were seeded differently at start.
        rngs = st.get("rng_per_rank") or []
        if info.rank < len(rngs):
            D.set_rng_state(rngs[info.rank])
        parts = st.get("partial_per_rank") or []
        if info.rank < len(parts) and start_step:
            resumed_partial = (dict(parts[info.rank]["sums"]), int(parts[info.rank]["count"]))
        if int(st.get("world", info.world)) != info.world and start_step:
            raise ValueError(f"{last}: written mid-epoch by {st.get('world')} processes; resume it with the same "
                             f"number (now {info.world}) or from an epoch-end checkpoint")  # fmt: skip
        if info.is_main:
            logger.info("resumed %s from %s at epoch %d step %d", task.stage, last, start_epoch, start_step)
    elif cfg.run.resume and info.is_main:
        logger.info("no %s to resume from; starting fresh", last)

    ddp: nn.Module = net
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(net, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    stop_after = int(os.environ.get(STOP_ENV, "0") or 0)
    steps_this_process = 0

    def save_state(epoch: int, step: int, metrics: dict[str, Any] | None = None,
                   partial: tuple[dict[str, float], int] = ({}, 0)) -> None:  # fmt: skip
        rngs = D.all_gather_objects(D.rng_state())
        # The running loss sums of an unfinished epoch, so a resumed epoch reports the same mean.
        partials = D.all_gather_objects({"sums": dict(partial[0]), "count": int(partial[1])})
        if not info.is_main:
            return
        state = {
            "version": STATE_VERSION,
            "epoch": epoch,
            "step": step,
            "global_step": global_step,
            "optimizer": opt.state_dict(),
            "scheduler": _scheduler_state(sched),
            "scaler": scaler.state_dict() if amp else {},
            "rng_per_rank": rngs,
            "partial_per_rank": partials,
            "world": info.world,
            "backend": str(torch.distributed.get_backend()) if torch.distributed.is_initialized() else "none",
            "history": history,
        }
        manifest = make_manifest(cfg, net.model, task.spec, task.stage, metrics, task.provenance())
        save_checkpoint(last, net.model, manifest, task.stage, extra={
            "train_state": state, "extra_modules": {k: v.detach().cpu() for k, v in net.extras.state_dict().items()},
            "config": cfg.to_dict()})  # fmt: skip
        if cfg.run.keep_epoch_checkpoints and step == 0:
            import shutil

            shutil.copyfile(last, out / f"epoch_{epoch:03d}.pt")

    metrics: dict[str, Any] | None = history[-1].get("val") if history else None
    for epoch in range(start_epoch, cfg.optim.epochs):
        net.train()
        skip = start_step if epoch == start_epoch else 0
        sums: dict[str, float] = {}
        count = 0
        if skip and resumed_partial is not None:
            sums, count = resumed_partial
        t0 = time.time()
        bar = _progress(steps - skip, f"{task.stage} epoch {epoch + 1}/{cfg.optim.epochs}", cfg.run.progress and info.is_main)
        it: Iterator[Any] = iter(task.batches(epoch, skip))
        for step in range(skip, steps):
            batch = next(it, None)
            boundary = (step + 1) % accum == 0 or step + 1 == steps
            sync = contextlib.nullcontext() if (boundary or not info.distributed) else ddp.no_sync()
            with sync:
                if batch is not None:
                    batch = _to(batch, info.device)
                    with torch.autocast(device_type=info.device.type, dtype=torch.float16, enabled=amp):
                        terms = task.loss(ddp, batch)
                    loss = terms["loss"]
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{task.stage}: non-finite loss at epoch {epoch + 1} step {step + 1}")
                    scaler.scale(loss / accum).backward()
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach())
                    count += 1
            if boundary:
                if cfg.optim.grad_clip > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                global_step += 1
                steps_this_process += 1
                if info.is_main and cfg.run.log_every and global_step % cfg.run.log_every == 0 and count:
                    logger.info("%s epoch %d step %d/%d: %s", task.stage, epoch + 1, step + 1, steps,
                                ", ".join(f"{k} {v / count:.4f}" for k, v in sums.items()))  # fmt: skip
                every = cfg.run.checkpoint_every_steps
                if every and global_step % every == 0 and step + 1 < steps:
                    save_state(epoch, step + 1, partial=(sums, count))
                if stop_after and steps_this_process >= stop_after:
                    D.barrier()
                    raise SystemExit(f"{STOP_ENV}={stop_after}: stopping after step {global_step} (test hook)")
            bar.update(1)
            if count:
                bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
        bar.close()
        sched.step()
        # Epoch means over all ranks, for the log and the history.
        means = {k: v / max(count, 1) for k, v in sums.items()}
        gathered = D.all_gather_objects((means, count))
        total = sum(c for _, c in gathered)
        epoch_terms = {k: sum(m.get(k, 0.0) * c for m, c in gathered) / max(total, 1) for k in means}
        last_epoch = epoch + 1 == cfg.optim.epochs
        do_eval = last_epoch or (cfg.run.eval_every and (epoch + 1) % cfg.run.eval_every == 0)
        metrics = task.evaluate(final=False) if do_eval else None
        record = {"epoch": epoch + 1, "lr": float(opt.param_groups[0]["lr"]), "seconds": round(time.time() - t0, 2),
                  **{k: round(v, 6) for k, v in epoch_terms.items()}}  # fmt: skip
        if metrics is not None:
            record["val"] = metrics
        history.append(record)
        if info.is_main:
            val = ""
            if metrics:
                val = " | val " + ", ".join(f"{k} {metrics[k]:.4f}" for k in ("srcc", "plcc", "mse") if metrics.get(k) is not None)
            logger.info("%s epoch %d/%d: %s%s", task.stage, epoch + 1, cfg.optim.epochs,
                        ", ".join(f"{k} {v:.4f}" for k, v in epoch_terms.items()), val)  # fmt: skip
        save_state(epoch + 1, 0, metrics)
    final_metrics: dict[str, Any] = {}
    if metrics:
        final_metrics["val"] = metrics
    test = task.evaluate(final=True)
    if test:
        final_metrics["test"] = test
    path = out / f"{task.stage}.pt"
    if info.is_main:
        manifest = make_manifest(cfg, net.model, task.spec, task.stage, final_metrics,
                                 {**task.provenance(), "history": [_strip(h) for h in history]})  # fmt: skip
        save_checkpoint(path, net.model, manifest, task.stage, extra={
            "extra_modules": {k: v.detach().cpu() for k, v in net.extras.state_dict().items()},
            "config": cfg.to_dict(), "history": history})  # fmt: skip
        _write_json(out / "metrics.json", {"stage": task.stage, "metrics": final_metrics, "history": history})
        if final_metrics:
            from .metrics import metrics_markdown

            md = "\n\n".join(metrics_markdown(m, f"{task.stage}: {k}") for k, m in final_metrics.items())
            (out / "metrics.md").write_text(md + "\n")
    D.barrier()
    return path


def _strip(h: dict[str, Any]) -> dict[str, Any]:
    """A history row without the per-interval detail (keeps the manifest small)."""
    row = {k: v for k, v in h.items() if k != "val"}
    if "val" in h:
        row["val"] = {k: h["val"][k] for k in ("srcc", "plcc", "mse", "accuracy") if k in h["val"]}
    return row


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def set_postfix(self, **k: Any) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True)


def loader_generator(seed: int) -> torch.Generator:
    """A private generator for DataLoaders: creating an iterator then never draws from the global RNG, so a resumed
    run's dropout stream is not shifted by how many loaders were created."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def check_finite(x: torch.Tensor, what: str) -> None:
    if not torch.isfinite(x).all():
        raise FloatingPointError(f"{what} contains NaN or infinity")


def ceil_steps(n: int, batch: int) -> int:
    return int(math.floor(n / batch))
