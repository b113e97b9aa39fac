"""The export report: ``export_report.json`` (everything) and ``export_report.md`` (the table people read)."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

from .pipeline import ArtifactResult

__all__ = ["build_report", "markdown", "write_report"]


def build_report(results: Sequence[ArtifactResult], *, source: dict[str, Any], parity_set: str, calibration: str,
                 tolerances: dict[str, dict[str, float]], seconds: float) -> dict[str, Any]:
    """The JSON-ready report of one ``cskd-export`` run."""
    from .common import tool_versions

    return {
        "schema": "cskd.export_report",
        "schema_version": 1,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "status": "passed" if all(r.passed for r in results) else "failed",
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cores": os.cpu_count()},
        "tools": tool_versions("cskd", "cskd-runtime", "torch", "timm", "onnx", "onnxruntime", "litert-torch",
                               "ai-edge-quantizer", "ai-edge-litert", "coremltools"),
        "source": source,
        "parity_set": parity_set,
        "calibration": calibration,
        "tolerances": tolerances,
        "seconds": seconds,
        "artifacts": [r.to_dict() for r in results],
    }


def _f(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return fmt.format(v)


def markdown(report: dict[str, Any]) -> str:
    """A readable table: one row per artifact, then the failures and how each CoreML package was checked."""
    lines = [
        f"# cskd-export report ({report['status']})",
        "",
        f"Source: `{report['source'].get('checkpoint', '?')}`; parity set: {report['parity_set']}; "
        f"calibration: {report['calibration']}.",
        "",
        "| target | precision | file | size MB | max abs d score | mean abs d score | max abs d dist | Spearman | "
        "Pearson | latency ms | status | recipe |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in report["artifacts"]:
        n = a["numbers"] or {}
        lines.append(
            f"| {a['target']} | {a['precision']} | {Path(a['file']).name if a['file'] else '-'} | "
            f"{_f(a['size_mb'], '{:.2f}')} | {_f(n.get('max_abs_delta'), '{:.2e}')} | "
            f"{_f(n.get('mean_abs_delta'), '{:.2e}')} | {_f(n.get('max_abs_dist_delta'), '{:.2e}')} | "
            f"{_f(n.get('spearman'), '{:.4f}')} | {_f(n.get('pearson'), '{:.4f}')} | "
            f"{_f(a['latency_ms'], '{:.2f}')} | **{a['status']}** | {a['recipe'] or '-'} |"
        )
    tol = "; ".join(f"{p}: " + ", ".join(f"{k} {'>=' if k in ('spearman', 'pearson') else '<='} {v:g}"
                                          for k, v in t.items()) for p, t in report["tolerances"].items())
    lines += ["", f"Gates: {tol}. Scores are PyTorch fp32 vs the artifact on the same preprocessed tensors.",
              "Latency: single image on this machine through cskd-runtime (1 thread)."]
    checks = sorted({a["check_method"] for a in report["artifacts"] if a["target"] == "coreml" and a["check_method"]})
    if checks:
        lines.append(f"CoreML numerics checked by: {'; '.join(checks)}.")
    tried = [a for a in report["artifacts"] if len(a["attempts"]) > 1]
    if tried:
        lines += ["", "INT8 fallbacks:"]
        for a in tried:
            steps = ", ".join(f"{t['recipe']} ({'passed' if not t['failures'] else 'failed: ' + '; '.join(t['failures'])})"
                              for t in a["attempts"])
            lines.append(f"- {a['target']}/{a['precision']}: {steps}")
    failed = [a for a in report["artifacts"] if a["status"] != "passed"]
    if failed:
        lines += ["", "Failures:"] + [f"- {a['message']}" for a in failed]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``export_report.json`` and ``export_report.md`` atomically; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("export_report.json", json.dumps(_clean(report), indent=2, default=_json_default, allow_nan=False) + "\n"),
                       ("export_report.md", markdown(report))):
        dest = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, dest)
        paths.append(dest)
    return paths[0], paths[1]


def _clean(o: Any) -> Any:
    """NaN/inf (e.g. the correlation of constant scores) become null: strict JSON has no NaN."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)
