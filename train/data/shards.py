"""Tar shards (webdataset format) for the million-image unlabeled and labeled sets.

At the paper's scale (~3M unlabeled photos) a folder of loose files is slow to list, copy and read at random;
tar shards of a few thousand images are streamed sequentially instead. :func:`write_shards` packs image files
(bytes stored untouched, so no re-encoding changes what the model sees) and optional label distributions;
:class:`ShardImages` streams them back as upright RGB PIL images, decoded by ``cskd_runtime.imageio`` exactly as
the phone-side scorer decodes a photo (EXIF orientation, every PIL mode, decompression-bomb guard).

Sample layout inside a shard (webdataset convention: members sharing a key form one sample)::

    00000017_IMG_2041.jpg    the original file bytes (extension lower-cased, .jpeg/.jpe -> .jpg)
    00000017_IMG_2041.json   {"src": "<original path>", "dist": [p1, ..., pK], "mean": m}   (labeled items only)

Keys are ``<8-digit running index>_<file stem with [^A-Za-z0-9_-] replaced by _>`` (webdataset splits the member
name at the first dot, so keys must not contain one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch.utils.data
import webdataset as wds
from webdataset.shardlists import expand_urls

from cskd_runtime.imageio import DEFAULT_MAX_PIXELS, ImageDecodeError, load_rgb
from cskd_train.data.items import LabeledItem, mean_score

__all__ = ["IMAGE_EXTS", "write_shards", "ShardImages"]

logger = logging.getLogger(__name__)

#: Member extensions read as the image of a sample.
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
_EXT_ALIASES = {"jpeg": "jpg", "jpe": "jpg", "tif": "tiff"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _key(index: int, path: str) -> str:
    stem = _UNSAFE.sub("_", Path(path).stem)[:80]
    return f"{index:08d}_{stem}"


def write_shards(
    items_or_paths: Iterable[LabeledItem | str | os.PathLike[str]],
    out_pattern: str | os.PathLike[str],
    maxcount: int = 2000,
) -> list[str]:
    """Pack images (and their labels, if given) into tar shards.

    Args:
        items_or_paths: :class:`LabeledItem` (image + distribution) or plain image paths (unlabeled), mixed freely.
        out_pattern: printf-style shard path with one integer field, e.g. ``"shards/openimages-%06d.tar"``.
            Folders are created.
        maxcount: Samples per shard (the last shard may hold fewer). 2000 photos of ~250 kB give ~0.5 GB shards.

    Returns:
        The shard paths written, in order.

    Each shard is written to a temporary file next to it and renamed into place when complete, so an
    interrupted run never leaves a truncated shard under a final name.

    Raises:
        FileNotFoundError: an input image does not exist (named).
        ValueError: ``out_pattern`` has no ``%d``-style field, ``maxcount < 1``, or an input has an extension that
            is not an image (named).
    """
    pattern = os.fspath(out_pattern)
    try:
        if pattern % 0 == pattern % 1:
            raise TypeError
    except TypeError:
        raise ValueError(f"out_pattern {pattern!r} needs one integer field such as %06d") from None
    if maxcount < 1:
        raise ValueError(f"maxcount must be >= 1, got {maxcount}")

    written: list[str] = []
    state: dict[str, Any] = {"tar": None, "tmp": None, "count": 0}

    def close() -> None:
        if state["tar"] is None:
            return
        state["tar"].close()
        state["fh"].close()
        dest = pattern % len(written)
        os.replace(state["tmp"], dest)
        written.append(dest)
        state.update(tar=None, tmp=None, count=0)

    try:
        for index, item in enumerate(items_or_paths):
            if isinstance(item, LabeledItem):
                src, dist = os.fspath(item.path), np.asarray(item.dist, dtype=np.float64)
            else:
                src, dist = os.fspath(item), None
            ext = os.path.splitext(src)[1].lower().lstrip(".")
            ext = _EXT_ALIASES.get(ext, ext)
            if ext not in IMAGE_EXTS:
                raise ValueError(f"{src}: not an image file extension ({ext or 'none'}); expected one of {IMAGE_EXTS}")
            try:
                data = Path(src).read_bytes()
            except FileNotFoundError:
                raise FileNotFoundError(f"{src}: image not found while writing shards") from None
            if state["tar"] is None:
                dest = Path(pattern % len(written))
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
                state["fh"] = os.fdopen(fd, "wb")
                state.update(tar=wds.TarWriter(state["fh"], encoder=False), tmp=tmp)
            sample: dict[str, Any] = {"__key__": _key(index, src), ext: data}
            if dist is not None:
                label = {"src": src, "dist": dist.tolist(), "mean": float(mean_score(dist))}
                sample["json"] = json.dumps(label).encode()
            state["tar"].write(sample)
            state["count"] += 1
            if state["count"] >= maxcount:
                close()
        close()
    except BaseException:
        if state["tar"] is not None:
            with contextlib.suppress(Exception):
                state["tar"].close()  # else tarfile's __del__ later writes into the closed file
            state["fh"].close()
            Path(state["tmp"]).unlink(missing_ok=True)
        raise
    logger.info("wrote %d shards (%s)", len(written), pattern)
    return written


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------


def _log_and_continue(exn: BaseException) -> bool:
    """webdataset handler: a broken shard or member is logged (webdataset appends the shard URL) and skipped."""
    logger.warning("skipping unreadable shard data: %s", " | ".join(str(a) for a in exn.args if a is not None))
    return True


def _sub_seed(*parts: Any) -> int:
    """A stable 64-bit seed from parts (Python's hash() of strings differs between processes)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


def _as_url_list(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(spec, (str, os.PathLike)):
        return list(expand_urls(os.fspath(spec)))
    out: list[str] = []
    for u in spec:
        out.extend(expand_urls(os.fspath(u)))
    return out


class ShardImages(torch.utils.data.IterableDataset):
    """Stream ``(key, image)`` or ``(key, image, dist)`` from tar shards, optionally mixing several shard sets.

    Args:
        urls: One shard set - a brace pattern (``"data/oi-{000000..000299}.tar"``) or a list of shard paths - or,
            when ``weights`` is given, a list of such sets, one per weight.
        weights: Mixing weights of the sets (normalised; each sample comes from set ``i`` with probability
            ``w_i / sum(w)``). ``None``: ``urls`` is a single set.
        seed: Seeds shard order, the shuffle buffer and the mixing draws. Shard order is the same on every rank and
            worker (so splitting partitions it); buffers and draws differ per rank and worker.
        shuffle: Sample shuffle buffer size (0 = keep shard order). Shards themselves are also shuffled when > 0.
        resample: Draw shards with replacement forever (each rank/worker independently) instead of one pass.
            Default: ``True`` when mixing several sets (weights only hold while every set still has data), else
            ``False`` (one epoch). Bound an endless stream with the trainer's steps per epoch.
        with_labels: ``True``: yield ``(key, image, dist)`` and skip (with a log line) samples without a label;
            ``False``: yield ``(key, image)`` and ignore labels; ``None``: per sample, 3-tuple iff it has a label.
        draft_size: Passed to ``cskd_runtime.imageio``: JPEG DCT-domain downscaling to at least this (w, h),
            several times faster for large photos that will be resized to 256 anyway.
        max_pixels: Decompression-bomb limit (header checked before decoding).

    Splitting: in one-pass mode, shards are split over DDP ranks with ``webdataset.split_by_node`` and then over
    DataLoader workers with ``webdataset.split_by_worker`` (both read ``RANK``/``WORLD_SIZE`` or torch.distributed
    and torch's worker info), so every shard is read by exactly one worker of one rank per epoch. Use at least as
    many shards as ``world_size * num_workers``; fewer leaves some workers idle (logged).

    Broken data never stops training: an unreadable shard or tar member is skipped through a webdataset
    handler, an image that fails to decode is logged with its shard and key and skipped.

    Call :meth:`set_epoch` before each epoch to get a new shard order and shuffle.
    """

    def __init__(
        self,
        urls: str | os.PathLike[str] | Sequence[Any],
        weights: Sequence[float] | None = None,
        seed: int = 0,
        shuffle: int = 1000,
        *,
        resample: bool | None = None,
        with_labels: bool | None = None,
        draft_size: tuple[int, int] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__()
        if weights is None:
            self.sets = [_as_url_list(urls)]
            self.weights = [1.0]
        else:
            if isinstance(urls, (str, os.PathLike)) or len(urls) != len(weights):
                raise ValueError("with weights, urls must be a list of shard sets, one per weight")
            self.sets = [_as_url_list(u) for u in urls]
            self.weights = [float(w) for w in weights]
            if any(not np.isfinite(w) or w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"weights must be finite, >= 0 and not all zero: {list(weights)}")
        for k, s in enumerate(self.sets):
            if not s:
                raise ValueError(f"shard set #{k} is empty")
        self.seed = int(seed)
        self.shuffle = int(shuffle)
        self.resample = (len(self.sets) > 1) if resample is None else bool(resample)
        self.with_labels = with_labels
        self.draft_size = draft_size
        self.max_pixels = max_pixels
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (changes shard order, shuffle and mixing draws reproducibly)."""
        self.epoch = int(epoch)

    # -- shard streams --------------------------------------------------------------------------------------------

    def _shard_urls(self, k: int, rank: int, worker: int) -> Iterator[dict[str, str]]:
        urls = list(self.sets[k])
        if self.resample:
            # Endless draws with replacement; each rank/worker has its own stream so they do not read in lockstep.
            rng = random.Random(_sub_seed(self.seed, self.epoch, k, rank, worker, "resample"))
            while True:
                yield {"url": rng.choice(urls)}
        if self.shuffle > 0:
            random.Random(_sub_seed(self.seed, self.epoch, k, "shards")).shuffle(urls)  # same on every rank/worker
        src: Iterable[str] = wds.split_by_worker(wds.split_by_node(iter(urls)))
        yield from ({"url": u} for u in src)

    def _samples(self, k: int, rank: int, worker: int) -> Iterator[dict[str, Any]]:
        samples = wds.tarfile_to_samples(handler=_log_and_continue)(self._shard_urls(k, rank, worker))
        if self.shuffle <= 1:
            yield from samples
            return
        rng = random.Random(_sub_seed(self.seed, self.epoch, k, rank, worker, "buffer"))
        buf: list[dict[str, Any]] = []
        for s in samples:
            if len(buf) < self.shuffle:
                buf.append(s)
                continue
            j = rng.randrange(len(buf))
            buf[j], s = s, buf[j]
            yield s
        rng.shuffle(buf)
        yield from buf

    def _decode(self, sample: dict[str, Any]) -> tuple | None:
        key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None:
            logger.warning("%s: sample %s has no image member (has %s); skipped", url, key, sorted(sample))
            return None
        try:
            img = load_rgb(sample[ext], draft_size=self.draft_size, max_pixels=self.max_pixels, name=f"{url}:{key}")
        except ImageDecodeError as exc:
            logger.warning("%s: corrupt sample %s skipped: %s", url, key, exc.reason)
            return None
        if self.with_labels is False:
            return key, img
        dist = None
        if "json" in sample:
            try:
                dist = np.asarray(json.loads(sample["json"])["dist"], dtype=np.float32)
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("%s: sample %s has an unreadable label (%s); skipped", url, key, exc)
                return None
        if dist is None:
            if self.with_labels:
                logger.warning("%s: sample %s has no label but with_labels=True; skipped", url, key)
                return None
            return key, img
        return key, img, dist

    def __iter__(self) -> Iterator[tuple]:
        rank, world, worker, nworkers = wds.utils.pytorch_worker_info()
        if not self.resample:
            for k, s in enumerate(self.sets):
                if len(s) < world * nworkers:
                    logger.warning(
                        "shard set #%d has %d shards for %d ranks x %d workers: some readers get no data",
                        k, len(s), world, nworkers,
                    )  # fmt: skip
        streams = [self._samples(k, rank, worker) for k in range(len(self.sets))]
        if len(streams) == 1:
            source: Iterator[dict[str, Any]] = streams[0]
        else:
            source = self._mix(streams, rank, worker)
        for sample in source:
            out = self._decode(sample)
            if out is not None:
                yield out

    def _mix(self, streams: list[Iterator[dict[str, Any]]], rank: int, worker: int) -> Iterator[dict[str, Any]]:
        """Seeded weighted choice between sets (webdataset's RandomMix uses the unseeded global RNG)."""
        rng = np.random.default_rng(_sub_seed(self.seed, self.epoch, rank, worker, "mix"))
        live = [i for i, w in enumerate(self.weights) if w > 0]
        while live:
            p = np.asarray([self.weights[i] for i in live])
            i = live[int(rng.choice(len(live), p=p / p.sum()))]
            try:
                yield next(streams[i])
            except StopIteration:
                # One-pass mixing: a finished set drops out and the others go on (logged: proportions change).
                logger.info("shard set #%d exhausted; continuing with the others", i)
                live.remove(i)
