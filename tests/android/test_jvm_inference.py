"""The app's scoring path on the JVM through ONNX Runtime 1.29.0's Java API, against Python's onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.android

SCORE_TOL = 1e-4  # the parity bound on scores


def test_java_pipeline_matches_python_for_all_exif_orientations(jvm_build, android_goldens, tmp_path):
    import onnxruntime

    from android_demo.tools.jvm import run_score

    index = json.loads((android_goldens / "goldens.json").read_text())
    photos = index["photos"]
    assert sorted(p["orientation"] for p in photos if p["file"].startswith("orient_")) == list(range(1, 9))
    out = tmp_path / "scores.json"
    run_score(jvm_build, android_goldens / index["model"], [android_goldens / p["file"] for p in photos], out)
    got = json.loads(out.read_text())
    assert got["ort_version"] == onnxruntime.__version__ == "1.29.0"
    worst = 0.0
    for p, r in zip(photos, got["results"]):
        assert r["ok"], r
        assert r["source"].endswith(p["file"])
        assert r["orientation"] == p["orientation"], p["file"]
        e = p["score"]
        d_mean = abs(r["mean"] - e["mean"])
        worst = max(worst, d_mean)
        assert d_mean <= SCORE_TOL, (p["file"], r["mean"], e["mean"])
        assert abs(r["std"] - e["std"]) <= SCORE_TOL, p["file"]
        np.testing.assert_allclose(r["distribution"], e["distribution"], atol=1e-5, err_msg=p["file"])
        assert set(r["timings"]) == {"decode_ms", "preprocess_ms", "inference_ms"}
    # The 8 orientation photos are different crops: a pipeline that ignored EXIF or content would not match.
    means = [p["score"]["mean"] for p in photos[:8]]
    assert len({round(m, 4) for m in means}) == 8
    print(f"\nJava vs Python max |score diff| over {len(photos)} photos: {worst:.2e}")


def test_benchmark_mode_report_has_the_phone_contract(jvm_build, android_goldens, tmp_path):
    """The benchmark mode (same Benchmark class as the app) writes what cskd_bench reads from phones."""
    from android_demo.tools.jvm import run_score

    out = tmp_path / "benchmark.json"
    run_score(jvm_build, android_goldens / "model.onnx", [android_goldens / "orient_6.png"], out, benchmark=7)
    r = json.loads(out.read_text())
    assert r["status"] == "ok" and r["iterations"] == 7 and r["format"] == 1
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
    assert r["end_to_end"]["median_ms"] > r["median_ms"]  # decode + preprocess come on top of inference
    assert r["model"] == "test-mv2" and r["ort_version"] == "1.29.0"
    assert r["photo"]["orientation"] == 6 and r["threads"] == 1 and r["execution_provider"] == "cpu"
    assert r["device"].startswith("jvm ")


def test_jni_patch_refuses_unexpected_files(tmp_path):
    from android_demo.tools.toolchain import ToolError, patch_bionic_jni

    bogus = tmp_path / "libfoo.so"
    bogus.write_bytes(b"not an elf file at all")
    with pytest.raises(ToolError, match="not an x86-64"):
        patch_bionic_jni(bogus, tmp_path / "out.so")
