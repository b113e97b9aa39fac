"""Frozen teacher encoders and the one-off teacher pass with its disk cache.

CFA aligns a backbone to a frozen image encoder; SKD distils from a frozen teacher model. Both only ever need the
teacher's outputs on a deterministic view of each image, so those outputs are computed once
(:func:`compute_outputs`), cached on disk keyed by encoder id + image path (+ size and mtime) + the view, and
looked up by index during training: later epochs, reruns and resumed runs never run the teacher again.

Encoders (:func:`build_encoder`):

* ``open_clip``: any open_clip model by name and pretrained tag (default ``ViT-L-14`` / ``openai``, the paper's),
  a weights file, or ``local-dir:/folder`` holding ``open_clip_config.json`` (+ weights). Only the image tower is
  kept. Its preprocessing (shorter side -> centre crop, CLIP mean/std, bicubic) is taken from the model.
* ``timm``: any timm model (``num_classes=0``: pooled features), hub weights or a state-dict file.
* ``onnx``: an ONNX image encoder run by onnxruntime; input/output names and normalisation configurable.
  ``cskd_train.offline_init.dinov2_small_encoder_onnx()`` gives one (input ``input_image``, output ``cls``).

Every encoder is in eval mode with ``requires_grad=False``; its :attr:`FrozenEncoder.spec` is a cskd
``InputSpec`` so its images go through the same runtime preprocessing as everything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cskd_runtime.manifest import InputSpec

from . import distributed as D
from .offline_init import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "FrozenEncoder",
    "OpenCLIPEncoder",
    "TimmEncoder",
    "ONNXEncoder",
    "ModelEncoder",
    "build_encoder",
    "EmbeddingCache",
    "compute_outputs",
    "file_digest",
]

logger = logging.getLogger(__name__)



def file_digest(path: str | os.PathLike, n: int = 16) -> str:
    """First ``n`` hex digits of a file's sha256 (weights identity for cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def _spec(size: int, resize: int, mode: str, interpolation: str, mean: Sequence[float], std: Sequence[float]) -> InputSpec:
    return InputSpec(height=size, width=size, resize_height=resize, resize_width=resize, resize_mode=mode,
                     crop_mode="center", interpolation=interpolation, mean=tuple(float(v) for v in mean),
                     std=tuple(float(v) for v in std))  # fmt: skip


