"""timm "same" padding (pad_type='same', the Keras-ported MobileNetV2 default) becomes static padding for export,
and CoreML converts and evaluates such a model."""

from __future__ import annotations

import numpy as np
import pytest


def test_static_padding_equals_timm_same_padding(mv2_same):
    import torch

    from cskd_export.static_pad import freeze_same_padding, has_dynamic_same_padding

    model, _ = mv2_same
    assert has_dynamic_same_padding(model)
    # An odd, non-square size: TF "SAME" then pads unevenly (the extra pixel bottom/right) on stride-2 layers.
    h, w = 96, 75
    frozen = freeze_same_padding(model, h, w)
    assert not has_dynamic_same_padding(frozen)
    assert has_dynamic_same_padding(model), "the original must be left untouched"
    x = torch.randn(3, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        diff = (frozen.logits(x) - model.logits(x)).abs().max().item()
    assert diff < 1e-5
    # Stem (3x3, stride 2): 96 rows need 1 pad row, at the bottom; 75 columns need 2, one each side.
    assert frozen.backbone.conv_stem[0].padding == (1, 1, 0, 1)


def test_static_padding_for_same_pools():
    import torch
    from timm.layers import create_pool2d

    from cskd_export.static_pad import freeze_same_padding, has_dynamic_same_padding

    net = torch.nn.Sequential(create_pool2d("max", 3, stride=2, padding="same"),
                              create_pool2d("avg", 3, stride=2, padding="same")).eval()
    assert has_dynamic_same_padding(net)
    frozen = freeze_same_padding(net, 31, 20)
    assert not has_dynamic_same_padding(frozen)
    x = torch.randn(2, 4, 31, 20)
    assert torch.allclose(frozen(x), net(x), atol=1e-6)
    # Negative inputs: max pooling must pad with -inf, not zeros.
    assert torch.allclose(frozen(x - 10), net(x - 10), atol=1e-6)


def test_mil_pad_op():
    from cskd_export.mil_eval import OPS

    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    out = OPS["pad"]({"x": x, "pad": np.array([0, 1, 2, 0]), "mode": "constant", "constant_val": 0.0})
    assert out.shape == (2, 3, 5, 7)
    np.testing.assert_array_equal(out[:, :, :4, 2:], x)
    assert out[:, :, 4].sum() == 0 and out[:, :, :, :2].sum() == 0


@pytest.mark.parametrize("precision,tol", [("fp32", 1e-5), ("fp16", 3e-3)])
def test_coreml_converts_same_padding_mv2(mv2_same, tmp_path, precision, tol):
    import torch

    from cskd_export import coreml
    from cskd_export.common import ExportContext
    from cskd_export.mil_eval import load_program

    model, manifest = mv2_same
    dest = tmp_path / f"mv2-same-{precision}.mlpackage"
    coreml.export(ExportContext(model=model, manifest=manifest), precision, dest)
    program_ops = list(load_program(dest).functions["main"].operations)
    assert "conv" in {op.op_type for op in program_ops}
    if precision == "fp16":
        # The stem block (stem conv, first depthwise and pointwise conv) computes in float32, the rest in fp16:
        # all-fp16 moved the trained default model's mean score by 0.031 (gate 0.01), this 0.0064.
        from cskd_export.mil_eval import _is_fp16

        conv_fp16 = [_is_fp16(op.outputs[0]) for op in program_ops if op.op_type == "conv"]
        assert conv_fp16[:3] == [False, False, False] and all(conv_fp16[3:])
    x = np.random.default_rng(0).uniform(-1, 1, manifest.input.shape(2)).astype(np.float32)
    out = coreml.run(dest, x)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    bins = np.arange(1, 11)
    assert np.abs(out @ bins - ref @ bins).max() < tol * 10
    assert np.abs(out - ref).max() < tol
