"""Export one artifact at a time: write under a temporary name, gate it, and only then give it its real name.

For every job (a target in a precision) and every recipe on its ladder (one for float precisions, the INT8
fallbacks in order for INT8):

1. the target module writes the artifact to a hidden ``.NAME.partial-XXXX`` path in the output folder;
2. the parity gate runs it end to end on the parity photos and compares with PyTorch;
3. passed: it is renamed to its final name (atomic ``os.replace``), its latency is measured;
   failed: the partial file is deleted (or moved to ``rejected/`` with ``keep_failed``), and the next recipe is
   tried. When nothing passes, a stale artifact of the same name from an earlier run is removed as well, so the
   folder never holds a file that looks shippable but was not verified in this run.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .calibration import CalibrationSet
from .common import ExportContext, file_sha256
from .parity import ParityImage, Tolerances, gate, run_parity, runtime_runner
from .targets import Job, recipes_for

__all__ = ["Attempt", "ArtifactResult", "load_source", "artifact_name", "export_job", "measure_latency"]

logger = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One try at an artifact (one recipe)."""

    recipe: str | None
    numbers: dict[str, Any]
    failures: list[str]
    seconds: float
    check_method: str = ""


@dataclass
class ArtifactResult:
    """What happened to one job; one row of the report."""

    target: str
    precision: str
    status: str  # "passed" | "failed"
    file: str | None
    size_mb: float | None
    numbers: dict[str, Any]
    tolerances: dict[str, float]
    recipe: str | None
    check_method: str
    latency_ms: float | None
    latency_note: str
    export_seconds: float
    message: str
    attempts: list[Attempt] = field(default_factory=list)
    notes: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_source(checkpoint: str | os.PathLike, calibration: CalibrationSet | None = None) -> ExportContext:
    """Rebuild the model and its manifest from a cskd checkpoint.

    Raises:
        FileNotFoundError / ValueError: naming the checkpoint and the problem.
    """
    from cskd_train.model import model_from_checkpoint

    path = Path(checkpoint)
    model, manifest = model_from_checkpoint(path)
    if manifest.input.layout != "NCHW" or manifest.input.dtype != "float32":
        # The checkpoint's manifest describes the PyTorch model; each target sets its own layout and dtype.
        manifest = manifest.replace(input={"layout": "NCHW", "dtype": "float32", "quantization": None})
    # Every artifact has a fixed height and width, so timm's run-time "same" padding becomes constant padding:
    # simpler graphs for all targets, and the only form coremltools converts (checked equal to the original).
    from .static_pad import freeze_same_padding

    model = freeze_same_padding(model.float().eval(), manifest.input.height, manifest.input.width)
    return ExportContext(model=model, manifest=manifest, calibration=calibration or CalibrationSet(),
                         source={"checkpoint": str(path), "sha256": file_sha256(path)})


