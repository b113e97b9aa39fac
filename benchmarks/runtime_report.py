"""Markdown tables, the PNG plot and the README block of ``cskd-bench runtime`` (from its JSON report)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["targets", "markdown", "summary_markdown", "plot", "update_readme", "README_START", "README_END"]

README_START = "<!-- cskd-bench runtime: start (generated, do not edit by hand) -->"
README_END = "<!-- cskd-bench runtime: end -->"


def _f(v: Any, fmt: str = "{:.2f}", none: str = "n/a") -> str:
    return none if v is None else fmt.format(v)


def _pf(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**PASS**" if ok else "**FAIL**")


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target of the issue: the baseline, the measurement, their ratio, the goal, PASS/FAIL."""
    rows = []
    for a in r.get("album") or []:
        rows.append({
            "target": f"album throughput, {a['artifact']} ({a['photos']} x {a['photo_set']['megapixels']:.0f} MP)",
            "baseline": f"naive {a['naive']['images_per_s']:.2f} img/s",
            "measured": f"cskd-runtime {a['runtime']['images_per_s']:.2f} img/s",
            "ratio": f"{a['speedup']:.2f}x", "goal": f">= {a['target_speedup']:g}x", "pass": a["speedup_pass"],
        })
        rows.append({
            "target": f"draft-decode score difference, {a['artifact']}",
            "baseline": "full decode (naive)",
            "measured": f"max {a['max_abs_score_delta']:.4f}, mean {a['mean_abs_score_delta']:.4f}",
            "ratio": "", "goal": f"<= {a['tolerance']:g} per photo (1..10 scale)", "pass": a["within_tolerance"],
        })
    for o in r.get("overhead") or []:
        rows.append({
            "target": f"runtime overhead, {o['artifact']}, {o['threads']} thread(s)",
            "baseline": f"bare {o['format']} call {o['bare_median_ms']:.3f} ms",
            "measured": f"Scorer.score_tensor {o['runtime_median_ms']:.3f} ms (+{o['overhead_ms']:.3f} ms paired)",
            "ratio": f"{o['overhead_pct']:+.1f}%", "goal": f"<= {o['target_pct']:g}%", "pass": o["pass"],
        })
    return rows


def _targets_table(r: dict[str, Any]) -> list[str]:
    rows = r.get("targets") or targets(r)
    if not rows:
        return ["No target was measured in this run (album and overhead skipped)."]
    out = ["| target | baseline | measured | ratio | goal | result |", "|---|---|---|---|---|---|"]
    out += [f"| {t['target']} | {t['baseline']} | {t['measured']} | {t['ratio']} | {t['goal']} | {_pf(t['pass'])} |"
            for t in rows]
    return out


def _machine_line(r: dict[str, Any]) -> str:
    m = r["machine"]
    v = m["versions"]
    libs = ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "ai-edge-litert", "torch", "numpy", "pillow") if v.get(k))
    load = m.get("load_average")
    end = r.get("load_average_end")
    la = f" Load average at start {load[0]:.1f}, at end {end[0]:.1f} (shared machine: absolute times are noisy, " \
         "ratios measured side by side are not)." if load and end else ""
    return (f"Machine: {m['cpu']}, {m['cores']} logical cores ({m.get('physical_cores') or '?'} physical), "
            f"{m.get('memory_gb') or '?'} GB, {m['os']} {m['arch']}, Python {m['python']}; {libs}. {m['date']}.{la}")


def summary_markdown(r: dict[str, Any], plot_name: str = "results/runtime.png") -> str:
    """The part of the report shown in the README: machine, targets, headline latency, the 100k estimate, plot."""
    lines = [_machine_line(r), "", f"Model: {r.get('model')}; full run took {r['wall_s'] / 60:.1f} min.", ""]
    lines += _targets_table(r)
    lat = _latency_rows(r)
    if lat:
        lines += ["", "Model latency, median ms (single image, after warm-up):", ""]
        lines += lat
    s = r.get("scaling")
    if s:
        lines += ["", _extrapolation_sentence(s)]
    lines += ["", f"![cskd-bench runtime]({plot_name})"]
    return "\n".join(lines)


