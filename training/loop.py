"""What the two training loops share: one optimisation step, and per-epoch checkpoints.

The loops are the morphology network's (``training.train``) and the property CNN's
(``training.properties.cnn``). A checkpoint holds the model, optimizer and learning-rate
scheduler states, the number of finished epochs, the training seconds so far and the history of
epoch records (as JSON text, so the file holds only tensors and plain values and loads with
``torch.load(weights_only=True)``, which runs no pickled code). It is written to a temporary
file, flushed to disk and renamed over the old one, so a run killed while saving keeps the
previous epoch's checkpoint.

Under ``torchrun`` only rank 0 writes checkpoints (the loops call ``save_checkpoint`` there
alone) and reads them: ``resume_checkpoint`` sends the file's bytes to the other ranks, so
every rank resumes from the same states and the run folder need only be on rank 0's disk.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import NamedTuple

import torch

from galaxy_inspector.errors import first_line
from training.distributed import Ranks

__all__ = ["CHECKPOINT_NAME", "MAX_GRAD_NORM", "Resumed", "optimisation_step", "save_checkpoint",
           "resume_checkpoint"]

#: File name of the checkpoint inside a run folder.
CHECKPOINT_NAME = "checkpoint.pt"
#: Gradients are clipped to this total norm, so one odd batch cannot throw the weights far.
MAX_GRAD_NORM = 5.0


def optimisation_step(loss: torch.Tensor, model, optimizer, scheduler) -> float:
    """Back-propagate ``loss``, clip the gradients, step the optimizer and the learning-rate
    schedule; returns the loss as a number."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    scheduler.step()
    return loss.item()


class Resumed(NamedTuple):
    """Where a resumed run carries on."""

    epoch: int  #: epochs already finished
    elapsed: float  #: training seconds so far
    history: list  #: one record per finished epoch


def save_checkpoint(path, model, optimizer, scheduler, epoch: int, elapsed: float,
                    history: list, **extra: str) -> None:
    """Atomically replace the checkpoint at ``path`` with the state after ``epoch`` epochs.

    ``extra`` holds further text fields (e.g. the run's configuration as JSON).
    """
    path = Path(path)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": int(epoch),
             "elapsed": float(elapsed), "history": json.dumps(history), **extra}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def resume_checkpoint(path, model, optimizer, scheduler, map_location="cpu",
                      ranks: Ranks | None = None) -> Resumed | None:
    """Load the checkpoint at ``path`` into ``model``, ``optimizer`` and ``scheduler``.

    Returns ``None`` when there is no checkpoint. A file that is not a checkpoint of this
    network (damaged, from another version or from another configuration) raises
    ``ValueError`` naming it, rather than a run that silently starts over or crashes.
    ``ranks``: the processes of a torchrun run, which all get rank 0's file.
    """
    path = Path(path)
    contents = None
    if ranks is None or ranks.is_rank0:
        contents = path.read_bytes() if path.exists() else None
    if ranks is not None:
        contents = ranks.from_rank0(contents)
    if contents is None:
        return None
    try:
        state = torch.load(io.BytesIO(contents), map_location=map_location, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return Resumed(int(state["epoch"]), float(state["elapsed"]),
                       json.loads(state["history"]))
    except (RuntimeError, KeyError, TypeError, ValueError, EOFError,
            pickle.UnpicklingError) as exc:
        raise ValueError(f"cannot resume from checkpoint {path} ({first_line(exc)}); it is "
                         "damaged or belongs to another configuration: delete it to start "
                         "again") from None
