"""Training the residual property CNN and calibrating its uncertainties.

Recipe (Wu & Boada 2019, appendix; adapted to a CPU): AdamW with weight decay, a one-cycle (or
cosine) learning-rate schedule, batch norm, random rotations/flips (one of the 8 dihedral
transforms per stamp and step), and test-time augmentation averaging the 8 transforms (done by
``physical_properties.predict``, the app's own prediction path, which evaluates the trained CNN).
The mean outputs are trained with the squared error (the paper's RMSE loss); a log-sigma output
per target is trained with the Gaussian negative log-likelihood *with the mean detached*, so
learning the uncertainty never pulls the mean away from the RMSE optimum. Auxiliary targets
(morphology labels, when the data have them) are extra outputs trained the same way; they shape
the features Dobbels' LightGBM reads and are not exported as predictions.

Every epoch is seeded from ``(seed, epoch)`` and checkpointed, so a stopped run resumes to the
same model. Under ``torchrun`` the ranks share each batch as ``training.distributed`` says
(``batch_size`` is the batch of all ranks together); rank 0 alone writes the checkpoints and
carries on with the trained network.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from galaxy_inspector.models.symmetry import dihedral
from galaxy_inspector.physical_properties.networks import PropertyResNet
from galaxy_inspector.physical_properties.predict import dihedral_passes
from galaxy_inspector.physical_properties.scaling import scale_stamps
from training.distributed import Ranks, ranks
from training.loop import CHECKPOINT_NAME, optimisation_step, resume_checkpoint, save_checkpoint
from training.progress import Progress

__all__ = ["CNNConfig", "scale_in_chunks", "train_cnn", "calibrate_sigma_scale",
           "apply_dihedrals"]

GAUSS_68 = 0.6827


@dataclass
class CNNConfig:
    """Options of one CNN training run (recorded in the card)."""

    epochs: int = 15
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "one-cycle"  # or "cosine"
    seed: int = 1
    depth: int = 18
    widths: list = field(default_factory=lambda: [16, 32, 64, 128])
    hidden: int = 64
    stem_stride: int = 2
    dropout: float = 0.0
    threads: int | None = None
    device: str = "cpu"  # "cuda": under torchrun, each rank on its own GPU

    def hyperparameters(self, in_channels: int, n_targets: int) -> dict:
        return {"in_channels": in_channels, "n_targets": n_targets, "depth": self.depth,
                "widths": list(self.widths), "stem_stride": self.stem_stride,
                "hidden": self.hidden, "dropout": self.dropout}


def scale_in_chunks(images, preprocessing: dict, chunk: int = 512):
    """``scale_stamps`` over a large array in pieces (bounded memory); float16 for training."""
    scaled = np.empty(images.shape, dtype=np.float16)
    a = np.empty(len(images))
    for i in range(0, len(images), chunk):
        s, a[i:i + chunk] = scale_stamps(images[i:i + chunk], preprocessing)
        scaled[i:i + chunk] = s
    return scaled, a


def apply_dihedrals(x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Stamp ``i`` of ``x`` (B, C, H, W) under dihedral transform ``which[i]`` (square stamps)."""
    out = torch.empty_like(x)
    for t in range(8):
        idx = (which == t).nonzero().flatten()
        if len(idx):
            out[idx] = dihedral(x[idx], t)
    return out


