"""Data specs from recipes -> labeled items or unlabeled image lists.

A recipe names its data with small dicts, e.g.::

    labeled:   {format: csv, path: labels.csv}
    labeled:   {format: ava, table: AVA.txt, image_dir: images, split: train_ids.txt}
    unlabeled: {format: folder, path: /data/imagenet/train}
    unlabeled: {sources: [{format: folder, path: imagenet, weight: 0.4},
                          {format: folder, path: openimages, weight: 0.6}], size: 3000000, seed: 0}
    unlabeled: {format: shards, urls: "/data/shards/oi-{000000..000299}.tar"}

:func:`load_labeled` turns a labeled spec into :class:`~cskd_train.data.items.LabeledItem` records;
:func:`load_unlabeled` turns an unlabeled spec into a list of image paths (or, for shards, an iterable of
``(key, image)``). The AVA, AADB and PARA readers live in :mod:`cskd_train.data.labels`, webdataset shards in
:mod:`cskd_train.data.shards`; both are imported only when a recipe uses them.

Generic CSV format (``format: csv``): a header row with a ``path`` column and either distribution columns
``p1..pK`` (scores 1..K; any non-negative weights, normalised per row) or a ``mean`` column (optionally ``std``,
default ``default_std``) turned into a discretised Gaussian. Other columns are ignored. Relative paths resolve
against the CSV's folder.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .folders import IMAGE_EXTENSIONS
from .items import LabeledItem, gaussian_distribution, normalize_distribution

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataSpecError",
    "load_labeled",
    "load_unlabeled",
    "read_csv_labels",
    "read_csv_paths",
    "list_images",
    "mix_sources",
]

logger = logging.getLogger(__name__)

LABELED_FORMATS = ("csv", "ava", "aadb", "para")
UNLABELED_FORMATS = ("folder", "csv", "ava", "aadb", "para", "shards")


class DataSpecError(ValueError):
    """A data spec or label file is invalid; the message names the file (and row) and the problem."""


def _path(value: Any, root: str | os.PathLike | None, what: str) -> Path:
    if not value:
        raise DataSpecError(f"data spec: missing '{what}'")
    p = Path(str(value)).expanduser()
    if not p.is_absolute() and root is not None:
        p = Path(root) / p
    return p


def _fmt(spec: Mapping[str, Any], allowed: Sequence[str]) -> str:
    if not isinstance(spec, Mapping):
        raise DataSpecError(f"data spec must be a mapping, got {spec!r}")
    fmt = str(spec.get("format", "csv")).lower()
    if fmt not in allowed:
        raise DataSpecError(f"data spec: unknown format {fmt!r}; choose one of {', '.join(allowed)}")
    return fmt


# ----------------------------------------------------------------------------------------------------------------
# Labeled
# ----------------------------------------------------------------------------------------------------------------


def load_labeled(spec: Mapping[str, Any], root: str | os.PathLike | None = None, num_bins: int = 10) -> list[LabeledItem]:
    """Read a labeled data spec.

    Args:
        spec: ``{format: csv|ava|aadb|para, ...}``; optional ``limit`` keeps the first N items.
        root: Folder that relative paths in the spec resolve against (the recipe's folder).
        num_bins: Score bins expected (CSV mean-only rows and AVA use it; other sources must match it).

    Raises:
        DataSpecError: naming the file and row for malformed input, or a bin-count mismatch.
    """
    fmt = _fmt(spec, LABELED_FORMATS)
    if fmt == "csv":
        items = read_csv_labels(_path(spec.get("path"), root, "path"), num_bins=num_bins,
                                default_std=float(spec.get("default_std", 1.0)))  # fmt: skip
    else:
        from . import labels  # the dataset adapters (AVA / AADB / PARA)

        table = _path(spec.get("table"), root, "table")
        image_dir = _path(spec.get("image_dir"), root, "image_dir")
        if fmt == "ava":
            split = spec.get("split")
            split_path = _path(split, root, "split") if split else None
            items = labels.read_ava(table, image_dir, split=split_path, num_bins=num_bins)
        elif fmt == "aadb":
            items = labels.read_aadb(table, image_dir, num_bins=num_bins)
        else:
            items = labels.read_para(table, image_dir, num_bins=num_bins)
    if spec.get("limit"):
        items = items[: int(spec["limit"])]
    for it in items[:1]:
        if it.dist.shape != (num_bins,):
            raise DataSpecError(f"data spec {dict(spec)}: items have {it.dist.shape[0]} bins, config says {num_bins} "
                                "(set data.num_bins)")  # fmt: skip
    if not items:
        raise DataSpecError(f"data spec {dict(spec)}: no items")
    return items


_P_COL = re.compile(r"^p(\d+)$")


def read_csv_labels(path: str | os.PathLike, num_bins: int = 10, default_std: float = 1.0) -> list[LabeledItem]:
    """Read the generic CSV label format (see the module docstring).

    Raises:
        DataSpecError: naming the file and the 1-based line for a missing column, a bad number or a bad row.
    """
    p = Path(path)
    if not p.is_file():
        raise DataSpecError(f"{p}: label file not found")
    base = p.parent
    items: list[LabeledItem] = []
    with open(p, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if "path" not in cols:
            raise DataSpecError(f"{p}: no 'path' column (columns: {', '.join(cols) or 'none'})")
        pcols = sorted((int(m.group(1)), c) for c in cols if (m := _P_COL.match(c)))
        if pcols:
            idx = [i for i, _ in pcols]
            if idx != list(range(1, len(idx) + 1)):
                raise DataSpecError(f"{p}: distribution columns must be p1..pK without gaps, got {[c for _, c in pcols]}")
            if len(pcols) != num_bins:
                raise DataSpecError(f"{p}: {len(pcols)} distribution columns, config expects {num_bins} (data.num_bins)")
        elif "mean" not in cols:
            raise DataSpecError(f"{p}: needs distribution columns p1..p{num_bins} or a 'mean' column")
        for line, row in enumerate(reader, start=2):
            where = f"{p}:{line}"
            rel = (row.get("path") or "").strip()
            if not rel:
                raise DataSpecError(f"{where}: empty path")
            img = Path(rel).expanduser()
            img = img if img.is_absolute() else base / img
            try:
                if pcols:
                    dist = normalize_distribution(np.array([float(row[c]) for _, c in pcols]), where=where)
                else:
                    mean = float(row["mean"])
                    std = float(row["std"]) if row.get("std") not in (None, "") else default_std
                    if not (1.0 <= mean <= num_bins) or not np.isfinite(std) or std <= 0:
                        raise DataSpecError(f"{where}: mean {mean} outside 1..{num_bins} or std {std} not positive")
                    dist = gaussian_distribution(mean, std, num_bins)
            except (TypeError, ValueError) as exc:
                if isinstance(exc, DataSpecError):
                    raise
                raise DataSpecError(f"{where}: bad number ({exc})") from None
            items.append(LabeledItem(str(img), dist))
    if not items:
        raise DataSpecError(f"{p}: no rows")
    return items


def read_csv_paths(path: str | os.PathLike) -> list[str]:
    """Image paths from the ``path`` column of a CSV (labels, if any, ignored)."""
    p = Path(path)
    if not p.is_file():
        raise DataSpecError(f"{p}: file not found")
    with open(p, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if "path" not in (reader.fieldnames or []):
            raise DataSpecError(f"{p}: no 'path' column")
        out = []
        for line, row in enumerate(reader, start=2):
            rel = (row.get("path") or "").strip()
            if not rel:
                raise DataSpecError(f"{p}:{line}: empty path")
            q = Path(rel).expanduser()
            out.append(str(q if q.is_absolute() else p.parent / q))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Unlabeled
# ----------------------------------------------------------------------------------------------------------------


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Image files under ``folder`` (:func:`cskd_train.data.folders.list_images`), refusing an empty folder."""
    from .folders import list_images as _list

    root = Path(folder)
    try:
        out = _list(root, recursive=recursive)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise DataSpecError(str(exc)) from None
    if not out:
        raise DataSpecError(f"{root}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return out


def mix_sources(lists: Sequence[Sequence[str]], weights: Sequence[float], size: int | None = None,
                seed: int = 0) -> list[str]:  # fmt: skip
    """Mix image lists of any source kind (CSV, AVA, ...) with stated weights into one deterministic list.

    (Folder-only mixes go through :func:`cskd_train.data.folders.mix_unlabeled`.)

    Source ``i`` contributes ``round(size * w_i / sum(w))`` images (the last source takes the rounding rest). A
    source asked for more images than it has is cycled through whole seeded permutations, so every image of it
    appears before any repeats; fewer takes a seeded subset. The result is shuffled with ``seed``.

    Args:
        lists: Image paths per source.
        weights: Non-negative weight per source.
        size: Total images (default: the sum of the sources' sizes).
        seed: Seed for the subsets and the final order.
    """
    if len(lists) != len(weights):
        raise DataSpecError(f"mix: {len(lists)} sources but {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0 or not np.isfinite(w).all():
        raise DataSpecError(f"mix: weights must be non-negative with a positive sum, got {list(weights)}")
    total = int(size) if size else sum(len(x) for x in lists)
    counts = np.floor(total * w / w.sum()).astype(int)
    counts[int(np.argmax(w))] += total - counts.sum()
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for src, k in zip(lists, counts):
        if k <= 0:
            continue
        if not src:
            raise DataSpecError("mix: a source with positive weight has no images")
        reps = -(-k // len(src))
        order = np.concatenate([rng.permutation(len(src)) for _ in range(reps)])[:k]
        out.extend(src[i] for i in order)
    perm = rng.permutation(len(out))
    return [out[i] for i in perm]


def load_unlabeled(spec: Mapping[str, Any], root: str | os.PathLike | None = None) -> list[str] | Iterable[Any]:
    """Read an unlabeled data spec.

    Args:
        spec: One source (``format: folder|csv|ava|aadb|para|shards``) or ``{sources: [...], size, seed}`` where
            each source has a ``weight`` (default 1). Optional ``limit`` keeps the first N paths of a source.
        root: Folder that relative paths resolve against.

    Returns:
        A list of image paths, or for ``shards`` a :class:`cskd_train.data.shards.ShardImages` iterable of
        ``(key, PIL.Image)``.
    """
    if not isinstance(spec, Mapping):
        raise DataSpecError(f"unlabeled data spec must be a mapping, got {spec!r}")
    if "sources" in spec:
        stray = sorted(set(spec) & {"path", "format", "urls", "table"})
        if stray:
            raise DataSpecError(f"unlabeled data spec has 'sources' and also {stray}: set each source's own "
                                "fields (e.g. data.unlabeled.sources.0.path=...) or replace the whole spec")  # fmt: skip
        sources = spec["sources"]
        if not isinstance(sources, Sequence) or not sources:
            raise DataSpecError("unlabeled data spec: 'sources' must be a non-empty list")
        weights = [float(s.get("weight", 1.0)) for s in sources]
        fmts = [_fmt(s, UNLABELED_FORMATS) for s in sources]
        if "shards" in fmts:
            if set(fmts) != {"shards"}:
                raise DataSpecError("unlabeled data spec: shards cannot be mixed with file sources; "
                                    "shard the files too or use separate stages")  # fmt: skip
            from .shards import ShardImages

            return ShardImages([s["urls"] for s in sources], weights=weights, seed=int(spec.get("seed", 0)),
                               with_labels=False)
        if set(fmts) == {"folder"}:
            from .folders import mix_unlabeled

            folder_specs = [{**s, "path": str(_path(s.get("path"), root, "path"))} for s in sources]
            for fs in folder_specs:
                list_images(fs["path"], bool(fs.get("recursive", True)))  # an empty or missing folder is named
            return mix_unlabeled(folder_specs, total=spec.get("size"), seed=int(spec.get("seed", 0)))
        lists = [_one_unlabeled(s, root) for s in sources]
        mixed = mix_sources(lists, weights, spec.get("size"), int(spec.get("seed", 0)))
        logger.info("unlabeled mix: %s -> %d images",
                    ", ".join(f"{len(x)} x w{w:g}" for x, w in zip(lists, weights)), len(mixed))  # fmt: skip
        return mixed
    fmt = _fmt(spec, UNLABELED_FORMATS)
    if fmt == "shards":
        from .shards import ShardImages

        return ShardImages(spec["urls"], weights=spec.get("weights"), seed=int(spec.get("seed", 0)), with_labels=False)
    return _one_unlabeled(spec, root)


def _one_unlabeled(spec: Mapping[str, Any], root: str | os.PathLike | None) -> list[str]:
    fmt = _fmt(spec, UNLABELED_FORMATS)
    if fmt == "folder":
        paths = list_images(_path(spec.get("path"), root, "path"), recursive=bool(spec.get("recursive", True)))
    elif fmt == "csv":
        paths = read_csv_paths(_path(spec.get("path"), root, "path"))
    elif fmt == "shards":
        raise DataSpecError("shards are streamed; they cannot be listed as files")
    else:
        paths = [it.path for it in load_labeled(spec, root, int(spec.get("num_bins", 10)))]
    if spec.get("limit"):
        paths = paths[: int(spec["limit"])]
    return paths
