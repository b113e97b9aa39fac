"""TFLite target: litert-torch with an NHWC input, then ai-edge-quantizer for FP16 and INT8.

The model is wrapped so the mobile input is NHWC (what camera buffers and Android bitmaps are, and what the
TFLite GPU/NNAPI delegates prefer); the manifest says ``layout: NHWC``. litert-torch converts once to fp32
(~15 s); FP16 and INT8 are produced from that flatbuffer by ai-edge-quantizer in about a second each:

* FP16: float16 weights (``float_casting``) except the stem block's (kept float32, see :func:`_fp16`), float32
  compute and I/O.
* INT8: static w8a8 calibrated on real photos, with the recipe's float layers (by default the stem block and the
  head, so input and output stay float32). Whatever the input and output tensors end up as, their dtype and
  quantization parameters are read from the produced model and written into the manifest, which the runtime
  uses to quantize the input and dequantize the output. (litert-torch's PT2E path works as well, see
  toolchain.md; ai-edge-quantizer is used because it quantizes the already converted model in a second and its
  per-layer overrides keep the recipe's float layers.)
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cskd_runtime.manifest import Quantization

from .common import ExportContext, artifact_manifest, tool_versions
from .embed import embed_tflite
from .targets import Int8Recipe, front_float_indices

__all__ = ["export", "fp32_flatbuffer", "io_details"]

logger = logging.getLogger(__name__)

#: Largest batch the dynamic batch dimension is traced for (the runtime resizes the input per call).
MAX_BATCH = 1024


def _tools() -> dict[str, str]:
    return tool_versions("litert-torch", "ai-edge-quantizer", "ai-edge-litert")


def _nhwc_wrapper(model: Any) -> Any:
    import torch

    class NHWCInput(torch.nn.Module):
        """Takes (N, H, W, 3) and feeds the NCHW model: the permute is folded into the graph's first op."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.permute(0, 3, 1, 2))

    return NHWCInput(model).eval()


def fp32_flatbuffer(ctx: ExportContext) -> bytes:
    """The fp32 NHWC .tflite bytes, converted once per model (cached in ``ctx``).

    The batch dimension is dynamic when the converter manages it (mean-pooled heads do); otherwise batch 1,
    which the runtime handles by splitting batches.
    """
    if "tflite_fp32" in ctx.cache:
        return ctx.cache["tflite_fp32"]
    import litert_torch
    import torch

    spec = ctx.manifest.input
    wrapper = _nhwc_wrapper(ctx.model)
    with tempfile.TemporaryDirectory(prefix="cskd-tflite-") as tmp:
        path = Path(tmp) / "model.tflite"
        try:
            batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
            edge = litert_torch.convert(wrapper, (torch.zeros(2, spec.height, spec.width, 3),),
                                        dynamic_shapes=({0: batch},))
            dynamic = True
        except Exception as exc:  # the converter raises many types; a static model is still useful
            logger.warning("tflite: dynamic batch failed (%s: %s); converting with batch 1",
                           type(exc).__name__, str(exc)[:200])
            edge = litert_torch.convert(wrapper, (torch.zeros(1, spec.height, spec.width, 3),))
            dynamic = False
        edge.export(str(path))
        data = path.read_bytes()
    ctx.cache["tflite_fp32"] = data
    ctx.cache["tflite_dynamic_batch"] = dynamic
    return data


