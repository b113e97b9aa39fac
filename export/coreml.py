"""CoreML target: coremltools ``mlprogram`` packages in FP32, FP16 and INT8 weights.

Input and output stay float32 in every precision (coremltools would make them float16 for an fp16 program on
iOS 16+), so one manifest describes all three. INT8 is ``linear_quantize_weights`` (per-channel symmetric);
activations stay float because coremltools calibrates activation quantization by running the model, which needs
Core ML, i.e. macOS.

Running a package needs Core ML too. :func:`run` therefore uses ``MLModel.predict`` on macOS and, elsewhere,
evaluates the saved package's MIL program with numpy (:mod:`cskd_export.mil_eval`); the report says which.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .common import ExportContext, artifact_manifest, tool_versions
from .embed import embed_coreml
from .targets import Int8Recipe, front_float_indices

__all__ = ["export", "run", "check_method", "DEPLOYMENT_TARGET"]

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "distribution"
#: iOS 16 / macOS 13: the oldest target with mlprogram fp16 and weight quantization ops that cover our models.
DEPLOYMENT_TARGET = "iOS16"
MAX_BATCH = 64


def _tools() -> dict[str, str]:
    return tool_versions("coremltools")


def _convert(ctx: ExportContext, precision: str) -> Any:
    import coremltools as ct
    import torch

    from .static_pad import freeze_same_padding

    spec = ctx.manifest.input
    x = torch.zeros(1, 3, spec.height, spec.width)
    # coremltools' torch frontend cannot convert timm's run-time "same" padding (pad_type='same' models);
    # the input size is fixed, so it becomes constant padding (a no-op for models without such layers).
    model = freeze_same_padding(ctx.model, spec.height, spec.width)
    with torch.inference_mode(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coremltools warns about untested torch versions on every call
        traced = torch.jit.trace(model, x, check_trace=False)
        shape = ct.Shape((ct.RangeDim(1, MAX_BATCH, 1), 3, spec.height, spec.width))
        return ct.convert(
            traced,
            inputs=[ct.TensorType(name=INPUT_NAME, shape=shape, dtype=np.float32)],
            outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
            convert_to="mlprogram",
            compute_precision=_fp16_precision(ct) if precision == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
        )


#: Leading convolutions that FP16 programs keep in float32 (see :func:`_fp16_precision`).
FP16_FLOAT_FRONT = "stem"


def _conv_shape(op: Any) -> tuple[bool, int]:
    """(depthwise or grouped?, stride) of a MIL conv op."""
    groups = op.inputs.get("groups")
    strides = op.inputs.get("strides")
    g = int(groups.val) if groups is not None and groups.val is not None else 1
    s = int(np.max(strides.val)) if strides is not None and strides.val is not None else 1
    return g > 1, s


def _fp16_precision(ct: Any) -> Any:
    """FP16 compute for every op except those up to the end of the stem block, which stay float32.

    Measured on the trained default MobileNetV2 (224 px, 40 parity photos, numpy MIL evaluation with fp16
    activations): all-fp16 moved the mean score by up to 0.031 (gate 0.01). Same cause as for TFLite FP16 and
    INT8: the stem block's BN-folded filters amplify any rounding of their weights and inputs.
    """
    cache: dict[int, int] = {}

    def last_front_index(block: Any) -> int:
        if id(block) not in cache:
            ops = list(block.operations)
            convs = [i for i, op in enumerate(ops) if op.op_type == "conv"]
            keep = front_float_indices([_conv_shape(ops[i]) for i in convs], FP16_FLOAT_FRONT)
            cache[id(block)] = convs[keep[-1]] if keep else -1
        return cache[id(block)]

    def to_fp16(op: Any) -> bool:
        block = op.enclosing_block
        ops = list(block.operations)
        return ops.index(op) > last_front_index(block)

    return ct.transform.FP16ComputePrecision(op_selector=to_fp16)


def _float_ops(mlmodel: Any, recipe: Int8Recipe) -> list[str]:
    """The weight ops ``recipe`` leaves unquantized: leading convs (``recipe.float_front``) and, with
    ``float_head``, the dense layers after the last conv."""
    ops = list(mlmodel._mil_program.functions["main"].operations)
    convs = [i for i, op in enumerate(ops) if op.op_type == "conv"]
    if not convs:
        return []

    out = [ops[convs[k]].name for k in front_float_indices([_conv_shape(ops[i]) for i in convs], recipe.float_front)]
    if recipe.float_head:
        out += [op.name for op in ops[convs[-1] + 1 :] if op.op_type in ("linear", "matmul")]
    return out


def _int8(mlmodel: Any, recipe: Int8Recipe) -> Any:
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    granularity = "per_channel" if recipe.per_channel else "per_tensor"
    cfg = OpLinearQuantizerConfig(mode="linear_symmetric", granularity=granularity, weight_threshold=0)
    kept = _float_ops(mlmodel, recipe)
    config = OptimizationConfig(global_config=cfg, op_name_configs={name: None for name in kept})
    logger.info("coreml int8 (%s): %d ops kept float", recipe.name, len(kept))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return linear_quantize_weights(mlmodel, config=config)


def export(ctx: ExportContext, precision: str, dest: Path, recipe: Int8Recipe | None = None) -> Any:
    """Write the ``.mlpackage`` for ``precision`` to ``dest`` (a directory) with the manifest; return the manifest."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"coreml does not support precision {precision!r}")
    if precision == "int8":
        if recipe is None:
            raise ValueError("int8 export needs an Int8Recipe")
        mlmodel = _int8(_convert(ctx, "fp32"), recipe)
    else:
        mlmodel = _convert(ctx, precision)
    manifest = artifact_manifest(ctx, target="coreml", precision=precision, layout="NCHW", recipe=recipe,
                                 tools=_tools(), extra={"deployment_target": DEPLOYMENT_TARGET,
                                                        "weights": "int8" if precision == "int8" else precision})
    embed_coreml(mlmodel, manifest)
    mlmodel.short_description = f"{manifest.model.name} {manifest.model.version} ({precision})"
    mlmodel.save(str(dest))
    return manifest


