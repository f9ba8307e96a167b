"""DistributedDataParallel under ``torchrun``: who this process is, and gathering results.

``explainfix train`` run as ``torchrun --nproc-per-node N -m explainfix train ...`` (or the
``explainfix`` script under torchrun) finds ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` in its
environment, joins the process group (NCCL on GPUs, gloo on CPUs) and wraps the model in
``DistributedDataParallel``. Only rank 0 writes files. No launcher of our own.

BatchNorm statistics are per process (as in plain DDP); ``SyncBatchNorm`` is used on GPUs,
where PyTorch supports it (not on CPUs). A model without BatchNorm trains identically with
``N`` processes of batch ``B / N`` and one process of batch ``B``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Dist", "setup_distributed"]


@dataclass(frozen=True)
class Dist:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every process (just ``[obj]`` alone)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def mean(self, value: float) -> float:
        """The mean of ``value`` over processes."""
        if not self.enabled:
            return float(value)
        return sum(self.gather(float(value))) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when started by torchrun (``WORLD_SIZE > 1``); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local)
