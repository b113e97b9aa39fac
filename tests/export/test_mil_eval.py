"""The numpy MIL evaluator's kernels match PyTorch, and a converted CoreML program runs through it."""

from __future__ import annotations

import numpy as np
import pytest

from cskd_export import mil_eval


@pytest.mark.parametrize(
    "cin,cout,k,stride,pad,dil,groups",
    [(3, 8, 3, 2, 1, 1, 1), (8, 8, 3, 1, 1, 1, 8), (4, 8, 3, 2, 1, 1, 4), (6, 4, 3, 1, 2, 2, 2), (5, 7, 1, 1, 0, 1, 1)],
)
def test_conv2d_matches_torch(cin, cout, k, stride, pad, dil, groups):
    import torch

    rng = np.random.default_rng(cin * 100 + cout)
    x = rng.standard_normal((2, cin, 11, 9)).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride,
                                     padding=pad, dilation=dil, groups=groups).numpy()
    got = mil_eval.conv2d(x, w, b, (stride, stride), [pad] * 4, (dil, dil), groups)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_same_padding_follows_tf_convention():
    # 'same' puts the odd pixel at the end, 'same_lower' at the start.
    assert mil_eval._pads("same", None, (10, 10), (3, 3), (2, 2), (1, 1)) == [0, 1, 0, 1]
    assert mil_eval._pads("same_lower", None, (10, 10), (3, 3), (2, 2), (1, 1)) == [1, 0, 1, 0]
    assert mil_eval._pads("valid", None, (10, 10), (3, 3), (2, 2), (1, 1)) == [0, 0, 0, 0]


def test_small_program_with_pooling_and_matmul(tmp_path):
    """A CoreML program using ops MobileNetV2 does not (avg_pool, max_pool, matmul, sigmoid, reduce_max, concat) evaluates correctly."""
    import coremltools as ct
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 3, stride=1, padding=1)
            self.w = torch.nn.Parameter(torch.randn(12, 5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.avg_pool2d(torch.sigmoid(self.conv(x)), 2)
            y = torch.nn.functional.max_pool2d(y, 3, stride=2, padding=1)
            f = torch.cat([y.mean((2, 3)), y.amax((2, 3))], dim=1)
            return torch.softmax(f @ self.w, dim=-1)

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 3, 16, 16)
    traced = torch.jit.trace(net, x)
    ml = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=x.shape)], convert_to="mlprogram",
                    compute_precision=ct.precision.FLOAT32, minimum_deployment_target=ct.target.iOS16)
    path = tmp_path / "net.mlpackage"
    ml.save(str(path))
    try:
        out = mil_eval.evaluate_package(path, {"x": x.numpy()})
    except mil_eval.UnsupportedOp as exc:  # the message must name the op
        pytest.fail(f"evaluator lacks an op: {exc}")
    got = next(iter(out.values()))
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-5)


def test_unsupported_op_is_named():
    class FakeVar:
        def __init__(self, name):
            self.name, self.val = name, None

    class FakeOp:
        op_type, name, inputs, outputs = "fancy_new_op", "op_1", {}, [FakeVar("y")]

    class FakeFn:
        inputs: dict = {}
        operations = [FakeOp()]
        outputs = [FakeVar("y")]

    class FakeProg:
        functions = {"main": FakeFn()}

    with pytest.raises(mil_eval.UnsupportedOp, match="fancy_new_op"):
        mil_eval.evaluate_program(FakeProg(), {})
