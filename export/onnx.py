"""ONNX target: torch.onnx (dynamic batch, checked by onnx.checker) and onnxruntime static INT8 (QDQ).

INT8 keeps float32 input and output (the graph quantizes and dequantizes itself), so the manifest's tensor
description is the same as fp32's; onnxruntime fuses the QDQ pairs into integer kernels on CPU.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .common import ExportContext, artifact_manifest, tool_versions
from .embed import embed_onnx
from .targets import Int8Recipe, front_float_indices

__all__ = ["OPSET", "export", "export_fp32_proto", "float_nodes"]

logger = logging.getLogger(__name__)

#: The TorchScript-based exporter at opset 17 converts MobileNetV2 in ~0.5 s; the dynamo exporter (opset 20)
#: takes ~10 s for the same graph and the same parity (toolchain.md), so the former is used for these convnets.
OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "distribution"


def _tools() -> dict[str, str]:
    return tool_versions("onnx", "onnxruntime")


def export_fp32_proto(ctx: ExportContext) -> Any:
    """The fp32 ``onnx.ModelProto`` (dynamic batch), checked with ``onnx.checker`` (cached in ``ctx``)."""
    if "onnx_fp32" in ctx.cache:
        return ctx.cache["onnx_fp32"]
    import warnings

    import onnx
    import torch

    spec = ctx.manifest.input
    x = torch.zeros((1, 3, spec.height, spec.width), dtype=torch.float32)
    with tempfile.TemporaryDirectory(prefix="cskd-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy-exporter deprecation notice is expected here
            torch.onnx.export(
                ctx.model, (x,), str(path), dynamo=False, opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        proto = onnx.load(str(path))
    folded = fold_pads_into_convs(proto)
    if folded:
        logger.info("onnx: folded %d static Pad nodes into their Conv", folded)
    onnx.checker.check_model(proto, full_check=True)
    ctx.cache["onnx_fp32"] = proto
    return proto


def fold_pads_into_convs(proto: Any) -> int:
    """Fold zero ``Pad`` nodes that feed a Conv (the static "same" padding) into that Conv's ``pads``.

    ONNX Conv takes asymmetric pads, so ``Pad -> Conv`` is one Conv. Left as a separate node, the Pad of an int8
    graph runs in float between DequantizeLinear and QuantizeLinear: on MobileNetV2 that cost 1.4 ms of 6.5 (the
    112x112x96 map before the second stride-2 conv). The exporter computes the pad amounts through a chain of shape
    ops, so their values are read by running the graph once; the chain is then dropped as dead code.

    Returns:
        Number of Pad nodes folded (``proto`` is modified in place).
    """
    import onnxruntime as ort
    from onnx import helper

    graph = proto.graph
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    candidates = []
    for pad in graph.node:
        users = consumers.get(pad.output[0], [])
        mode = next((helper.get_attribute_value(a) for a in pad.attribute if a.name == "mode"), b"constant")
        if (pad.op_type == "Pad" and mode in (b"constant", "constant") and len(pad.input) in (2, 3)
                and len(users) == 1 and users[0].op_type == "Conv" and users[0].input[0] == pad.output[0]
                and pad.output[0] not in graph_outputs):
            candidates.append((pad, users[0]))
    if not candidates:
        return 0
    # Read the pad amounts (and fill values) by running the graph with them as extra outputs.
    probe = type(proto)()
    probe.CopyFrom(proto)
    wanted = sorted({name for pad, _ in candidates for name in pad.input[1:] if name})
    for name in wanted:
        probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = np.zeros(shape, np.float32)
    values = dict(zip(wanted, sess.run(wanted, feeds)))
    folded = 0
    for pad, conv in candidates:
        amounts = [int(v) for v in np.asarray(values[pad.input[1]]).reshape(-1)]
        fill = float(np.asarray(values[pad.input[2]]).reshape(-1)[0]) if len(pad.input) > 2 and pad.input[2] else 0.0
        if fill != 0.0 or len(amounts) != 8 or any(amounts[i] for i in (0, 1, 4, 5)) or min(amounts) < 0:
            continue
        attrs = {a.name: a for a in conv.attribute}
        if "auto_pad" in attrs and helper.get_attribute_value(attrs["auto_pad"]) not in (b"NOTSET", "NOTSET"):
            continue
        old = [int(v) for v in helper.get_attribute_value(attrs["pads"])] if "pads" in attrs else [0, 0, 0, 0]
        # Pad order: [n, c, top, left, n, c, bottom, right]; Conv pads: [top, left, bottom, right].
        new = [old[0] + amounts[2], old[1] + amounts[3], old[2] + amounts[6], old[3] + amounts[7]]
        if "pads" in attrs:
            conv.attribute.remove(attrs["pads"])
        conv.attribute.append(helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        folded += 1
    _remove_dead_nodes(graph)
    return folded


def _remove_dead_nodes(graph: Any) -> None:
    """Drop nodes whose outputs nothing reads (repeatedly), and initializers nothing reads."""
    keep = {o.name for o in graph.output}
    while True:
        used = keep | {name for node in graph.node for name in node.input}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {name for node in graph.node for name in node.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)


def float_nodes(proto: Any, recipe: Int8Recipe) -> list[str]:
    """Names of the nodes ``recipe`` keeps in float: leading Convs (``recipe.float_front``, see
    :func:`cskd_export.targets.front_float_indices`) and, with ``float_head``, every node after the last Conv
    (pooling, dense layers, softmax)."""
    from onnx import helper

    nodes = list(proto.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    if not convs:
        return []

    def attr(node: Any, key: str, default: Any) -> Any:
        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == key), default)

    shape = [(int(attr(nodes[i], "group", 1)) > 1, max(int(v) for v in attr(nodes[i], "strides", [1]))) for i in convs]
    out = [nodes[convs[k]].name for k in front_float_indices(shape, recipe.float_front)]
    if recipe.float_head:
        out += [n.name for n in nodes[convs[-1] + 1 :] if n.op_type not in ("Constant", "Shape")]
    return out


class _Reader:
    """Feeds calibration tensors one photo at a time to onnxruntime's calibrator."""

    def __init__(self, x: np.ndarray, name: str) -> None:
        self._it = iter([{name: x[i : i + 1]} for i in range(x.shape[0])])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _quantize(ctx: ExportContext, fp32_proto: Any, recipe: Int8Recipe, dest: Path) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    x = ctx.calibration.tensors(_nchw(ctx.manifest.input), more=recipe.more_calibration)
    with tempfile.TemporaryDirectory(prefix="cskd-onnx-q-") as tmp:
        src, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        onnx.save(fp32_proto, str(src))
        # Shape inference + graph optimisation first, as onnxruntime recommends before static quantization.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        exclude = float_nodes(onnx.load(str(pre)), recipe)
        quantize_static(
            str(pre), str(dest), _Reader(x, INPUT_NAME),
            quant_format=QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            # uint8 activations (U8S8), onnxruntime's format for x86/ARM CPUs: with int8 activations (S8S8) its
            # graph optimiser left 18 of MobileNetV2's 52 convs and every residual Add in float between
            # DequantizeLinear and QuantizeLinear (plus 32 layout Transposes), so "int8" ran slower than fp32.
            # With uint8 all 52 convs become QLinearConv and the Adds QLinearAdd; accuracy is the same.
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    logger.info("onnx int8 (%s): %d calibration photos, %d nodes kept float", recipe.name, x.shape[0], len(exclude))


def _nchw(spec: Any) -> Any:
    import dataclasses

    return dataclasses.replace(spec, layout="NCHW", dtype="float32", quantization=None)


def export(ctx: ExportContext, precision: str, dest: Path, recipe: Int8Recipe | None = None) -> Any:
    """Write the ONNX artifact for ``precision`` to ``dest`` with its manifest embedded; return the manifest."""
    import onnx

    proto = export_fp32_proto(ctx)
    manifest = artifact_manifest(ctx, target="onnx", precision=precision, layout="NCHW", recipe=recipe,
                                 tools=_tools(), extra={"opset": OPSET})
    if precision == "fp32":
        out = onnx.ModelProto()
        out.CopyFrom(proto)
    elif precision == "int8":
        if recipe is None:
            raise ValueError("int8 export needs an Int8Recipe")
        _quantize(ctx, proto, recipe, dest)
        out = onnx.load(str(dest))
    else:
        raise ValueError(f"onnx does not support precision {precision!r}")
    out.producer_name = "cskd-export"
    onnx.checker.check_model(out)
    onnx.save(embed_onnx(out, manifest), str(dest))
    return manifest
