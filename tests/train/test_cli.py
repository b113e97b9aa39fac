"""``cskd-train`` in-process: recipes, the baselines, evaluate (JSON + table), config errors."""

from __future__ import annotations

import json

import pytest

from cskd_runtime.manifest import Manifest
from cskd_train.cli import main
from cskd_train.model import load_checkpoint
from tests.train.synth import COMMON


def _set(items):
    out = []
    for it in items:
        out += ["--set", it]
    return out


def test_recipes_lists_the_paper_recipes(capsys):
    assert main(["recipes"]) == 0
    text = capsys.readouterr().out
    for name in ("cfa_mv2", "teacher_swinb", "skd_mv2", "nima_mv2", "kd_mv2"):
        assert name in text


def test_bad_override_is_a_clear_usage_error(capsys):
    assert main(["skd", "--recipe", "skd_mv2", "--set", "skd.betta=3"]) == 2
    assert "did you mean 'beta'" in capsys.readouterr().err


def test_missing_data_is_named(tmp_path, capsys, caplog):
    rc = main(["nima", "--out", str(tmp_path / "o"), *_set(COMMON + ["data.labeled={format: csv, path: nope.csv}"])])
    assert rc == 1
    assert "nope.csv: label file not found" in caplog.text


@pytest.mark.parametrize("stage", ["nima", "kd"])
def test_baselines_run_from_the_cli(stage, pipeline, synth_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(synth_root)  # bundled-recipe-free run: relative data paths resolve against the cwd
    over = COMMON + ["data.labeled={format: csv, path: lab/labels.csv}", "data.val={format: csv, path: val/labels.csv}",
                     "optim.epochs=1", "optim.steps_per_epoch=3", "optim.batch_size=16", "run.threads=1"]  # fmt: skip
    if stage == "kd":
        over += [f"model.from_checkpoint={pipeline['cfa']}", f"skd.teacher={pipeline['teacher']}",
                 f"skd.cache_dir={pipeline['skd'].parent / 'cache'}"]  # fmt: skip
    assert main([stage, "--out", str(tmp_path / stage), *_set(over)]) == 0
    path = tmp_path / stage / f"{stage}.pt"
    assert capsys.readouterr().out.strip() == str(path)
    ck = load_checkpoint(path)
    prov = Manifest.from_json(ck["manifest"]).provenance
    assert ck["stage"] == stage and prov["metrics"]["val"]["n"] == 48
    if stage == "kd":
        assert prov["skd"]["labeled_only"] is True and prov["skd"]["unlabeled_images"] == 0
        assert set(ck["history"][0]) >= {"l_s", "l_kd"}


def test_evaluate_writes_json_and_table(pipeline, synth_root, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(pipeline["skd"]), "--labels", str(synth_root / "val" / "labels.csv"),
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    table = capsys.readouterr().out
    assert "| n | SRCC | PLCC | MSE |" in table and "interval error rate" in table
    m = json.loads((out / "metrics.json").read_text())
    assert (out / "metrics.md").read_text().startswith("### ")
    assert m["n"] == 48 and m["srcc"] > 0.5 and len(m["intervals"]) == 9
    # The same numbers the skd stage measured on its validation set (same contract preprocessing).
    ref = json.loads((pipeline["skd"].parent / "metrics.json").read_text())["metrics"]["val"]
    assert m["srcc"] == pytest.approx(ref["srcc"], abs=1e-6) and m["mse"] == pytest.approx(ref["mse"], rel=1e-5)


def test_evaluate_exported_onnx_matches_the_checkpoint(pipeline, synth_root, tmp_path, capsys):
    from cskd_train.model import model_from_checkpoint
    from tests.conftest import export_onnx_with_manifest

    model, manifest = model_from_checkpoint(pipeline["skd"])
    onnx = export_onnx_with_manifest(model, manifest, tmp_path / "skd.onnx")
    assert main(["evaluate", "--model", str(onnx), "--labels", str(synth_root / "val" / "labels.csv"),
                 "--out", str(tmp_path / "e"), "--json"]) == 0  # fmt: skip
    m = json.loads(capsys.readouterr().out)
    ref = json.loads((pipeline["skd"].parent / "metrics.json").read_text())["metrics"]["val"]
    assert m["mse"] == pytest.approx(ref["mse"], abs=1e-4)


def test_cskd_export_takes_the_skd_checkpoint_directly(pipeline, synth_root, tmp_path):
    from cskd_export.cli import main as export_main
    from cskd_runtime import Scorer

    out = tmp_path / "exported"
    rc = export_main(["--target", "onnx", "--precision", "fp32", "--checkpoint", str(pipeline["skd"]),
                      "--parity", str(synth_root / "val"), "--out", str(out), "--no-latency", "-q"])  # fmt: skip
    assert rc == 0
    onnx = next(out.glob("*.onnx"))
    scorer = Scorer(onnx)
    assert scorer.manifest.provenance["stage"] == "skd"
    assert scorer.manifest.provenance["metrics"]["val"]["srcc"] > 0.5
    assert scorer.manifest.input.height == 32