def artifact_name(ctx: ExportContext, job: Job) -> str:
    """``<model name>-<precision><suffix>``, with the model name made file-system safe."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", ctx.manifest.model.name).strip("-.") or "cskd-model"
    return f"{stem}-{job.precision}{job.target.suffix}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _install(tmp: Path, final: Path) -> None:
    """Move a verified artifact to its final name. Files: atomic replace. Packages (directories): the old one is
    moved aside first, since a directory cannot atomically replace a non-empty one."""
    if tmp.is_dir():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        if final.is_dir():
            _remove(final)
        os.replace(tmp, final)


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return path.stat().st_size / 1e6


def measure_latency(path: Path, threads: int = 1, runs: int = 30, warmup: int = 3) -> tuple[float | None, str]:
    """Median single-image latency (ms) of an ONNX/TFLite artifact through the runtime backend."""
    from cskd_runtime.backends import open_backend
    from cskd_runtime.preprocess import cast_input

    backend = open_backend(path, threads=threads)
    x = cast_input(np.random.default_rng(0).standard_normal(backend.manifest.input.shape(1)).astype(np.float32),
                   backend.manifest.input)
    for _ in range(warmup):
        backend.run_raw(x)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        backend.run_raw(x)
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples), f"median of {runs}, {threads} thread(s), batch 1"


def _coreml_latency(path: Path, runs: int = 10) -> tuple[float | None, str]:
    if sys.platform != "darwin":
        return None, "not measured: Core ML runs only on Apple systems"
    import coremltools as ct

    from .embed import read_manifest

    model = ct.models.MLModel(str(path))
    spec = read_manifest(path).input
    x = {"image": np.zeros(spec.shape(1), np.float32)}
    model.predict(x)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        model.predict(x)
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples), f"Core ML predict, median of {runs}"


def export_job(
    ctx: ExportContext,
    job: Job,
    out_dir: Path,
    images: Sequence[ParityImage],
    tolerances: Tolerances,
    *,
    threads: int | None = None,
    keep_failed: bool = False,
    latency: bool = True,
) -> ArtifactResult:
    """Write, gate and (if it passes) install one artifact; try the INT8 fallbacks in order."""
    module = importlib.import_module(job.target.module)
    final = out_dir / artifact_name(ctx, job)
    tol = dict(tolerances.get(job.precision, {}))
    bins = ctx.manifest.output.bins
    attempts: list[Attempt] = []
    t_job = time.perf_counter()
    for recipe in recipes_for(job.target, job.precision):
        label = f"{final.name}" + (f" [{recipe.name}]" if recipe else "")
        tmp = out_dir / f".{final.stem}.partial-{uuid.uuid4().hex[:8]}{final.suffix}"
        t0 = time.perf_counter()
        numbers: dict[str, Any] = {}
        method = ""
        try:
            logger.info("exporting %s", label)
            module.export(ctx, job.precision, tmp, recipe)
            runner = runtime_runner(threads=threads) if job.target.runtime_loadable else module.coreml_runner
            run = run_parity(tmp, runner, ctx.model, images, bins)
            numbers, method = run.numbers, run.method
            failures = gate(numbers, job.precision, tolerances)
        except Exception as exc:  # a converter crash is a failed attempt, reported like a failed gate
            logger.debug("export of %s raised", label, exc_info=True)
            failures = [f"export or parity run raised {type(exc).__name__}: {str(exc)[:500]}"]
        attempts.append(Attempt(recipe.name if recipe else None, numbers, failures, time.perf_counter() - t0, method))
        if not failures:
            _install(tmp, final)
            lat, note = (None, "not measured")
            if latency:
                try:
                    lat, note = (measure_latency(final, threads=1) if job.target.runtime_loadable
                                 else _coreml_latency(final))
                except Exception as exc:
                    note = f"latency measurement failed: {exc}"
            msg = f"{final.name}: passed the {job.precision} gate" + (f" with recipe {recipe.name}" if recipe else "")
            logger.info("%s (%s)", msg, _short(numbers))
            return ArtifactResult(
                target=job.target.name, precision=job.precision, status="passed", file=str(final),
                size_mb=_size_mb(final), numbers=numbers, tolerances=tol, recipe=recipe.name if recipe else None,
                check_method=method, latency_ms=lat, latency_note=note,
                export_seconds=time.perf_counter() - t_job, message=msg, attempts=attempts,
                notes=job.target.notes.get(job.precision, ""),
            )
        logger.warning("%s failed the %s gate: %s", label, job.precision, "; ".join(failures))
        if keep_failed and tmp.exists():
            rejected = out_dir / "rejected"
            rejected.mkdir(exist_ok=True)
            suffix = f".{recipe.name}" if recipe else ""
            dest = rejected / f"{final.name}{suffix}.rejected"
            _remove(dest)
            os.replace(tmp, dest)
        _remove(tmp)
    stale = final.exists()
    if stale:
        _remove(final)
        logger.warning("removed %s left by an earlier run: it was not verified in this one", final)
    last = attempts[-1]
    tried = ", ".join(a.recipe or "default" for a in attempts)
    msg = (f"{final.name}: FAILED the {job.precision} parity gate "
           f"({'; '.join(last.failures)}); tried: {tried}; no artifact written")
    return ArtifactResult(
        target=job.target.name, precision=job.precision, status="failed", file=None, size_mb=None,
        numbers=last.numbers, tolerances=tol, recipe=None, check_method=last.check_method, latency_ms=None,
        latency_note="not measured", export_seconds=time.perf_counter() - t_job, message=msg, attempts=attempts,
        notes=job.target.notes.get(job.precision, ""),
    )


def _short(n: dict[str, Any]) -> str:
    if not n:
        return "no numbers"
    return (f"max|d| {n['max_abs_delta']:.2e}, mean|d| {n['mean_abs_delta']:.2e}, "
            f"spearman {n['spearman']:.4f}, n={n['photos']}")
