"""A model damaged after conversion fails the gate loudly and leaves nothing that looks shippable."""

from __future__ import annotations

import numpy as np
import pytest

import cskd_export.onnx as export_onnx
from cskd_export import targets
from cskd_export.cli import main

pytestmark = pytest.mark.slow


def _damaging(original):
    """Wrap the ONNX writer so the file on disk has its conv weights scrambled (a converter bug, a bad write)."""

    def export(ctx, precision, dest, recipe=None):
        manifest = original(ctx, precision, dest, recipe)
        import onnx
        from onnx import numpy_helper

        proto = onnx.load(str(dest))
        rng = np.random.default_rng(0)
        for t in proto.graph.initializer:
            if len(t.dims) == 4:
                # Shuffled conv weights: right shape, dtype and value range (fp32 or int8), wrong numbers, as after
                # a bad conversion. (One shuffled layer is not enough: a residual path can carry the ranking.)
                w = numpy_helper.to_array(t)
                t.CopyFrom(numpy_helper.from_array(rng.permutation(w.reshape(-1)).reshape(w.shape), t.name))
        onnx.save(proto, str(dest))
        return manifest

    return export


def test_damaged_artifact_fails_gate_and_is_not_left_behind(trained_checkpoint, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / "test-brightness-resnet-fp32.onnx"
    stale.write_bytes(b"\x08 stale artifact from an earlier run")
    monkeypatch.setattr(export_onnx, "export", _damaging(export_onnx.export))

    rc = main(["--target", "onnx", "--precision", "fp32", "--checkpoint", str(trained_checkpoint), "--out", str(out),
               "--no-latency", "-q"])
    captured = capsys.readouterr()
    assert rc == 1
    err = captured.err
    assert "test-brightness-resnet-fp32.onnx: FAILED the fp32 parity gate" in err
    assert "max_abs_delta" in err and "> 0.0001" in err  # names the number and the limit
    # Nothing that looks like a model remains: no partial file, and the stale copy was removed too.
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "export_report.md"]
    assert "**failed**" in (out / "export_report.md").read_text()


def test_keep_failed_moves_the_rejected_file_aside(trained_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(export_onnx, "export", _damaging(export_onnx.export))
    rc = main(["--target", "onnx", "--precision", "fp32", "--checkpoint", str(trained_checkpoint), "--out", str(out),
               "--no-latency", "--keep-failed", "-q"])
    assert rc == 1
    assert not list(out.glob("*.onnx")) and not list(out.glob(".*partial*"))
    assert [p.name for p in (out / "rejected").iterdir()] == ["test-brightness-resnet-fp32.onnx.rejected"]


def test_int8_fallback_ladder_is_followed_and_reported(trained_checkpoint, tmp_path, monkeypatch):
    """The first INT8 recipe is made to fail; the next rung must be tried and named in the report."""
    import json

    original = export_onnx.export
    damaging = _damaging(original)

    def first_rung_broken(ctx, precision, dest, recipe=None):
        if recipe is not None and recipe.name == targets.INT8_LADDER[0].name:
            return damaging(ctx, precision, dest, recipe)
        return original(ctx, precision, dest, recipe)

    monkeypatch.setattr(export_onnx, "export", first_rung_broken)
    out = tmp_path / "out"
    rc = main(["--target", "onnx", "--precision", "int8", "--checkpoint", str(trained_checkpoint), "--out", str(out),
               "--no-latency", "-q"])
    assert rc == 0
    row = json.loads((out / "export_report.json").read_text())["artifacts"][0]
    first, second = targets.INT8_LADDER[0].name, targets.INT8_LADDER[1].name
    assert row["status"] == "passed" and row["recipe"] == second
    assert [a["recipe"] for a in row["attempts"]] == [first, second]
    assert row["attempts"][0]["failures"] and not row["attempts"][1]["failures"]
    md = (out / "export_report.md").read_text()
    assert "INT8 fallbacks:" in md and f"{first} (failed: spearman" in md
    from cskd_runtime import Scorer

    m = Scorer(out / "test-brightness-resnet-int8.onnx").manifest
    assert m.provenance["export"]["int8_recipe"] == second
