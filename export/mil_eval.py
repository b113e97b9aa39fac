"""Evaluate a saved CoreML ``mlprogram`` with numpy, for the ops our models use.

Core ML itself only runs on Apple systems, so on Linux the converted program's numerics would otherwise go
unchecked. This module reads the *saved* ``.mlpackage`` back (coremltools' own proto-to-MIL loader, weights
included), then interprets its main function op by op with numpy. It is an independent check of what the
converter wrote: a wrong weight, a dropped op or a bad quantization scale shows up as a parity failure.

Precision: ops whose output type is fp16 are computed in float32 and rounded to float16 after each op
(float16 storage of every activation, float32 accumulation, which is how Apple GPUs run fp16 programs; the
Neural Engine may differ slightly). Apple's runtime on a Mac remains the final word; the report says which way
a package was checked.

Supported ops: const, cast, conv (groups, strides, dilations, all pad types), linear, matmul, add, sub, mul,
real_div, maximum, minimum, clip, relu, relu6, sigmoid, silu, tanh, softmax, reduce_mean/sum/max/min, reshape,
transpose, squeeze, expand_dims, concat, pad (constant/reflect/replicate), avg_pool, max_pool, batch_norm,
constexpr_affine_dequantize, constexpr_blockwise_shift_scale, constexpr_cast. An unsupported op raises
:class:`UnsupportedOp` naming it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["UnsupportedOp", "load_program", "evaluate_program", "evaluate_package", "SUPPORTED_OPS"]

logger = logging.getLogger(__name__)


class UnsupportedOp(NotImplementedError):
    """The program uses an op this evaluator does not implement."""


def load_program(path: str | os.PathLike) -> Any:
    """The MIL program of a saved ``.mlpackage`` (weights loaded from its weight file)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto

    p = Path(path)
    spec = ct.utils.load_spec(str(p))
    if not spec.HasField("mlProgram"):
        raise ValueError(f"{p}: not an mlprogram package (only mlprogram is evaluated)")
    weights = p / "Data" / "com.apple.CoreML" / "weights"
    return milproto.load(spec, spec.specificationVersion, str(weights))


# ------------------------------------------------------------------------------------------------ helpers
def _is_fp16(var: Any) -> bool:
    from coremltools.converters.mil.mil import types

    t = var.sym_type
    if types.is_tensor(t):
        t = t.get_primitive()
    return t == types.fp16