def _loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error of the means + Gaussian NLL of log-sigma around the detached means."""
    n = target.shape[1]
    mean, log_sigma = output[:, :n], output[:, n:].clamp(-7.0, 5.0)
    sq = (mean - target) ** 2
    nll = log_sigma + 0.5 * (mean.detach() - target) ** 2 * torch.exp(-2 * log_sigma)
    return sq.mean() + nll.mean()


def train_cnn(train_x, train_y, val_x, val_y, out_dir, config: CNNConfig,
              progress: Progress | None = None, stop_after: int | None = None,
              label: str = "cnn"):
    """Train on scaled stamps ``train_x`` (N, C, H, W) and standard-scaled targets (N, T).

    Checkpoints into ``out_dir/checkpoint.pt`` after every epoch and resumes from it. Returns
    ``(model, history)`` (the model on the CPU), or ``(None, history)`` when ``stop_after``
    epochs ran and training is not finished (run again to continue), and on the other ranks
    than 0 under torchrun.
    """
    with ranks(torch.device(config.device)) as processes:
        return _train_cnn(processes, train_x, train_y, val_x, val_y, Path(out_dir), config,
                          progress or Progress(), stop_after, label)


def _train_cnn(processes: Ranks, train_x, train_y, val_x, val_y, out_dir: Path,
               config: CNNConfig, progress: Progress, stop_after: int | None, label: str):
    device = processes.device
    if processes.is_rank0:
        out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    x_train = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float16))
    y_train = torch.as_tensor(train_y, dtype=torch.float32)
    y_val = np.asarray(val_y, dtype=np.float32)
    model = PropertyResNet(**config.hyperparameters(x_train.shape[1], y_train.shape[1]))
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    batch = min(config.batch_size, len(x_train))
    processes.check_batch(batch)
    steps = max(1, len(x_train) // batch)  # drop the ragged last batch (batch norm)
    total = config.epochs * steps
    if config.schedule == "cosine" or total < 10:  # one-cycle needs a few steps per phase
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    else:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                        total_steps=total, pct_start=0.25)
    history, start, elapsed = [], 0, 0.0
    ckpt = out_dir / CHECKPOINT_NAME
    resumed = resume_checkpoint(ckpt, model, optimizer, scheduler, device, processes)
    if resumed:
        start, elapsed, history = resumed
        progress.emit("resumed", stage=label, epoch=start)
    last = config.epochs if stop_after is None else min(config.epochs, start + stop_after)
    own_val = processes.shard(len(y_val))  # each rank evaluates its part of the validation set
    trained = processes.wrap(model)
    for epoch in range(start, last):
        t0 = time.time()
        trained.train()
        gen = torch.Generator().manual_seed(config.seed * 100003 + epoch)
        torch.manual_seed(processes.seed(config.seed * 7919 + epoch))
        order = torch.randperm(len(x_train), generator=gen)
        running = 0.0
        for step in range(steps):
            idx = order[step * batch:(step + 1) * batch]
            # Every rank draws the whole batch's transforms, so their generators stay in step.
            which = torch.randint(0, 8, (len(idx),), generator=gen)
            own = processes.shard(len(idx))
            xb = apply_dihedrals(x_train[idx[own]].float(), which[own]).to(device)
            loss = _loss(trained(xb), y_train[idx[own]].to(device))
            running += optimisation_step(processes.batch_loss(loss, len(xb), len(idx)),
                                         trained, optimizer, scheduler)
            progress.update(step + 1, steps, stage=f"{label} epoch {epoch + 1}/{config.epochs}",
                            loss=running / (step + 1))
        processes.sync_buffers(model)
        means, _, _ = dihedral_passes(model.eval(), val_x[own_val], views=1)
        n_val, train_sum, *sq = processes.sum(
            [len(means), running, *((means[:, 0] - y_val[own_val]) ** 2).sum(axis=0)])
        rmse = np.sqrt(np.array(sq) / n_val)
        elapsed += time.time() - t0
        history.append({"epoch": epoch + 1,
                        "train_loss": round(float(train_sum) / (processes.world_size * steps), 5),
                        "val_rmse_scaled": [round(float(v), 4) for v in rmse],
                        "elapsed_s": round(elapsed, 1)})
        progress.emit("epoch", stage=label, **history[-1])
        if processes.is_rank0:
            save_checkpoint(ckpt, model, optimizer, scheduler, epoch + 1, elapsed, history,
                            config=json.dumps(asdict(config)))
    if last < config.epochs:
        progress.emit("paused", stage=label, epoch=last, checkpoint=str(ckpt))
        return None, history
    if not processes.is_rank0:
        return None, history
    return model.cpu().eval(), history


def calibrate_sigma_scale(mu, sigma, truth) -> np.ndarray:
    """Per-target factor ``s`` such that 68.27 % of |truth - mu| fall within ``s * sigma``."""
    ratio = np.abs(truth - mu) / np.maximum(sigma, 1e-6)
    return np.quantile(ratio, GAUSS_68, axis=0)
