"""``cskd-score``: score photos and folders from the shell.

Results stream as they are computed (table, JSON Lines or CSV on stdout); problems go to stderr, one line per
file with its path and the reason, and every other file is still scored. Exit status: 0 when every file was
scored, 1 when some could not be, 2 for usage errors (bad model, no inputs).
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
from typing import Iterator, Sequence, TextIO

__all__ = ["main", "iter_image_paths", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm",
     ".tga", ".heic", ".heif", ".avif"}
)


def iter_image_paths(inputs: Sequence[str], recursive: bool, errors: list[tuple[str, str]]) -> Iterator[Path]:
    """Yield photo paths lazily (a 100k-photo tree is never listed in memory at once).

    Files named on the command line are always tried, whatever their suffix; inside folders only files with
    an image suffix are taken. Missing inputs are appended to ``errors``.
    """
    for raw in inputs:
        p = Path(raw)
        if p.is_file():
            yield p
        elif p.is_dir():
            yield from _walk(p, recursive)
        else:
            errors.append((raw, "no such file or directory"))


def _walk(folder: Path, recursive: bool) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot list %s: %s", folder, exc)
        return
    dirs = []
    for e in entries:
        if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES:
            yield Path(e.path)
        elif recursive and e.is_dir(follow_symlinks=False):
            dirs.append(Path(e.path))
    for d in dirs:
        yield from _walk(d, recursive)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from . import __version__

    ap = argparse.ArgumentParser(
        prog="cskd-score",
        description="Score the aesthetics of photos with a cskd model (the bundled default model unless --model).",
    )
    ap.add_argument("paths", nargs="*", metavar="PATH", help="photos or folders")
    ap.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    ap.add_argument("--format", choices=("table", "json", "csv"), default="table",
                    help="output format; json prints one JSON object per line (JSON Lines)")
    ap.add_argument("--top", type=int, metavar="K", help="print only the K best photos, best first")
    ap.add_argument("--model", metavar="FILE", help=".onnx or .tflite model with an embedded cskd manifest")
    ap.add_argument("--threads", type=int, metavar="N", help="inference threads (default: all cores)")
    ap.add_argument("--workers", type=int, metavar="N", help="decoding threads (default: min(4, cores))")
    ap.add_argument("--batch-size", type=int, default=16, metavar="N", help="photos per inference batch")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    ap.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    ap.add_argument("--version", action="version", version=f"cskd-score {__version__}")
    return ap.parse_args(argv)


class _Progress:
    """A progress line on stderr: tqdm when installed, a plain counter otherwise (the runtime stays light)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.n = 0
        self.failed = 0
        self.t0 = time.perf_counter()
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(unit="photo", file=sys.stderr, dynamic_ncols=True, leave=False)
            except ImportError:
                self._bar = None

    def update(self, ok: bool) -> None:
        self.n += 1
        self.failed += not ok
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
        elif self.n % 50 == 0:
            rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
            print(f"\r{self.n} photos, {rate:.1f}/s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.n >= 50:
            print(file=sys.stderr)


class _Writer:
    def __init__(self, fmt: str, out: TextIO, bins: int) -> None:
        self.fmt, self.out, self.bins = fmt, out, bins
        self._csv = csv.writer(out) if fmt == "csv" else None
        if fmt == "csv":
            self._csv.writerow(["path", "status", "mean", "std", "percentile", *[f"p{i + 1}" for i in range(bins)], "error"])
        elif fmt == "table":
            print(f"{'mean':>6} {'std':>5} {'pct':>5}  path", file=out)

    def write(self, outcome) -> None:
        d = outcome.to_dict()
        if self.fmt == "json":
            print(json.dumps(d), file=self.out, flush=True)
        elif self.fmt == "csv":
            if d["ok"]:
                pct = "" if d["percentile"] is None else f"{d['percentile']:.1f}"
                self._csv.writerow([d["source"], "ok", f"{d['mean']:.4f}", f"{d['std']:.4f}", pct,
                                    *[f"{v:.5f}" for v in d["distribution"]], ""])
            else:
                self._csv.writerow([d["source"], "error", "", "", "", *[""] * self.bins, d["error"]])
            self.out.flush()
        elif d["ok"]:
            pct = "" if d["percentile"] is None else f"{d['percentile']:.0f}"
            print(f"{d['mean']:6.3f} {d['std']:5.3f} {pct:>5}  {d['source']}", file=self.out, flush=True)
        else:
            print(f"{'-':>6} {'-':>5} {'':>5}  {d['source']}  ERROR: {d['error']}", file=self.out, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cskd-score``; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.paths:
        print("cskd-score: error: give at least one photo or folder (see --help)", file=sys.stderr)
        return 2
    if args.top is not None and args.top < 1:
        print("cskd-score: error: --top must be at least 1", file=sys.stderr)
        return 2

    from .backends import ModelLoadError
    from .scorer import Scorer, ScoreError

    try:
        scorer = Scorer(args.model, threads=args.threads, workers=args.workers)
    except (ModelLoadError, ImportError) as exc:
        print(f"cskd-score: error: {exc}", file=sys.stderr)
        return 2

    missing: list[tuple[str, str]] = []
    paths = iter_image_paths(args.paths, args.recursive, missing)
    writer = _Writer(args.format, sys.stdout, len(scorer.manifest.output.bins))
    progress = _Progress(enabled=not args.no_progress and sys.stderr.isatty())
    failures = 0

    def report(outcome) -> None:
        nonlocal failures
        if isinstance(outcome, ScoreError):
            failures += 1
            print(f"cskd-score: {outcome.source}: {outcome.reason}", file=sys.stderr, flush=True)

    try:
        if args.top:
            # Bounded memory: a heap of K results, failures reported as they happen.
            import heapq

            heap: list = []
            for i, outcome in enumerate(scorer.iter_scores(paths, batch_size=args.batch_size)):
                progress.update(outcome.ok)
                if not outcome.ok:
                    report(outcome)
                    continue
                entry = (outcome.mean, -i, outcome)
                if len(heap) < args.top:
                    heapq.heappush(heap, entry)
                elif entry > heap[0]:
                    heapq.heapreplace(heap, entry)
            progress.close()
            for _, _, outcome in sorted(heap, key=lambda e: (e[0], e[1]), reverse=True):
                writer.write(outcome)
        else:
            for outcome in scorer.iter_scores(paths, batch_size=args.batch_size):
                progress.update(outcome.ok)
                writer.write(outcome)
                report(outcome)
            progress.close()
    except KeyboardInterrupt:
        progress.close()
        print("cskd-score: interrupted", file=sys.stderr)
        return 130
    for path, reason in missing:
        failures += 1
        print(f"cskd-score: {path}: {reason}", file=sys.stderr)
    if progress.n == 0 and not missing:
        print("cskd-score: no photos found in the given paths", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
