"""Requests are resolved (or refused) up front, before any model is loaded."""

from __future__ import annotations

import pytest

from cskd_export import targets
from cskd_export.cli import main
from cskd_export.parity import DEFAULT_TOLERANCES, gate, metrics, parse_tolerances


def test_all_expands_to_every_supported_pair():
    jobs = targets.plan("all")
    assert [j.key for j in jobs] == targets.valid_pairs()
    assert "onnx/fp16" not in targets.valid_pairs()
    assert {"tflite/fp16", "tflite/int8", "coreml/fp16", "coreml/int8", "onnx/int8"} <= set(targets.valid_pairs())


def test_all_targets_with_one_precision_keeps_only_targets_that_support_it():
    assert [j.key for j in targets.plan("all", "fp16")] == ["tflite/fp16", "coreml/fp16"]


def test_explicit_unsupported_pair_is_refused_with_valid_list():
    with pytest.raises(targets.UnsupportedError) as err:
        targets.plan("onnx,tflite", "fp32,fp16")
    msg = str(err.value)
    assert "onnx/fp16" in msg and "tflite/fp16" in msg.split("Valid")[1]
    assert "tflite/fp16" not in msg.split("Valid")[0]


def test_unknown_names_get_a_suggestion():
    with pytest.raises(targets.UnsupportedError, match="did you mean 'tflite'"):
        targets.plan("tflight")
    with pytest.raises(targets.UnsupportedError, match="unknown precision 'int4'"):
        targets.plan("onnx", "int4")


def test_int8_ladder_order_and_coreml_skips_calibration_rung():
    onnx_rungs = [r.name for r in targets.recipes_for(targets.TARGETS["onnx"], "int8")]
    assert onnx_rungs == ["per_channel+float_stem_head", "per_channel+float_stem_head+more_calibration",
                          "per_channel+float_early_head+more_calibration"]
    coreml_rungs = [r.name for r in targets.recipes_for(targets.TARGETS["coreml"], "int8")]
    assert coreml_rungs == ["per_channel+float_stem_head", "per_channel+float_early_head+more_calibration"]
    assert targets.recipes_for(targets.TARGETS["tflite"], "fp16") == [None]
    # The default keeps the head in float: a quantized softmax output moves the mean score in steps of ~0.04.
    assert all(r.float_head and r.per_channel for r in targets.INT8_LADDER)


def test_front_float_layers():
    # MobileNetV2's conv sequence: (depthwise?, stride) for stem, block 0 (dw, pw), block 1.0 (pw, dw/2, pwl), ...
    mv2 = [(False, 2), (True, 1), (False, 1), (False, 1), (True, 2), (False, 1), (False, 1), (True, 1), (False, 1),
           (False, 1), (True, 2), (False, 1)]
    assert targets.front_float_indices(mv2, "none") == []
    assert targets.front_float_indices(mv2, "stem") == [0, 1, 2]  # stem conv + first depthwise-separable block
    assert targets.front_float_indices(mv2, "early") == list(range(10))  # until the map is downsampled 8x
    resnet = [(False, 2), (False, 1), (False, 1), (False, 2)]
    assert targets.front_float_indices(resnet, "stem") == [0]
    with pytest.raises(ValueError):
        targets.Int8Recipe("x", True, False, float_front="everything")


def test_cli_refuses_unsupported_combination_before_loading(tmp_path, capsys):
    # The checkpoint does not exist: the refusal must come first, without touching it.
    rc = main(["--target", "onnx", "--precision", "fp16", "--checkpoint", str(tmp_path / "none.pt"),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "onnx/fp16" in err and "tflite/fp16" in err
    assert not (tmp_path / "out").exists()


def test_cli_missing_checkpoint_and_bad_tolerance(tmp_path, capsys):
    assert main(["--target", "onnx", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path)]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert main(["--target", "onnx", "--tolerance", "int8.spearmann=0.9", "--out", str(tmp_path)]) == 2
    assert "unknown metric 'spearmann'" in capsys.readouterr().err


def test_default_checkpoint_missing_is_a_clear_error(monkeypatch, tmp_path):
    from cskd_export import defaults

    monkeypatch.setattr(defaults, "_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="cskd-mv2-default.pt.*--checkpoint"):
        defaults.default_checkpoint()


def test_tolerance_overrides_and_gate_directions():
    tol = parse_tolerances(["int8.spearman=0.95,fp16.max_abs_delta=0.02", "int8.max_abs_delta=0.5"])
    assert tol["int8"] == {"spearman": 0.95, "max_abs_delta": 0.5}
    assert tol["fp16"]["max_abs_delta"] == 0.02
    assert DEFAULT_TOLERANCES["int8"] == {"spearman": 0.99}  # the table itself is not mutated
    for bad in ("spearman=0.9", "int4.spearman=0.9", "int8.spearman=high"):
        with pytest.raises(ValueError):
            parse_tolerances([bad])

    import numpy as np

    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(10), size=20)
    bins = np.arange(1, 11)
    assert gate(metrics(ref, ref, bins), "fp32", DEFAULT_TOLERANCES) == []
    noisy = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, None)
    noisy /= noisy.sum(1, keepdims=True)
    fails = gate(metrics(noisy, ref, bins), "fp32", DEFAULT_TOLERANCES)
    assert len(fails) == 1 and fails[0].startswith("max_abs_delta")
    constant = np.tile(ref[:1], (20, 1))
    assert "constant" in gate(metrics(constant, ref, bins), "int8", DEFAULT_TOLERANCES)[0]
