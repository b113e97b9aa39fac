"""torch Datasets for training and evaluation.

* Training views follow the paper (Sec. 4.2): stretch to ``resize x resize``, random ``size x size`` crop, random
  horizontal flip (p = 0.5), then the model's own normalisation (from its manifest). The randomness of each view
  is a pure function of ``(seed, epoch, index)``, not of a process-global RNG, so a resumed run, any number of
  DataLoader workers and any number of DDP processes all see exactly the same views.
* Evaluation views are :func:`cskd_runtime.preprocess.preprocess` with the manifest's ``InputSpec``: the very
  tensors the exported model gets on the phone.
* Decoding always goes through :mod:`cskd_runtime.imageio` (EXIF orientation, every PIL mode, bomb guard). An
  image that cannot be decoded is logged with its path and reason and dropped from its batch
  (:func:`collate_skip`), never a crash.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from cskd_runtime.imageio import ImageDecodeError, load_rgb
from cskd_runtime.manifest import InputSpec
from cskd_runtime.preprocess import _RESAMPLE, draft_size, normalize, preprocess

from .items import LabeledItem

__all__ = [
    "TrainView",
    "EvalView",
    "LabeledDataset",
    "UnlabeledDataset",
    "ShardStream",
    "collate_skip",
]

logger = logging.getLogger(__name__)


class TrainView:
    """The paper's training augmentation with the model's normalisation, deterministic per (epoch, index).

    Args:
        spec: The model's input contract (normalisation, interpolation, background for transparency).
        size: Crop side (the model input, paper 224).
        resize: Side of the square resize before cropping (paper 256).
        hflip: Random horizontal flip with p = 0.5.
        seed: Run seed mixed into every view's random numbers.
    """

    def __init__(self, spec: InputSpec, size: int, resize: int, hflip: bool = True, seed: int = 0) -> None:
        if resize < size:
            raise ValueError(f"train resize {resize} is smaller than the crop {size}")
        self.spec = spec
        self.size = size
        self.resize = resize
        self.hflip = hflip
        self.seed = seed

    def load(self, src: Any, name: str | None = None) -> Image.Image:
        # JPEG draft decoding down to 2x the training resize keeps decode cost flat for 12 MP photos.
        return load_rgb(src, background=self.spec.background, draft_size=(2 * self.resize, 2 * self.resize), name=name)

    def params(self, epoch: int, index: int) -> tuple[int, int, bool]:
        """Crop offsets (left, top) and flip for one sample: the same in every process and on resume."""
        rng = np.random.default_rng([self.seed, epoch, index])
        span = self.resize - self.size + 1
        left, top = (int(v) for v in rng.integers(0, span, size=2))
        flip = bool(self.hflip and rng.random() < 0.5)
        return left, top, flip

    def __call__(self, img: Image.Image, epoch: int, index: int) -> torch.Tensor:
        img = img.resize((self.resize, self.resize), resample=_RESAMPLE[self.spec.interpolation], reducing_gap=None)
        left, top, flip = self.params(epoch, index)
        img = img.crop((left, top, left + self.size, top + self.size))
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = normalize(np.asarray(img), self.spec)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class EvalView:
    """The runtime contract's preprocessing (what the phone computes), as a CHW float tensor."""

    def __init__(self, spec: InputSpec) -> None:
        # The training code always works in NCHW float; the layout/dtype of exported artifacts is the exporter's.
        self.spec = InputSpec(**{**spec.to_dict(), "layout": "NCHW", "dtype": "float32", "quantization": None,
                                 "background": tuple(spec.background), "mean": tuple(spec.mean),
                                 "std": tuple(spec.std)})  # fmt: skip

    def load(self, src: Any, name: str | None = None) -> Image.Image:
        return load_rgb(src, background=self.spec.background, draft_size=draft_size(self.spec), name=name)

    def __call__(self, img: Image.Image, epoch: int = 0, index: int = 0) -> torch.Tensor:
        return torch.from_numpy(preprocess(img, self.spec)[0])


View = Callable[..., torch.Tensor]


def _decode(view: Any, path: str) -> Image.Image | None:
    try:
        return view.load(path, name=path)
    except ImageDecodeError as exc:
        logger.warning("skipping undecodable image %s", exc)
    except OSError as exc:  # e.g. permission denied, I/O error on a network mount
        logger.warning("skipping unreadable image %s: %s", path, exc)
    return None


class LabeledDataset(Dataset):
    """``(image tensor, target distribution, index)`` per item; None for an undecodable image.

    Args:
        items: Labeled records.
        view: :class:`TrainView` or :class:`EvalView`.
    """

    def __init__(self, items: Sequence[LabeledItem], view: Any) -> None:
        self.items = list(items)
        self.view = view
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        item = self.items[index]
        img = _decode(self.view, item.path)
        if img is None:
            return None
        return self.view(img, self.epoch, index), torch.as_tensor(item.dist, dtype=torch.float32), index


class UnlabeledDataset(Dataset):
    """``(image tensor, index)`` per image path; None for an undecodable image.

    Args:
        paths: Image paths.
        view: :class:`TrainView` or :class:`EvalView`.
    """

    def __init__(self, paths: Sequence[str], view: Any) -> None:
        self.paths = list(paths)
        self.view = view
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        img = _decode(self.view, self.paths[index])
        if img is None:
            return None
        return self.view(img, self.epoch, index), index


class ShardStream(IterableDataset):
    """Streams ``(view, key)`` from webdataset shards (:class:`cskd_train.data.shards.ShardImages`).

    ``ShardImages`` already splits shards across DDP ranks and DataLoader workers (or, when mixing, gives each
    reader its own seeded stream) and decodes through ``cskd_runtime.imageio``, skipping corrupt samples. This
    wrapper applies the training view (seeded by a hash of the key, so a sample's crop does not depend on which
    reader got it) and, for a resumed epoch, drops the first ``skip`` items of this reader.
    """

    def __init__(self, images: Any, view: Any) -> None:
        self.images = images
        self.view = view
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.images, "set_epoch"):
            self.images.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Any, str]]:
        info = get_worker_info()
        workers = info.num_workers if info else 1
        # The skip counts items of this rank; spread it over its workers (each reads its own shards).
        skip = self.skip // workers
        for pos, sample in enumerate(self.images):
            if pos < skip:
                continue
            key, img = sample[0], sample[1]
            index = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") & 0x7FFFFFFF
            yield self.view(img, self.epoch, index), key


def collate_skip(batch: list[Any]) -> Any:
    """``default_collate`` after dropping the None entries of undecodable images (None if all failed)."""
    from torch.utils.data import default_collate

    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    return default_collate(kept)
