"""``cskd-bench``: one command that reproduces every benchmark table and plot under ``benchmarks/results/``.

    cskd-bench                 # runtime: latency, album throughput, overhead, accuracy, scaling, phones
    cskd-bench model-card      # held-out degradation ranking: default model vs ablation vs BRISQUE
    cskd-bench train           # training throughput per stage, SKD step vs supervised step
    cskd-bench export          # export time per target, INT8 vs FP32 latency and rank agreement
    cskd-bench all             # everything above
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger("cskd_bench")

RESULTS = Path(__file__).resolve().parent / "results"


def _write(out_dir: Path, stem: str, data: dict[str, Any], md: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(data, indent=2, default=str) + "\n"), (".md", md + "\n")):
        tmp = out_dir / f".{stem}{suffix}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out_dir / f"{stem}{suffix}")
    logger.info("wrote %s/%s.{json,md}", out_dir, stem)


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic"}


def _load_labels(path: str | None) -> dict[str, float] | None:
    """Ground-truth mean scores: a CSV with a photo column (path / image / file / filename) and a score column
    (mean / score / mos / mean_score). Keys are kept as written, so a photo matches by path, name or stem."""
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"--labels {p}: file not found")
    labels: dict[str, float] = {}
    with open(p, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        key_col = next((cols[c] for c in ("path", "image", "file", "filename") if c in cols), None)
        val_col = next((cols[c] for c in ("mean", "score", "mos", "mean_score") if c in cols), None)
        if key_col is None or val_col is None:
            raise SystemExit(f"--labels {p}: needs a photo column (path, image, file or filename) and a score column "
                             f"(mean, score, mos or mean_score); found {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                labels[row[key_col].strip()] = float(row[val_col])
            except (TypeError, ValueError):
                raise SystemExit(f"--labels {p}, line {line}: score {row.get(val_col)!r} is not a number") from None
    if not labels:
        raise SystemExit(f"--labels {p}: no rows")
    return labels


def _artifacts(args: argparse.Namespace, work: Path) -> tuple[list[Path], Path | None]:
    """The artifacts to measure: exported here from the checkpoint (every format and precision) unless given."""
    if args.artifacts:
        folder = Path(args.artifacts)
        if not folder.is_dir():
            raise SystemExit(f"--artifacts {folder}: not a folder")
        arts = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".onnx", ".tflite"))
        if not arts:
            raise SystemExit(f"--artifacts {folder}: no .onnx or .tflite files in it")
        ckpt = Path(args.checkpoint) if args.checkpoint else None
        if ckpt is not None and not ckpt.is_file():
            raise SystemExit(f"--checkpoint {ckpt}: file not found")
        return arts, ckpt
    try:
        from cskd_export.cli import main as export_main
        from cskd_export.defaults import default_checkpoint
    except ImportError as exc:
        raise SystemExit(f"cskd_export is not available ({exc}); pass --artifacts DIR (and --checkpoint CKPT)") from None

    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    out = work / "artifacts"
    # Every precision each runtime format supports (onnx: fp32, int8; tflite: fp32, fp16, int8).
    argv = ["--target", "onnx,tflite", "--checkpoint", str(ckpt), "--out", str(out)]
    rc = export_main(argv)
    if rc != 0:
        raise SystemExit(f"cskd-export failed (exit {rc}); see its report in {out}")
    arts = sorted(p for p in out.iterdir() if p.suffix in (".onnx", ".tflite"))
    return arts, ckpt


def _photos(args: argparse.Namespace) -> list[Path]:
    if args.photos:
        folder = Path(args.photos)
        if not folder.is_dir():
            raise SystemExit(f"--photos {folder}: not a folder")
        photos = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        if not photos:
            raise SystemExit(f"--photos {folder}: no photos in it ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    else:
        from cskd_train import assets

        # Held-out photos: never used in training or int8 calibration.
        photos = [Path(p) for p in assets.photo_paths("heldout")]
    return photos[: args.accuracy_photos] if args.accuracy_photos else photos


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{what}: expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in vals):
        raise SystemExit(f"{what}: values must be >= 1, got {text!r}")
    return vals


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
    if not m or min(int(m.group(1)), int(m.group(2))) < 1:
        raise SystemExit(f"--photo-size: expected WIDTHxHEIGHT, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _reference(described: list[dict[str, Any]], fmt: str | None = None) -> dict[str, Any]:
    """The fp32 ONNX (the runtime's default artifact) else the first fp32 else the first artifact."""
    order = [d for d in described if (fmt is None or d["format"] == fmt) and d["precision"] == "fp32"]
    onnx = [d for d in order if d["format"] == "onnx"]
    return (onnx or order or described)[0]


SECTIONS = ("latency", "overhead", "accuracy", "album", "scaling", "phones")


def run_runtime(args: argparse.Namespace) -> dict[str, Any]:
    """Every runtime measurement of the issue in one run; writes runtime.{json,md,png} (+ benchmark_model text)."""
    from cskd_bench import runtime_bench as rb
    from cskd_bench import runtime_report as rr

    t_start = time.time()
    skip = {s.strip() for s in (args.skip or "").split(",") if s.strip()}
    unknown = skip - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--skip: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if args.runs < 50:
        logger.warning("--runs %d is below the protocol's 50 timed runs: fine for a smoke test, not for numbers",
                       args.runs)
    work = Path(args.work) if args.work else RESULTS.parent / ".work"
    work.mkdir(parents=True, exist_ok=True)
    out_dir = Path(args.out)
    arts, ckpt = _artifacts(args, work)
    described = [rb.describe_artifact(a) for a in arts]
    photos = _photos(args)
    labels = _load_labels(args.labels)
    cores = os.cpu_count() or 1
    thread_set = sorted({cores if t.strip() == "all" else int(t) for t in args.threads.split(",") if t.strip()})
    report: dict[str, Any] = {
        "benchmark": "cskd-bench runtime",
        "command": "cskd-bench " + " ".join(args.argv) if args.argv else "cskd-bench runtime",
        "machine": rb.machine_info(),
        "model": described[0]["model"],
        "checkpoint": ckpt.name if ckpt else None,
        "artifacts": described,
        "settings": {k: getattr(args, k) for k in ("runs", "warmup", "threads", "album_photos", "album_repeats",
                                                   "photo_size", "pool_photos",
                                                   "scaling", "sweep_photos", "sweep_workers", "sweep_processes",
                                                   "overhead_runs", "phone_iterations", "labels")},
        "skipped": {},
    }
    if ckpt is None:
        report["skipped"]["torch eager reference"] = "no --checkpoint given"

    if "latency" in skip:
        report["skipped"]["latency"] = "--skip latency"
    else:
        logger.info("latency: %d artifact(s)%s at %s thread(s), %d runs each", len(arts),
                    " + torch eager" if ckpt else "", ",".join(map(str, thread_set)), args.runs)
        lat = []
        for threads in thread_set:
            if ckpt is not None:
                lat.append(rb.measure_latency("torch", ckpt, threads, runs=args.runs, warmup=args.warmup))
            for d in described:
                lat.append(rb.measure_latency(d["format"], Path(d["path"]), threads, runs=args.runs,
                                              warmup=args.warmup, info=d))
        report["latency"] = lat
        report["benchmark_model"] = [rb.tflite_benchmark_model_text(r) for r in lat if r["format"] == "tflite"]

    if "overhead" in skip:
        report["skipped"]["overhead"] = "--skip overhead"
    else:
        logger.info("overhead: runtime call vs bare call, %d alternating pairs", args.overhead_runs)
        report["overhead"] = [rb.runtime_overhead(Path(d["path"]), threads=t, runs=args.overhead_runs)
                              for d in described for t in thread_set]

    if "accuracy" in skip:
        report["skipped"]["accuracy"] = "--skip accuracy"
    else:
        logger.info("accuracy: %d photos, %d artifact(s)%s", len(photos), len(arts), ", labels given" if labels else "")
        report["accuracy"] = rb.accuracy(described, ckpt, photos, labels)

    need_pool = "album" not in skip or ("scaling" not in skip and args.scaling)
    pool: list[Path] = []
    if need_pool:
        sources = photos if args.photos else photos + [p for p in _pool_sources() if p not in photos]
        pool = rb.make_phone_photos(sources, work, max(args.album_photos, args.pool_photos), size=_size(args.photo_size))
    if "album" in skip:
        report["skipped"]["album"] = "--skip album"
    else:
        album_arts = [d for d in described if d["precision"] == "fp32"] or [_reference(described)]
        report["album"] = []
        for d in album_arts:
            logger.info("album: %d %s photos, naive vs cskd-runtime, %s", args.album_photos, args.photo_size, d["artifact"])
            report["album"].append(rb.album_throughput(Path(d["path"]), pool[: args.album_photos],
                                                       repeats=args.album_repeats))

    sizes = _ints(args.scaling, "--scaling") if args.scaling else []
    if "scaling" in skip or not sizes:
        report["skipped"]["scaling"] = "--skip scaling" if "scaling" in skip else "--scaling ''"
    else:
        ref = _reference(described)
        naive = next((a["naive"]["images_per_s"] for a in report.get("album", []) if a["artifact"] == ref["artifact"]),
                     None)
        report["scaling"] = rb.scaling(Path(ref["path"]), pool, sizes, work, args.sweep_photos,
                                       workers=_ints(args.sweep_workers, "--sweep-workers") if args.sweep_workers else [],
                                       processes=_ints(args.sweep_processes, "--sweep-processes")
                                       if args.sweep_processes else [],
                                       naive_images_per_s=naive, progress=not args.quiet)

    if "phones" in skip:
        report["phone"] = {"status": "skipped", "reason": "--skip phones"}
    else:
        report["phone"] = rb.phone_benchmark(
            Path(args.apk) if args.apk else None, iterations=args.phone_iterations, warmup=args.warmup, adb=args.adb,
            benchmark_model=Path(args.benchmark_model) if args.benchmark_model else None,
            tflite=[Path(d["path"]) for d in described if d["format"] == "tflite"])
        if report["phone"]["status"] != "ok":
            logger.warning("phones: %s (%s)", report["phone"]["status"], report["phone"].get("reason"))

    report["targets"] = rr.targets(report)
    report["all_targets_pass"] = all(t["pass"] for t in report["targets"]) if report["targets"] else None
    report["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["wall_s"] = time.time() - t_start
    _write(out_dir, "runtime", report, rr.markdown(report))
    if report.get("benchmark_model"):
        _write_text(out_dir / "runtime_benchmark_model.txt", "\n".join(report["benchmark_model"]))
    rr.plot(report, out_dir / "runtime.png")
    readme = Path(__file__).resolve().parent / "README.md"
    if not args.no_readme and out_dir.resolve() == RESULTS.resolve():
        if rr.update_readme(readme, rr.summary_markdown(report)):
            logger.info("updated the results block of %s", readme)
    for t in report["targets"]:
        logger.info("%-60s %-12s %s", t["target"], t["ratio"], "PASS" if t["pass"] else "FAIL")
    logger.info("runtime benchmark done in %.1f min", report["wall_s"] / 60)
    return report


def _pool_sources() -> list[Path]:
    """More real photos for the 12 MP pool (every pinned split), so album photos are not all from one scene."""
    try:
        from cskd_train import assets

        seen: dict[str, Path] = {}
        for split in ("heldout", "parity", "train", "calib"):
            for p in assets.photo_paths(split):
                seen.setdefault(str(p), Path(p))
        return list(seen.values())
    except Exception as exc:  # the pool still works from --photos alone
        logger.warning("pinned photos unavailable (%s); the 12 MP pool uses the accuracy photos only", exc)
        return []


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_model_card(args: argparse.Namespace) -> dict[str, Any]:
    """The default model's card numbers: held-out degradation ranking vs the ablation, the teacher and BRISQUE."""
    from cskd_bench import model_card
    from cskd_runtime import default_model_path
    from cskd_train import assets

    photos = assets.photo_paths("heldout")
    scorers: dict[str, Any] = {
        "cskd default (CFA+SKD MV2, ONNX fp32)": model_card.runtime_scorer(
            Path(args.model) if args.model else default_model_path()),
    }
    # The ablation ships beside the default checkpoint, so the card's comparison reproduces from a clean clone.
    shipped = Path(__file__).resolve().parent.parent / "export" / "default_model" / "ablation-mv2-no-cfa-no-skd.pt"
    ablation = Path(args.ablation) if args.ablation else shipped if shipped.is_file() else None
    if ablation is not None:
        scorers["MV2 without CFA/SKD"] = model_card.checkpoint_scorer(ablation)
    if args.teacher:
        scorers["teacher (EfficientNet-Lite0)"] = model_card.checkpoint_scorer(Path(args.teacher))
    scorers["BRISQUE (LIVE)"] = model_card.brisque_scorer(*assets.brisque_model_files())
    report = model_card.compare(scorers, photos)
    _write(Path(args.out), "model_card", report, model_card.markdown(report))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cskd-bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("what", nargs="?", default="runtime", choices=("runtime", "model-card", "train", "export", "all"))
    ap.add_argument("--out", default=str(RESULTS), help="results folder")
    ap.add_argument("--work", help="scratch folder for generated photos, albums and artifacts "
                    "(default: benchmarks/.work, git-ignored; the 12 MP photo pool is cached there)")
    g = ap.add_argument_group("runtime")
    g.add_argument("--artifacts", help="folder of .onnx/.tflite to measure (default: export every format now)")
    g.add_argument("--checkpoint", help="checkpoint for the PyTorch reference (default: the default model)")
    g.add_argument("--photos", help="folder of photos for accuracy (default: the pinned held-out real photos)")
    g.add_argument("--labels", help="CSV with path,mean for SRCC/PLCC/MSE/accuracy per artifact")
    g.add_argument("--accuracy-photos", type=int, default=0, help="use only the first N accuracy photos (0: all)")
    g.add_argument("--runs", type=int, default=100, help="timed runs per latency measurement (protocol: >= 50)")
    g.add_argument("--warmup", type=int, default=20, help="untimed runs before timing")
    g.add_argument("--threads", default="1,all", help="latency/overhead thread counts ('all' = every core)")
    g.add_argument("--overhead-runs", type=int, default=200, help="alternating bare/runtime pairs per overhead row")
    g.add_argument("--album-photos", type=int, default=32, help="12 MP photos in the album throughput benchmark")
    g.add_argument("--album-repeats", type=int, default=3, help="alternating repeats (best taken)")
    g.add_argument("--photo-size", default="4032x3024", help="album photos, WIDTHxHEIGHT (12 MP: the issue's setting)")
    g.add_argument("--pool-photos", type=int, default=32, help="distinct 12 MP photos linked into scaling albums")
    g.add_argument("--scaling", default="1000,10000", help="album sizes for scaling ('' to skip)")
    g.add_argument("--sweep-photos", type=int, default=300, help="photos per threads/processes configuration")
    g.add_argument("--sweep-workers", default="1,2,4", help="decode threads tried in one process")
    g.add_argument("--sweep-processes", default="2", help="process counts tried (cores shared among them)")
    g.add_argument("--skip", default="", help=f"sections to skip, comma-separated: {', '.join(SECTIONS)}")
    g.add_argument("--apk", help="phones: Android demo APK to install before the benchmark")
    g.add_argument("--adb", help="phones: adb executable (default: $ADB or adb on PATH)")
    g.add_argument("--phone-iterations", type=int, default=50, help="phones: timed iterations on the device")
    g.add_argument("--benchmark-model", help="phones: TFLite benchmark_model binary (android_aarch64) to run each "
                   ".tflite with")
    g.add_argument("--no-readme", action="store_true", help="do not refresh the results block of benchmarks/README.md")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g = ap.add_argument_group("model-card")
    g.add_argument("--model", help="model-card: artifact to evaluate (default: bundled default model)")
    g.add_argument("--ablation", help="model-card: checkpoint of the MobileNetV2 trained without CFA and SKD")
    g.add_argument("--teacher", help="model-card: teacher checkpoint to include")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    t0 = time.time()
    todo = ["runtime", "model-card", "train", "export"] if args.what == "all" else [args.what]
    for what in todo:
        if what == "runtime":
            run_runtime(args)
        elif what == "model-card":
            run_model_card(args)
        elif what == "train":
            from cskd_bench import train_throughput

            rc = train_throughput.main(["--out", args.out])
            if rc:
                return rc
        elif what == "export":
            from cskd_bench import export_bench

            rc = export_bench.main(["--out", args.out] + (["--checkpoint", args.checkpoint] if args.checkpoint else []))
            if rc:
                return rc
    logger.info("done in %.0f s", time.time() - t0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
