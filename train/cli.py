"""``cskd-train``: the CSKD training stages, evaluation and recipes.

    cskd-train recipes                                   # bundled recipes
    cskd-train cfa     --recipe cfa_mv2 --set data.unlabeled.path=/data/unlabeled
    cskd-train teacher --recipe teacher_swinb --set model.from_checkpoint=runs/cfa_swinb/cfa.pt
    cskd-train skd     --recipe skd_mv2 --set skd.teacher=runs/teacher/teacher.pt
    cskd-train nima | kd ...                             # the paper's baselines
    cskd-train evaluate --model runs/skd/skd.pt --labels test.csv
    torchrun --nproc_per_node 4 -m cskd_train.cli skd --recipe skd_mv2 ...   # same run on 4 GPUs (DDP)

Add ``--resume`` to continue a killed run from ``<out>/last.pt``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main", "run_stage"]

logger = logging.getLogger("cskd_train")

STAGE_HELP = {
    "cfa": "Phase I: align a backbone to a frozen CLIP/timm/ONNX image encoder on unlabeled images (Eq. 1)",
    "teacher": "fine-tune the CFA backbone + MLP head with EMD on labeled data (the SKD teacher)",
    "skd": "Phase II: semi-supervised KD of the student from the teacher (Eq. 3-5)",
    "nima": "baseline NIMA*: supervised EMD from ImageNet / offline init",
    "kd": "baseline KD: distillation on labeled data only",
}


def run_stage(cfg) -> Path:  # type: ignore[no-untyped-def]
    """Run the stage named by ``cfg.stage``; returns the final checkpoint path."""
    if cfg.stage == "cfa":
        from .cfa import run_cfa

        return run_cfa(cfg)
    if cfg.stage in ("teacher", "nima"):
        from .teacher import run_nima, run_teacher

        return run_teacher(cfg) if cfg.stage == "teacher" else run_nima(cfg)
    from .skd import run_kd, run_skd

    return run_skd(cfg) if cfg.stage == "skd" else run_kd(cfg)


def _setup_logging(verbose: bool) -> None:
    # Only rank 0 talks; other ranks log warnings and errors.
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cskd-train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    sub = ap.add_subparsers(dest="command")
    for stage, text in STAGE_HELP.items():
        p = sub.add_parser(stage, help=text, description=text)
        p.add_argument("--recipe", help="bundled recipe name or YAML path (see `cskd-train recipes`)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)")  # fmt: skip
        p.add_argument("--out", help="output folder (run.out)")
        p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt if present")
        p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="run.device")
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        p.add_argument("-v", "--verbose", action="store_true")
    ev = sub.add_parser("evaluate", help="SRCC, PLCC, MSE, accuracy and interval error rates of a model",
                        description="Evaluate a checkpoint (.pt) or exported artifact (.onnx/.tflite) on labeled data.")  # fmt: skip
    ev.add_argument("--model", "--checkpoint", dest="model", required=True, help=".pt, .onnx or .tflite")
    src = ev.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", help="generic CSV (path + p1..pK or mean)")
    src.add_argument("--data", help="a labeled data spec as YAML/JSON, e.g. '{format: ava, table: AVA.txt, image_dir: img}'")
    ev.add_argument("--out", help="folder for metrics.json and metrics.md (default: beside the model)")
    ev.add_argument("--cutoff", type=float, default=5.0, help="binary accuracy cut-off (default 5)")
    ev.add_argument("--t", type=float, default=0.5, help="interval error threshold (default 0.5)")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--workers", type=int, default=0)
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ev.add_argument("--json", action="store_true", help="print the metrics JSON instead of the table")
    ev.add_argument("-v", "--verbose", action="store_true")
    pl = sub.add_parser("pipeline", help="run a multi-stage pipeline recipe (e.g. default_cpu: the embedded default model)",
                        description="Run every unfinished stage of a pipeline recipe; finished stages are kept.")
    pl.add_argument("recipe", nargs="?", default="default_cpu", help="pipeline recipe name or YAML path")
    pl.add_argument("--out", help="output folder (default: runs/<recipe name>)")
    pl.add_argument("--install", action="store_true",
                    help="calibrate the final model and install it (and the ablation) as the packaged default")
    pl.add_argument("-v", "--verbose", action="store_true")
    sub.add_parser("recipes", help="list the bundled recipes")
    args = ap.parse_args(argv)

    if args.version:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(version("cskd"))
        except PackageNotFoundError:
            print("unknown")
        return 0
    if args.command is None:
        ap.print_help()
        return 2
    if args.command == "recipes":
        from .config import list_recipes

        for name, text in list_recipes().items():
            print(f"{name:24s} {text}")
        return 0
    _setup_logging(getattr(args, "verbose", False))
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "pipeline":
        from .pipeline import PipelineError, run_pipeline

        try:
            state = run_pipeline(args.recipe, args.out or f"runs/{Path(args.recipe).stem}", install=args.install)
        except PipelineError as exc:
            print(f"cskd-train pipeline: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({k: state[k] for k in ("stages", "seconds", "final", "ablation", "installed") if k in state},
                         indent=2))
        return 0

    from .config import ConfigError, dump_config, load_config

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"run.out={Path(args.out).resolve()}")
    if args.resume:
        overrides.append("run.resume=true")
    if args.device:
        overrides.append(f"run.device={args.device}")
    try:
        cfg = load_config(args.recipe, overrides, stage=args.command)
    except ConfigError as exc:
        print(f"cskd-train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    from . import distributed as D

    try:
        path = run_stage(cfg)
    except (ValueError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        D.teardown()
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(path)
    D.teardown()
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import yaml

    from .evaluate import evaluate_model_file, write_report
    from .metrics import metrics_markdown

    if args.labels:
        spec, root = {"format": "csv", "path": str(Path(args.labels).resolve())}, None
    else:
        spec = yaml.safe_load(args.data)
        root = Path.cwd()
        if not isinstance(spec, dict):
            print(f"cskd-train evaluate: --data must be a mapping, got {args.data!r}", file=sys.stderr)
            return 2
    try:
        m = evaluate_model_file(args.model, spec, root, cutoff=args.cutoff, t=args.t, batch_size=args.batch_size,
                                workers=args.workers, device=args.device)  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        print(f"cskd-train evaluate: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path(args.model).with_suffix("").parent / f"eval_{Path(args.model).stem}"
    write_report(m, out, f"{Path(args.model).name} on {spec.get('path') or spec.get('table') or spec}")
    print(json.dumps(m, indent=2, default=str) if args.json else metrics_markdown(m, Path(args.model).name))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
