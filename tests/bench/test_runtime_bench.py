"""`cskd-bench runtime` end to end on small stand-in artifacts, plus its phone (adb) and report plumbing.

Timings are never asserted (they prove nothing on a shared CPU); the structure and the numbers that follow from
the measurements are: parity of fp32 artifacts with PyTorch, the draft-decode score difference, ratios computed
from both sides' timings, labels metrics, and the files a user reads.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from cskd_bench import cli, runtime_bench as rb, runtime_report as rr
from tests.conftest import photo_like

from tests.bench.artifacts import build_all


@pytest.fixture(scope="module")
def bench_inputs(mv2_model, tmp_path_factory):
    """Checkpoint, ONNX fp32 / int8, TFLite fp32 of the test MobileNetV2; photos and a labels CSV."""
    from cskd_runtime.preprocess import preprocess

    model, manifest = mv2_model
    root = tmp_path_factory.mktemp("bench")
    photos = root / "photos"
    photos.mkdir()
    for i in range(5):
        w, h = (640, 480) if i % 2 else (480, 640)
        photo_like(w, h, seed=100 + i).save(photos / f"p{i}.jpg", quality=92)
    paths = sorted(photos.iterdir())
    calib = [preprocess(p, manifest.input) for p in paths[:3]]
    arts, ckpt = build_all(model, manifest, root, calib)
    labels = root / "labels.csv"
    labels.write_text("image,mos\n" + "".join(f"{p.name},{3 + i * 1.1}\n" for i, p in enumerate(paths)))
    return {"root": root, "arts": arts, "ckpt": ckpt, "photos": photos, "labels": labels}


def test_runtime_benchmark_end_to_end(bench_inputs, tmp_path):
    b = bench_inputs
    out = tmp_path / "results"
    argv = ["runtime", "--artifacts", str(b["arts"]), "--checkpoint", str(b["ckpt"]), "--photos", str(b["photos"]),
            "--labels", str(b["labels"]), "--out", str(out), "--work", str(tmp_path / "work"),
            "--runs", "5", "--warmup", "1", "--threads", "1", "--overhead-runs", "30",
            "--album-photos", "2", "--pool-photos", "3", "--album-repeats", "1", "--photo-size", "2400x2048",
            "--scaling", "4", "--sweep-photos", "2", "--sweep-workers", "1", "--sweep-processes", "2",
            "--adb", str(tmp_path / "no-adb-here"), "--quiet"]
    assert cli.main(argv) == 0

    for name in ("runtime.json", "runtime.md", "runtime.png", "runtime_benchmark_model.txt"):
        assert (out / name).is_file(), name
    assert (out / "runtime.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = json.loads((out / "runtime.json").read_text())
    assert r["machine"]["cores"] >= 1 and r["machine"]["versions"]["onnxruntime"]
    by_name = {a["artifact"]: a for a in r["artifacts"]}
    assert {(a["format"], a["precision"]) for a in r["artifacts"]} == {("onnx", "fp32"), ("onnx", "int8"),
                                                                       ("tflite", "fp32")}
    assert by_name["test-mv2-fp32.tflite"]["layout"] == "NHWC"

    # Latency: torch reference + every artifact, each row self-consistent.
    lat = r["latency"]
    assert sorted(row["format"] for row in lat) == ["onnx", "onnx", "tflite", "torch"]
    for row in lat:
        assert row["runs"] == 5 and row["threads"] == 1
        assert row["min_ms"] <= row["median_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["load_ms"] > 0 and row["first_ms"] > 0
        assert row["peak_rss_mb"] >= row["rss_after_imports_mb"] > 0
    onnx_row = next(row for row in lat if row["artifact"] == "test-mv2-fp32.onnx")
    assert onnx_row["size_mb"] == pytest.approx((b["arts"] / "test-mv2-fp32.onnx").stat().st_size / 1e6)
    # A child process's own peak, not the pytest parent's (which holds torch and every model).
    torch_row = next(row for row in lat if row["format"] == "torch")
    assert onnx_row["peak_rss_mb"] < torch_row["peak_rss_mb"]
    bm = (out / "runtime_benchmark_model.txt").read_text()
    parsed = rb.parse_benchmark_model(bm)
    tfl = next(row for row in lat if row["format"] == "tflite")
    assert parsed["avg_ms"] == pytest.approx(tfl["mean_ms"], rel=1e-3)
    assert parsed["median_ms"] == pytest.approx(tfl["median_ms"], abs=1e-3)

    # Album: both pipelines ran on the same photos; the draft decode changes scores, within the tolerance.
    assert [a["artifact"] for a in r["album"]] == ["test-mv2-fp32.onnx", "test-mv2-fp32.tflite"]
    for a in r["album"]:
        assert a["photos"] == 2 and a["photo_set"]["pixels"] in (["2400x2048"], ["2048x2400"],
                                                                  ["2048x2400", "2400x2048"])
        assert a["speedup"] == pytest.approx(a["runtime"]["images_per_s"] / a["naive"]["images_per_s"])
        assert a["tolerance"] == rb.DRAFT_TOLERANCE
        assert 0 < a["max_abs_score_delta"] <= rb.DRAFT_TOLERANCE and a["within_tolerance"]
        assert a["decode_breakdown"]["full_decode_resize_ms"] >= a["decode_breakdown"]["full_decode_ms"]
        deltas = [abs(p["runtime"] - p["naive"]) for p in a["per_photo"]]
        assert max(deltas) == pytest.approx(a["max_abs_score_delta"]) and len(deltas) == 2

    # Overhead: computed from both timings of each artifact (paired, and as a difference of medians).
    assert len(r["overhead"]) == 3
    for o in r["overhead"]:
        assert o["bare_median_ms"] > 0 and o["runtime_median_ms"] > 0 and o["runs"] == 30
        assert o["overhead_pct"] == pytest.approx(100 * o["overhead_ms"] / o["bare_median_ms"])
        assert o["overhead_pct_of_medians"] == pytest.approx(100 * (o["runtime_median_ms"] - o["bare_median_ms"])
                                                             / o["bare_median_ms"])
        assert o["pass"] == (o["overhead_pct"] <= rb.TARGET_OVERHEAD_PCT)

    # Accuracy: fp32 artifacts match PyTorch; int8 is measured, not assumed; label metrics per artifact.
    acc = {row["artifact"]: row for row in r["accuracy"]["rows"]}
    assert acc["model.pt"]["format"] == "torch" and r["accuracy"]["labels"] == 5
    for name in ("test-mv2-fp32.onnx", "test-mv2-fp32.tflite"):
        assert acc[name]["vs_torch"]["max_abs_delta"] < 1e-4
        assert acc[name]["vs_torch"]["same_checkpoint"] is True
    assert acc["test-mv2-int8.onnx"]["vs_torch"]["max_abs_delta"] > 0
    for row in acc.values():
        lab = row["labels"]
        assert lab["n"] == 5 and -1 <= lab["srcc"] <= 1 and -1 <= lab["plcc"] <= 1 and lab["mse"] >= 0
        assert 0 <= lab["accuracy"] <= 1

    # Scaling and the 100k extrapolation follow from the measured rate.
    s = r["scaling"]
    assert [row["photos"] for row in s["by_album_size"]] == [4]
    assert [(row["processes"], row["photos"]) for row in s["sweep"]] == [(1, 2), (2, 2)]
    rate = s["by_album_size"][-1]["images_per_s"]
    assert s["extrapolation"]["minutes_default"] == pytest.approx(100_000 / rate / 60)
    assert s["extrapolation"]["minutes_naive"] == pytest.approx(
        100_000 / r["album"][0]["naive"]["images_per_s"] / 60)

    # Phones: skipped with the reason; targets table carries every ratio with PASS/FAIL.
    assert r["phone"]["status"] == "skipped" and "adb not found" in r["phone"]["reason"]
    assert len(r["targets"]) == 2 * 2 + 3
    md = (out / "runtime.md").read_text()
    assert "| target | baseline | measured | ratio | goal | result |" in md
    assert md.count("**PASS**") + md.count("**FAIL**") >= len(r["targets"])
    assert "Skipped: adb not found" in md and "100k-photo library" in md


FAKE_ADB = r'''#!{python}
import json, sys
args = sys.argv[1:]
log = open({log!r}, "a")
log.write(" ".join(args) + "\n")
if args[:1] == ["devices"]:
    print("List of devices attached\nSER123\tdevice\nSER999\tunauthorized\n")
    sys.exit(0)
if args[:2] == ["-s", "SER123"]:
    args = args[2:]
if args[:2] == ["shell", "getprop"]:
    print({{"ro.product.model": "Pixel Test", "ro.product.manufacturer": "Google",
           "ro.build.version.release": "15", "ro.product.cpu.abi": "arm64-v8a"}}.get(args[2], ""))
elif args[:3] == ["shell", "pm", "path"]:
    print("package:/data/app/org.cskd.demo/base.apk")
elif args[:2] == ["shell", "am"]:
    print("Starting: Intent {{ cmp=org.cskd.demo/.MainActivity }}")
elif args[:2] == ["shell", "run-as"] and "cat" in args:
    print(json.dumps({{"format": 1, "status": "ok", "iterations": 50, "median_ms": 12.5, "p90_ms": 14.0,
                      "end_to_end": {{"median_ms": 80.0, "p90_ms": 90.0, "mean_ms": 82.0}}, "threads": 4,
                      "execution_provider": "cpu"}}))
elif args[:1] == ["shell"] and args[1].endswith("benchmark_model"):
    print("count=50 first=20000 curr=11000 min=10000 max=15000 avg=11500 std=900 p5=10100 median=11200 p95=14000")
    print("Inference timings in us: Init: 30000, First inference: 20000, Warmup (avg): 12000, Inference (avg): 11500")
    print("Memory footprint delta from the start of the tool (MB): init=5.5 overall=20.25")
'''


def _fake_adb(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "adb.log"
    adb = tmp_path / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable, log=str(log)))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    return adb, log


def test_phone_benchmark_through_adb(tmp_path):
    adb, log = _fake_adb(tmp_path)
    tfl = tmp_path / "m-fp32.tflite"
    tfl.write_bytes(b"x")
    bm = tmp_path / "benchmark_model"
    bm.write_bytes(b"x")
    r = rb.phone_benchmark(iterations=50, warmup=5, adb=str(adb), benchmark_model=bm, tflite=[tfl], threads=4,
                           timeout_s=10)
    assert r["status"] == "ok" and len(r["devices"]) == 1  # the unauthorized device is not used
    d = r["devices"][0]
    assert d["model"] == "Pixel Test" and d["demo"]["median_ms"] == 12.5 and d["demo"]["p90_ms"] == 14.0
    run = d["benchmark_model"]["runs"][0]
    assert run["avg_ms"] == pytest.approx(11.5) and run["init_ms"] == pytest.approx(30.0)
    assert run["median_ms"] == pytest.approx(11.2) and run["memory_overall_mb"] == pytest.approx(20.25)
    calls = log.read_text()
    assert ("shell am start -W -S -n org.cskd.demo/.MainActivity --ez benchmark true --ei iterations 50 "
            "--ei warmup 5") in calls
    assert "shell run-as org.cskd.demo cat files/benchmark.json" in calls
    md = rr.markdown({"machine": rb.machine_info(), "wall_s": 1.0, "phone": r, "load_average_end": [0.0]})
    assert "| Google Pixel Test | 15 | arm64-v8a | ok" in md and "Inference timings in us" in md


def test_phone_benchmark_skips_with_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("ADB", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    r = rb.phone_benchmark()
    assert r["status"] == "skipped" and "adb not found" in r["reason"]
    empty = tmp_path / "adb"
    empty.write_text(f"#!{sys.executable}\nprint('List of devices attached')\n")
    empty.chmod(0o755)
    r = rb.phone_benchmark(adb=str(empty))
    assert r["status"] == "skipped" and "no Android device attached" in r["reason"]


def test_readme_block_is_replaced_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{rr.README_START}\nold table\n{rr.README_END}\nafter\n")
    assert rr.update_readme(readme, "| new | table |")
    text = readme.read_text()
    assert "old table" not in text and "| new | table |" in text and text.startswith("intro") and "after" in text
    plain = tmp_path / "other.md"
    plain.write_text("no markers")
    assert not rr.update_readme(plain, "x") and plain.read_text() == "no markers"


def test_labels_csv_errors_name_the_file(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("name,value\na.jpg,5\n")
    with pytest.raises(SystemExit, match="labels.csv: needs a photo column"):
        cli._load_labels(str(bad))
    bad.write_text("path,mean\na.jpg,high\n")
    with pytest.raises(SystemExit, match="line 2: score 'high' is not a number"):
        cli._load_labels(str(bad))
    good = tmp_path / "ok.csv"
    good.write_text("filename,mean_score\na.jpg,5.5\n")
    assert cli._load_labels(str(good)) == {"a.jpg": 5.5}


def test_percentiles_and_label_metrics():
    p = rb.percentiles(list(range(1, 101)))
    assert p["median_ms"] == pytest.approx(50.5) and p["p90_ms"] == pytest.approx(90.1) and p["runs"] == 100
    y = np.array([2.0, 4.0, 6.0, 8.0])
    m = rb.label_metrics(y + 0.5, y)
    assert m["srcc"] == pytest.approx(1.0) and m["plcc"] == pytest.approx(1.0)
    assert m["mse"] == pytest.approx(0.25) and m["accuracy"] == pytest.approx(1.0)
    m = rb.label_metrics(10 - y, y)
    assert m["srcc"] == pytest.approx(-1.0) and m["accuracy"] == pytest.approx(0.0)


def test_phone_photos_are_rotated_and_grainy(tmp_path, make_photo):
    from PIL import Image, ImageOps

    src = tmp_path / "src.jpg"
    make_photo(320, 240, seed=3).save(src)
    paths = rb.make_phone_photos([src], tmp_path, 4, size=(800, 600), rotated_every=2)
    again = rb.make_phone_photos([src], tmp_path, 4, size=(800, 600), rotated_every=2)
    assert paths == again
    with Image.open(paths[1]) as im:
        assert im.getexif().get(0x0112) == 6 and im.size == (800, 600)
        assert ImageOps.exif_transpose(im).size == (600, 800)  # upright portrait
    d = rb.describe_photos(paths)
    assert d["exif_rotated"] == 2 and d["count"] == 4
    album = rb.build_album(paths, 7, tmp_path / "album")
    assert len(album) == 7 and os.path.realpath(album[5]) == os.path.realpath(paths[1])
