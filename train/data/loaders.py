"""DataLoaders for one epoch of one rank, resumable mid-epoch.

Global batch sizes are split evenly over DDP ranks, and the samplers (:mod:`cskd_train.distributed`) make the
union of the ranks' k-th batches equal to a single process's k-th batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .. import distributed as D
from .datasets import collate_skip

__all__ = ["per_rank", "labeled_steps", "labeled_loader", "stream_loader"]


def per_rank(global_batch: int, info: D.DistInfo, what: str = "optim.batch_size") -> int:
    """This rank's share of a global batch; refuses a batch that does not split evenly."""
    if global_batch <= 0 or global_batch % info.world:
        raise ValueError(f"{what}={global_batch} must be a positive multiple of the {info.world} processes")
    return global_batch // info.world


def labeled_steps(n: int, global_batch: int) -> int:
    """Full batches per epoch (the incomplete last batch is dropped, as in the paper's setting)."""
    return n // global_batch


def _generator(seed: int) -> torch.Generator:
    # A private generator: creating an iterator never draws from the global RNG (see engine.loader_generator).
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def labeled_loader(ds: Dataset, global_batch: int, info: D.DistInfo, seed: int, epoch: int, skip_steps: int,
                   workers: int = 0, shuffle: bool = True) -> DataLoader:  # fmt: skip
    """Epoch ``epoch`` of a map-style dataset for this rank, starting after ``skip_steps`` batches."""
    b = per_rank(global_batch, info)
    sampler = D.ResumableDistributedSampler(ds, num_replicas=info.world, rank=info.rank, shuffle=shuffle, seed=seed,
                                            drop_last=True)  # fmt: skip
    sampler.set_epoch(epoch)
    sampler.set_skip(skip_steps * b)
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)
    return DataLoader(ds, batch_size=b, sampler=sampler, drop_last=True, num_workers=workers, collate_fn=collate_skip,
                      generator=_generator(seed + epoch), pin_memory=info.device.type == "cuda")  # fmt: skip


def stream_loader(ds: Dataset, global_batch: int, steps: int, info: D.DistInfo, seed: int, epoch: int,
                  skip_steps: int, workers: int = 0) -> DataLoader:  # fmt: skip
    """``steps`` batches of an endless seeded stream over ``ds`` (SKD's unlabeled part), for this rank."""
    b = per_rank(global_batch, info, "the unlabeled batch mu * batch_size")
    sampler = D.StreamSampler(len(ds), global_batch, steps, rank=info.rank, world=info.world, seed=seed)
    sampler.set_epoch(epoch)
    sampler.set_skip_steps(skip_steps)
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)
    return DataLoader(ds, batch_size=b, sampler=sampler, drop_last=False, num_workers=workers, collate_fn=collate_skip,
                      generator=_generator(seed + 104729 + epoch), pin_memory=info.device.type == "cuda")  # fmt: skip


def iterable_loader(ds: Any, global_batch: int, info: D.DistInfo, workers: int = 0) -> DataLoader:
    """Batches of a streamed dataset (shards); the dataset splits items across ranks and workers itself."""
    return DataLoader(ds, batch_size=per_rank(global_batch, info), num_workers=workers, collate_fn=collate_skip,
                      pin_memory=info.device.type == "cuda")  # fmt: skip