def io_details(model_bytes: bytes) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """Input and output tensor details, the signature key and its input name, read by the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)
    sigs = it.get_signature_list()
    key = next(iter(sigs))
    return it.get_input_details()[0], it.get_output_details()[0], key, sigs[key]["inputs"][0]


def _quant_of(detail: dict[str, Any]) -> tuple[str, Quantization | None]:
    dtype = np.dtype(detail["dtype"]).name
    scale, zp = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind in "iu":
        if not scale:
            raise ValueError(f"integer tensor {detail.get('name')!r} without quantization parameters")
        return dtype, Quantization(float(scale), int(zp))
    return dtype, None


#: Leading convolutions whose weights FP16 keeps in float32 (see :func:`_fp16`).
FP16_FLOAT_FRONT = "stem"


def _fp16(fp32: bytes) -> bytes:
    """float16 weights, except the stem block's (float32 compute either way on CPU/XNNPACK without native fp16).

    Measured on the trained default MobileNetV2 (224 px, 40 parity photos): all weights in fp16 moved the mean
    score by up to 0.026 (gate: 0.01); the stem conv and first block in fp32 brought it to 0.0056 at the same size
    (5.95 MB: those layers hold 0.1% of the weights). Their BN-folded filters respond weakly to photos, so any
    rounding of their weights is amplified; fp32 weights for the dense head or all depthwise convs did not help
    as much (0.026 / 0.012).
    """
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(bytearray(fp32))
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                             algorithm_key="float_casting")
    for op, tensor in float_ops(fp32, FP16_FLOAT_FRONT, head=False):
        q.update_quantization_recipe(regex="(^|;)" + re.escape(tensor) + ";",
                                     operation_name=qtyping.TFLOperationName(op), algorithm_key="no_quantize")
    return bytes(q.quantize().quantized_model)


def float_ops(model_bytes: bytes, front: str, head: bool) -> list[tuple[str, str]]:
    """(op type, output tensor name) of the ops kept in float32: leading convolutions (``front``, see
    :func:`cskd_export.targets.front_float_indices`) and, with ``head``, the head (every op after the last
    convolution: pooling, dense layers, softmax)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer import qtyping

    model = schema.Model.GetRootAs(model_bytes, 0)
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.Subgraphs(0)
    ops, strides = [], []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = codes.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
        ops.append((kind, graph.Tensors(op.Outputs(0)).Name().decode("utf-8")))
        stride = 1
        table = op.BuiltinOptions()
        if table is not None and kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts = schema.Conv2DOptions() if kind == "CONV_2D" else schema.DepthwiseConv2DOptions()
            opts.Init(table.Bytes, table.Pos)
            stride = max(opts.StrideH(), opts.StrideW())
        strides.append(stride)
    convs = [i for i, o in enumerate(ops) if o[0] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    if not convs:
        return []
    shape = [(ops[i][0] == "DEPTHWISE_CONV_2D", strides[i]) for i in convs]
    out = [ops[convs[k]] for k in front_float_indices(shape, front)]
    if head:
        known = {m.value for m in qtyping.TFLOperationName}
        out += [o for o in ops[convs[-1] + 1 :] if o[0] in known]
    return out


def _int8(ctx: ExportContext, fp32: bytes, recipe: Int8Recipe) -> bytes:
    import dataclasses

    from ai_edge_quantizer import qtyping, quantizer

    _, _, sig, in_name = io_details(fp32)
    spec = dataclasses.replace(ctx.manifest.input, layout="NHWC", dtype="float32", quantization=None)
    x = ctx.calibration.tensors(spec, more=recipe.more_calibration)
    q = quantizer.Quantizer(bytearray(fp32))
    granularity = qtyping.QuantGranularity.CHANNELWISE if recipe.per_channel else qtyping.QuantGranularity.TENSORWISE
    q.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8,
                        weight_num_bits=8, weight_granularity=granularity)
    kept = float_ops(fp32, recipe.float_front, recipe.float_head)
    for op, tensor in kept:
        # The quantizer matches against the op's "scope": its output tensor names, each followed by ";".
        q.update_quantization_recipe(regex="(^|;)" + re.escape(tensor) + ";",
                                     operation_name=qtyping.TFLOperationName(op), algorithm_key="no_quantize")
    # Graph inputs/outputs are pseudo-ops of their own: without these the quantizer would still add an int8 input
    # in front of a float stem and re-quantize the float softmax output (steps of 1/256 per probability).
    if recipe.float_front != "none":
        q.update_quantization_recipe(regex=".*", operation_name=qtyping.TFLOperationName.INPUT,
                                     algorithm_key="no_quantize")
    if recipe.float_head:
        q.update_quantization_recipe(regex=".*", operation_name=qtyping.TFLOperationName.OUTPUT,
                                     algorithm_key="no_quantize")
    import os

    calib = q.calibrate({sig: [{in_name: x[i : i + 1]} for i in range(x.shape[0])]},
                        num_threads=max(1, os.cpu_count() or 1))
    logger.info("tflite int8 (%s): %d calibration photos, %d ops kept float", recipe.name, x.shape[0], len(kept))
    return bytes(q.quantize(calib).quantized_model)


def export(ctx: ExportContext, precision: str, dest: Path, recipe: Int8Recipe | None = None) -> Any:
    """Write the TFLite artifact for ``precision`` to ``dest`` with its manifest embedded; return the manifest."""
    fp32 = fp32_flatbuffer(ctx)
    if precision == "fp32":
        data = fp32
    elif precision == "fp16":
        data = _fp16(fp32)
    elif precision == "int8":
        if recipe is None:
            raise ValueError("int8 export needs an Int8Recipe")
        data = _int8(ctx, fp32, recipe)
    else:
        raise ValueError(f"tflite does not support precision {precision!r}")
    din, dout, _, _ = io_details(data)
    in_dtype, in_q = _quant_of(din)
    out_dtype, out_q = _quant_of(dout)
    manifest = artifact_manifest(
        ctx, target="tflite", precision=precision, layout="NHWC", recipe=recipe,
        input_dtype=in_dtype, input_quantization=in_q, output_dtype=out_dtype, output_quantization=out_q,
        tools=_tools(), extra={"dynamic_batch": bool(ctx.cache.get("tflite_dynamic_batch"))},
    )
    dest.write_bytes(embed_tflite(data, manifest))
    return manifest
