"""``cskd-export``: export a cskd model to ONNX, TFLite and CoreML, each artifact gated on parity with PyTorch.

    cskd-export --target tflite
    cskd-export --target onnx,coreml --precision fp32,int8 --checkpoint runs/skd/best.pt --out exported/
    cskd-export --target all --parity my_photos/ --calibration my_photos/ --tolerance int8.spearman=0.98

Exit status: 0 when every artifact passed its gate, 1 when any failed (the failures are named with their numbers
and no file of theirs is left in --out), 2 for a request that cannot start (unsupported combination, missing
checkpoint, bad tolerance, missing photo folder).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]

logger = logging.getLogger("cskd_export")


def build_parser() -> argparse.ArgumentParser:
    from .parity import DEFAULT_TOLERANCES, METRICS
    from .targets import valid_pairs

    tol = "; ".join(f"{p}: " + ", ".join(f"{k}={v:g}" for k, v in t.items()) for p, t in DEFAULT_TOLERANCES.items())
    ap = argparse.ArgumentParser(
        prog="cskd-export",
        description="Export a cskd model to ONNX, TFLite and CoreML; every artifact must pass a parity gate.",
        epilog=f"Valid target/precision pairs: {', '.join(valid_pairs())}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--target", default="all", help="onnx, tflite, coreml or all; comma-separated (default: all)")
    ap.add_argument("--precision", default=None,
                    help="fp32, fp16, int8 or all; comma-separated (default: every precision each target supports)")
    ap.add_argument("--checkpoint", help="cskd checkpoint (.pt) to export (default: the embedded default model)")
    ap.add_argument("--calibration", metavar="DIR", help="INT8 calibration photos (default: pinned calib photos)")
    ap.add_argument("--parity", metavar="DIR", help="photos for the parity gate (default: pinned parity photos "
                                                    "plus degraded copies)")
    ap.add_argument("--out", default="exported", help="output folder (default: ./exported)")
    ap.add_argument("--tolerance", action="append", default=[], metavar="PREC.METRIC=VALUE",
                    help=f"override a gate tolerance (repeatable). Defaults: {tol}. Metrics: {', '.join(METRICS)}")
    ap.add_argument("--threads", type=int, default=None, help="inference threads for the parity runs")
    ap.add_argument("--keep-failed", action="store_true",
                    help="move artifacts that fail the gate to OUT/rejected/ (for debugging) instead of deleting them")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency measurement in the report")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    ap.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter; returns the process exit status (see the module docstring)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    from .parity import parse_tolerances
    from .targets import UnsupportedError, plan

    # Everything that can be refused is refused before any model is loaded or converted.
    try:
        jobs = plan(args.target, args.precision)
        tolerances = parse_tolerances(args.tolerance)
    except (UnsupportedError, ValueError) as exc:
        print(f"cskd-export: error: {exc}", file=sys.stderr)
        return 2
    for flag in ("calibration", "parity"):
        d = getattr(args, flag)
        if d is not None and not Path(d).is_dir():
            print(f"cskd-export: error: --{flag} {d}: folder not found", file=sys.stderr)
            return 2
    try:
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
        else:
            from .defaults import default_checkpoint

            checkpoint = default_checkpoint()
        from .calibration import CalibrationSet
        from .parity import parity_images
        from .pipeline import load_source

        calibration = CalibrationSet(Path(args.calibration) if args.calibration else None)
        ctx = load_source(checkpoint, calibration)
        images = parity_images(args.parity)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"cskd-export: error: {exc}", file=sys.stderr)
        return 2

    from .pipeline import export_job
    from .report import build_report, markdown, write_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parity_desc = (f"{len(images)} photos from {args.parity}" if args.parity
                   else f"{len(images)} images (pinned parity photos and degraded copies)")
    needs_calibration = any(j.precision == "int8" and j.target.int8_calibrated for j in jobs)
    logger.info("exporting %s from %s to %s", ", ".join(j.key for j in jobs), checkpoint, out)
    t0 = time.perf_counter()
    results = []
    for job in jobs:
        results.append(export_job(ctx, job, out, images, tolerances, threads=args.threads,
                                  keep_failed=args.keep_failed, latency=not args.no_latency))
    calib_desc = "not used"
    if needs_calibration:
        try:
            calib_desc = f"{calibration.describe(False)}; extended: {calibration.describe(True)}"
        except Exception as exc:  # the description must not hide the export results
            calib_desc = f"unavailable ({exc})"
    report = build_report(results, source=ctx.source, parity_set=parity_desc, calibration=calib_desc,
                          tolerances=tolerances, seconds=time.perf_counter() - t0)
    json_path, md_path = write_report(out, report)
    print(markdown(report))
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(f"cskd-export: {r.message}", file=sys.stderr)
    logger.info("report: %s, %s", json_path, md_path)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
