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


def _load_labels(path: str | None) -> dict[str, float] | None:
    if not path:
        return None
    labels = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            key = row.get("path") or row.get("image") or row.get("file")
            val = row.get("mean") or row.get("score") or row.get("mos")
            if key is None or val is None:
                raise SystemExit(f"{path}: needs columns path and mean (or score / mos)")
            labels[key] = float(val)
    return labels


def _artifacts(args: argparse.Namespace, work: Path) -> tuple[list[Path], Path | None]:
    """The artifacts to measure: exported here from the checkpoint (every format and precision) unless given."""
    if args.artifacts:
        arts = sorted(p for p in Path(args.artifacts).iterdir() if p.suffix in (".onnx", ".tflite"))
        return arts, Path(args.checkpoint) if args.checkpoint else None
    from cskd_export.cli import main as export_main
    from cskd_export.defaults import default_checkpoint

    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    out = work / "artifacts"
    # Every precision each runtime format supports (onnx: fp32, int8; tflite: fp32, fp16, int8).
    argv = ["--target", "onnx,tflite", "--checkpoint", str(ckpt), "--out", str(out)]
    rc = export_main(argv)
    if rc != 0:
        raise SystemExit(f"cskd-export failed (exit {rc}); see its report in {out}")
    arts = sorted(p for p in out.iterdir() if p.suffix in (".onnx", ".tflite"))
    return arts, ckpt


def run_runtime(args: argparse.Namespace) -> dict[str, Any]:
    from cskd_bench import runtime_bench as rb
    from cskd_train import assets

    work = Path(args.work) if args.work else RESULTS.parent / ".work"
    work.mkdir(parents=True, exist_ok=True)
    arts, ckpt = _artifacts(args, work)
    photos = [Path(p) for p in (sorted(Path(args.photos).iterdir()) if args.photos else assets.photo_paths("heldout"))]
    threads_all = os.cpu_count() or 1
    report: dict[str, Any] = {"machine": rb.machine_info(), "artifacts": [a.name for a in arts]}

    logger.info("latency: %d artifacts + torch eager, 1 and %d threads", len(arts), threads_all)
    lat = []
    for threads in sorted({1, threads_all}):
        if ckpt is not None:
            lat.append(rb.measure_latency("torch", ckpt, threads, runs=args.runs))
        for a in arts:
            kind = "onnx" if a.suffix == ".onnx" else "tflite"
            lat.append(rb.measure_latency(kind, a, threads, runs=args.runs))
    report["latency"] = lat
    report["benchmark_model"] = [rb.tflite_benchmark_model_text(r) for r in lat if r["kind"] == "tflite"]

    ref_onnx = next((a for a in arts if a.suffix == ".onnx" and "fp32" in a.name), arts[0])
    phone = rb.make_phone_photos(photos, work / "phone_photos", args.album_photos)
    logger.info("album throughput on %d 12 MP photos with %s", len(phone), ref_onnx.name)
    report["album"] = rb.album_throughput(ref_onnx, phone)
    report["overhead"] = [rb.runtime_overhead(a) for a in arts if "fp32" in a.name]
    report["accuracy"] = rb.accuracy(arts, ckpt, photos[: args.accuracy_photos], _load_labels(args.labels))
    if args.scaling:
        sizes = [int(s) for s in args.scaling.split(",")]
        report["scaling"] = rb.scaling(ref_onnx, phone, sizes, workers=[1, 2, 4], work_dir=work)
    apk = Path(args.apk) if args.apk else None
    report["phone"] = rb.phone_benchmark(apk)
    _write(Path(args.out), "runtime", report, runtime_markdown(report))
    plot_runtime(report, Path(args.out) / "runtime.png")
    return report


def runtime_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, onnxruntime {m['versions'].get('onnxruntime')}, "
        f"ai-edge-litert {m['versions'].get('ai_edge_litert')}, torch {m['versions'].get('torch')}; {m['date']}.",
        "",
        "### Model latency (single image, after warm-up)",
        "",
        "| artifact | runtime | threads | size MB | load ms | first ms | median ms | p90 ms | p99 ms | peak RSS MB | vs torch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    torch_med = {row["threads"]: row["median_ms"] for row in r["latency"] if row["kind"] == "torch"}
    for row in r["latency"]:
        ratio = torch_med.get(row["threads"])
        rel = f"{row['median_ms'] / ratio:.2f}x" if ratio else ""
        size = f"{row['size_mb']:.2f}" if row.get("size_mb") else ""
        lines.append(
            f"| {row['artifact']} | {row['kind']} | {row['threads']} | {size} | {row['load_ms']:.0f} | "
            f"{row['first_ms']:.1f} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['peak_rss_mb']:.0f} | {rel} |"
        )
    a = r["album"]
    lines += [
        "",
        f"### Album throughput ({a['photos']} photos, {a['photo_size']})",
        "",
        "| pipeline | images/s |",
        "|---|---|",
        f"| naive (full decode + resize, one photo per call) | {a['naive_images_per_s']:.2f} |",
        f"| cskd-runtime (draft decode, decode threads, batches) | {a['runtime_images_per_s']:.2f} |",
        f"| **speedup** (target >= 3x) | **{a['speedup']:.2f}x** |",
        "",
        f"Score difference runtime vs naive (draft decode): max {a['max_abs_score_delta']:.4f}, "
        f"mean {a['mean_abs_score_delta']:.4f} on the 1..10 scale.",
        "",
        "### Runtime overhead over a bare inference call (same tensor, 1 thread; target <= 10%)",
        "",
        "| artifact | bare ms | runtime ms | overhead |",
        "|---|---|---|---|",
    ]
    for o in r["overhead"]:
        lines.append(f"| {o['artifact']} | {o['bare_median_ms']:.3f} | {o['runtime_median_ms']:.3f} | {o['overhead_pct']:.1f}% |")
    lines += ["", "### Accuracy against PyTorch", "", "| artifact | photos | max abs delta | mean abs delta | Spearman | SRCC | PLCC |",
              "|---|---|---|---|---|---|---|"]
    for row in r["accuracy"]:
        def f(k: str, fmt: str = "{:.4f}") -> str:
            return fmt.format(row[k]) if k in row else ""

        lines.append(f"| {row['artifact']} | {row['photos']} | {f('max_abs_delta_vs_torch', '{:.2e}')} | "
                     f"{f('mean_abs_delta_vs_torch', '{:.2e}')} | {f('spearman_vs_torch')} | {f('srcc')} | {f('plcc')} |")
    if "scaling" in r:
        s = r["scaling"]
        lines += ["", f"### Scaling (photos: {s['pool_photo_size']})", "", "| album | seconds | images/s |", "|---|---|---|"]
        for row in s["by_album_size"]:
            lines.append(f"| {row['album']} | {row['seconds']:.1f} | {row['images_per_s']:.2f} |")
        lines += ["", "| decode workers | images/s |", "|---|---|"]
        for row in s["by_workers"]:
            lines.append(f"| {row['workers']} | {row['images_per_s']:.2f} |")
        lines += ["", f"A 100k-photo library of such photos takes about **{s['library_100k_minutes']:.0f} minutes** on this machine."]
    p = r["phone"]
    lines += ["", "### Phones", "", f"{p['status']}: {p.get('reason', p.get('device', ''))}"]
    return "\n".join(lines)


