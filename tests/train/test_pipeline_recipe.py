"""`cskd-train pipeline`: stages in order from one recipe, references between them, resumption, installation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cskd_runtime.manifest import Manifest
from cskd_train.model import load_checkpoint
from cskd_train.pipeline import PipelineError, load_pipeline, run_pipeline
from tests.train.synth import make_images

TINY = {"backbone": "test_resnet", "hidden": 16, "dropout": 0.0}


def _recipe(tmp: Path) -> Path:
    data = {
        "labeled_csv": str(make_images(tmp / "lab", 48, seed=1)),
        "val_csv": str(make_images(tmp / "val", 24, seed=2)),
        "unlabeled_csv": str(make_images(tmp / "unl", 48, seed=3, labels=False)),
    }
    spec = {"pipeline": {
        "name": "tiny-default", "version": "9.9.9",
        "data": {"given": data},
        "defaults": {
            "data": {"labeled": {"format": "csv", "path": "{data.labeled_csv}"},
                     "val": {"format": "csv", "path": "{data.val_csv}"},
                     "unlabeled": {"format": "csv", "path": "{data.unlabeled_csv}"},
                     "image_size": 64, "resize": 72, "workers": 0},
            "optim": {"epochs": 1, "milestones": [], "lr": 1e-3, "batch_size": 16},
            "run": {"threads": 1, "progress": False, "resume": True},
        },
        "stages": {
            "cfa": {"stage": "cfa", "model": TINY,
                    "cfa": {"projector_hidden": 16, "encoder": {"kind": "timm", "name": "test_efficientnet",
                                                                "pretrained": False, "size": 64, "resize": 72}}},
            "teacher": {"stage": "teacher", "model": {**TINY, "from_checkpoint": "{stages.cfa}"}},
            "skd": {"stage": "skd", "model": {**TINY, "from_checkpoint": "{stages.cfa}"},
                    "skd": {"teacher": "{stages.teacher}", "mu": 1}, "optim": {"batch_size": 8}},
            "nima": {"stage": "nima", "model": TINY},
        },
        "final": "skd", "ablation": "nima",
        # A one-epoch toy model's scores barely spread, so its INT8 copy would (rightly) fail the rank gate.
        "export": {"precisions": ["fp32"]},
    }}
    path = tmp / "tiny_pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.slow
def test_pipeline_runs_links_resumes_and_installs(tmp_path):
    recipe = _recipe(tmp_path)
    installed = tmp_path / "installed"
    state = run_pipeline(recipe, tmp_path / "run", install=True, install_dir=installed)
    assert list(state["stages"]) == ["cfa", "teacher", "skd", "nima"]
    assert all(Path(p).is_file() for p in state["stages"].values())
    # {stages.*} references were resolved to the earlier stages' checkpoints.
    skd = Manifest.from_json(load_checkpoint(state["stages"]["skd"])["manifest"]).provenance
    assert skd["teacher"]["checkpoint"] == state["stages"]["teacher"]

    # The installed default: the final stage's weights, renamed, with a score calibration in its manifest.
    final = load_checkpoint(installed / "tiny-default.pt")
    manifest = Manifest.from_json(final["manifest"])
    assert (manifest.model.name, manifest.model.version) == ("tiny-default", "9.9.9")
    q = np.asarray(manifest.calibration.quantiles)
    assert q.shape == (101,) and np.all(np.diff(q) >= 0) and manifest.calibration.target.startswith("AVA")
    src = load_checkpoint(state["stages"]["skd"])["state_dict"]
    assert all(np.array_equal(final["state_dict"][k].numpy(), v.numpy()) for k, v in src.items())
    assert (installed / "ablation-mv2-no-cfa-no-skd.pt").is_file()
    # ...and its ONNX / TFLite artifacts, which passed cskd-export's gates, under the runtime's names.
    from cskd_runtime import Scorer

    for name in ("tiny-default.onnx", "tiny-default.tflite"):
        scorer = Scorer(installed / "runtime_models" / name)
        assert scorer.manifest.calibration == manifest.calibration
    assert (installed / "runtime_models" / "export_report.json").is_file()

    # A second run finds every stage finished and trains nothing.
    stamps = {k: Path(p).stat().st_mtime_ns for k, p in state["stages"].items()}
    again = run_pipeline(recipe, tmp_path / "run")
    assert again["stages"] == state["stages"]
    assert {k: Path(p).stat().st_mtime_ns for k, p in again["stages"].items()} == stamps
    assert json.loads((tmp_path / "run" / "pipeline.json").read_text())["final"] == state["stages"]["skd"]


def test_bad_references_and_recipes_are_named(tmp_path):
    recipe = _recipe(tmp_path)
    spec = yaml.safe_load(recipe.read_text())
    spec["pipeline"]["stages"]["teacher"]["model"]["from_checkpoint"] = "{stages.nope}"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(PipelineError, match=r"teacher.*\{stages\.nope\} is not a stage that runs before"):
        run_pipeline(bad, tmp_path / "run-bad")
    spec["pipeline"]["final"] = "student"
    bad.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(PipelineError, match="final names 'student'"):
        load_pipeline(bad)
    with pytest.raises(PipelineError, match="not found"):
        load_pipeline(tmp_path / "missing.yaml")


def test_the_default_recipe_is_a_valid_pipeline():
    spec, path = load_pipeline("default_cpu")
    assert list(spec["stages"]) == ["cfa", "teacher", "skd", "nima"]
    assert spec["final"] == "skd" and spec["ablation"] == "nima"
    assert spec["stages"]["skd"]["skd"]["beta"] == 15


def test_the_paper_recipe_composes_the_stage_recipes_and_links_them(tmp_path, monkeypatch):
    from cskd_train.pipeline import stage_config

    monkeypatch.chdir(tmp_path)
    spec, path = load_pipeline("paper_ava")
    ctx = {f"stages.{n}": f"/ckpt/{n}.pt" for n in spec["stages"]}
    cfgs = {n: stage_config(spec, path, n, ctx, tmp_path / "out") for n in spec["stages"]}
    assert cfgs["cfa_teacher"].model.backbone.startswith("swin_base")
    assert (cfgs["cfa_student"].cfa.encoder.kind, cfgs["cfa_student"].cfa.encoder.name) == ("open_clip", "ViT-L-14")
    assert cfgs["teacher"].model.from_checkpoint == "/ckpt/cfa_teacher.pt"
    skd = cfgs["skd"]
    assert (skd.skd.beta, skd.skd.mu, skd.skd.teacher) == (15.0, 15, "/ckpt/teacher.pt")
    assert skd.model.from_checkpoint == "/ckpt/cfa_student.pt"
    assert (skd.optim.lr, skd.optim.epochs, skd.optim.milestones) == (1e-4, 16, [5])
    assert cfgs["teacher"].optim.milestones == [2]
    # Bundled recipes resolve data paths against the folder the user runs from; outputs go under --out.
    assert skd.resolve(skd.data.labeled["table"]) == tmp_path / "data/AVA/AVA.txt"
    assert skd.out_dir() == tmp_path / "out" / "skd"
    assert spec["targets"]["srcc"] == 0.706 and spec["targets"]["plcc"] == 0.717
