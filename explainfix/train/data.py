"""Loaders of a training run: a data order that is a pure function of ``(seed, epoch)``.

Every epoch draws its sample keys ``(index, augmentation seed)`` from a generator seeded with
``(seed, epoch)`` alone, so a resumed run sees exactly the batches of an uninterrupted one.
Under DistributedDataParallel every process draws the same keys and takes its share of each
*global* batch (:class:`ShardedBatches`): augmentation does not depend on the number of
processes, and ``N`` processes with batch ``B / N`` see what one process with batch ``B`` sees.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from explainfix.data.loaders import accepts_seeded_keys, pad_collate, seed_worker

__all__ = ["epoch_keys", "ShardedBatches", "train_loader", "eval_loader", "eval_subset"]


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2**63 - 1))


def epoch_keys(n: int, *, seed: int, epoch: int, num_samples: int | None = None, replacement: bool = False,
               seeded: bool = True) -> list:
    """The sample keys of one epoch: a permutation (or draws with replacement) of ``range(n)``.

    Args:
        n: dataset size.
        seed, epoch: the only inputs of the order.
        num_samples: samples per epoch (default ``n``; more than ``n`` needs ``replacement``
            unless it is a whole number of passes).
        replacement: draw with replacement (the paper's CheXpert epochs).
        seeded: pair each index with a 63-bit augmentation seed (datasets with seeded keys).
    """
    g = _epoch_generator(seed, epoch)
    count = n if num_samples is None else int(num_samples)
    if replacement:
        indices = torch.randint(0, n, (count,), generator=g)
    else:
        passes = -(-count // n)
        indices = torch.cat([torch.randperm(n, generator=g) for _ in range(passes)])[:count]
    if not seeded:
        return indices.tolist()
    seeds = torch.randint(0, 2**63 - 1, (count,), generator=g, dtype=torch.int64)
    return list(zip(indices.tolist(), seeds.tolist()))


class ShardedBatches(Sampler):
    """Batches of keys of one epoch, this process's share of each global batch.

    Args:
        keys: the epoch's keys (:func:`epoch_keys`).
        batch_size: the *global* batch size; must be divisible by ``world_size``.
        rank, world_size: this process and how many there are.
        drop_last: drop a last incomplete global batch (always done when it cannot be split
            evenly over the processes, so each process runs the same number of steps).
        max_batches: stop after this many global batches.
    """

    def __init__(self, keys: Sequence, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, max_batches: int | None = None):
        if batch_size % world_size:
            raise ValueError(f"the global batch size {batch_size} must be divisible by the {world_size} processes")
        self.keys, self.batch_size, self.rank, self.world_size = list(keys), batch_size, rank, world_size
        n = len(self.keys)
        full, rest = divmod(n, batch_size)
        keep_last = rest and not drop_last and rest % world_size == 0
        self.n_batches = full + (1 if keep_last else 0)
        if max_batches is not None:
            self.n_batches = min(self.n_batches, int(max_batches))

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list]:
        for b in range(self.n_batches):
            batch = self.keys[b * self.batch_size:(b + 1) * self.batch_size]
            part = len(batch) // self.world_size
            yield batch[self.rank * part:(self.rank + 1) * part]


def _loader(dataset: Dataset, batch_sampler, workers: int, pin_memory: bool, seed: int) -> DataLoader:
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, collate_fn=pad_collate,
                      pin_memory=pin_memory, worker_init_fn=seed_worker if workers > 0 else None,
                      generator=torch.Generator().manual_seed(int(seed)))


def train_loader(dataset: Dataset, *, batch_size: int, seed: int, epoch: int, num_samples: int | None = None,
                 replacement: bool = False, workers: int = 0, pin_memory: bool = False, rank: int = 0,
                 world_size: int = 1, max_batches: int | None = None) -> DataLoader:
    """The training batches of one epoch (this process's share of them)."""
    keys = epoch_keys(len(dataset), seed=seed, epoch=epoch, num_samples=num_samples, replacement=replacement,
                      seeded=accepts_seeded_keys(dataset))
    sampler = ShardedBatches(keys, batch_size, rank=rank, world_size=world_size, max_batches=max_batches)
    return _loader(dataset, sampler, workers, pin_memory, seed + epoch)


def eval_subset(n: int, samples: int | None, seed: int) -> list[int]:
    """Indices of the validation images evaluated every epoch: all, or a fixed random subset."""
    if samples is None or samples >= n:
        return list(range(n))
    g = torch.Generator().manual_seed(int(seed) + 4242)
    return sorted(torch.randperm(n, generator=g)[: int(samples)].tolist())


def eval_loader(dataset: Dataset, *, batch_size: int, indices: Sequence[int] | None = None, workers: int = 0,
                pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Evaluation batches in dataset order; under DDP each process takes every ``world_size``-th batch."""
    order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return _loader(dataset, batches[rank::world_size], workers, pin_memory, 0)
