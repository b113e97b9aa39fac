"""The aesthetics model (timm backbone + MLP head -> score distribution) and the checkpoint format.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: opening a checkpoint never runs code from it. It carries the runtime
manifest (the preprocessing contract plus provenance), which ``cskd-export`` embeds in every artifact.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cskd_runtime.manifest import Manifest

__all__ = [
    "CHECKPOINT_FORMAT",
    "ModelConfig",
    "AestheticModel",
    "build_backbone",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cskd.checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network from a checkpoint.

    Attributes:
        backbone: timm model name (e.g. ``mobilenetv2_100``, ``swin_base_patch4_window7_224``).
        num_bins: Output bins (AVA: 10 for scores 1..10).
        hidden: Width of the MLP head's hidden layer (0 for a single linear layer).
        dropout: Dropout before each head layer.
        timm_kwargs: Extra ``timm.create_model`` arguments (e.g. ``pad_type='same'`` for Keras-ported weights).
    """

    backbone: str = "mobilenetv2_100"
    num_bins: int = 10
    hidden: int = 512
    dropout: float = 0.2
    timm_kwargs: dict[str, Any] = field(default_factory=dict)


def build_backbone(name: str, pretrained: bool = False, **timm_kwargs: Any) -> nn.Module:
    """A timm backbone without classifier (pooling: see ``AestheticModel.pool``)."""
    import timm

    return timm.create_model(name, pretrained=pretrained, num_classes=0, **timm_kwargs)


class AestheticModel(nn.Module):
    """timm backbone -> pooled feature -> MLP head -> softmax distribution over score bins.

    The forward pass ends in a softmax so every exported artifact returns a distribution directly
    (manifest ``output.activation = "none"``).
    """

    def __init__(self, cfg: ModelConfig, backbone: nn.Module | None = None, pretrained: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone if backbone is not None else build_backbone(
            cfg.backbone, pretrained=pretrained, **cfg.timm_kwargs
        )
        dim = int(getattr(self.backbone, "num_features"))
        layers: list[nn.Module] = []
        if cfg.hidden > 0:
            layers += [nn.Dropout(cfg.dropout), nn.Linear(dim, cfg.hidden), nn.ReLU(inplace=True)]
            dim = cfg.hidden
        layers += [nn.Dropout(cfg.dropout), nn.Linear(dim, cfg.num_bins)]
        self.head = nn.Sequential(*layers)

    @property
    def feature_dim(self) -> int:
        return int(getattr(self.backbone, "num_features"))

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        """Global feature from ``forward_features`` output.

        Conv feature maps (N, C, H, W) are averaged with ``mean`` rather than timm's pooling + ``nn.Flatten``:
        litert-torch cannot convert a dynamic batch through Flatten. Token sequences (N, L, C) and NHWC maps
        (Swin) go through timm's own ``forward_head(pre_logits=True)``, which knows CLS vs average pooling.
        """
        if feats.ndim == 4 and not _is_nhwc_backbone(self.backbone):
            return feats.mean((2, 3))
        return self.backbone.forward_head(feats, pre_logits=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone feature (used by CFA and feature-level KD)."""
        return self.pool(self.backbone.forward_features(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


def _is_nhwc_backbone(backbone: nn.Module) -> bool:
    # Swin in timm keeps features channels-last (N, H, W, C); its forward_head handles pooling.
    return type(backbone).__name__.lower().startswith("swin")


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(
    path: str | os.PathLike,
    model: AestheticModel,
    manifest: Manifest,
    stage: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file + rename: a crash never leaves a torn checkpoint).

    Args:
        path: Destination ``.pt`` file.
        model: The model; its ``ModelConfig`` is stored so the checkpoint rebuilds without our config files.
        manifest: Runtime contract to embed (preprocessing + provenance + metrics).
        stage: Which stage produced it (``cfa``, ``teacher``, ``skd``, ``nima``, ``kd``).
        extra: Additional weights_only-safe entries (epoch, optimizer / scheduler / RNG state, config).
    """
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "stage": stage,
        "model_config": asdict(model.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "manifest": manifest.to_json(),
    }
    payload.update(extra or {})
    p = Path(path)
    _atomic_torch_save(payload, p)
    logger.info("wrote %s checkpoint %s", stage, p)
    return p


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``) and check its format.

    Raises:
        ValueError: naming the file if it is not a cskd checkpoint or is of a newer format.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{p}: not a loadable checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{p}: not a cskd checkpoint (missing format={CHECKPOINT_FORMAT!r})")
    if int(ckpt.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise ValueError(f"{p}: checkpoint format {ckpt['format_version']} is newer than this cskd; upgrade cskd")
    return ckpt


def model_from_checkpoint(path: str | os.PathLike) -> tuple[AestheticModel, Manifest]:
    """Rebuild the model (in eval mode) and its manifest from a checkpoint file."""
    ckpt = load_checkpoint(path)
    cfg = ModelConfig(**ckpt["model_config"])
    model = AestheticModel(cfg)
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match {cfg.backbone} (missing {missing[:5]}, unexpected {unexpected[:5]})")
    manifest = Manifest.from_json(ckpt["manifest"], source=str(path))
    return model.eval(), manifest
