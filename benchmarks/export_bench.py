"""Export benchmark: time to export each target, and INT8 against FP32 latency for ONNX and TFLite in one run.

    cskd-bench export                         # the default model
    python -m cskd_bench.export_bench --checkpoint runs/skd/best.pt --out benchmarks/results

One ``cskd-export --target all`` run gives the export (conversion + parity gate) time of every artifact; then each
ONNX/TFLite artifact's single-image latency is measured in a fresh child process (1 thread and all cores), FP32
beside INT8 (and FP16) in the same minutes. The target: INT8 latency <= 0.6x FP32 while INT8 keeps Spearman >=
0.99 against FP32 on the parity set. Artifacts that fail their gate are kept aside (``--keep-failed``) and still
timed, marked as failed, so a miss is visible rather than silently absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "run", "markdown"]

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"
LATENCY_RATIO_TARGET = 0.6
SPEARMAN_TARGET = 0.99


def _artifact_path(out: Path, row: dict[str, Any]) -> Path | None:
    if row["file"]:
        return Path(row["file"])
    rejected = sorted((out / "rejected").glob(f"*-{row['precision']}*{'.onnx' if row['target'] == 'onnx' else '.tflite'}*"))
    return rejected[-1] if rejected else None


def run(checkpoint: Path, work: Path, runs: int = 50) -> dict[str, Any]:
    """Export everything from ``checkpoint`` into ``work`` and measure; returns the benchmark record."""
    from cskd_bench import runtime_bench as rb
    from cskd_export.cli import main as export_main

    out = work / "artifacts"
    t0 = time.perf_counter()
    rc = export_main(["--target", "all", "--checkpoint", str(checkpoint), "--out", str(out), "--keep-failed", "-q"])
    total = time.perf_counter() - t0
    report = json.loads((out / "export_report.json").read_text())
    rows = report["artifacts"]

    per_target: dict[str, float] = {}
    for r in rows:
        per_target[r["target"]] = per_target.get(r["target"], 0.0) + r["export_seconds"]

    threads_all = os.cpu_count() or 1
    latency = []
    for r in rows:
        if r["target"] not in ("onnx", "tflite"):
            continue
        path = _artifact_path(out, r)
        if path is None:
            continue
        # A rejected file keeps its format in the content; the backend detects it from the bytes.
        for threads in sorted({1, threads_all}):
            m = rb.measure_latency(r["target"], path, threads, runs=runs)
            latency.append({"target": r["target"], "precision": r["precision"], "gate": r["status"],
                            "threads": threads, "median_ms": m["median_ms"], "p90_ms": m["p90_ms"],
                            "size_mb": m["size_mb"]})

    comparisons = []
    for target in ("onnx", "tflite"):
        int8 = next((r for r in rows if r["target"] == target and r["precision"] == "int8"), None)
        spearman = int8["numbers"].get("spearman") if int8 else None
        for threads in sorted({1, threads_all}):
            f = next((x for x in latency if x["target"] == target and x["precision"] == "fp32" and x["threads"] == threads), None)
            q = next((x for x in latency if x["target"] == target and x["precision"] == "int8" and x["threads"] == threads), None)
            if not (f and q):
                continue
            ratio = q["median_ms"] / f["median_ms"]
            met = ratio <= LATENCY_RATIO_TARGET and spearman is not None and spearman >= SPEARMAN_TARGET
            comparisons.append({"target": target, "threads": threads, "fp32_ms": f["median_ms"], "int8_ms": q["median_ms"],
                                "ratio": ratio, "spearman_vs_fp32": spearman, "int8_gate": int8["status"] if int8 else None,
                                "int8_recipe": int8["recipe"] if int8 else None, "target_met": met})
    return {
        "machine": rb.machine_info(),
        "checkpoint": str(checkpoint),
        "export_exit_status": rc,
        "export_total_seconds": total,
        "export_seconds_per_target": per_target,
        "artifacts": [{k: r[k] for k in ("target", "precision", "status", "size_mb", "export_seconds", "recipe",
                                         "check_method")} | {"numbers": r["numbers"]} for r in rows],
        "latency": latency,
        "int8_vs_fp32": comparisons,
        "targets": {"int8_latency_ratio_max": LATENCY_RATIO_TARGET, "int8_spearman_min": SPEARMAN_TARGET},
    }


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; {m['date']}. Checkpoint: `{r['checkpoint']}`.",
        "",
        "### Export time (conversion + parity gate, INT8 fallbacks included)",
        "",
        "| target | seconds |",
        "|---|---|",
    ]
    for t, s in r["export_seconds_per_target"].items():
        lines.append(f"| {t} | {s:.1f} |")
    lines += [f"| **all** | **{r['export_total_seconds']:.1f}** |", "",
              "| target | precision | gate | size MB | seconds | Spearman vs fp32 | max abs d score | recipe |",
              "|---|---|---|---|---|---|---|---|"]
    for a in r["artifacts"]:
        n = a["numbers"] or {}
        sp = f"{n['spearman']:.4f}" if n.get("spearman") is not None else "-"
        md = f"{n['max_abs_delta']:.2e}" if n.get("max_abs_delta") is not None else "-"
        size = f"{a['size_mb']:.2f}" if a["size_mb"] else "-"
        lines.append(f"| {a['target']} | {a['precision']} | {a['status']} | {size} | {a['export_seconds']:.1f} | {sp} | "
                     f"{md} | {a['recipe'] or '-'} |")
    lines += ["", f"### INT8 vs FP32 latency (single image; target: INT8 <= {LATENCY_RATIO_TARGET}x FP32 with "
                  f"Spearman >= {SPEARMAN_TARGET})", "",
              "| target | threads | fp32 ms | int8 ms | int8/fp32 | Spearman vs fp32 | int8 gate | target met |",
              "|---|---|---|---|---|---|---|---|"]
    for c in r["int8_vs_fp32"]:
        sp = f"{c['spearman_vs_fp32']:.4f}" if c["spearman_vs_fp32"] is not None else "-"
        lines.append(f"| {c['target']} | {c['threads']} | {c['fp32_ms']:.2f} | {c['int8_ms']:.2f} | {c['ratio']:.2f}x | "
                     f"{sp} | {c['int8_gate']} | {'yes' if c['target_met'] else '**no**'} |")
    lines += ["", "### All latencies", "", "| target | precision | gate | threads | median ms | p90 ms |", "|---|---|---|---|---|---|"]
    for x in r["latency"]:
        lines.append(f"| {x['target']} | {x['precision']} | {x['gate']} | {x['threads']} | {x['median_ms']:.2f} | {x['p90_ms']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cskd-bench export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="checkpoint to export (default: the embedded default model)")
    ap.add_argument("--out", default=str(RESULTS), help="results folder (default: benchmarks/results)")
    ap.add_argument("--work", help="scratch folder for the artifacts (default: a temporary folder)")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per latency measurement")
    args = ap.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        from cskd_export.defaults import default_checkpoint

        try:
            ckpt = default_checkpoint()
        except FileNotFoundError as exc:
            print(f"cskd-bench export: {exc}", file=sys.stderr)
            return 2
    import tempfile

    from cskd_bench.cli import _write

    with tempfile.TemporaryDirectory(prefix="cskd-export-bench-") as tmp:
        record = run(ckpt, Path(args.work) if args.work else Path(tmp), runs=args.runs)
    _write(Path(args.out), "export", record, markdown(record))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
