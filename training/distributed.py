"""Data-parallel training under ``torchrun``: what the two training loops share.

``torchrun --nproc_per_node N -m training train ...`` starts N processes ("ranks") and gives
each ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the rendezvous address in its environment.
Without those variables every function here is a no-op on one process, so a plain run trains
exactly as before.

How a run is split (``training.train`` and ``training.properties.cnn`` both follow it):

* every rank draws the same epoch permutation and the same per-step random numbers (the
  generators are seeded alike and consume alike), takes its contiguous part of each global
  batch (``Ranks.shard``) and observes, augments and back-propagates only that part;
* ``Ranks.batch_loss`` weights each rank's loss so that the gradient DistributedDataParallel
  averages is exactly the gradient of the global batch's mean loss, and ``--batch-size`` keeps
  its meaning (galaxies per optimisation step, over all ranks): the same number of steps and
  the same learning-rate schedule as one process;
* only rank 0 reads and writes checkpoints, the bundle and progress; it sends what it read to
  the others (``Ranks.from_rank0``), so its disk alone needs the run folder.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["launched", "rank", "world_size", "is_rank0", "Ranks", "ranks", "rank_label",
           "report_failure", "exit_process"]

#: Smallest part of a global batch one rank may get: batch norm estimates its statistics from
#: the rank's own part.
MIN_PER_RANK = 2


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher of its kind)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    """This process's rank (0 without torchrun); readable before the process group exists."""
    return int(os.environ.get("RANK", 0)) if launched() else 0


def world_size() -> int:
    """How many processes train together (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1)) if launched() else 1


def is_rank0() -> bool:
    """Whether this process writes: checkpoints, bundles, reports and progress."""
    return rank() == 0


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run and the collective operations it uses."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        """Refuse a global batch too small to give every rank ``MIN_PER_RANK`` galaxies."""
        if self.world_size > 1 and batch_size < MIN_PER_RANK * self.world_size:
            raise ValueError(f"--batch-size {batch_size} is the batch of all {self.world_size} "
                             f"processes together: give at least {MIN_PER_RANK} galaxies per "
                             f"process (--batch-size {MIN_PER_RANK * self.world_size} or more)")

    def steps(self, n: int, batch_size: int) -> int:
        """Optimisation steps in an epoch of ``n`` galaxies: ``ceil(n / batch_size)``, less a
        ragged last batch too small to share among the ranks (only when there are several)."""
        full, rest = divmod(n, batch_size)
        return full + (rest > 0 and (self.world_size == 1
                                     or rest >= MIN_PER_RANK * self.world_size))

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of a global batch of ``n`` (sizes differ by at most 1)."""
        bounds = np.linspace(0, n, self.world_size + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def batch_loss(self, local_mean: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
        """The loss to back-propagate on this rank, from its mean loss over its ``n_local``
        galaxies of a global batch of ``n_global``.

        DistributedDataParallel averages the ranks' gradients; scaling each rank's mean by
        ``n_local * world_size / n_global`` makes that average the gradient of the mean over the
        whole global batch, also when the ranks' parts differ in size. One process: unchanged.
        """
        if self.world_size == 1:
            return local_mean
        return local_mean * (n_local * self.world_size / n_global)

    def seed(self, base: int) -> int:
        """``base`` on rank 0 (which draws what one process draws), a distinct seed derived
        from it on every other rank (noise and dropout that must differ between ranks)."""
        if self.rank == 0:
            return base
        entropy = [base % 2 ** 64, self.rank]
        return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])

    def sum(self, values) -> np.ndarray:
        """Element-wise sum of ``values`` (numbers) over all ranks, in float64."""
        local = np.asarray(values, dtype=np.float64)
        if self.world_size == 1:
            return local
        tensor = torch.as_tensor(local, device=self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def from_rank0(self, value):
        """``value`` as rank 0 has it (any picklable object), on every rank."""
        if self.world_size == 1:
            return value
        box = [value if self.is_rank0 else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DistributedDataParallel (its weights start as rank 0's), or itself."""
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (batch-norm statistics), which its checkpoints and
        bundle hold: each rank's last step updated its own, from its own part of the batch."""
        if self.world_size > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. until rank 0 has written the bundle)."""
        if self.world_size > 1:
            dist.barrier()


def _rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: its own GPU (``LOCAL_RANK``) when training on CUDA."""
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", 0))
    if local >= torch.cuda.device_count():
        raise ValueError(f"this node has {torch.cuda.device_count()} GPU(s) but torchrun "
                         f"started a process with LOCAL_RANK {local}: give --nproc_per_node "
                         "at most the number of GPUs")
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


@contextmanager
def ranks(device: torch.device):
    """The ``Ranks`` of this process, with the process group set up (NCCL on CUDA, gloo on
    the CPU) for the ``with`` block and torn down after it, also on an error or Ctrl-C.

    A rank whose peer died fails with a one-line ``ValueError`` rather than the backend's
    message (torchrun stops the remaining ranks and exits non-zero).
    """
    if not launched():
        yield Ranks(0, 1, device)
        return
    device = _rank_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size(), device)
    except RuntimeError as exc:
        if not _peer_lost(exc):
            raise
        raise ValueError("stopped because another process of this torchrun failed (torchrun's "
                         "summary names it); the last checkpoint is kept") from None
    finally:
        dist.destroy_process_group()


def _peer_lost(exc: RuntimeError) -> bool:
    """Whether ``exc`` is a collective operation failing because another rank went away."""
    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or any(
        words in text for words in ("closed by peer", "reset by peer", "remote worker",
                                    "communicator was aborted"))


def rank_label() -> str:
    """``"rank R/N: "`` under torchrun (which rank a message comes from), else nothing."""
    return f"rank {rank()}/{world_size()}: " if launched() else ""


def report_failure(line: str) -> None:
    """Leave a failing rank's one-line message in torchrun's error file, so that torchrun's
    summary names it as the cause instead of pointing to its documentation."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE") if launched() else None
    if error_file:
        with open(error_file, "w") as f:
            # The layout torchrun's own @record writes; its summary shows "py_callstack".
            json.dump({"message": {"message": line, "extraInfo": {
                "py_callstack": line, "timestamp": str(int(time.time()))}}}, f)


def exit_process(code: int) -> NoReturn:
    """End a torchrun rank now, without the interpreter's finalisation.

    DistributedDataParallel keeps the gloo process group's threads running after
    ``destroy_process_group`` (torch 2.13), and an interpreter exit that destroys them
    aborts now and then ("terminate called without an active exception", SIGABRT), which
    fails a finished run. Everything a run writes is closed and synced by then.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
