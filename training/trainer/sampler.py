"""A batch sampler whose order is a pure function of (seed, epoch), sharded over data-parallel ranks.

Why: resuming must reproduce the data order. Paddle's ``DistributedBatchSampler`` shuffles with
``RandomState(epoch)`` and bumps its own epoch on every ``__iter__``, so its order depends on how many times
it was iterated and ignores the run's seed. Here the trainer calls ``set_epoch(e)`` before each epoch and,
on resume, ``skip(n)`` to drop the ``n`` batches already consumed *without loading them*.

Example::

    sampler = ResumableBatchSampler(dataset, batch_size=8, shuffle=True, drop_last=True, seed=cfg.seed)
    loader = paddle.io.DataLoader(dataset, batch_sampler=sampler, num_workers=2)
    Trainer(model, loss_fn, loader, ...)   # the trainer drives set_epoch/skip

For augmentation to be reproducible across a resume as well, datasets should draw their randomness from
``(seed, epoch, index)`` rather than from the global numpy state (DataLoader reader threads/workers consume
the global state ahead of the training step, so its timing is not deterministic).
"""
from __future__ import annotations

import math
from typing import Iterator, Sized

import numpy as np

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

from paddle.io import BatchSampler

from training.trainer import distributed as _dist

__all__ = ["ResumableBatchSampler"]


class ResumableBatchSampler(BatchSampler):
    """Shuffle with ``RandomState(seed + epoch)``, pad to a multiple of the rank count, shard ``rank::n``.

    With ``n`` ranks of batch ``b``, the union of the ranks' ``i``-th batches is exactly the ``i``-th batch
    of size ``n*b`` of a single process with the same seed, so data-parallel and single-process runs see the
    same samples per optimizer step.
    """

    def __init__(
        self,
        dataset: Sized,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.sampler = None  # paddle code probes this attribute on BatchSamplers
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.nranks = int(num_replicas if num_replicas is not None else _dist.world_size())
        self.local_rank = int(rank if rank is not None else _dist.rank())
        if not 0 <= self.local_rank < self.nranks:
            raise ValueError(f"rank {self.local_rank} outside [0, {self.nranks})")
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (the trainer calls this before every epoch)."""
        self.epoch = int(epoch)

    def skip(self, num_batches: int) -> None:
        """Drop the first ``num_batches`` batches of the next iteration only (resume mid-epoch)."""
        if num_batches < 0:
            raise ValueError("num_batches must be >= 0")
        self._skip = int(num_batches)

    def _rank_indices(self) -> list[int]:
        num = len(self.dataset)
        indices = np.arange(num)
        if self.shuffle:
            np.random.RandomState((self.seed + self.epoch) % (2**32)).shuffle(indices)
        per_rank = math.ceil(num / self.nranks) if num else 0
        pad = per_rank * self.nranks - num
        if pad:
            indices = np.concatenate([indices, indices[:pad]])
        return indices[self.local_rank :: self.nranks].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        indices = self._rank_indices()
        skip, self._skip = self._skip, 0
        nbatches = len(self)
        for i in range(skip, nbatches):
            yield indices[i * self.batch_size : (i + 1) * self.batch_size]

    def __len__(self) -> int:
        per_rank = math.ceil(len(self.dataset) / self.nranks)
        if self.drop_last:
            return per_rank // self.batch_size
        return math.ceil(per_rank / self.batch_size)