def _latency_rows(r: dict[str, Any]) -> list[str]:
    lat = r.get("latency") or []
    if not lat:
        return []
    threads = sorted({row["threads"] for row in lat})
    names = list(dict.fromkeys(row["artifact"] for row in lat))
    torch_med = {row["threads"]: row["median_ms"] for row in lat if row["format"] == "torch"}
    head = "| artifact | format | precision | size MB | " + " | ".join(f"{t} thr ms | vs torch" for t in threads) + " |"
    out = [head, "|" + "---|" * (4 + 2 * len(threads))]
    for n in names:
        rows = {row["threads"]: row for row in lat if row["artifact"] == n}
        first = next(iter(rows.values()))
        cells = []
        for t in threads:
            row = rows.get(t)
            if row is None:
                cells += ["", ""]
                continue
            ref = torch_med.get(t)
            if first["format"] == "torch":
                rel = "reference"
            else:
                rel = f"{ref / row['median_ms']:.1f}x faster" if ref else ""
            cells += [f"{row['median_ms']:.2f}", rel]
        out.append(f"| {n} | {first['format']} | {first['precision']} | {_f(first.get('size_mb'))} | "
                   + " | ".join(cells) + " |")
    return out


def _extrapolation_sentence(s: dict[str, Any]) -> str:
    e = s["extrapolation"]
    last = s["by_album_size"][-1]
    text = (f"**100k-photo library on this machine: about {e['minutes_default']:.0f} min** with cskd-runtime's "
            f"defaults ({last['images_per_s']:.1f} img/s), extrapolated linearly from the measured "
            f"{last['photos']}-photo album of {'/'.join(s['pool']['pixels'])} {s['pool']['format']} photos "
            f"({s['pool']['mean_file_mb']:.1f} MB each on average; page-cached, so disk reads are not included).")
    if s.get("linearity"):
        lin = s["linearity"]
        text += (f" Time per photo at {s['by_album_size'][-1]['photos']} photos is {lin:.2f}x that at "
                 f"{s['by_album_size'][0]['photos']}")
        text += (", so time grows linearly with album size (per-photo cost does not rise), which is what the "
                 "extrapolation assumes." if lin <= 1.1 else
                 ": per-photo cost rises with album size, so the linear extrapolation is optimistic.")
    if e.get("minutes_best_config") is not None:
        b = e["best_config"]
        text += (f" Best measured configuration ({b['processes']} process(es), {b['workers']} decode thread(s)): "
                 f"about {e['minutes_best_config']:.0f} min.")
    if e.get("minutes_naive") is not None:
        text += f" The naive pipeline would take about {e['minutes_naive'] / 60:.1f} h."
    return text