def check_method() -> str:
    """How :func:`run` evaluates a package on this machine (recorded in the report)."""
    if sys.platform == "darwin":
        return "Core ML predict (macOS)"
    return "numpy evaluation of the package's MIL program (Core ML runtime is macOS-only)"


def run(path: str | os.PathLike, x: np.ndarray, batch: int = 8) -> np.ndarray:
    """Run a saved ``.mlpackage`` on a float32 NCHW batch -> raw output (N, bins).

    macOS: Core ML ``predict``. Elsewhere: :func:`cskd_export.mil_eval.evaluate_package`.
    """
    if sys.platform == "darwin":
        import coremltools as ct

        model = ct.models.MLModel(str(path))
        outs = [np.asarray(model.predict({INPUT_NAME: x[i : i + batch]})[OUTPUT_NAME], np.float32)
                for i in range(0, x.shape[0], batch)]
        return np.concatenate(outs)
    from .mil_eval import evaluate_package

    return evaluate_package(path, {INPUT_NAME: x}, batch=batch)[OUTPUT_NAME]


def coreml_runner(path: Path, images: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Parity runner: tensors from the package's own embedded manifest, run by :func:`run`."""
    from cskd_runtime.backends.base import postprocess
    from cskd_runtime.preprocess import preprocess

    from .embed import read_manifest

    manifest = read_manifest(path)
    x = np.concatenate([preprocess(im.data, manifest.input, name=im.name) for im in images])
    dist = postprocess(run(path, x), manifest.output).astype(np.float64)
    return dist, x, check_method()


def remove_package(path: Path) -> None:
    """Delete a package directory (or file) if present."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
