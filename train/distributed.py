"""One code path from one CPU process to many GPUs: process group setup, samplers, gathering.

Launch with plain ``python -m cskd_train.cli ...`` (one process) or ``torchrun --nproc_per_node N -m
cskd_train.cli ...``; torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) switches DDP on. The backend
is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

__all__ = [
    "DistInfo",
    "setup",
    "teardown",
    "barrier",
    "all_gather_objects",
    "broadcast_object",
    "ResumableDistributedSampler",
    "StreamSampler",
    "seed_everything",
    "rng_state",
    "set_rng_state",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world`` processes, its device, whether it is rank 0."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _pick_device(pref: str, local_rank: int) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("run.device=cuda but no CUDA device is available (use run.device=cpu or auto)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if pref != "cpu":
        raise ValueError(f"run.device must be auto, cpu or cuda (got {pref!r})")
    return torch.device("cpu")


def setup(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (env ``WORLD_SIZE`` > 1); otherwise a single process.

    Calling it again in the same process returns the existing setup.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        logger.info("rank %d/%d joined the %s process group on %s", rank, world, backend, dev)
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=dev)


def teardown() -> None:
    """Leave the process group (no-op in a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` that can start part-way through an epoch (after ``skip`` of this rank's samples).

    The permutation depends only on ``seed + epoch`` and the dataset length, and rank ``r`` takes positions
    ``r, r + world, ...``: with a per-rank batch of ``B / world``, the union of all ranks' k-th batches is the k-th
    batch of a single process with batch ``B``. DDP therefore trains on the same batches as one process.
    """

    def __init__(self, dataset: Any, num_replicas: int, rank: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:  # fmt: skip
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)  # fmt: skip
        self.skip = 0

    def set_skip(self, skip: int) -> None:
        self.skip = max(0, int(skip))

    def __iter__(self) -> Iterator[int]:
        it = list(super().__iter__())
        return iter(it[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class StreamSampler(Sampler[int]):
    """An endless, seeded stream of dataset indices cut into fixed global batches (the unlabeled part of SKD).

    Stream position ``q`` holds ``perm_c[q mod n]`` with ``c = q div n`` and ``perm_c`` a permutation seeded by
    ``(seed, c)``: every image appears once before any repeats. Epoch ``e`` covers positions
    ``[(e * steps + s) * batch, ...)`` for its ``steps`` batches; rank ``r`` takes every ``world``-th position, so
    DDP ranks together see exactly the single-process batches.
    """

    def __init__(self, n: int, global_batch: int, steps: int, rank: int = 0, world: int = 1, seed: int = 0) -> None:
        if global_batch % world:
            raise ValueError(f"the global unlabeled batch {global_batch} must be divisible by {world} processes")
        if n <= 0:
            raise ValueError("empty dataset")
        self.n, self.batch, self.steps = n, global_batch, steps
        self.rank, self.world, self.seed = rank, world, seed
        self.epoch = 0
        self.skip_steps = 0
        self._perm_cache: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_skip_steps(self, steps: int) -> None:
        self.skip_steps = max(0, int(steps))

    def _perm(self, c: int) -> np.ndarray:
        if c not in self._perm_cache:
            self._perm_cache = {c: np.random.default_rng([self.seed, 7919, c]).permutation(self.n)}
        return self._perm_cache[c]

    def __iter__(self) -> Iterator[int]:
        for s in range(self.skip_steps, self.steps):
            base = (self.epoch * self.steps + s) * self.batch
            for j in range(self.rank, self.batch, self.world):
                q = base + j
                yield int(self._perm(q // self.n)[q % self.n])

    def __len__(self) -> int:
        return (self.steps - self.skip_steps) * (self.batch // self.world)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All global RNG states as tensors and numbers (``torch.load(weights_only=True)``-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "python_version": int(py_state[0]),
        "python_state": torch.tensor(py_state[1], dtype=torch.int64),
        "python_gauss": py_state[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))  # fmt: skip
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_state"].tolist()),
                     state["python_gauss"]))  # fmt: skip
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Contiguous-free round-robin share of ``range(n)`` for rank ``rank`` (no padding, no duplicates)."""
    return list(range(rank, n, world))


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))


def gather_by_index(indices: Sequence[int], rows: torch.Tensor, n: int) -> torch.Tensor:
    """Assemble ``(n, ...)`` from every rank's ``(indices, rows)`` share (all ranks get the result)."""
    parts = all_gather_objects((list(indices), rows.cpu()))
    shape = next((r.shape[1:] for _, r in parts if r.numel()), rows.shape[1:])
    out = torch.full((n, *shape), float("nan"), dtype=rows.dtype)
    for idx, r in parts:
        if len(idx):
            out[torch.as_tensor(idx)] = r
    return out