def markdown(r: dict[str, Any]) -> str:
    """The full report: every table of the run."""
    lines = ["# cskd-bench runtime", "", _machine_line(r), "",
             f"Model: {r.get('model')}. Command: `{r.get('command')}`. Wall time {r['wall_s'] / 60:.1f} min.", ""]
    for section, why in (r.get("skipped") or {}).items():
        lines.append(f"- {section}: skipped ({why})")
    lines += ["", "## Targets (baseline measured beside each target in this run)", ""] + _targets_table(r)

    lat = r.get("latency") or []
    if lat:
        torch_med = {row["threads"]: row["median_ms"] for row in lat if row["format"] == "torch"}
        lines += ["", "## Model latency", "",
                  "One image, each artifact in a fresh process: load = model load after imports; first = first "
                  f"inference; then {lat[0]['warmup']} warm-up runs and {lat[0]['runs']} timed runs. Peak RSS of the "
                  "process (Python + library + model).", "",
                  "| artifact | format | precision | threads | size MB | load ms | first ms | median ms | p90 ms | "
                  "p99 ms | runs | peak RSS MB | vs torch eager |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in lat:
            ref = torch_med.get(row["threads"])
            rel = "reference" if row["format"] == "torch" else (f"{ref / row['median_ms']:.2f}x faster" if ref else "")
            lines.append(
                f"| {row['artifact']} | {row['format']} | {row['precision']} | {row['threads']} | "
                f"{_f(row.get('size_mb'))} | {row['load_ms']:.0f} | {row['first_ms']:.1f} | {row['median_ms']:.2f} | "
                f"{row['p90_ms']:.2f} | {row['p99_ms']:.2f} | {row['runs']} | {row['peak_rss_mb']:.0f} | {rel} |")
        missing = [f"{f} {p}" for f in ("onnx", "tflite") for p in ("fp32", "fp16", "int8")
                   if not any(row["format"] == f and row["precision"] == p for row in lat)]
        if missing:
            lines += ["", f"Not among the artifacts measured: {', '.join(missing)}."]

    for a in r.get("album") or []:
        d = a["decode_breakdown"]
        lines += ["", f"## Album throughput: {a['artifact']}", "",
                  f"{a['photos']} photos: {a['photo_set']['text']}. Best of {len(a['naive']['seconds'])} alternating "
                  "runs each; model loading excluded.", "",
                  "| pipeline | images/s |", "|---|---|",
                  f"| naive: {a['naive']['config']} | {a['naive']['images_per_s']:.2f} |",
                  f"| {a['runtime']['config']} | {a['runtime']['images_per_s']:.2f} |",
                  f"| **speedup** (goal >= {a['target_speedup']:g}x) | **{a['speedup']:.2f}x** {_pf(a['speedup_pass'])} |",
                  "",
                  f"Scores, runtime (draft decode) vs naive (full decode), on the 1..10 scale: max |difference| "
                  f"{a['max_abs_score_delta']:.4f}, mean {a['mean_abs_score_delta']:.4f}; tolerance {a['tolerance']:g} "
                  f"per photo: {_pf(a['within_tolerance'])}.",
                  "",
                  f"Where the time goes (one thread, median per photo over {d['photos']}): full decode "
                  f"{d['full_decode_ms']:.0f} ms, + resize {d['full_decode_resize_ms']:.0f} ms; the runtime's "
                  f"preprocessing (draft decode, resize, then rotate) {d['draft_decode_resize_ms']:.0f} ms "
                  f"({d['full_decode_resize_ms'] / d['draft_decode_resize_ms']:.1f}x less). "
                  "The rest of the speedup comes from decoding on several threads while the model runs."]

    ov = r.get("overhead") or []
    if ov:
        lines += ["", "## Runtime overhead over a bare inference call (same tensor, same session)", "",
                  f"{ov[0]['runs']} alternating pairs per row. Overhead = median of the paired differences / median "
                  "bare call (the difference of the two medians, noisier on a shared CPU, is shown beside it). "
                  "Input cast: the runtime's conversion of the float tensor to the artifact's input dtype "
                  "(quantization for int8 inputs), included in the runtime call.", "",
                  "| artifact | threads | input | bare ms | runtime ms | paired diff ms | input cast ms | overhead | "
                  "diff of medians | goal |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for o in ov:
            lines.append(f"| {o['artifact']} | {o['threads']} | {o['input_dtype']} | {o['bare_median_ms']:.3f} | "
                         f"{o['runtime_median_ms']:.3f} | {o['overhead_ms']:.3f} | {o['input_cast_median_ms']:.3f} | "
                         f"{o['overhead_pct']:+.1f}% | {o['overhead_pct_of_medians']:+.1f}% | {_pf(o['pass'])} |")

    acc = r.get("accuracy")
    if acc and acc.get("rows"):
        has_ref = any("vs_torch" in row for row in acc["rows"])
        has_lab = any("labels" in row for row in acc["rows"])
        lines += ["", f"## Accuracy ({acc['photos']} photos{', ' + str(acc['labels']) + ' labelled' if has_lab else ''})",
                  ""]
        head = "| artifact | format | precision | mean score |"
        sep = "|---|---|---|---|"
        if has_ref:
            head += " max abs diff vs torch | mean abs diff | max prob diff | SRCC vs torch | PLCC vs torch |"
            sep += "---|---|---|---|---|"
        if has_lab:
            head += " SRCC | PLCC | MSE | accuracy |"
            sep += "---|---|---|---|"
        lines += [head, sep]
        for row in acc["rows"]:
            cells = [row["artifact"], row["format"], row["precision"], f"{row['mean_score']:.4f}"]
            if has_ref:
                v = row.get("vs_torch")
                cells += (["reference"] + [""] * 4 if row["format"] == "torch" else
                          [_f(v and v["max_abs_delta"], "{:.2e}"), _f(v and v["mean_abs_delta"], "{:.2e}"),
                           _f(v and v["max_abs_prob_delta"], "{:.2e}"), _f(v and v["srcc"], "{:.4f}"),
                           _f(v and v["plcc"], "{:.4f}")])
            if has_lab:
                lab = row.get("labels") or {}
                cells += [_f(lab.get("srcc"), "{:.4f}"), _f(lab.get("plcc"), "{:.4f}"), _f(lab.get("mse"), "{:.4f}"),
                          _f(lab.get("accuracy"), "{:.3f}")]
            lines.append("| " + " | ".join(cells) + " |")
        if not has_ref:
            lines += ["", "No checkpoint given (--checkpoint): parity against PyTorch not measured."]

    s = r.get("scaling")
    if s:
        lines += ["", f"## Scaling ({s['artifact']}; pool: {s['pool']['text']}, linked into albums)", "",
                  "| album | scoring s | wall s (incl. start-up) | images/s | ms/photo | peak RSS MB |",
                  "|---|---|---|---|---|---|"]
        for row in s["by_album_size"]:
            lines.append(f"| {row['photos']} | {row['seconds']:.1f} | {row['wall_s']:.1f} | {row['images_per_s']:.2f} | "
                         f"{row['ms_per_photo']:.1f} | {row['peak_rss_mb']:.0f} |")
        if s["sweep"]:
            lines += ["", f"Threads and processes ({s['sweep'][0]['photos']} photos each; wall time includes start-up):",
                      "", "| processes | inference threads each | decode threads each | wall s | images/s |",
                      "|---|---|---|---|---|"]
            for row in s["sweep"]:
                lines.append(f"| {row['processes']} | {row['threads'] or 'all'} | {row['workers']} | "
                             f"{row['wall_s']:.1f} | {row['images_per_s_wall']:.2f} |")
        lines += ["", _extrapolation_sentence(s)]

    p = r.get("phone") or {"status": "skipped", "reason": "not run"}
    lines += ["", "## Phones", ""]
    if p.get("status") == "skipped" or not p.get("devices"):
        lines.append(f"Skipped: {p.get('reason')}.")
    else:
        lines += ["| device | Android | ABI | status | model ms median | p90 | end-to-end median ms | iterations | "
                  "threads | provider |", "|---|---|---|---|---|---|---|---|---|---|"]
        for d in p["devices"]:
            demo = d.get("demo") or {}
            e2e = demo.get("end_to_end") or {}
            lines.append(f"| {d.get('manufacturer', '')} {d.get('model', d['serial'])} | {d.get('android', '')} | "
                         f"{d.get('abi', '')} | {d.get('status')} {d.get('reason') or demo.get('reason') or ''} | "
                         f"{_f(demo.get('median_ms'))} | {_f(demo.get('p90_ms'))} | {_f(e2e.get('median_ms'))} | "
                         f"{demo.get('iterations', '')} | {demo.get('threads', '')} | "
                         f"{demo.get('execution_provider', '')} |")
        for d in p["devices"]:
            bm = d.get("benchmark_model") or {}
            if bm.get("status") == "ok":
                for run in bm["runs"]:
                    lines += ["", f"benchmark_model on {d['serial']}, {run['artifact']} ({run['threads']} threads):",
                              "", "```", run.get("output", "").strip(), "```"]
            elif bm:
                lines += ["", f"benchmark_model on {d['serial']}: {bm.get('status')} ({bm.get('reason')})."]

    bm_text = r.get("benchmark_model") or []
    if bm_text:
        lines += ["", "## TFLite on this machine, in benchmark_model's format", "", "```"]
        lines += ["\n".join(t.strip() for t in bm_text)]
        lines += ["```"]
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> None:
    """Four panels: latency per artifact, album throughput, time vs album size (with 100k), threads/processes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(22, 5.5))
    ax = axes[0]
    lat = r.get("latency") or []
    if lat:
        threads = sorted({row["threads"] for row in lat})
        names = list(dict.fromkeys(row["artifact"] for row in lat))
        width = 0.8 / len(threads)
        for i, t in enumerate(threads):
            vals = [next((row["median_ms"] for row in lat if row["artifact"] == n and row["threads"] == t), 0.0)
                    for n in names]
            ax.barh([k + i * width for k in range(len(names))], vals, height=width, label=f"{t} thread(s)")
        ax.set_yticks([k + width * (len(threads) - 1) / 2 for k in range(len(names))], names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("median latency, ms, log scale (lower is better)")
        ax.legend(fontsize=8)
    ax.set_title("Model latency per artifact")

    ax = axes[1]
    albums = r.get("album") or []
    if albums:
        labels, vals, colors = [], [], []
        for a in albums:
            labels += [f"naive\n{a['artifact']}", f"cskd-runtime\n{a['artifact']}"]
            vals += [a["naive"]["images_per_s"], a["runtime"]["images_per_s"]]
            colors += ["grey", "tab:green"]
        ax.bar(range(len(vals)), vals, color=colors)
        ax.set_xticks(range(len(vals)), labels, fontsize=7)
        ax.set_ylabel("images / s (higher is better)")
        ratios = ", ".join(f"{a['speedup']:.1f}x" for a in albums)
        ax.set_title(f"{albums[0]['photo_set']['megapixels']:.0f} MP album throughput ({ratios})")
    else:
        ax.set_title("Album throughput (not run)")

    ax = axes[2]
    s = r.get("scaling")
    if s:
        rows = s["by_album_size"]
        xs, ys = [x["photos"] for x in rows], [x["seconds"] / 60 for x in rows]
        ax.plot(xs, ys, marker="o", label="measured")
        e = s["extrapolation"]
        ax.plot([xs[-1], e["photos"]], [ys[-1], e["minutes_default"]], ls="--", marker="x", color="tab:orange",
                label=f"linear extrapolation: {e['minutes_default']:.0f} min")
        if e.get("minutes_naive") is not None:
            ax.plot([e["photos"]], [e["minutes_naive"]], marker="s", color="grey",
                    label=f"naive pipeline: {e['minutes_naive']:.0f} min")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("photos in album")
        ax.set_ylabel("minutes")
        ax.legend(fontsize=8)
        ax.set_title("End-to-end time vs album size")

        ax = axes[3]
        sw = s["sweep"]
        if sw:
            lab = [f"{x['processes']} proc\n{x['workers']} decode thr" for x in sw]
            ax.bar(range(len(sw)), [x["images_per_s_wall"] for x in sw], color="tab:blue")
            ax.set_xticks(range(len(sw)), lab, fontsize=8)
            ax.set_ylabel("images / s")
        ax.set_title("Threads and processes")
    else:
        axes[2].set_title("Scaling (not run)")
        axes[3].set_title("Threads and processes (not run)")
    for a in axes:
        if not a.has_data():
            a.set_xticks([])
            a.set_yticks([])
    fig.suptitle(f"cskd-bench runtime — {r.get('model')} — {r['machine']['cpu']}, {r['machine']['cores']} cores",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    plt.close(fig)


def update_readme(readme: Path, block: str) -> bool:
    """Replace the generated block between the markers in ``readme`` (atomically). False if it has no markers."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        return False
    new = pattern.sub(lambda _: f"{README_START}\n{block}\n{README_END}", text)
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, readme)
    return True