class FrozenEncoder:
    """A frozen image encoder: normalised NCHW tensors in (per :attr:`spec`), ``(N, dim)`` embeddings out.

    Attributes:
        id: Stable identity (kind, name, weights) used in cache keys.
        spec: The encoder's own evaluation preprocessing.
        dim: Embedding width.
    """

    id: str
    spec: InputSpec
    dim: int

    def to(self, device: torch.device) -> "FrozenEncoder":
        return self

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def encode_pixels(self, x01: torch.Tensor) -> torch.Tensor:
        """Encode RGB images given as 0..1 NCHW tensors of any size (the ``view: same`` path of CFA).

        The batch is resized (antialiased bilinear) to the encoder's input and normalised with its mean/std: the
        explicit conversion between student and teacher normalisation.
        """
        size = (self.spec.height, self.spec.width)
        if tuple(x01.shape[-2:]) != size:
            x01 = F.interpolate(x01, size=size, mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.spec.mean, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
        return self.encode((x01 - mean) / std)


class _TorchEncoder(FrozenEncoder):
    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> "FrozenEncoder":
        self.module.to(device)
        self.device = device
        return self

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.module.eval()  # stays in eval even if someone called .train() on a parent module
        out = self.module(x.to(self.device))
        return out.float()


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """A forked RNG seeded with ``seed``: randomly initialised encoders are identical on every DDP rank, and the
    caller's RNG stream is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class OpenCLIPEncoder(_TorchEncoder):
    """The image tower of an open_clip model.

    Args:
        name: Model name (``ViT-L-14``), or ``local-dir:/folder`` with ``open_clip_config.json`` (+ weights).
        pretrained: Pretrained tag (``openai``, ``laion2b_s32b_b82k``), a weights file, or None for random
            initialisation (tests).
        seed: Seed of a random initialisation.
    """

    def __init__(self, name: str = "ViT-L-14", pretrained: str | None = "openai", seed: int = 0) -> None:
        import open_clip

        with _seeded(seed):
            model = open_clip.create_model(name, pretrained=pretrained or None)
        visual = model.visual
        cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
        size = cfg.get("size", getattr(visual, "image_size", 224))
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mode = {"shortest": "shorter_side", "squash": "stretch"}.get(cfg.get("resize_mode", "shortest"))
        if mode is None:
            logger.warning("open_clip resize_mode %r has no cskd equivalent; using shorter side + centre crop",
                           cfg.get("resize_mode"))  # fmt: skip
            mode = "shorter_side"
        self.spec = _spec(size, size, mode, str(cfg.get("interpolation", "bicubic")),
                          cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)),
                          cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))  # fmt: skip
        super().__init__(visual)
        self.dim = int(getattr(visual, "output_dim", 0) or self._probe_dim())
        if pretrained and Path(str(pretrained)).is_file():
            weights = f"file:{file_digest(pretrained)}"
        elif pretrained:
            weights = str(pretrained)
        else:
            local = Path(name.split(":", 1)[1]) if name.startswith("local-dir:") else None
            ckpt = next((p for p in sorted(local.glob("*")) if p.suffix in (".bin", ".pt", ".pth", ".safetensors")),
                        None) if local else None  # fmt: skip
            weights = f"file:{file_digest(ckpt)}" if ckpt else f"random:{seed}"
        self.id = f"open_clip:{name}:{weights}"
        del model  # drop the text tower

    def _probe_dim(self) -> int:
        return int(self.encode(torch.zeros(1, 3, self.spec.height, self.spec.width)).shape[-1])


class TimmEncoder(_TorchEncoder):
    """Pooled features of any timm model.

    Args:
        name: timm model name.
        pretrained: timm hub weights (needs the hub).
        pretrained_file: A state dict file loaded instead.
        seed: Seed of a random initialisation.
    """

    def __init__(self, name: str, pretrained: bool = False, pretrained_file: str | None = None, seed: int = 0) -> None:
        import timm
        from timm.data import resolve_data_config

        kwargs: dict[str, Any] = {}
        if pretrained_file:
            kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained_file)}
        with _seeded(seed):
            model = timm.create_model(name, pretrained=bool(pretrained or pretrained_file), num_classes=0, **kwargs)
        cfg = resolve_data_config({}, model=model)
        size = int(cfg["input_size"][-1])
        resize = int(round(size / float(cfg.get("crop_pct", 0.875))))
        self.spec = _spec(size, resize, "shorter_side", str(cfg.get("interpolation", "bilinear")), cfg["mean"], cfg["std"])
        super().__init__(model)
        self.dim = int(model.num_features)
        weights = f"file:{file_digest(pretrained_file)}" if pretrained_file else ("hub" if pretrained else f"random:{seed}")
        self.id = f"timm:{name}:{weights}"


class ONNXEncoder(FrozenEncoder):
    """An ONNX image encoder run by onnxruntime (never trained, so frozen by construction).

    Args:
        path: The ``.onnx`` file.
        input_name: Input to feed (default: the first input).
        output_name: Output to use (default: the first output); a token sequence ``(N, L, D)`` gives its first
            (CLS) token.
        mean: Normalisation mean on 0..1 pixels (default ImageNet).
        std: Normalisation std (default ImageNet).
        size: Input side (default: from the model's input shape, else 224).
        resize: Side before the centre crop (default ``size * 8 / 7``).
        interpolation: Resize filter.
    """

    def __init__(self, path: str | os.PathLike, input_name: str | None = None, output_name: str | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, size: int | None = None,
                 resize: int | None = None, interpolation: str | None = None) -> None:  # fmt: skip
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX encoder not found")
        opts = ort.SessionOptions()
        if torch.get_num_threads():
            opts.intra_op_num_threads = torch.get_num_threads()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if torch.cuda.is_available() else None
        self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = input_name or next(iter(inputs))
        if self.input_name not in inputs:
            raise ValueError(f"{self.path}: no input {self.input_name!r} (inputs: {', '.join(inputs)})")
        self.output_name = output_name or outputs[0]
        if self.output_name not in outputs:
            raise ValueError(f"{self.path}: no output {self.output_name!r} (outputs: {', '.join(outputs)})")
        shape = inputs[self.input_name].shape
        static = shape[-1] if len(shape) == 4 and isinstance(shape[-1], int) else None
        size = int(size or static or 224)
        self.spec = _spec(size, int(resize or round(size * 8 / 7)), "stretch", interpolation or "bilinear",
                          mean or IMAGENET_MEAN, std or IMAGENET_STD)  # fmt: skip
        self.dim = int(self.encode(torch.zeros(1, 3, size, size)).shape[-1])
        self.id = f"onnx:{file_digest(self.path)}:{self.input_name}:{self.output_name}"

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run([self.output_name], {self.input_name: x.detach().cpu().float().numpy()})[0]
        if out.ndim == 3:  # token sequence: the CLS token
            out = out[:, 0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(x.device)


class ModelEncoder(_TorchEncoder):
    """A trained cskd model (the SKD teacher) as a frozen encoder: outputs ``[distribution | pooled feature]``.

    Args:
        checkpoint: A cskd checkpoint (``cskd-train teacher`` output).
        features: Append the pooled backbone feature (for the feature-level KD term).
    """

    def __init__(self, checkpoint: str | os.PathLike, features: bool = False) -> None:
        from .model import model_from_checkpoint

        model, manifest = model_from_checkpoint(checkpoint)
        self.model = model
        self.num_bins = int(model.cfg.num_bins)
        self.feature_dim = int(model.feature_dim) if features else 0
        self.features = features

        class _Out(nn.Module):
            def __init__(self, m: nn.Module) -> None:
                super().__init__()
                self.m = m

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                f = self.m.features(x)
                dist = torch.softmax(self.m.head(f), dim=-1)
                return torch.cat([dist, f], dim=-1) if features else dist

        super().__init__(_Out(model))
        self.spec = manifest.input
        self.dim = self.num_bins + self.feature_dim
        self.id = f"cskd:{file_digest(checkpoint)}:{'dist+feat' if features else 'dist'}"


def build_encoder(section: Any, seed: int = 0, base_dir: str | os.PathLike | None = None) -> FrozenEncoder:
    """The CFA teacher encoder described by a :class:`cskd_train.config.EncoderSection`.

    Raises:
        ValueError: for an unknown ``kind``, listing the valid ones.
    """
    kind = str(section.kind).lower()

    def path(p: Any) -> str | None:
        if p in (None, ""):
            return None
        q = Path(str(p)).expanduser()
        return str(q if q.is_absolute() or base_dir is None else Path(base_dir) / q)

    if kind == "open_clip":
        pretrained = section.pretrained if section.pretrained not in (False, "none", "None") else None
        if isinstance(pretrained, str) and (pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))):
            pretrained = path(pretrained)
        name = section.name
        if name.startswith("local-dir:"):
            name = "local-dir:" + str(path(name.split(":", 1)[1]))
        enc: FrozenEncoder = OpenCLIPEncoder(name, pretrained, seed=seed)
    elif kind == "timm":
        enc = TimmEncoder(section.name, pretrained=bool(section.pretrained) and section.pretrained not in ("none", "None"),
                          pretrained_file=path(section.pretrained_file), seed=seed)  # fmt: skip
    elif kind == "onnx":
        enc = ONNXEncoder(path(section.name) or "", section.input_name, section.output_name, section.mean, section.std,
                          section.size, section.resize, section.interpolation)  # fmt: skip
    else:
        raise ValueError(f"unknown encoder kind {section.kind!r}; choose open_clip, timm or onnx")
    # Explicit overrides of the preprocessing (all kinds).
    over = {k: v for k, v in (("mean", section.mean), ("std", section.std), ("height", section.size),
                              ("width", section.size), ("resize_height", section.resize),
                              ("resize_width", section.resize), ("interpolation", section.interpolation)) if v}
    if over and kind != "onnx":
        d = enc.spec.to_dict()
        d.update({k: tuple(v) if isinstance(v, list) else v for k, v in over.items()})
        d["background"], d["mean"], d["std"] = tuple(d["background"]), tuple(d["mean"]), tuple(d["std"])
        d["quantization"] = None
        enc.spec = InputSpec(**d)
    logger.info("teacher encoder %s: %d-d, input %dx%d", enc.id, enc.dim, enc.spec.height, enc.spec.width)
    return enc


class EmbeddingCache:
    """Encoder outputs on disk, keyed by image (path, size, mtime) under a folder per (encoder id, view).

    One ``outputs.pt`` per folder holds ``keys`` and a ``values`` matrix, float16 when the values fit (half the
    disk; these are targets, not weights), else float32. Written atomically by rank 0.
    """

    def __init__(self, root: str | os.PathLike, encoder_id: str, spec: InputSpec) -> None:
        ident = json.dumps({"encoder": encoder_id, "view": spec.to_dict()}, sort_keys=True)
        self.dir = Path(root) / hashlib.sha256(ident.encode()).hexdigest()[:20]
        self.file = self.dir / "outputs.pt"
        self.ident = ident
        self._index: dict[str, int] = {}
        self._values: torch.Tensor | None = None
        if self.file.is_file():
            try:
                data = torch.load(self.file, map_location="cpu", weights_only=True)
                self._index = {k: i for i, k in enumerate(data["keys"])}
                self._values = data["values"]
            except Exception as exc:  # a damaged cache only costs a recomputation
                logger.warning("%s: ignoring unreadable cache (%s)", self.file, exc)

    @staticmethod
    def key(path: str) -> str:
        try:
            st = os.stat(path)
            return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
        except OSError:
            return f"{os.path.abspath(path)}|missing"

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, keys: Sequence[str]) -> tuple[list[int], torch.Tensor | None]:
        """Positions of ``keys`` found, and their rows (float32)."""
        pos = [i for i, k in enumerate(keys) if k in self._index]
        if not pos or self._values is None:
            return [], None
        rows = self._values[torch.as_tensor([self._index[keys[i]] for i in pos])].float()
        return pos, rows

    def add_and_save(self, keys: Sequence[str], values: torch.Tensor) -> None:
        ok = ~torch.isnan(values).any(dim=1)
        keys = [k for k, good in zip(keys, ok.tolist()) if good]
        values = values[ok].to(storage_dtype(values))
        if not keys:
            return
        old_keys = list(self._index)
        if self._values is not None and self._values.dtype != values.dtype:
            values = values.float()
            self._values = self._values.float()
        merged = values if self._values is None else torch.cat([self._values, values])
        all_keys = old_keys + list(keys)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"ident": self.ident, "keys": all_keys, "values": merged}, tmp)
        os.replace(tmp, self.file)
        self._index = {k: i for i, k in enumerate(all_keys)}
        self._values = merged


def storage_dtype(values: torch.Tensor) -> torch.dtype:
    """float16 when every finite value fits comfortably, else float32."""
    finite = values[torch.isfinite(values)]
    return torch.float16 if finite.numel() == 0 or float(finite.abs().max()) < 6e4 else torch.float32


def compute_outputs(
    encoder: FrozenEncoder,
    paths: Sequence[str],
    info: D.DistInfo,
    batch_size: int = 64,
    workers: int = 0,
    cache_root: str | os.PathLike | None = None,
    desc: str = "teacher pass",
    progress: bool = True,
) -> torch.Tensor:
    """Encoder outputs for every image, on every rank: ``(len(paths), encoder.dim)`` float32 (float16-rounded
    unless values are too large for float16).

    Images come through the encoder's own evaluation preprocessing (deterministic). Work is split round-robin
    across DDP ranks and gathered; with ``cache_root``, outputs already cached are reused and new ones are added.
    An undecodable image gets a NaN row (it is skipped in training as well).
    """
    from torch.utils.data import DataLoader

    from .data.datasets import EvalView, UnlabeledDataset, collate_skip

    n = len(paths)
    out = torch.full((n, encoder.dim), float("nan"))
    cache = EmbeddingCache(cache_root, encoder.id, encoder.spec) if cache_root else None
    keys = [EmbeddingCache.key(p) for p in paths] if cache is not None else []
    todo = list(range(n))
    if cache is not None:
        found, rows = cache.lookup(keys)
        if rows is not None:
            out[torch.as_tensor(found)] = rows
        done = set(found)
        todo = [i for i in range(n) if i not in done]
        logger.info("%s: %d of %d outputs cached in %s", desc, n - len(todo), n, cache.dir)
    if todo:
        mine = todo[info.rank :: info.world]
        ds = UnlabeledDataset([paths[i] for i in mine], EvalView(encoder.spec))
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip)
        got_idx: list[int] = []
        got_rows: list[torch.Tensor] = []
        amp = info.device.type == "cuda"
        bar = _bar(len(loader), desc, progress and info.is_main)
        for batch in loader:
            if batch is not None:
                x, local = batch
                with torch.autocast(device_type=info.device.type, dtype=torch.float16, enabled=amp):
                    y = encoder.encode(x.to(info.device))
                got_rows.append(y.float().cpu())
                got_idx += [mine[i] for i in local.tolist()]
            bar.update(1)
        bar.close()
        rows = torch.cat(got_rows) if got_rows else torch.zeros(0, encoder.dim)
        new = D.gather_by_index(got_idx, rows, n)
        fill = torch.as_tensor(todo)
        # Rounded to the cache's storage precision even on a cold cache, so a run reads the same targets whether
        # they were just computed or come from disk (a resumed run must see what the killed run saw).
        out[fill] = new[fill].to(storage_dtype(new[fill])).float()
        if cache is not None and info.is_main:
            cache.add_and_save([keys[i] for i in todo], out[fill])
        D.barrier()
    bad = int(torch.isnan(out).any(dim=1).sum())
    if bad:
        logger.warning("%s: %d of %d images could not be decoded; they are left out", desc, bad, n)
    return out


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def set_postfix(self, *a: Any, **k: Any) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False)
