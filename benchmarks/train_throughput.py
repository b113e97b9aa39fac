"""Training throughput on this machine: images/s per stage, and the cost of an SKD step against a supervised step.

    python -m cskd_bench.train_throughput            # or: cskd-bench train
    python -m cskd_bench.train_throughput --backbone mobilenetv2_100 --size 224 --mu 15

Two measurements, one run, written side by side to ``benchmarks/results/train_throughput.{json,md}``:

1. **Stages end to end** (decode JPEGs, paper augmentation, forward, backward, Adam): the real ``run_cfa``,
   ``run_teacher`` and ``run_skd`` on generated photos; images/s of the first (evaluation-free) epoch. The one-off
   teacher passes (CFA embeddings, SKD pseudo-labels) are timed separately: they run once per dataset, not per
   epoch.
2. **Step cost** on ready tensors (median of repeated steps), for the same number of student images per step:
   a plain supervised EMD step; the SKD step with cached teacher outputs (what ``cskd-train skd`` does); and,
   for contrast, an SKD step that runs the teacher every step. Target: cached SKD <= 1.2x the supervised step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger("cskd_bench.train")

RESULTS = Path(__file__).resolve().parent / "results"


def _photos(folder: Path, n: int, seed: int, labels: bool) -> Path:
    """``n`` 320x240 JPEG photos (+ labels.csv) with a brightness-driven score."""
    import csv

    import numpy as np
    from PIL import Image

    from cskd_train.data.items import gaussian_distribution

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32) / 240
    for i in range(n):
        b = float(rng.uniform(0.2, 1.0))
        img = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * (xx * rng.uniform(0.5, 2) + yy * rng.uniform(0.5, 2)))
                        for _ in range(3)], -1)  # fmt: skip
        img = np.clip(img * b + rng.normal(0, 0.03, img.shape), 0, 1)
        name = f"p{i:04d}.jpg"
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / name, quality=90)
        rows.append((name, 2 + 6 * b))
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "mean", *[f"p{k}" for k in range(1, 11)]] if labels else ["path"])
        for name, m in rows:
            w.writerow([name, f"{m:.3f}", *[f"{p:.5f}" for p in gaussian_distribution(m, 1.0)]] if labels else [name])
    return folder / "labels.csv"


def _stage_rates(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from cskd_train.cfa import run_cfa
    from cskd_train.config import load_config
    from cskd_train.model import load_checkpoint
    from cskd_train.skd import run_skd
    from cskd_train.teacher import run_nima, run_teacher

    _photos(work / "lab", args.images * 2, 1, True)
    _photos(work / "unl", args.images * 2, 2, False)
    common = [f"model.backbone={args.backbone}", f"data.image_size={args.size}", f"data.resize={round(args.size * 8 / 7)}",
              "data.workers=0", "run.progress=false", "optim.epochs=2", f"optim.steps_per_epoch={args.steps}",
              f"run.threads={args.threads}", "run.eval_every=0"]  # fmt: skip
    rows = []

    def timed(stage: str, fn: Any, over: list[str], per_step: int, teacher_images: int, extra: str = "") -> Path:
        t0 = time.perf_counter()
        path = fn(load_config(None, common + over + [f"run.out={work / stage}"], stage=stage, base_dir=work))
        total = time.perf_counter() - t0
        hist = load_checkpoint(path)["history"]
        epoch_s = float(hist[0]["seconds"])
        # Everything in the run that is not the two epochs: model building and the one-off teacher pass.
        one_off = max(total - sum(float(h["seconds"]) for h in hist), 1e-9)
        rows.append({"stage": stage, "images_per_step": per_step, "steps": args.steps,
                     "train_images_per_s": per_step * args.steps / epoch_s, "epoch_seconds": epoch_s,
                     "one_off_seconds": one_off, "teacher_pass_images": teacher_images,
                     "teacher_pass_images_per_s": teacher_images / one_off if teacher_images else None, "note": extra})  # fmt: skip
        logger.info("%s: %.1f images/s", stage, rows[-1]["train_images_per_s"])
        return path

    enc = [f"cfa.encoder.kind=open_clip", f"cfa.encoder.name={args.clip}", "cfa.encoder.pretrained=none",
           "cfa.encoder.batch_size=16", "cfa.projector_hidden=1024"]  # fmt: skip
    cfa = timed("cfa", run_cfa, enc + ["data.unlabeled={format: folder, path: unl}", f"optim.batch_size={args.batch}"],
                args.batch, args.images * 2, f"teacher: open_clip {args.clip} (random init, same cost as pretrained)")  # fmt: skip
    lab = ["data.labeled={format: csv, path: lab/labels.csv}", f"model.from_checkpoint={cfa}"]
    teacher = timed("teacher", run_teacher, lab + [f"optim.batch_size={args.batch}"], args.batch, 0,
                    f"student backbone as teacher ({args.backbone})")  # fmt: skip
    timed("skd", run_skd, lab + ["data.unlabeled={format: folder, path: unl}", f"skd.teacher={teacher}",
                                 f"skd.mu={args.mu}", f"optim.batch_size={args.bs}"],
          args.bs * (1 + args.mu), args.images * 4, f"B_s={args.bs}, mu={args.mu}")  # fmt: skip
    # The supervised reference at SKD's images per step, right after it (same decode load per step).
    n = args.bs * (1 + args.mu)
    if args.images * 2 >= n * args.steps:
        timed("nima", run_nima, lab + [f"optim.batch_size={n}"], n, 0,
              f"supervised reference at SKD's {n} images/step")  # fmt: skip
    return rows


def _step_costs(args: argparse.Namespace) -> dict[str, Any]:
    import timm
    import torch

    from cskd_train.engine import TrainNet
    from cskd_train.losses import emd_loss, skd_loss
    from cskd_train.model import AestheticModel, ModelConfig

    torch.manual_seed(0)
    n = args.bs * (1 + args.mu)
    s = args.size
    net = TrainNet(AestheticModel(ModelConfig(backbone=args.backbone, hidden=512, dropout=0.2)))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    teacher = timm.create_model(args.online_teacher, num_classes=10).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    x = torch.randn(n, 3, s, s)
    y = torch.softmax(torch.randn(n, 10), -1)
    cached = torch.softmax(torch.randn(10 * n, 10), -1)  # a teacher-output table, indexed per step
    idx = torch.randperm(10 * n)[:n]

    def supervised() -> None:
        loss = emd_loss(net(x)["dist"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def skd_cached() -> None:
        d = net(x)["dist"]
        loss = skd_loss(d[: args.bs], y[: args.bs], d, cached[idx], beta=15.0)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def skd_online() -> None:
        with torch.no_grad():
            t = torch.softmax(teacher(x), -1)
        d = net(x)["dist"]
        loss = skd_loss(d[: args.bs], y[: args.bs], d, t, beta=15.0)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    fns = {"supervised": supervised, "skd_cached": skd_cached, "skd_online_teacher": skd_online}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    # Interleaved repetitions: a load change on a shared machine hits all three alike.
    for _ in range(args.reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "images_per_step": n,
        "labeled_per_step": args.bs,
        "mu": args.mu,
        "online_teacher": args.online_teacher,
        "median_seconds": med,
        "all_seconds": times,
        "images_per_s": {k: n / v for k, v in med.items()},
        "skd_cached_vs_supervised": med["skd_cached"] / med["supervised"],
        "skd_online_vs_supervised": med["skd_online_teacher"] / med["supervised"],
    }


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores (load average {m['load_before']}), torch {m['torch']}, "
        f"{args_line(r['args'])}; {m['date']}.",
        "",
        "### Training throughput per stage (decode + augmentation + forward + backward + Adam)",
        "",
        "Stages run one after another on a shared machine, so these rows carry its load changes; the step-cost table "
        "below interleaves its three variants and is the controlled comparison.",
        "",
        "| stage | images / step | train images/s | epoch s | one-off (setup + teacher pass) | teacher pass images/s | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["stages"]:
        tp = f"{row['teacher_pass_images_per_s']:.1f}" if row["teacher_pass_images_per_s"] else ""
        lines.append(f"| {row['stage']} | {row['images_per_step']} | {row['train_images_per_s']:.2f} | "
                     f"{row['epoch_seconds']:.1f} | {row['one_off_seconds']:.1f} s | {tp} | {row['note']} |")  # fmt: skip
    s = r["steps"]
    med = s["median_seconds"]
    lines += [
        "",
        f"### SKD step vs supervised step ({s['images_per_step']} student images per step: B_s = "
        f"{s['labeled_per_step']}, mu = {s['mu']}; median of {r['args']['reps']})",
        "",
        "| step | median s | images/s | vs supervised |",
        "|---|---|---|---|",
        f"| supervised EMD (baseline) | {med['supervised']:.3f} | {s['images_per_s']['supervised']:.1f} | 1.00x |",
        f"| **SKD, cached teacher outputs** (cskd-train skd) | {med['skd_cached']:.3f} | "
        f"{s['images_per_s']['skd_cached']:.1f} | **{s['skd_cached_vs_supervised']:.2f}x** (target <= 1.2x) |",
        f"| SKD, teacher run every step ({s['online_teacher']}) | {med['skd_online_teacher']:.3f} | "
        f"{s['images_per_s']['skd_online_teacher']:.1f} | {s['skd_online_vs_supervised']:.2f}x |",
    ]
    return "\n".join(lines)


def args_line(a: dict[str, Any]) -> str:
    return f"student {a['backbone']} at {a['size']} px, {a['threads']} thread(s)"


def _machine() -> dict[str, Any]:
    import torch

    from cskd_bench.runtime_bench import cpu_model

    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "load_before": round(load, 2), "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cskd-bench train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULTS), help="results folder")
    ap.add_argument("--work", help="scratch folder (default: a temporary one)")
    ap.add_argument("--backbone", default="mobilenetv2_100", help="student timm backbone")
    ap.add_argument("--size", type=int, default=224, help="training crop (paper: 224)")
    ap.add_argument("--batch", type=int, default=16, help="batch of the cfa and teacher stages")
    ap.add_argument("--bs", type=int, default=2, help="SKD labeled images per step B_s")
    ap.add_argument("--mu", type=int, default=15, help="SKD unlabeled ratio (paper: 15)")
    ap.add_argument("--images", type=int, default=64, help="photos generated: 2x this labeled, 2x unlabeled")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per stage epoch")
    ap.add_argument("--reps", type=int, default=7, help="repetitions of each step-cost measurement")
    ap.add_argument("--clip", default="ViT-B-32", help="open_clip model timed as the CFA teacher (paper: ViT-L-14)")
    ap.add_argument("--online-teacher", default="efficientnet_lite0", help="timm teacher for the online-SKD contrast")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared CPU, more threads than free cores make torch "
                    "spin-wait and run many times slower)")
    ap.add_argument("--skip-stages", action="store_true", help="only the step-cost comparison")
    args = ap.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"machine": _machine(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="cskd-train-bench-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        report["steps"] = _step_costs(args)
        logger.info("SKD (cached) / supervised step: %.2fx", report["steps"]["skd_cached_vs_supervised"])
        report["stages"] = [] if args.skip_stages else _stage_rates(args, work)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(report, indent=2, default=str) + "\n"), (".md", markdown(report) + "\n")):
        tmp_path = out / f".train_throughput{suffix}.tmp"
        tmp_path.write_text(text)
        os.replace(tmp_path, out / f"train_throughput{suffix}")
    print(markdown(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
