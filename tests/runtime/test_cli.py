import csv
import io
import json
import subprocess
import sys
import time

import pytest

from cskd_runtime.cli import main
from tests.runtime.test_imageio import _png_header_only


@pytest.fixture
def album(tmp_path, make_photo):
    root = tmp_path / "album"
    (root / "sub").mkdir(parents=True)
    good = []
    for i in range(4):
        p = (root if i < 3 else root / "sub") / f"good{i}.jpg"
        make_photo(320, 240, seed=i).save(p, quality=90)
        good.append(p)
    buf = io.BytesIO()
    make_photo(320, 240, seed=9).save(buf, "JPEG")
    bad = {
        root / "truncated.jpg": buf.getvalue()[:2000],
        root / "empty.jpg": b"",
        root / "notes.jpg": b"shopping list: milk, eggs",
        root / "bomb.png": _png_header_only(60000, 60000),
    }
    for p, data in bad.items():
        p.write_bytes(data)
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return root, good, bad


def test_mixed_folder_scores_good_files_and_names_bad_ones(album, mv2_onnx, capsys):
    root, good, bad = album
    rc = main([str(root), "-r", "--format", "json", "--model", str(mv2_onnx), "--no-progress"])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 1  # not every file could be scored
    scored = {r["source"] for r in rows if r["ok"]}
    assert scored == {str(p) for p in good}
    failed = {r["source"]: r["error"] for r in rows if not r["ok"]}
    assert set(failed) == {str(p) for p in bad}
    assert "truncated" in failed[str(root / "truncated.jpg")]
    assert "empty" in failed[str(root / "empty.jpg")]
    assert "not a recognised image format" in failed[str(root / "notes.jpg")]
    assert "decompression bomb" in failed[str(root / "bomb.png")]
    for p in bad:
        assert str(p) in err


def test_exit_zero_when_all_scored_and_csv(album, mv2_onnx, capsys):
    _, good, _ = album
    rc = main([*map(str, good), "--format", "csv", "--model", str(mv2_onnx)])
    out, _ = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0
    assert [r["path"] for r in rows] == [str(p) for p in good]
    assert all(r["status"] == "ok" and 1 <= float(r["mean"]) <= 10 for r in rows)


def test_non_recursive_skips_subfolders(album, mv2_onnx, capsys):
    root, good, _ = album
    main([str(root), "--format", "json", "--model", str(mv2_onnx)])
    sources = {json.loads(line)["source"] for line in capsys.readouterr()[0].splitlines()}
    assert str(good[3]) not in sources and str(good[0]) in sources


def test_top_k_prints_best_first(album, mv2_onnx, capsys):
    _, good, _ = album
    main([*map(str, good), "--format", "json", "--model", str(mv2_onnx)])
    all_rows = [json.loads(line) for line in capsys.readouterr()[0].splitlines()]
    main([*map(str, good), "--format", "json", "--top", "2", "--model", str(mv2_onnx)])
    top = [json.loads(line) for line in capsys.readouterr()[0].splitlines()]
    assert [r["mean"] for r in top] == sorted((r["mean"] for r in all_rows), reverse=True)[:2]


def test_table_output_and_missing_path(album, mv2_onnx, capsys, tmp_path):
    _, good, _ = album
    rc = main([str(good[0]), str(tmp_path / "nope.jpg"), "--model", str(mv2_onnx)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "mean" in out.splitlines()[0] and str(good[0]) in out
    assert "nope.jpg: no such file or directory" in err


def test_bad_model_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"garbage!" * 4)
    assert main([str(tmp_path), "--model", str(bad)]) == 2
    assert "not an ONNX or TFLite model" in capsys.readouterr()[1]


def test_version_answers_at_once_without_heavy_imports():
    code = "import sys; from cskd_runtime.cli import main\ntry:\n main(['--version'])\nexcept SystemExit: pass\nprint(sorted(m for m in ('onnxruntime','numpy','PIL') if m in sys.modules))"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert time.perf_counter() - t0 < 5
    assert "cskd-score 0.1.0" in out
    assert out.strip().splitlines()[-1] == "[]"
