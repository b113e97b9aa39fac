"""Latency, album throughput, accuracy and scaling of exported models, each beside its baseline in one run.

Every number a user chooses a format by is measured here, in the same process tree and minutes:

* **latency** per artifact (ONNX / TFLite, each precision) against PyTorch eager, at 1 thread and all cores:
  load time, first inference, median / p90 / p99 after warm-up, peak RSS (each in its own child process so
  memory is not shared), file size;
* **album** throughput on 12 MP JPEGs: cskd-runtime (draft decoding + decode threads + batching) against a naive
  pipeline (full decode, resize, the same model one photo at a time), plus the runtime's overhead over a bare
  onnxruntime / interpreter call on the same tensor;
* **accuracy**: score parity of every artifact against PyTorch on a photo set and, with labels, SRCC / PLCC /
  MSE / accuracy;
* **scaling** with album size and decode threads, extrapolated to a 100k-photo library;
* **phones**: the Android demo's benchmark mode through adb when a device is attached (skipped, saying so,
  otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["machine_info", "measure_latency", "album_throughput", "runtime_overhead", "accuracy", "scaling",
           "phone_benchmark", "percentiles"]


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
        "runs": int(a.size),
    }


def machine_info() -> dict[str, Any]:
    """CPU model, cores and the versions of every library on the measured path."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("numpy", "PIL", "onnxruntime", "ai_edge_litert", "torch", "timm", "cskd_runtime"):
        try:
            m = __import__(mod)
            versions[mod] = getattr(m, "__version__", "?")
        except Exception:
            versions[mod] = None
    try:
        from importlib.metadata import version

        versions["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "versions": versions,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# --------------------------------------------------------------------------------------------------- latency
def _worker_latency(kind: str, path: str, threads: int, runs: int, warmup: int) -> dict[str, Any]:
    """Runs inside a fresh child process: load, first run, timed runs, peak RSS."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if kind == "torch":
        import torch

        from cskd_train.model import model_from_checkpoint

        torch.set_num_threads(threads)
        model, manifest = model_from_checkpoint(path)
        x = torch.from_numpy(np.random.default_rng(0).standard_normal(manifest.input.shape(1)).astype(np.float32))

        def run() -> None:
            with torch.inference_mode():
                model(x)
    else:
        from cskd_runtime.backends import open_backend
        from cskd_runtime.preprocess import cast_input

        backend = open_backend(path, threads=threads)
        x = cast_input(np.random.default_rng(0).standard_normal(backend.manifest.input.shape(1)).astype(np.float32),
                       backend.manifest.input)

        def run() -> None:
            backend.run_raw(x)
    load_ms = (time.perf_counter() - t0) * 1e3
    t1 = time.perf_counter()
    run()
    first_ms = (time.perf_counter() - t1) * 1e3
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t) * 1e3)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"load_ms": load_ms, "first_ms": first_ms, **percentiles(samples), "peak_rss_mb": peak_kb / 1024.0,
            "rss_before_load_mb": rss0 / 1024.0}


def measure_latency(kind: str, path: Path, threads: int, runs: int = 50, warmup: int = 10) -> dict[str, Any]:
    """Latency of one artifact (``kind`` = onnx, tflite or torch) in a fresh child process."""
    code = (
        "import json, sys\n"
        "from cskd_bench.runtime_bench import _worker_latency\n"
        f"print('RESULT' + json.dumps(_worker_latency({kind!r}, {str(path)!r}, {threads}, {runs}, {warmup})))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"latency worker failed for {path}: {proc.stderr.strip()[-800:]}")
    out = json.loads(line[len("RESULT"):])
    out.update(kind=kind, artifact=Path(path).name, threads=threads,
               size_mb=(Path(path).stat().st_size / 1e6) if Path(path).is_file() else None)
    return out


# ----------------------------------------------------------------------------------------------- album
def make_phone_photos(sources: Sequence[Path], out_dir: Path, count: int, size: tuple[int, int] = (4032, 3024),
                      quality: int = 90) -> list[Path]:
    """12 MP JPEGs made by upscaling real photos (cached: made once per folder)."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = out_dir / f"phone_{i:04d}.jpg"
        if not p.exists():
            src = sources[i % len(sources)]
            img = Image.open(src).convert("RGB")
            if (i // len(sources)) % 2:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            w, h = size if img.width >= img.height else size[::-1]
            tmp = p.with_suffix(".tmp")
            img.resize((w, h), Image.Resampling.BICUBIC).save(tmp, "JPEG", quality=quality)
            os.replace(tmp, p)
        paths.append(p)
    return paths


def naive_scores(model_path: Path, photos: Sequence[Path], threads: int | None = None) -> tuple[np.ndarray, float]:
    """The pipeline most apps write first: full decode, resize, normalise, one photo per call."""
    import onnxruntime as ort
    from PIL import Image, ImageOps

    from cskd_runtime.backends import open_backend

    manifest = open_backend(model_path).manifest
    spec = manifest.input
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    bins = np.asarray(manifest.output.bins)
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    scores = []
    t0 = time.perf_counter()
    for p in photos:
        img = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        img = img.resize((spec.resize_width, spec.resize_height), Image.Resampling.BILINEAR)
        left, top = (spec.resize_width - spec.width) // 2, (spec.resize_height - spec.height) // 2
        img = img.crop((left, top, left + spec.width, top + spec.height))
        x = ((np.asarray(img, np.float32) * spec.scale - mean) / std).transpose(2, 0, 1)[None]
        prob = sess.run(None, {name: np.ascontiguousarray(x)})[0][0]
        scores.append(float(prob @ bins))
    return np.asarray(scores), time.perf_counter() - t0


def runtime_scores(model_path: Path, photos: Sequence[Path], threads: int | None = None,
                   workers: int | None = None, batch_size: int = 16) -> tuple[np.ndarray, float]:
    from cskd_runtime import Scorer

    scorer = Scorer(model_path, threads=threads, workers=workers)
    t0 = time.perf_counter()
    out = list(scorer.iter_scores(photos, batch_size=batch_size))
    dt = time.perf_counter() - t0
    bad = [o for o in out if not o.ok]
    if bad:
        raise RuntimeError(f"runtime failed on {bad[0].source}: {bad[0].reason}")
    return np.asarray([o.mean for o in out]), dt


def album_throughput(model_path: Path, photos: Sequence[Path], repeats: int = 2) -> dict[str, Any]:
    """Images/s of cskd-runtime vs the naive pipeline on the same 12 MP photos (best of ``repeats``)."""
    naive_t, rt_t = [], []
    for _ in range(repeats):
        naive, t = naive_scores(model_path, photos)
        naive_t.append(t)
        rt, t = runtime_scores(model_path, photos)
        rt_t.append(t)
    n = len(photos)
    return {
        "photos": n,
        "photo_size": "4032x3024 JPEG q90",
        "naive_images_per_s": n / min(naive_t),
        "runtime_images_per_s": n / min(rt_t),
        "speedup": min(naive_t) / min(rt_t),
        "max_abs_score_delta": float(np.abs(rt - naive).max()),
        "mean_abs_score_delta": float(np.abs(rt - naive).mean()),
    }


def runtime_overhead(model_path: Path, runs: int = 200, threads: int = 1) -> dict[str, Any]:
    """Runtime call (cast + run + softmax/stats) vs a bare session / interpreter call on the same tensor."""
    from cskd_runtime import Scorer
    from cskd_runtime.preprocess import cast_input

    scorer = Scorer(model_path, threads=threads)
    spec = scorer.manifest.input
    x = np.random.default_rng(1).standard_normal(spec.shape(1)).astype(np.float32)
    xc = cast_input(x, spec)
    bare, full = [], []
    for _ in range(10):
        scorer.backend.run_raw(xc)
        scorer.score_tensor(x)
    # Interleave so drift on a noisy machine hits both equally.
    for _ in range(runs):
        t = time.perf_counter()
        scorer.backend.run_raw(xc)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        scorer.score_tensor(x)
        full.append(time.perf_counter() - t)
    b, f = statistics.median(bare), statistics.median(full)
    return {"artifact": Path(model_path).name, "bare_median_ms": b * 1e3, "runtime_median_ms": f * 1e3,
            "overhead_pct": 100.0 * (f - b) / b}


# -------------------------------------------------------------------------------------------- accuracy
def accuracy(artifacts: Sequence[Path], checkpoint: Path | None, photos: Sequence[Path],
             labels: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Per artifact: parity with PyTorch on the same preprocessed tensors; metrics when labels are given."""
    from scipy import stats

    from cskd_runtime import Scorer

    ref = None
    if checkpoint is not None:
        import torch

        from cskd_train.model import model_from_checkpoint

        model, manifest = model_from_checkpoint(checkpoint)
        from cskd_runtime.preprocess import preprocess

        x = np.concatenate([preprocess(p, manifest.input) for p in photos])
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy().astype(np.float64) @ np.asarray(manifest.output.bins)
    rows = []
    for art in artifacts:
        scorer = Scorer(art)
        s = np.asarray([o.mean for o in scorer.score_batch(list(photos))])
        row: dict[str, Any] = {"artifact": Path(art).name, "photos": len(photos)}
        if ref is not None:
            row.update(
                max_abs_delta_vs_torch=float(np.abs(s - ref).max()),
                mean_abs_delta_vs_torch=float(np.abs(s - ref).mean()),
                spearman_vs_torch=float(stats.spearmanr(s, ref)[0]),
            )
        if labels:
            y = np.asarray([labels.get(str(p), labels.get(Path(p).name, np.nan)) for p in photos], np.float64)
            ok = np.isfinite(y)
            if ok.sum() >= 3:
                row.update(
                    srcc=float(stats.spearmanr(s[ok], y[ok])[0]),
                    plcc=float(stats.pearsonr(s[ok], y[ok])[0]),
                    mse=float(np.mean((s[ok] - y[ok]) ** 2)),
                    acc=float(np.mean((s[ok] >= 5) == (y[ok] >= 5))),
                )
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- scaling
def scaling(model_path: Path, photo_pool: Sequence[Path], sizes: Sequence[int], workers: Sequence[int],
            work_dir: Path) -> dict[str, Any]:
    """End-to-end time against album size (links to a pool of photos) and against decode threads."""
    rows = []
    link_dir = work_dir / "album_links"
    link_dir.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        paths = []
        for i in range(n):
            p = link_dir / f"{i:06d}.jpg"
            if not p.exists():
                os.symlink(photo_pool[i % len(photo_pool)], p)
            paths.append(p)
        _, dt = runtime_scores(model_path, paths)
        rows.append({"album": n, "seconds": dt, "images_per_s": n / dt})
    by_workers = []
    sample = [link_dir / f"{i:06d}.jpg" for i in range(min(sizes))]
    for w in workers:
        _, dt = runtime_scores(model_path, sample, workers=w)
        by_workers.append({"workers": w, "photos": len(sample), "images_per_s": len(sample) / dt})
    rate = rows[-1]["images_per_s"]
    return {"by_album_size": rows, "by_workers": by_workers, "library_100k_minutes": 100_000 / rate / 60.0,
            "pool_photo_size": _describe_photo(photo_pool[0])}


def _describe_photo(p: Path) -> str:
    from PIL import Image

    with Image.open(p) as im:
        return f"{im.width}x{im.height} {im.format}, {Path(p).stat().st_size / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------------------- phones
def phone_benchmark(apk: Path | None, iterations: int = 50) -> dict[str, Any]:
    """Runs the Android demo's benchmark mode over adb when a device is attached."""
    import shutil

    adb = shutil.which("adb")
    if adb is None:
        return {"status": "skipped", "reason": "adb not installed (apt-get install adb); no phone measured"}
    out = subprocess.run([adb, "devices"], capture_output=True, text=True).stdout
    devices = [ln.split()[0] for ln in out.splitlines()[1:] if ln.strip().endswith("device")]
    if not devices:
        return {"status": "skipped", "reason": "no Android device attached (adb devices lists none)"}
    if apk is None or not Path(apk).exists():
        return {"status": "skipped", "reason": "device attached but no demo APK built (android_demo/tools/build_apk.sh)"}
    pkg, act = "ai.cskd.demo", "ai.cskd.demo/.MainActivity"
    subprocess.run([adb, "install", "-r", str(apk)], check=True, capture_output=True)
    subprocess.run([adb, "shell", "am", "start", "-W", "-n", act, "--ez", "benchmark", "true", "--ei", "iterations",
                    str(iterations)], check=True, capture_output=True)
    deadline = time.time() + 300
    remote = f"/sdcard/Android/data/{pkg}/files/benchmark.json"
    while time.time() < deadline:
        res = subprocess.run([adb, "shell", "cat", remote], capture_output=True, text=True)
        if res.returncode == 0 and res.stdout.strip().startswith("{"):
            model = subprocess.run([adb, "shell", "getprop", "ro.product.model"], capture_output=True, text=True)
            return {"status": "ok", "device": model.stdout.strip(), **json.loads(res.stdout)}
        time.sleep(2)
    return {"status": "failed", "reason": f"no benchmark result at {remote} after 300 s"}


def tflite_benchmark_model_text(row: dict[str, Any]) -> str:
    """Summarise a latency row in the style of TFLite's benchmark_model output."""
    us = lambda ms: int(round(ms * 1000))  # noqa: E731
    return (
        f"Graph: [{row['artifact']}]  #threads used: [{row['threads']}]\n"
        f"Initialized session in {row['load_ms']:.3f}ms.\n"
        f"Running benchmark for at least {row['runs']} iterations.\n"
        f"count={row['runs']} first={us(row['first_ms'])} curr={us(row['median_ms'])} min={us(row['min_ms'])} "
        f"avg={us(row['mean_ms'])} p50={us(row['median_ms'])} p90={us(row['p90_ms'])} p99={us(row['p99_ms'])}\n"
        f"Peak memory footprint (MB): init=0 overall={row['peak_rss_mb']:.2f}\n"
    )


def _tmp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cskd-bench-"))
