"""One ``cskd-export --target all`` run of a small trained model: every target and precision passes its gate,
every artifact carries its manifest, and the runtime loads each ONNX/TFLite file with nothing beside it."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from cskd_export import targets
from cskd_export.parity import DEFAULT_TOLERANCES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(full_export):
    return json.loads((full_export["out"] / "export_report.json").read_text())


def test_every_target_and_precision_passes(full_export, report):
    rows = {f"{a['target']}/{a['precision']}": a for a in report["artifacts"]}
    assert list(rows) == targets.valid_pairs()
    failed = {k: a["message"] for k, a in rows.items() if a["status"] != "passed"}
    assert not failed, failed
    assert full_export["rc"] == 0 and report["status"] == "passed"
    for key, a in rows.items():
        n, prec = a["numbers"], a["precision"]
        assert n["photos"] >= 30
        assert n["reference_score_std"] > 0.5, "the test model must spread its scores for rank checks to mean much"
        if prec == "int8":
            assert n["spearman"] >= DEFAULT_TOLERANCES["int8"]["spearman"], key
        else:
            assert n["max_abs_delta"] <= DEFAULT_TOLERANCES[prec]["max_abs_delta"], key
        if a["target"] != "coreml":
            assert a["latency_ms"] and a["latency_ms"] > 0
        assert a["size_mb"] > 0.1


def test_output_folder_holds_only_verified_artifacts(full_export, report):
    names = sorted(p.name for p in full_export["out"].iterdir())
    expected = sorted([a["file"].rsplit("/", 1)[-1] for a in report["artifacts"]] +
                      ["export_report.json", "export_report.md"])
    assert names == expected  # no .partial files, no leftovers
    md = (full_export["out"] / "export_report.md").read_text()
    assert md.count("**passed**") == len(targets.valid_pairs())


def test_int8_artifacts_are_smaller(report):
    size = {(a["target"], a["precision"]): a["size_mb"] for a in report["artifacts"]}
    for t in ("onnx", "tflite", "coreml"):
        assert size[(t, "int8")] < 0.5 * size[(t, "fp32")]
    assert size[("tflite", "fp16")] < 0.6 * size[("tflite", "fp32")]


def test_runtime_loads_each_file_alone_and_scores_real_photos(full_export, report, real_photos, tmp_path):
    from cskd_runtime import Scorer

    from cskd_export.embed import read_manifest

    for a in report["artifacts"]:
        if a["target"] == "coreml":
            continue
        alone = tmp_path / a["target"] / a["precision"]
        alone.mkdir(parents=True)
        path = shutil.copy(a["file"], alone / "model.bin")  # neutral name: format comes from content
        scorer = Scorer(path)
        m = scorer.manifest
        assert m.input.layout == ("NHWC" if a["target"] == "tflite" else "NCHW")
        assert m.provenance["export"]["precision"] == a["precision"]
        assert m.provenance["export"].get("int8_recipe") == a["recipe"]
        if a["target"] == "tflite" and a["precision"] == "int8":
            # The manifest must describe the tensors exactly (the runtime checks them too). The default recipe keeps
            # the stem and the head in float, so input and output are float32; a quantized tensor would need the
            # tensor's own parameters.
            from ai_edge_litert.interpreter import Interpreter

            it = Interpreter(model_path=str(path))
            for detail, spec in ((it.get_input_details()[0], m.input), (it.get_output_details()[0], m.output)):
                assert spec.dtype == np.dtype(detail["dtype"]).name
                if np.dtype(detail["dtype"]).kind in "iu":
                    assert spec.quantization.scale == pytest.approx(detail["quantization"][0])
                    assert spec.quantization.zero_point == detail["quantization"][1]
                else:
                    assert spec.quantization is None
            if a["recipe"] == targets.INT8_LADDER[0].name:
                assert m.input.dtype == m.output.dtype == "float32"
        results = scorer.score_batch(real_photos[:4])
        assert all(r.ok and 1.0 <= r.mean <= 10.0 for r in results)
        assert read_manifest(path).to_json() == m.to_json()


def test_coreml_numerics_agree_with_pytorch(full_export, report):
    rows = [a for a in report["artifacts"] if a["target"] == "coreml"]
    assert [a["precision"] for a in rows] == ["fp32", "fp16", "int8"]
    expected = "numpy evaluation" if sys.platform != "darwin" else "predict"
    for a in rows:
        assert expected in a["check_method"]
        prec = a["precision"]
        if prec in ("fp32", "fp16"):
            assert a["numbers"]["max_abs_delta"] <= DEFAULT_TOLERANCES[prec]["max_abs_delta"]
    fp32, fp16 = rows[0]["numbers"], rows[1]["numbers"]
    # fp16 rounding is visible but bounded; fp32 is exact to float rounding.
    assert fp32["max_abs_delta"] < fp16["max_abs_delta"]
    md = (full_export["out"] / "export_report.md").read_text()
    assert f"CoreML numerics checked by: {rows[0]['check_method']}" in md


def test_coreml_package_carries_manifest(report):
    from cskd_export.embed import read_manifest

    for a in report["artifacts"]:
        if a["target"] == "coreml":
            m = read_manifest(a["file"])
            assert m.input.layout == "NCHW" and m.input.dtype == "float32"
            assert m.provenance["export"]["target"] == "coreml"
