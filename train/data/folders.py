"""Unlabeled image folders: listing, and mixing several folders with stated weights.

The CFA and SKD stages draw unlabeled photos from several sources (the paper mixes ImageNet and OpenImages;
mixed sources beat a single one). :func:`mix_unlabeled` turns folders plus weights into one deterministic,
shuffled path list in which each source's share is its weight.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "list_images", "mix_unlabeled"]

logger = logging.getLogger(__name__)

#: File extensions taken as images (lower-case; matched case-insensitively). All are decodable by Pillow, which
#: is what ``cskd_runtime.imageio`` uses, so a listed file is one the phone-side decoder can also open.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[str]:
    """Image files under ``folder``, sorted by path.

    Files are recognised by extension (:data:`IMAGE_EXTENSIONS`, any case). Hidden files and hidden folders (name
    starting with ``.``, e.g. ``.DS_Store``, ``._IMG_1.jpg`` resource forks, ``.thumbnails/``) are skipped.
    Symlinked folders are not followed (no cycles). Paths are returned as strings, ``folder`` joined with the
    relative path, so they are absolute when ``folder`` is.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        NotADirectoryError: ``folder`` is a file.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"{root}: image folder does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    found: list[str] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.extend(
                os.path.join(dirpath, f)
                for f in filenames
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            )
    else:
        with os.scandir(root) as it:
            found.extend(
                os.path.join(root, e.name)
                for e in it
                if not e.name.startswith(".")
                and e.is_file()
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
            )
    return sorted(found)


def _largest_remainder(fracs: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` that are as close as possible to ``fracs * total``."""
    raw = fracs * total
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts


def mix_unlabeled(
    sources: Sequence[Mapping[str, Any]], total: int | None = None, seed: int = 0
) -> list[str]:
    """One shuffled list of image paths drawn from several folders in stated proportions.

    Each source is a mapping with ``path`` (a folder, listed with :func:`list_images`), ``weight`` (default 1;
    0 excludes the source) and optionally ``recursive`` (default True). Weights are normalised to fractions of
    the drawn list: source ``i`` contributes ``round(w_i / sum(w) * total)`` paths (largest-remainder rounding,
    so the counts add up to ``total`` exactly).

    * ``total=None`` draws as many paths as all sources hold together (``sum n_i``), so with weights proportional
      to folder sizes every image appears exactly once.
    * A source with at least its share of images contributes distinct images (drawn without replacement).
    * A source *smaller* than its share is sampled with replacement, in the low-variance form: every image is
      used ``share // n`` times plus ``share % n`` distinct ones once more. A log line states the factor.

    The result depends only on the folder contents, the weights, ``total`` and ``seed`` (numpy PCG64); the final
    list is shuffled so sources interleave.

    Raises:
        ValueError: no sources, a negative or non-finite weight, all weights zero, a weighted source without
            images (named), or ``total < 0``.
        FileNotFoundError: a source folder does not exist.
    """
    if not sources:
        raise ValueError("mix_unlabeled: no sources given")
    lists: list[list[str]] = []
    weights: list[float] = []
    names: list[str] = []
    for k, src in enumerate(sources):
        if "path" not in src:
            raise ValueError(f"mix_unlabeled: source #{k} has no 'path': {dict(src)}")
        w = float(src.get("weight", 1.0))
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"mix_unlabeled: source {src['path']}: weight must be a finite number >= 0, got {w}")
        paths = list_images(src["path"], recursive=bool(src.get("recursive", True))) if w > 0 else []
        if w > 0 and not paths:
            raise ValueError(f"{src['path']}: no images found (extensions {sorted(IMAGE_EXTENSIONS)})")
        lists.append(paths)
        weights.append(w)
        names.append(os.fspath(src["path"]))
    wsum = sum(weights)
    if wsum <= 0:
        raise ValueError("mix_unlabeled: all weights are zero")
    sizes = np.array([len(p) for p in lists])
    n_total = int(sizes.sum()) if total is None else int(total)
    if n_total < 0:
        raise ValueError(f"mix_unlabeled: total must be >= 0, got {total}")
    counts = _largest_remainder(np.asarray(weights) / wsum, n_total)
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for name, paths, want in zip(names, lists, counts):
        if want == 0:
            continue
        n = len(paths)
        reps, rest = divmod(int(want), n)
        if reps:
            logger.info(
                "%s: %d images for a share of %d: sampling with replacement (each image %d-%d times)",
                name, n, want, reps, reps + (1 if rest else 0),
            )  # fmt: skip
        idx = np.concatenate([np.tile(np.arange(n), reps), rng.permutation(n)[:rest]])
        out.extend(paths[i] for i in idx)
    order = rng.permutation(len(out))
    logger.info(
        "mixed %d unlabeled images from %d sources: %s", len(out), len(names),
        ", ".join(f"{nm}={c}" for nm, c in zip(names, counts)),
    )  # fmt: skip
    return [out[i] for i in order]
