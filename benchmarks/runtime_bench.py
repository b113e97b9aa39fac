"""Latency, album throughput, overhead, accuracy, scaling and phone numbers of exported models, each beside its
baseline in the same run.

Every number a user chooses a format by is measured here:

* **latency** per artifact (ONNX / TFLite, each precision) against PyTorch eager, at 1 thread and all cores:
  model load time, first inference, median / p90 / p99 after warm-up, peak RSS and file size. Each measurement
  runs in a fresh child process, so memory and thread pools are not shared between artifacts;
* **album** throughput on 12 MP JPEGs: cskd-runtime (JPEG draft decoding, decode threads, batches) against a naive
  pipeline (full-resolution decode, resize, the same model one photo at a time), with the score difference between
  the two held to the draft-decode tolerance;
* **overhead** of the runtime's call over a bare onnxruntime session / LiteRT interpreter call on the same tensor;
* **accuracy**: score parity of every artifact with PyTorch on a photo set and, given labels, SRCC / PLCC / MSE /
  accuracy per format and precision;
* **scaling** of end-to-end time with album size and with decode threads / processes, extrapolated to a
  100k-photo library;
* **phones**: the Android demo's benchmark mode through adb (and TFLite's ``benchmark_model`` when its binary is
  given), skipped with the reason when no device is attached.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cskd_train.assets import sha256_file as file_sha256

logger = logging.getLogger(__name__)

__all__ = [
    "DRAFT_TOLERANCE", "TARGET_SPEEDUP", "TARGET_OVERHEAD_PCT", "percentiles", "machine_info", "describe_artifact",
    "measure_latency", "make_phone_photos", "naive_pipeline", "runtime_pipeline", "decode_breakdown",
    "album_throughput", "runtime_overhead", "accuracy", "label_metrics", "build_album", "scaling",
    "phone_benchmark", "tflite_benchmark_model_text", "parse_benchmark_model",
]

#: Largest per-photo difference of the mean score (on the 1..10 scale) allowed between a draft-decoded photo and a
#: full decode. The same bound is enforced by ``tests/runtime/test_scorer.py::test_draft_decode_stays_within_tolerance``.
DRAFT_TOLERANCE = 0.02
#: cskd-runtime must score an album at least this many times faster than the naive pipeline.
TARGET_SPEEDUP = 3.0
#: The runtime's call may cost at most this much more (percent) than a bare inference call on the same tensor.
TARGET_OVERHEAD_PCT = 10.0
#: A 12 MP phone photo.
PHONE_SIZE = (4032, 3024)
#: Android demo package and activity (android_demo/).
DEMO_PACKAGE = "org.cskd.demo"
DEMO_ACTIVITY = f"{DEMO_PACKAGE}/.MainActivity"

_PRECISIONS = ("fp32", "fp16", "int8")


# ------------------------------------------------------------------------------------------------- helpers
def percentiles(samples_ms: Sequence[float]) -> dict[str, Any]:
    """Median / p90 / p99 / mean / min / max of timings in ms (linear interpolation between samples)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timing samples")
    return {
        "median_ms": float(np.median(a)),
        "p5_ms": float(np.percentile(a, 5)),
        "p90_ms": float(np.percentile(a, 90)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "std_ms": float(a.std()),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "runs": int(a.size),
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS and the versions of every library on the measured path."""
    cpu = cpu_model()
    physical, mem_gb = None, None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # psutil is optional for this description
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    dists = ("numpy", "pillow", "onnxruntime", "ai-edge-litert", "torch", "timm", "litert-torch", "scipy",
             "cskd-runtime", "cskd")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "physical_cores": physical,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "versions": {d: _dist_version(d) for d in dists},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def describe_artifact(path: Path) -> dict[str, Any]:
    """Format (from the file's content), precision, layout and source of an exported artifact.

    The precision comes from the manifest's export provenance (``cskd-export`` records it), else from the file name
    (``...-int8.tflite``), else from the input dtype.
    """
    from cskd_runtime.backends import open_backend

    backend = open_backend(path, threads=1)
    m = backend.manifest
    export = dict(m.provenance.get("export") or {}) if isinstance(m.provenance, dict) else {}
    precision = export.get("precision")
    if precision not in _PRECISIONS:
        found = re.search(r"(fp32|fp16|int8)", Path(path).name)
        if found:
            precision = found.group(1)
        else:
            precision = {"int8": "int8", "uint8": "int8", "float16": "fp16"}.get(m.input.dtype, "fp32")
    source = export.get("source") or {}
    return {
        "artifact": Path(path).name,
        "path": str(path),
        "format": backend.format,
        "precision": precision,
        "layout": m.input.layout,
        "input_dtype": m.input.dtype,
        "model": f"{m.model.name} {m.model.version}",
        "size_mb": Path(path).stat().st_size / 1e6,
        "source_sha256": source.get("sha256"),
    }


# ------------------------------------------------------------------------------------------- child processes
def _run_child(worker: str, kwargs: dict[str, Any], threads: int | None = None,
               capture_stderr: bool = True) -> subprocess.Popen:
    """Start ``worker(**kwargs)`` of this module in a fresh interpreter (result on stdout after ``RESULT``)."""
    code = (
        "import json, sys\n"
        "from cskd_bench import runtime_bench as rb\n"
        f"print('RESULT' + json.dumps(getattr(rb, {worker!r})(**json.loads(sys.argv[1]))), flush=True)\n"
    )
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(kwargs)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if capture_stderr else None, text=True, env=env)


def _child_result(proc: subprocess.Popen, what: str, timeout: float = 3600.0) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"{what}: child process timed out after {timeout:.0f} s") from None
    line = next((ln for ln in (out or "").splitlines() if ln.startswith("RESULT")), None)
    if proc.returncode != 0 or line is None:
        tail = (err or "").strip()[-1500:] or "(stderr shown above)"
        raise RuntimeError(f"{what}: child process failed (exit {proc.returncode}): {tail}")
    return json.loads(line[len("RESULT"):])


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    On Linux this is ``VmHWM`` of the process's own address space: ``ru_maxrss`` would not do for child processes,
    since the kernel carries the parent's peak over ``fork`` + ``exec`` into it.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 1024.0)


# ------------------------------------------------------------------------------------------------- latency
def worker_latency(kind: str, path: str, threads: int, runs: int, warmup: int) -> dict[str, Any]:
    """Runs inside a fresh child process: imports, load, first run, warm-up, timed runs, peak RSS."""
    t_imp = time.perf_counter()
    if kind == "torch":
        import torch

        torch.set_num_threads(threads)
        from cskd_train.model import model_from_checkpoint
    else:
        from cskd_runtime.backends import open_backend
        from cskd_runtime.preprocess import cast_input

        if kind == "onnx":
            import onnxruntime  # noqa: F401
        else:
            from ai_edge_litert import interpreter  # noqa: F401
    import_ms = (time.perf_counter() - t_imp) * 1e3
    rss_imports = _peak_rss_mb()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    if kind == "torch":
        model, manifest = model_from_checkpoint(path)
        x = torch.from_numpy(rng.standard_normal(manifest.input.shape(1)).astype(np.float32))

        def run() -> None:
            with torch.inference_mode():
                model(x)
    else:
        backend = open_backend(path, threads=threads)
        xin = cast_input(rng.standard_normal(backend.manifest.input.shape(1)).astype(np.float32),
                         backend.manifest.input)

        def run() -> None:
            backend.run_raw(xin)
    load_ms = (time.perf_counter() - t0) * 1e3
    t1 = time.perf_counter()
    run()
    first_ms = (time.perf_counter() - t1) * 1e3
    t2 = time.perf_counter()
    for _ in range(warmup):
        run()
    warmup_avg_ms = (time.perf_counter() - t2) * 1e3 / max(1, warmup)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t) * 1e3)
    return {"import_ms": import_ms, "load_ms": load_ms, "first_ms": first_ms, **percentiles(samples),
            "warmup": warmup, "warmup_avg_ms": warmup_avg_ms, "peak_rss_mb": _peak_rss_mb(),
            "rss_after_imports_mb": rss_imports}


def measure_latency(kind: str, path: Path, threads: int, runs: int = 100, warmup: int = 20,
                    info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Latency of one artifact (``kind`` = onnx, tflite or torch) at ``threads`` threads, in a fresh process."""
    proc = _run_child("worker_latency", {"kind": kind, "path": str(path), "threads": int(threads), "runs": int(runs),
                                         "warmup": int(warmup)}, threads=threads)
    out = _child_result(proc, f"latency of {Path(path).name} ({threads} thread(s))", timeout=1800)
    meta = dict(info or {})
    if kind == "torch":
        meta.update(artifact=Path(path).name, format="torch", precision="fp32", size_mb=Path(path).stat().st_size / 1e6)
    out.update({k: meta.get(k) for k in ("artifact", "format", "precision", "size_mb")}, kind=kind, threads=int(threads))
    return out


# --------------------------------------------------------------------------------------------------- album
def make_phone_photos(sources: Sequence[Path], out_dir: Path, count: int, size: tuple[int, int] = PHONE_SIZE,
                      quality: int = 90, grain: float = 6.0, rotated_every: int = 4) -> list[Path]:
    """12 MP JPEGs made from real photos: random crop, upscale, sensor-like grain, EXIF orientation on some.

    Upscaled photos alone are unrealistically smooth (~0.4 MB, decoding far faster than a real 12 MP JPEG, whose
    cost is dominated by entropy decoding). Luma grain of ``grain`` grey levels brings the file to ~2.5 MB at
    quality 90, like a phone photo. Every ``rotated_every``-th photo is a portrait shot stored sideways with EXIF
    orientation 6, as many phones write them. Made once per parameter set and cached in ``out_dir``.
    """
    from PIL import Image, ImageOps

    if not sources:
        raise ValueError("no source photos to make phone-sized photos from")
    folder = out_dir / f"phone_{size[0]}x{size[1]}_q{quality}_g{grain:g}_r{rotated_every}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    todo = [i for i in range(count) if not (folder / f"phone_{i:04d}.jpg").exists()]
    if todo:
        logger.info("making %d phone-sized (%dx%d) JPEGs in %s", len(todo), size[0], size[1], folder)
    for i in range(count):
        p = folder / f"phone_{i:04d}.jpg"
        paths.append(p)
        if p.exists():
            continue
        rng = np.random.default_rng(1000 + i)
        with Image.open(sources[i % len(sources)]) as src:
            img = ImageOps.exif_transpose(src).convert("RGB")
        # A different crop of each source per cycle, so repeated sources still give distinct photos.
        f = rng.uniform(0.8, 1.0)
        cw, ch = max(1, int(img.width * f)), max(1, int(img.height * f))
        left, top = int(rng.integers(0, img.width - cw + 1)), int(rng.integers(0, img.height - ch + 1))
        img = img.crop((left, top, left + cw, top + ch))
        if (i // len(sources)) % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        rotated = rotated_every > 0 and i % rotated_every == rotated_every - 1
        portrait = rotated or img.height > img.width
        w, h = (size[1], size[0]) if portrait else size
        img = img.resize((w, h), Image.Resampling.BICUBIC)
        if grain > 0:
            a = np.asarray(img, dtype=np.float32)
            a = a + rng.normal(0.0, grain, size=(h, w, 1)).astype(np.float32)
            img = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "RGB")
        exif = Image.Exif()
        if rotated:
            # Stored sideways: the decoder's EXIF transpose (rotate 90 clockwise) gives back the upright portrait.
            img = img.transpose(Image.Transpose.ROTATE_90)
            exif[0x0112] = 6
        tmp = p.with_suffix(".tmp")
        img.save(tmp, "JPEG", quality=quality, exif=exif)
        os.replace(tmp, p)
    return paths


def describe_photos(paths: Sequence[Path]) -> dict[str, Any]:
    """Size, format, mean file size and share of EXIF-rotated photos of a photo set."""
    from PIL import Image

    sizes, rotated, dims, mp = [], 0, set(), []
    for p in paths:
        with Image.open(p) as im:
            dims.add(f"{im.width}x{im.height}")
            mp.append(im.width * im.height / 1e6)
            rotated += int(im.getexif().get(0x0112, 1) not in (1, None))
            fmt = im.format
        sizes.append(Path(p).stat().st_size / 1e6)
    return {"count": len(paths), "pixels": sorted(dims), "format": fmt if paths else None,
            "mean_file_mb": float(np.mean(sizes)) if sizes else 0.0, "exif_rotated": rotated,
            "megapixels": float(np.mean(mp)) if mp else 0.0,
            "text": f"{'/'.join(sorted(dims))} {fmt}, {np.mean(sizes):.1f} MB on average, "
                    f"{rotated} of {len(paths)} EXIF-rotated" if paths else "none"}


def _bare_runner(model_path: Path, threads: int | None) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    """The model's manifest and a bare inference function (onnxruntime session / LiteRT interpreter)."""
    from cskd_runtime.backends import detect_format, open_backend

    manifest = open_backend(model_path, threads=1).manifest
    if detect_format(model_path) == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return manifest, lambda x: sess.run(None, {name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path), num_threads=threads)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.allocate_tensors()

    def run(x: np.ndarray) -> np.ndarray:
        if tuple(inp["shape"]) != x.shape:
            interp.resize_tensor_input(inp["index"], list(x.shape))
            interp.allocate_tensors()
            inp["shape"] = np.asarray(x.shape)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"])

    return manifest, run


def naive_pipeline(model_path: Path, photos: Sequence[Path], threads: int | None = None) -> tuple[np.ndarray, float]:
    """What most apps write first: full-resolution decode, EXIF transpose, resize, normalise, one photo per call.

    It follows the model's contract (same resize, crop, normalisation and inference library), so the only
    differences from cskd-runtime are the full decode, no decode threads and no batching.

    Returns:
        (mean scores, seconds spent on the photos; model loading excluded).
    """
    from PIL import Image, ImageOps

    from cskd_runtime.backends.base import postprocess
    from cskd_runtime.preprocess import cast_input, normalize, resize_and_crop, to_layout

    manifest, run = _bare_runner(model_path, threads)
    spec, bins = manifest.input, np.asarray(manifest.output.bins)
    scores = []
    t0 = time.perf_counter()
    for p in photos:
        with Image.open(p) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
        x = to_layout(normalize(np.asarray(resize_and_crop(img, spec)), spec), spec.layout)
        prob = postprocess(run(cast_input(x, spec)), manifest.output)[0]
        scores.append(float(prob.astype(np.float64) @ bins))
    return np.asarray(scores), time.perf_counter() - t0


def runtime_pipeline(model_path: Path, photos: Sequence[Path], threads: int | None = None,
                     workers: int | None = None, batch_size: int = 16, progress: bool = False
                     ) -> tuple[np.ndarray, float]:
    """cskd-runtime's album path (``Scorer.iter_scores``) with its defaults unless told otherwise.

    Returns:
        (mean scores, seconds spent on the photos; model loading excluded).

    Raises:
        RuntimeError: naming the first photo the runtime could not score.
    """
    from cskd_runtime import Scorer

    scorer = Scorer(model_path, threads=threads, workers=workers)
    it = scorer.iter_scores(photos, batch_size=batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(photos), desc="album", unit="photo", mininterval=2.0)
    t0 = time.perf_counter()
    out = list(it)
    dt = time.perf_counter() - t0
    bad = [o for o in out if not o.ok]
    if bad:
        raise RuntimeError(f"cskd-runtime failed on {bad[0].source}: {bad[0].reason}")
    return np.asarray([o.mean for o in out]), dt


def decode_breakdown(photos: Sequence[Path], spec: Any, limit: int = 6) -> dict[str, float]:
    """Median single-thread ms per photo: full decode, full decode + resize, the runtime's preprocessing."""
    from PIL import Image, ImageOps

    from cskd_runtime.preprocess import preprocess, resize_and_crop

    full, full_resize, draft = [], [], []
    for p in list(photos)[:limit]:
        t = time.perf_counter()
        with Image.open(p) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
        full.append(time.perf_counter() - t)
        resize_and_crop(img, spec)
        full_resize.append(time.perf_counter() - t)
        t = time.perf_counter()
        preprocess(p, spec)
        draft.append(time.perf_counter() - t)
    med = lambda v: statistics.median(v) * 1e3  # noqa: E731
    return {"full_decode_ms": med(full), "full_decode_resize_ms": med(full_resize),
            "draft_decode_resize_ms": med(draft), "photos": len(full)}


def album_throughput(model_path: Path, photos: Sequence[Path], repeats: int = 3,
                     tolerance: float = DRAFT_TOLERANCE) -> dict[str, Any]:
    """Images/s of cskd-runtime vs the naive pipeline on the same photos (best of ``repeats``, alternating).

    Both use the library's default inference threads (all cores); the runtime also uses its default decode
    threads and batch size. Scores of the two are compared photo by photo: the runtime draft-decodes, the naive
    pipeline decodes in full, so their difference is the draft-decoding error, held to ``tolerance``.
    """
    from cskd_runtime import Scorer

    for p in photos:  # Page cache first: neither pipeline should pay the disk for the other.
        Path(p).read_bytes()
    scorer = Scorer(model_path)
    naive_t, rt_t = [], []
    naive = rt = np.zeros(0)
    for _ in range(max(1, repeats)):
        naive, t = naive_pipeline(model_path, photos)
        naive_t.append(t)
        rt, t = runtime_pipeline(model_path, photos)
        rt_t.append(t)
    n = len(photos)
    delta = np.abs(rt - naive)
    speedup = min(naive_t) / min(rt_t)
    return {
        "artifact": Path(model_path).name,
        "photos": n,
        "photo_set": describe_photos(photos),
        "naive": {"images_per_s": n / min(naive_t), "seconds": naive_t,
                  "config": "full decode, EXIF transpose, resize, one photo per call, library default threads"},
        "runtime": {"images_per_s": n / min(rt_t), "seconds": rt_t,
                    "config": f"cskd-runtime Scorer defaults: draft decode (draft_factor "
                              f"{scorer.manifest.input.draft_factor:g}), {scorer.workers} decode threads, "
                              "batches of 16, library default threads"},
        "speedup": speedup,
        "target_speedup": TARGET_SPEEDUP,
        "speedup_pass": bool(speedup >= TARGET_SPEEDUP),
        "max_abs_score_delta": float(delta.max()),
        "mean_abs_score_delta": float(delta.mean()),
        "mean_score_runtime": float(rt.mean()),
        "mean_score_naive": float(naive.mean()),
        "tolerance": tolerance,
        "within_tolerance": bool(delta.max() <= tolerance),
        "pass": bool(speedup >= TARGET_SPEEDUP and delta.max() <= tolerance),
        "decode_breakdown": decode_breakdown(photos, scorer.manifest.input),
        "per_photo": [{"photo": Path(p).name, "naive": float(a), "runtime": float(b)} for p, a, b in zip(photos, naive, rt)],
    }


# ------------------------------------------------------------------------------------------------ overhead
def runtime_overhead(model_path: Path, threads: int = 1, runs: int = 200, warmup: int = 20) -> dict[str, Any]:
    """The runtime's call (``Scorer.score_tensor``: input cast/quantization, inference, softmax/dequantization,
    score statistics) against a bare onnxruntime ``session.run`` / LiteRT ``invoke`` on the same tensor.

    Both use the same loaded session / interpreter; the bare call gets the tensor already in the artifact's input
    dtype. The calls alternate, and the overhead is the median of the paired differences (runtime call minus the
    bare call just before it) over the median bare call: on a shared CPU, load bursts hit both calls of a pair
    alike, which makes this estimate far steadier than the difference of two medians (also reported).
    """
    from cskd_runtime import Scorer
    from cskd_runtime.preprocess import cast_input

    scorer = Scorer(model_path, threads=threads)
    backend = scorer.backend
    spec = scorer.manifest.input
    x = np.random.default_rng(1).standard_normal(spec.shape(1)).astype(np.float32)
    xc = cast_input(x, spec)
    if backend.format == "onnx":
        sess = backend.session
        name = sess.get_inputs()[0].name

        def bare() -> Any:
            return sess.run(None, {name: xc})
    else:
        interp = backend.interpreter
        i_in, i_out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

        def bare() -> Any:
            interp.set_tensor(i_in, xc)
            interp.invoke()
            return interp.get_tensor(i_out)

    for _ in range(warmup):
        bare()
        scorer.score_tensor(x)
    b_t, f_t, c_t = [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        bare()
        b_t.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        scorer.score_tensor(x)
        f_t.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        cast_input(x, spec)
        c_t.append((time.perf_counter() - t) * 1e3)
    b, f = statistics.median(b_t), statistics.median(f_t)
    paired = float(np.median(np.asarray(f_t) - np.asarray(b_t)))
    pct = 100.0 * paired / b
    return {"artifact": Path(model_path).name, "format": backend.format, "threads": threads, "runs": runs,
            "input_dtype": spec.dtype, "bare_median_ms": b, "runtime_median_ms": f,
            "bare_p90_ms": float(np.percentile(b_t, 90)), "runtime_p90_ms": float(np.percentile(f_t, 90)),
            "input_cast_median_ms": statistics.median(c_t), "overhead_ms": float(paired), "overhead_pct": pct,
            "overhead_pct_of_medians": 100.0 * (f - b) / b,
            "target_pct": TARGET_OVERHEAD_PCT, "pass": bool(pct <= TARGET_OVERHEAD_PCT)}


# ------------------------------------------------------------------------------------------------ accuracy
def label_metrics(pred: np.ndarray, true: np.ndarray, cutoff: float = 5.0) -> dict[str, Any]:
    """SRCC / PLCC / MSE / binary accuracy at ``cutoff`` (training's metrics when cskd_train has them)."""
    try:
        from cskd_train.metrics import compute_metrics
    except ImportError:
        compute_metrics = None
    if compute_metrics is not None:
        m = compute_metrics(np.asarray(pred, np.float64), np.asarray(true, np.float64), cutoff=cutoff)
        return {k: m.get(k) for k in ("n", "srcc", "plcc", "mse", "accuracy")}
    from scipy import stats

    p, y = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    ok = p.size >= 2 and np.ptp(p) > 0 and np.ptp(y) > 0
    return {
        "n": int(p.size),
        "srcc": float(stats.spearmanr(p, y)[0]) if ok else None,
        "plcc": float(stats.pearsonr(p, y)[0]) if ok else None,
        "mse": float(np.mean((p - y) ** 2)) if p.size else None,
        "accuracy": float(np.mean((p > cutoff) == (y > cutoff))) if p.size else None,
    }


def _label_for(photo: Path, labels: dict[str, float]) -> float:
    for key in (str(photo), Path(photo).name, Path(photo).stem):
        if key in labels:
            return labels[key]
    return float("nan")


def accuracy(artifacts: Sequence[dict[str, Any]], checkpoint: Path | None, photos: Sequence[Path],
             labels: dict[str, float] | None = None) -> dict[str, Any]:
    """Per artifact: score parity with PyTorch on the same photos and, with labels, SRCC / PLCC / MSE / accuracy.

    Both sides preprocess with the runtime's contract (the same decoded pixels), so the differences are the
    conversion's and the precision's alone.

    Args:
        artifacts: :func:`describe_artifact` dicts.
        checkpoint: The PyTorch reference (None: parity columns are left out).
        photos: Photos to score.
        labels: Ground-truth mean score per photo path or name.
    """
    from scipy import stats

    from cskd_runtime import Scorer

    rows: list[dict[str, Any]] = []
    y = ok = None
    if labels:
        y = np.asarray([_label_for(p, labels) for p in photos], np.float64)
        ok = np.isfinite(y)
        if ok.sum() < 3:
            logger.warning("labels match only %d of %d photos; label metrics need at least 3", ok.sum(), len(photos))
            y = None
    ref = ref_dist = None
    ck_sha = None
    if checkpoint is not None:
        import torch

        from cskd_runtime.preprocess import preprocess
        from cskd_train.model import model_from_checkpoint

        model, manifest = model_from_checkpoint(checkpoint)
        ck_sha = file_sha256(Path(checkpoint))
        with torch.inference_mode():
            ref_dist = np.concatenate([model(torch.from_numpy(preprocess(p, manifest.input))).numpy() for p in photos])
        ref = ref_dist.astype(np.float64) @ np.asarray(manifest.output.bins)
        row: dict[str, Any] = {"artifact": Path(checkpoint).name, "format": "torch", "precision": "fp32",
                               "photos": len(photos), "mean_score": float(ref.mean())}
        if y is not None:
            row["labels"] = label_metrics(ref[ok], y[ok])
        rows.append(row)
    for art in artifacts:
        outcomes = Scorer(art["path"]).score_batch(list(photos))
        bad = [o for o in outcomes if not o.ok]
        if bad:
            raise RuntimeError(f"{art['artifact']}: cannot score {bad[0].source}: {bad[0].reason}")
        s = np.asarray([o.mean for o in outcomes], np.float64)
        row = {"artifact": art["artifact"], "format": art["format"], "precision": art["precision"],
               "photos": len(photos), "mean_score": float(s.mean())}
        if ref is not None:
            dist = np.asarray([o.distribution for o in outcomes], np.float64)
            const = np.ptp(s) == 0 or np.ptp(ref) == 0
            row["vs_torch"] = {
                "max_abs_delta": float(np.abs(s - ref).max()),
                "mean_abs_delta": float(np.abs(s - ref).mean()),
                "max_abs_prob_delta": float(np.abs(dist - ref_dist).max()),
                "srcc": None if const or len(s) < 2 else float(stats.spearmanr(s, ref)[0]),
                "plcc": None if const or len(s) < 2 else float(stats.pearsonr(s, ref)[0]),
            }
            if art.get("source_sha256") and ck_sha:
                row["vs_torch"]["same_checkpoint"] = art["source_sha256"] == ck_sha
                if art["source_sha256"] != ck_sha:
                    logger.warning("%s was exported from a different checkpoint (sha256 %s..., given %s...): parity "
                                   "numbers compare different models", art["artifact"], art["source_sha256"][:12],
                                   ck_sha[:12])
        if y is not None:
            row["labels"] = label_metrics(s[ok], y[ok])
        rows.append(row)
    return {"photos": len(photos), "photo_names": [Path(p).name for p in photos],
            "labels": int(ok.sum()) if y is not None else 0, "rows": rows}


# ------------------------------------------------------------------------------------------------- scaling
def build_album(pool: Sequence[Path], n: int, folder: Path) -> list[Path]:
    """An album of ``n`` photos as symbolic links cycling through ``pool`` (disk use stays that of the pool)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"IMG_{i:06d}.jpg"
        target = Path(pool[i % len(pool)]).resolve()
        if p.is_symlink() and Path(os.readlink(p)) != target:
            p.unlink()
        if not p.is_symlink():
            os.symlink(target, p)
        paths.append(p)
    return paths


def worker_album(model: str, list_file: str, start: int, count: int, threads: int | None, workers: int | None,
                 batch_size: int, progress: bool) -> dict[str, Any]:
    """Runs in a child process: score ``count`` photos of ``list_file`` from ``start`` through cskd-runtime."""
    t0 = time.perf_counter()
    from cskd_runtime import Scorer

    paths = Path(list_file).read_text().splitlines()[start : start + count]
    scorer = Scorer(model, threads=threads, workers=workers)
    load_s = time.perf_counter() - t0
    it = scorer.iter_scores(paths, batch_size=batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(paths), desc=f"album of {len(paths)}", unit="photo", mininterval=5.0)
    t1 = time.perf_counter()
    failed = sum(1 for o in it if not o.ok)
    return {"photos": len(paths), "failed": failed, "seconds": time.perf_counter() - t1, "startup_s": load_s,
            "peak_rss_mb": _peak_rss_mb(), "workers": scorer.workers}


def run_album(model: Path, list_file: Path, n: int, processes: int = 1, threads: int | None = None,
              workers: int | None = None, batch_size: int = 16, progress: bool = False) -> dict[str, Any]:
    """Score the first ``n`` photos of ``list_file`` split across ``processes`` fresh processes.

    ``wall_s`` runs from starting the processes to the last one finishing (interpreter start and model loading
    included, as a user running it would see); ``seconds`` is the longest child's scoring time alone.
    """
    shards = [(k * n // processes, (k + 1) * n // processes - k * n // processes) for k in range(processes)]
    t0 = time.perf_counter()
    procs = [_run_child("worker_album", {"model": str(model), "list_file": str(list_file), "start": s, "count": c,
                                         "threads": threads, "workers": workers, "batch_size": batch_size,
                                         "progress": progress and k == 0},
                        threads=threads, capture_stderr=not progress) for k, (s, c) in enumerate(shards)]
    results = [_child_result(p, f"album of {n} photos ({processes} process(es))") for p in procs]
    wall = time.perf_counter() - t0
    failed = sum(r["failed"] for r in results)
    if failed:
        raise RuntimeError(f"{failed} of {n} album photos failed to score (see the log)")
    seconds = max(r["seconds"] for r in results)
    return {"photos": n, "processes": processes, "threads": threads, "workers": results[0]["workers"],
            "wall_s": wall, "seconds": seconds, "images_per_s_wall": n / wall, "images_per_s": n / seconds,
            "startup_s": max(r["startup_s"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}


def scaling(model_path: Path, pool: Sequence[Path], sizes: Sequence[int], work_dir: Path, sweep_photos: int,
            workers: Sequence[int] = (1, 2, 4), processes: Sequence[int] = (2,),
            naive_images_per_s: float | None = None, progress: bool = True) -> dict[str, Any]:
    """End-to-end time against album size and against decode threads / processes, with a 100k extrapolation.

    Album sizes run with the runtime's defaults, one process each. The sweep scores ``sweep_photos`` photos per
    configuration: one process with each number of decode threads, then several processes sharing the cores.
    """
    sizes = sorted(int(s) for s in sizes)
    n_max = max(sizes + [sweep_photos])
    paths = build_album(pool, n_max, work_dir / "album")
    list_file = work_dir / "album.txt"
    list_file.write_text("\n".join(str(p) for p in paths) + "\n")
    cores = os.cpu_count() or 1
    by_size = []
    for n in sizes:
        logger.info("scaling: album of %d photos (runtime defaults)", n)
        r = run_album(model_path, list_file, n, progress=progress)
        r["ms_per_photo"] = 1e3 * r["seconds"] / n
        by_size.append(r)
    sweep = []
    for w in workers:
        logger.info("scaling: %d photos, 1 process, %d decode thread(s)", sweep_photos, w)
        sweep.append(run_album(model_path, list_file, sweep_photos, processes=1, workers=w))
    for p in processes:
        if p <= 1:
            continue
        each = max(1, cores // p)
        logger.info("scaling: %d photos, %d processes x %d thread(s)", sweep_photos, p, each)
        sweep.append(run_album(model_path, list_file, sweep_photos, processes=p, threads=each, workers=each))
    last = by_size[-1]
    best = max(sweep, key=lambda r: r["images_per_s_wall"]) if sweep else None
    out: dict[str, Any] = {
        "artifact": Path(model_path).name,
        "pool": describe_photos(pool),
        "by_album_size": by_size,
        "sweep": sweep,
        "linearity": (by_size[-1]["ms_per_photo"] / by_size[0]["ms_per_photo"]) if len(by_size) > 1 else None,
        "extrapolation": {
            "photos": 100_000,
            "method": f"linear: 100000 / ({last['images_per_s']:.2f} images/s measured on the {last['photos']}-photo "
                      "album with the runtime's defaults)",
            "minutes_default": 100_000 / last["images_per_s"] / 60.0,
        },
    }
    if best is not None:
        out["extrapolation"]["best_config"] = {k: best[k] for k in ("processes", "threads", "workers")}
        out["extrapolation"]["minutes_best_config"] = 100_000 / best["images_per_s_wall"] / 60.0
    if naive_images_per_s:
        out["extrapolation"]["minutes_naive"] = 100_000 / naive_images_per_s / 60.0
    return out


# -------------------------------------------------------------------------------------------------- phones
def _adb(adb: str, *args: str, serial: str | None = None, timeout: float = 120.0) -> subprocess.CompletedProcess:
    cmd = [adb] + (["-s", serial] if serial else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """Numbers from TFLite ``benchmark_model`` output (init / first / warm-up / average in ms, memory in MB)."""
    out: dict[str, Any] = {}
    m = re.search(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
                  r"Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)", text)
    if m:
        out.update(init_ms=float(m.group(1)) / 1e3, first_ms=float(m.group(2)) / 1e3,
                   warmup_avg_ms=float(m.group(3)) / 1e3, avg_ms=float(m.group(4)) / 1e3)
    for key in ("p5", "median", "p95", "std"):
        # benchmark_model prints "... min=... max=... avg=... std=... p5=... median=... p95=..." (microseconds).
        found = re.findall(rf"\b{key}=([\d.]+)", text)
        if found:
            out[f"{key}_ms"] = float(found[-1]) / 1e3
    m = re.search(r"Memory footprint delta from the start of the tool \(MB\): init=([\d.]+) overall=([\d.]+)", text)
    if m:
        out.update(memory_init_mb=float(m.group(1)), memory_overall_mb=float(m.group(2)))
    return out


def _phone_device(adb: str, serial: str, iterations: int, warmup: int, timeout_s: float, apk: Path | None,
                  benchmark_model: Path | None, tflite: Sequence[Path], threads: int) -> dict[str, Any]:
    prop = lambda k: _adb(adb, "shell", "getprop", k, serial=serial).stdout.strip()  # noqa: E731
    dev: dict[str, Any] = {"serial": serial, "model": prop("ro.product.model"),
                           "manufacturer": prop("ro.product.manufacturer"), "android": prop("ro.build.version.release"),
                           "abi": prop("ro.product.cpu.abi"), "soc": prop("ro.soc.model") or None}
    if apk is not None:
        r = _adb(adb, "install", "-r", str(apk), serial=serial, timeout=300)
        if r.returncode != 0:
            return {**dev, "status": "failed", "reason": f"adb install {apk} failed: {(r.stderr or r.stdout).strip()}"}
    installed = _adb(adb, "shell", "pm", "path", DEMO_PACKAGE, serial=serial)
    if installed.returncode != 0 or "package:" not in installed.stdout:
        return {**dev, "status": "skipped", "reason": f"{DEMO_PACKAGE} is not installed on this device; pass --apk "
                "with the demo APK (android_demo/, see its README) or `adb install` it first"}
    demo: dict[str, Any]
    _adb(adb, "shell", "run-as", DEMO_PACKAGE, "rm", "-f", "files/benchmark.json", serial=serial)
    r = _adb(adb, "shell", "am", "start", "-W", "-S", "-n", DEMO_ACTIVITY, "--ez", "benchmark", "true", "--ei",
             "iterations", str(iterations), "--ei", "warmup", str(warmup), serial=serial)
    if r.returncode != 0 or "Error" in r.stdout:
        demo = {"status": "failed", "reason": f"am start failed: {(r.stderr or r.stdout).strip()}"}
    else:
        demo = {"status": "failed", "reason": f"no files/benchmark.json from {DEMO_PACKAGE} after {timeout_s:.0f} s"}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            res = _adb(adb, "shell", "run-as", DEMO_PACKAGE, "cat", "files/benchmark.json", serial=serial)
            text = res.stdout.strip()
            if res.returncode == 0 and text.startswith("{"):
                try:
                    demo = json.loads(text)
                    demo.setdefault("status", "ok")
                    break
                except json.JSONDecodeError:
                    pass  # still being written
            time.sleep(2.0)
    dev["demo"] = demo
    bm: list[dict[str, Any]] = []
    if benchmark_model is None:
        dev["benchmark_model"] = {"status": "skipped", "reason": "no --benchmark-model binary given (the prebuilt "
                                  "android_aarch64 benchmark_model of LiteRT/TensorFlow releases)"}
    else:
        remote_bin = "/data/local/tmp/benchmark_model"
        _adb(adb, "push", str(benchmark_model), remote_bin, serial=serial)
        _adb(adb, "shell", "chmod", "755", remote_bin, serial=serial)
        for t in tflite:
            remote = f"/data/local/tmp/{Path(t).name}"
            _adb(adb, "push", str(t), remote, serial=serial, timeout=300)
            r = _adb(adb, "shell", remote_bin, f"--graph={remote}", f"--num_threads={threads}",
                     f"--num_runs={iterations}", f"--warmup_runs={warmup}", serial=serial, timeout=600)
            text = r.stdout + r.stderr
            bm.append({"artifact": Path(t).name, "threads": threads, **parse_benchmark_model(text),
                       "output": text[-4000:], "status": "ok" if r.returncode == 0 else "failed"})
        dev["benchmark_model"] = {"status": "ok", "runs": bm}
    dev["status"] = demo.get("status", "ok")
    return dev


def phone_benchmark(apk: Path | None = None, iterations: int = 50, warmup: int = 20, adb: str | None = None,
                    benchmark_model: Path | None = None, tflite: Sequence[Path] = (), threads: int = 4,
                    timeout_s: float = 300.0) -> dict[str, Any]:
    """The Android demo's benchmark mode on every attached phone, through adb.

    Per device: install ``apk`` (when given), start ``org.cskd.demo/.MainActivity`` with ``--ez benchmark true --ei
    iterations N --ei warmup W`` (the desktop protocol: W untimed runs, then N timed), wait for
    ``files/benchmark.json`` (read with ``run-as``), and with ``benchmark_model`` push and
    run TFLite's benchmark tool on every ``.tflite``. Never raises for a missing tool or device: the result says
    ``skipped`` and why.
    """
    adb = adb if adb is not None else (os.environ.get("ADB") or shutil.which("adb"))
    if not adb or (not Path(adb).exists() and shutil.which(adb) is None):
        return {"status": "skipped", "reason": "adb not found (install it: apt-get install adb, or set ADB=/path/to/"
                "adb); attach a phone with USB debugging on to measure phones"}
    try:
        r = _adb(adb, "devices", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"status": "skipped", "reason": f"adb devices failed ({exc})"}
    states = [ln.split()[:2] for ln in r.stdout.splitlines()[1:] if len(ln.split()) >= 2]
    ready = [s for s, st in states if st == "device"]
    others = [f"{s} ({st})" for s, st in states if st != "device"]
    if not ready:
        extra = f"; not usable: {', '.join(others)} (accept the USB debugging prompt)" if others else ""
        return {"status": "skipped", "reason": f"no Android device attached (adb devices lists none ready){extra}"}
    devices = []
    for serial in ready:
        logger.info("phone benchmark on %s", serial)
        try:
            devices.append(_phone_device(adb, serial, iterations, warmup, timeout_s, apk, benchmark_model, tflite, threads))
        except (OSError, subprocess.TimeoutExpired) as exc:
            devices.append({"serial": serial, "status": "failed", "reason": str(exc)})
    ok = any(d.get("status") == "ok" for d in devices)
    return {"status": "ok" if ok else devices[0].get("status", "failed"),
            "reason": "; ".join(f"{d['serial']}: {d.get('reason') or d.get('demo', {}).get('reason', '')}"
                                for d in devices if d.get("status") != "ok") or None,
            "iterations": iterations, "devices": devices}


def tflite_benchmark_model_text(row: dict[str, Any]) -> str:
    """A desktop latency row written the way TFLite's ``benchmark_model`` reports (times in microseconds)."""
    us = lambda ms: int(round(ms * 1000))  # noqa: E731
    return (
        f"Graph: [{row['artifact']}]\n"
        f"#threads used: [{row['threads']}]\n"
        f"Loaded model {row['artifact']}\n"
        f"The input model file size (MB): {row['size_mb']:.4f}\n"
        f"Initialized session in {row['load_ms']:.3f}ms.\n"
        f"Running benchmark for at least {row['warmup']} iterations and at least 0.5 seconds but terminate if "
        f"exceeding 150 seconds.\n"
        f"count={row['runs']} first={us(row['first_ms'])} curr={us(row['median_ms'])} min={us(row['min_ms'])} "
        f"max={us(row['max_ms'])} avg={row['mean_ms'] * 1000:.1f} std={us(row['std_ms'])} p5={us(row['p5_ms'])} "
        f"median={us(row['median_ms'])} p95={us(row['p95_ms'])}\n"
        f"Inference timings in us: Init: {us(row['load_ms'])}, First inference: {us(row['first_ms'])}, "
        f"Warmup (avg): {row['warmup_avg_ms'] * 1000:.1f}, Inference (avg): {row['mean_ms'] * 1000:.1f}\n"
        f"Memory footprint delta from the start of the tool (MB): "
        f"init={row['peak_rss_mb'] - row['rss_after_imports_mb']:.3f} "
        f"overall={row['peak_rss_mb']:.3f}\n"
    )