def _pads(pad_type: str, pad: np.ndarray | None, in_hw: tuple[int, int], k: tuple[int, int],
          s: tuple[int, int], d: tuple[int, int]) -> list[int]:
    """[top, bottom, left, right] padding for a MIL pad_type."""
    if pad_type == "custom":
        return [int(v) for v in pad]
    if pad_type == "valid":
        return [0, 0, 0, 0]
    out = []
    for size, kk, ss, dd in zip(in_hw, k, s, d):
        eff = (kk - 1) * dd + 1
        total = max((-(-size // ss) - 1) * ss + eff - size, 0)
        lo = total // 2 if pad_type == "same" else total - total // 2  # same_lower puts the extra pixel first
        out += [lo, total - lo]
    return out


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: tuple[int, int], pads: list[int],
           dilations: tuple[int, int], groups: int) -> np.ndarray:
    """2-D convolution (NCHW, OIHW), as a sum over kernel taps of strided views times weight slices.

    Memory stays at a few activation-sized arrays (no im2col), and every tap of a dense conv is one BLAS call.
    """
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = strides
    dh, dw = dilations
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    oh = (xp.shape[2] - ((kh - 1) * dh + 1)) // sh + 1
    ow = (xp.shape[3] - ((kw - 1) * dw + 1)) // sw + 1
    out = np.zeros((n, o, oh, ow), np.float32)
    depthwise = groups == c and cg == 1
    og = o // groups
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
            if depthwise:
                # Output channel q reads input channel q // (o // c) (channel multiplier).
                src = tap if og == 1 else np.repeat(tap, og, axis=1)
                out += src * w[:, 0, i, j][None, :, None, None]
            elif groups == 1:
                out += np.einsum("nchw,oc->nohw", tap, w[:, :, i, j], optimize=True)
            else:
                for g in range(groups):
                    out[:, g * og : (g + 1) * og] += np.einsum(
                        "nchw,oc->nohw", tap[:, g * cg : (g + 1) * cg], w[g * og : (g + 1) * og, :, i, j], optimize=True)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _blockwise(data: np.ndarray, scale: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    def expand(a: np.ndarray) -> np.ndarray:
        for axis, (full, part) in enumerate(zip(data.shape, a.shape)):
            if part != full:
                a = np.repeat(a, full // part, axis=axis)
        return a

    d = data.astype(np.float32)
    if offset is not None:
        d = d - expand(offset.astype(np.float32))
    return d * expand(scale.astype(np.float32))


def _avg_pool(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], pads: list[int], exclude_pad: bool) -> np.ndarray:
    ones = np.ones((1, 1) + x.shape[2:], np.float32)
    c = x.shape[1]
    w = np.ones((c, 1) + tuple(k), np.float32)
    total = conv2d(x, w, None, s, pads, (1, 1), c)
    if exclude_pad:
        count = conv2d(ones, np.ones((1, 1) + tuple(k), np.float32), None, s, pads, (1, 1), 1)
    else:
        count = np.float32(k[0] * k[1])
    return total / count


# ----------------------------------------------------------------------------------------------------- ops
_Op = Callable[[Mapping[str, Any]], np.ndarray]


def _axes(v: Any) -> tuple[int, ...]:
    return tuple(int(a) for a in np.atleast_1d(v))


def _conv(a: Mapping[str, Any]) -> np.ndarray:
    x, w = a["x"], a["weight"]
    k = w.shape[2:]
    s = _axes(a.get("strides", (1, 1)))
    d = _axes(a.get("dilations", (1, 1)))
    pads = _pads(str(a.get("pad_type", "valid")), a.get("pad"), x.shape[2:], k, s, d)
    return conv2d(x, w, a.get("bias"), s, pads, d, int(a.get("groups", 1)))


def _linear(a: Mapping[str, Any]) -> np.ndarray:
    y = a["x"] @ a["weight"].T
    return y + a["bias"] if a.get("bias") is not None else y


def _matmul(a: Mapping[str, Any]) -> np.ndarray:
    x, y = a["x"], a["y"]
    if a.get("transpose_x"):
        x = np.swapaxes(x, -1, -2)
    if a.get("transpose_y"):
        y = np.swapaxes(y, -1, -2)
    return x @ y


def _reduce(fn: Callable[..., np.ndarray]) -> _Op:
    def op(a: Mapping[str, Any]) -> np.ndarray:
        axes = a.get("axes")
        return fn(a["x"], axis=None if axes is None else _axes(axes), keepdims=bool(a.get("keep_dims", False)))

    return op


def _avg_pool_op(a: Mapping[str, Any]) -> np.ndarray:
    x = a["x"]
    k = _axes(a["kernel_sizes"])
    s = _axes(a.get("strides", k))
    pads = _pads(str(a.get("pad_type", "valid")), a.get("pad"), x.shape[2:], k, s, (1, 1))
    return _avg_pool(x, k, s, pads, bool(a.get("exclude_padding_from_average", False)))


def _max_pool_op(a: Mapping[str, Any]) -> np.ndarray:
    x = a["x"]
    k = _axes(a["kernel_sizes"])
    s = _axes(a.get("strides", k))
    pads = _pads(str(a.get("pad_type", "valid")), a.get("pad"), x.shape[2:], k, s, (1, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])), constant_values=-np.inf)
    oh = (xp.shape[2] - k[0]) // s[0] + 1
    ow = (xp.shape[3] - k[1]) // s[1] + 1
    out = np.full(x.shape[:2] + (oh, ow), -np.inf, np.float32)
    for i in range(k[0]):
        for j in range(k[1]):
            np.maximum(out, xp[:, :, i : i + s[0] * (oh - 1) + 1 : s[0], j : j + s[1] * (ow - 1) + 1 : s[1]], out=out)
    return out


def _pad_op(a: Mapping[str, Any]) -> np.ndarray:
    """MIL ``pad``: ``pad`` holds (before, after) pairs for the *last* len(pad)/2 dimensions."""
    x = a["x"]
    pad = [int(v) for v in np.atleast_1d(a["pad"])]
    if len(pad) % 2 or len(pad) > 2 * x.ndim:
        raise ValueError(f"pad: {len(pad)} values for a rank-{x.ndim} tensor")
    lead = x.ndim - len(pad) // 2
    widths = [(0, 0)] * lead + [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    mode = str(a.get("mode", "constant"))
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=float(a.get("constant_val", 0.0) or 0.0))
    if mode in ("reflect", "replicate"):
        return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")
    raise UnsupportedOp(f"MIL pad mode {mode!r}")


def _batch_norm(a: Mapping[str, Any]) -> np.ndarray:
    x = a["x"]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - a["mean"].reshape(shape)) / np.sqrt(a["variance"].reshape(shape) + float(a.get("epsilon", 1e-5)))
    if a.get("gamma") is not None:
        y = y * a["gamma"].reshape(shape)
    if a.get("beta") is not None:
        y = y + a["beta"].reshape(shape)
    return y


_CAST = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int32": np.int32, "int16": np.int16,
         "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}