def plot_runtime(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    rows = r["latency"]
    threads = sorted({row["threads"] for row in rows})
    names = list(dict.fromkeys(row["artifact"] for row in rows))
    width = 0.8 / len(threads)
    for i, t in enumerate(threads):
        vals = [next((row["median_ms"] for row in rows if row["artifact"] == n and row["threads"] == t), 0) for n in names]
        axes[0].barh([k + i * width for k in range(len(names))], vals, height=width, label=f"{t} thread(s)")
    axes[0].set_yticks([k + width * (len(threads) - 1) / 2 for k in range(len(names))], names, fontsize=7)
    axes[0].set_xlabel("median latency, ms")
    axes[0].set_title("Model latency")
    axes[0].legend()
    a = r["album"]
    axes[1].bar(["naive", "cskd-runtime"], [a["naive_images_per_s"], a["runtime_images_per_s"]], color=["grey", "tab:green"])
    axes[1].set_ylabel("images / s")
    axes[1].set_title(f"12 MP album throughput ({a['speedup']:.1f}x)")
    if "scaling" in r:
        s = r["scaling"]["by_album_size"]
        axes[2].plot([x["album"] for x in s], [x["seconds"] for x in s], marker="o")
        axes[2].set_xscale("log")
        axes[2].set_yscale("log")
        axes[2].set_xlabel("photos in album")
        axes[2].set_ylabel("seconds")
        axes[2].set_title("End-to-end time vs album size")
    else:
        axes[2].axis("off")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def run_model_card(args: argparse.Namespace) -> dict[str, Any]:
    from cskd_bench import model_card
    from cskd_train import assets

    photos = assets.photo_paths("heldout")
    scorers: dict[str, Any] = {}
    from cskd_runtime import default_model_path

    scorers["cskd default (CFA+SKD MV2, ONNX fp32)"] = model_card.runtime_scorer(Path(args.model) if args.model else default_model_path())
    if args.ablation:
        scorers["MV2 without CFA/SKD"] = model_card.checkpoint_scorer(Path(args.ablation))
    if args.teacher:
        scorers["teacher"] = model_card.checkpoint_scorer(Path(args.teacher))
    peers = assets.ensure("peers")
    scorers["BRISQUE (LIVE)"] = model_card.brisque_scorer(*assets.brisque_model_files())
    report = model_card.compare(scorers, photos)
    _write(Path(args.out), "model_card", report, model_card.markdown(report))
    del peers
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cskd-bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", default="runtime", choices=("runtime", "model-card", "train", "export", "all"))
    ap.add_argument("--out", default=str(RESULTS), help="results folder (default: benchmarks/results)")
    ap.add_argument("--work", help="scratch folder for generated photos and artifacts")
    ap.add_argument("--artifacts", help="folder of .onnx/.tflite to measure (default: export every format now)")
    ap.add_argument("--checkpoint", help="checkpoint for the PyTorch reference (default: the default model)")
    ap.add_argument("--photos", help="folder of photos for accuracy (default: held-out real photos)")
    ap.add_argument("--labels", help="CSV with path,mean for SRCC/PLCC/MSE/accuracy per artifact")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per latency measurement (>= 50)")
    ap.add_argument("--album-photos", type=int, default=24, help="12 MP photos in the album benchmark")
    ap.add_argument("--accuracy-photos", type=int, default=40)
    ap.add_argument("--scaling", default="1000,10000", help="album sizes for scaling ('' to skip)")
    ap.add_argument("--apk", help="Android demo APK for the phone benchmark")
    ap.add_argument("--model", help="model-card: artifact to evaluate (default: bundled default model)")
    ap.add_argument("--ablation", help="model-card: checkpoint of the MobileNetV2 trained without CFA and SKD")
    ap.add_argument("--teacher", help="model-card: teacher checkpoint to include")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
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