OPS: dict[str, _Op] = {
    "conv": _conv,
    "linear": _linear,
    "matmul": _matmul,
    "add": lambda a: a["x"] + a["y"],
    "sub": lambda a: a["x"] - a["y"],
    "mul": lambda a: a["x"] * a["y"],
    "real_div": lambda a: a["x"] / a["y"],
    "maximum": lambda a: np.maximum(a["x"], a["y"]),
    "minimum": lambda a: np.minimum(a["x"], a["y"]),
    "clip": lambda a: np.clip(a["x"], a["alpha"], a["beta"]),
    "relu": lambda a: np.maximum(a["x"], 0),
    "relu6": lambda a: np.clip(a["x"], 0, 6),
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a["x"])),
    "silu": lambda a: a["x"] / (1.0 + np.exp(-a["x"])),
    "tanh": lambda a: np.tanh(a["x"]),
    "softmax": lambda a: _softmax(a["x"], int(a.get("axis", -1))),
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max),
    "reduce_min": _reduce(np.min),
    "reshape": lambda a: a["x"].reshape([int(v) for v in a["shape"]]),
    "transpose": lambda a: np.transpose(a["x"], _axes(a["perm"])),
    "squeeze": lambda a: np.squeeze(a["x"], axis=None if a.get("axes") is None else _axes(a["axes"])),
    "expand_dims": lambda a: np.expand_dims(a["x"], _axes(a["axes"])),
    "concat": lambda a: np.concatenate(list(a["values"]), axis=int(a["axis"])),
    "avg_pool": _avg_pool_op,
    "max_pool": _max_pool_op,
    "pad": _pad_op,
    "batch_norm": _batch_norm,
    "cast": lambda a: a["x"].astype(_CAST[str(a["dtype"])]),
    "constexpr_cast": lambda a: a["source_val"].astype(_CAST[str(a["output_dtype"])]),
    "constexpr_affine_dequantize": lambda a: _affine(a),
    "constexpr_blockwise_shift_scale": lambda a: _blockwise(a["data"], a["scale"], a.get("offset")),
}
SUPPORTED_OPS = tuple(sorted(OPS))


def _affine(a: Mapping[str, Any]) -> np.ndarray:
    q = a["quantized_data"].astype(np.float32)
    axis = int(a["axis"]) % q.ndim
    shape = [1] * q.ndim
    shape[axis] = -1
    zp = np.asarray(a["zero_point"], np.float32)
    sc = np.asarray(a["scale"], np.float32)
    zp = zp.reshape(shape) if zp.ndim else zp
    sc = sc.reshape(shape) if sc.ndim else sc
    return (q - zp) * sc


# -------------------------------------------------------------------------------------------- interpreter
def _value(var: Any, env: dict[str, Any]) -> Any:
    if var.name in env:
        return env[var.name]
    if var.val is not None:
        v = var.val
        return v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float16 else v
    raise KeyError(f"MIL variable {var.name!r} has no value (op order?)")


def evaluate_program(prog: Any, inputs: Mapping[str, np.ndarray], function: str = "main") -> dict[str, np.ndarray]:
    """Run a MIL program's function on numpy inputs; returns its outputs by name.

    Raises:
        UnsupportedOp: naming the first op type the evaluator does not implement.
    """
    fn = prog.functions[function]
    env: dict[str, Any] = {}
    for name, var in fn.inputs.items():
        if name not in inputs:
            raise KeyError(f"missing input {name!r} (the program takes {', '.join(fn.inputs)})")
        x = np.asarray(inputs[name], np.float32)
        env[var.name] = x.astype(np.float16).astype(np.float32) if _is_fp16(var) else x
    for op in fn.operations:
        if op.op_type == "const":
            continue  # read lazily from var.val
        impl = OPS.get(op.op_type)
        if impl is None:
            raise UnsupportedOp(f"MIL op {op.op_type!r} (in {op.name!r}) is not implemented by cskd_export.mil_eval; "
                                f"supported: {', '.join(SUPPORTED_OPS)}")
        args: dict[str, Any] = {}
        for key, var in op.inputs.items():
            args[key] = [_value(v, env) for v in var] if isinstance(var, (list, tuple)) else _value(var, env)
        result = impl(args)
        out_var = op.outputs[0]
        result = np.asarray(result)
        if result.dtype.kind == "f":
            # fp16 ops: round the activation to half precision, keep computing in float32.
            result = result.astype(np.float16).astype(np.float32) if _is_fp16(out_var) else result.astype(np.float32)
        env[out_var.name] = result
    return {v.name: np.asarray(env[v.name], np.float32) if v.name in env else np.asarray(_value(v, env))
            for v in fn.outputs}


def evaluate_package(path: str | os.PathLike, inputs: Mapping[str, np.ndarray], batch: int = 8) -> dict[str, np.ndarray]:
    """Evaluate a saved ``.mlpackage`` on numpy inputs (split along the batch axis in chunks of ``batch``).

    Output names are the package's declared output names.
    """
    import coremltools as ct

    prog = load_program(path)
    spec = ct.utils.load_spec(str(path))
    out_names = [o.name for o in spec.description.output]
    fn_outputs = [v.name for v in prog.functions["main"].outputs]
    n = next(iter(inputs.values())).shape[0]
    chunks: list[dict[str, np.ndarray]] = []
    for i in range(0, n, batch):
        chunks.append(evaluate_program(prog, {k: v[i : i + batch] for k, v in inputs.items()}))
    return {declared: np.concatenate([c[internal] for c in chunks])
            for declared, internal in zip(out_names, fn_outputs)}
