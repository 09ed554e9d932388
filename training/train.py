"""Train the morphology network on a simulated set (CUDA when present, else CPU).

Every epoch sees each stored shape once, in one of its 8 dihedral orientations, at a new flux
and noise draw (``training.observe``). The epoch's permutation, orientations, conditions, noise
and dropout masks are seeded from ``(seed, epoch)``, so a run resumed from its checkpoint makes
the same model as an uninterrupted one.

Under ``torchrun`` (``training.distributed``) every rank draws the same permutation, conditions
and orientations, and observes and back-propagates its own part of each batch with its own
noise and dropout draws; ``batch_size`` is the batch of all ranks together, so a run on N
processes takes the same steps on the same galaxies, under the same learning-rate schedule, as
one process. Rank 0 alone writes the checkpoints and the bundle.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

import galaxy_inspector
from galaxy_inspector.models.bundle import load_bundle, save_bundle
from galaxy_inspector.models.memory_format import memory_format_for
from galaxy_inspector.models.morphology import pick_device
from galaxy_inspector.models.morphology_network import MorphologyNet, gaussian_nll_ldl
from training.dataset import PRIOR_WEIGHT, fit_output_specs, load_set, load_sets, psf_in_stamps
from training.distributed import Ranks, ranks
from training.loop import CHECKPOINT_NAME, optimisation_step, resume_checkpoint, save_checkpoint
from training.observe import CONDITION_RANGES, WIDE_SKY_SIGMA_NJY, draw_conditions, observe
from training.progress import Progress

__all__ = ["TrainConfig", "train", "targets_for", "observed_batch", "export_bundle"]

ARCHITECTURE = "gampen-stn-mcdropout-head"
#: With ``psf_input``: how the head reads the FWHM (arcsec; centre and width of the training
#: range), the share of training stamps whose PSF is withheld (so the network learns the
#: "unknown" posterior, marginalised over seeing), and the log-normal error of a given FWHM
#: (a header's or a star fit's value is good to a few per cent, not exact).
PSF_INPUT = {"centre": 1.0, "scale": 0.3}
PSF_UNKNOWN_FRACTION = 0.3
PSF_GIVEN_ERROR = 0.03


def default_hyperparameters() -> dict:
    return {"stamp_size": 128, "crop_size": 64, "n_params": 3, "dropout": 0.1,
            "arsinh_scale": 2.0, "aperture_radii": [2, 4, 8, 16, 32, 60],
            "aperture_scale": 10.0, "channels": [32, 48, 96, 128], "hidden": 256}


def targets_for(table, conditions, specs, index) -> torch.Tensor:
    """Standard-scaled targets (bt, re, flux) for rows ``index`` observed at ``conditions``."""
    values = {"bt": table["bt"][index], "re_arcsec": table["re_arcsec"][index],
              "flux_njy": conditions["flux_njy"]}
    return torch.tensor(np.stack([s.forward(values[s.name]) for s in specs], axis=1),
                        dtype=torch.float32)


def observed_batch(images, index, conditions, rng, generator, augment=True, backgrounds=None):
    """Observed stamps ``(B, 1, H, W)`` for stored shapes ``index`` (one random orientation);
    with ``backgrounds``, each on the real sky patch ``conditions["background"]`` names, in
    an orientation of its own."""
    x = images[torch.as_tensor(index)]
    if augment:
        x = torch.rot90(x, int(rng.integers(4)), dims=(1, 2))
        if rng.integers(2):
            x = torch.flip(x, dims=(2,))
    x = observe(x, conditions["flux_njy"], conditions["sky_sigma_njy"],
                conditions["njy_per_electron"], generator=generator,
                noise_corr_px=conditions.get("noise_corr_px"))
    if backgrounds is not None:
        sky = backgrounds[torch.as_tensor(conditions["background"])]
        x = x + torch.rot90(sky, int(rng.integers(4)), dims=(1, 2))
    return x.unsqueeze(1)


def psf_given(true_fwhm, rng, unknown_fraction=PSF_UNKNOWN_FRACTION, known=None) -> np.ndarray:
    """The PSF FWHM a seeing-conditioned network is told for stamps observed with
    ``true_fwhm``: NaN (unknown) for a random ``unknown_fraction``, or where ``known`` (a
    set's ``psf_known`` column, ``simulate --psf-known``) is 0; the others with a
    ``PSF_GIVEN_ERROR`` log-normal error. Draws from ``rng`` whatever the fraction."""
    true_fwhm = np.asarray(true_fwhm, dtype=np.float64)
    unknown = rng.random(true_fwhm.shape) < unknown_fraction
    if known is not None:
        unknown = np.asarray(known) == 0
    given = true_fwhm * np.exp(PSF_GIVEN_ERROR * rng.standard_normal(true_fwhm.shape))
    return np.where(unknown, np.nan, given)


def fixed_observations(dataset, seed: int, limit: int | None = None,
                       flux_prior: str = "log-uniform"):
    """A deterministic noisy version of a set (validation/test): stamps and their conditions.
    A set with real sky patches (``training.adapt``) has each galaxy on its own patch."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    rng = np.random.default_rng([seed, 99])
    injected = dataset.backgrounds is not None
    conditions = draw_conditions(n, rng, "survey" if injected else "hsc", flux_prior=flux_prior)
    generator = torch.Generator().manual_seed(seed)
    x = observe(dataset.images[:n], conditions["flux_njy"], conditions["sky_sigma_njy"],
                conditions["njy_per_electron"], generator=generator)
    if injected:
        x = x + dataset.backgrounds[torch.as_tensor(
            dataset.table["background_index"][:n].astype(np.int64))]
    return x, conditions


class TrainConfig:
    """Options of one training run (stored in the card)."""

    def __init__(self, epochs=10, batch_size=128, lr=2e-3, weight_decay=1e-4, seed=1,
                 dropout=0.1, channels=(32, 48, 96, 128), hidden=256, limit=None, device=None,
                 init_from=None, noise="wide", flux_skip=True, psf_input=False,
                 head_only=False):
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.noise, self.flux_skip = noise, bool(flux_skip)
        # psf_input: the head reads the PSF FWHM; head_only: the trunk (a warm start's) is
        # frozen and only the head learns, a stage that costs a forward pass of the trunk.
        self.psf_input, self.head_only = bool(psf_input), bool(head_only)
        self.init_from = None if init_from is None else str(init_from)
        self.weight_decay, self.seed, self.limit, self.device = weight_decay, seed, limit, device
        self.dropout, self.channels, self.hidden = dropout, list(channels), hidden

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "device"}


def train(train_path, val_path, out_dir, config: TrainConfig, resume: bool = True,
          progress: Progress | None = None, stop_after: int | None = None) -> Path | None:
    """Train, checkpointing each epoch into ``out_dir``; returns the exported bundle folder.

    ``stop_after`` ends this invocation after that many epochs (a session with a time limit);
    it returns ``None`` then, and a later call with ``resume=True`` carries on. Under torchrun
    the other ranks than 0 return ``None`` once rank 0 has written the bundle.
    """
    with ranks(pick_device(config.device)) as processes:
        return _train(processes, train_path, val_path, Path(out_dir), config, resume,
                      progress or Progress(), stop_after)


def _train(processes: Ranks, train_path, val_path, out_dir: Path, config: TrainConfig,
           resume: bool, progress: Progress, stop_after: int | None) -> Path | None:
    device = processes.device
    processes.check_batch(config.batch_size)
    if processes.is_rank0:
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    train_set = load_sets(train_path, config.limit)
    val_set = load_set(val_path, 2000)
    specs = fit_output_specs(train_set.table, CONDITION_RANGES["flux_njy"])
    hyper = {**default_hyperparameters(), "dropout": config.dropout,
             "channels": config.channels, "hidden": config.hidden,
             "stamp_size": int(train_set.images.shape[-1])}
    if config.flux_skip:
        flux = next(i for i, s in enumerate(specs) if s.name == "flux_njy")
        hyper["flux_skip"] = {"output": flux, "mean": specs[flux].scaler_mean,
                              "std": specs[flux].scaler_std,
                              "floor_njy": 100.0}
    if config.head_only and not config.init_from:
        raise ValueError("head_only trains the head of a finished network: give init_from")
    start = load_bundle(config.init_from) if config.init_from else None
    if config.psf_input:  # a conditioned start keeps how it reads the PSF
        hyper["psf_input"] = dict((start.card["hyperparameters"].get("psf_input")
                                   if start else None) or PSF_INPUT)
    model = MorphologyNet(**hyper)
    history, previous, stage, elapsed = [], [], 1, 0.0
    if start:  # a further stage: start from a finished bundle's weights
        _warm_start(model, start)
        before = start.card.get("training", {})
        history = list(before.get("history", []))
        previous = before.get("previous_stages", []) + [before.get("config", {})]
        stage = 1 + max((h.get("stage", 1) for h in history), default=0)
        elapsed = float(before.get("time_s", 0.0))
    if config.head_only:
        model.freeze_trunk()
    model = model.to(device, memory_format=memory_format_for(device))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps_per_epoch = processes.steps(len(train_set), config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
        pct_start=0.15)
    val_x, val_cond = fixed_observations(val_set, seed=config.seed + 1000)
    val_y = targets_for(val_set.table, val_cond, specs, np.arange(len(val_set)))
    own = processes.shard(len(val_y))  # each rank evaluates its part of the validation set
    val_x, val_y = val_x[own], val_y[own]
    val_psf = psf_in_stamps(val_set)[own] if config.psf_input else None
    start_epoch = 0
    ckpt_path = out_dir / CHECKPOINT_NAME
    resumed = (resume_checkpoint(ckpt_path, model, optimizer, scheduler, device, processes)
               if resume else None)
    if resumed:
        start_epoch, elapsed, history = resumed
        progress.emit("resumed", epoch=start_epoch)
    progress.emit("start", n_train=len(train_set), epochs=config.epochs, device=str(device))
    last_epoch = config.epochs if stop_after is None else min(config.epochs,
                                                                start_epoch + stop_after)
    trained = processes.wrap(model)
    train_psf = psf_in_stamps(train_set) if config.psf_input else None
    weights = train_set.table.get(PRIOR_WEIGHT)
    weights = None if weights is None else np.asarray(weights, dtype=np.float32)
    for epoch in range(start_epoch, last_epoch):
        t0 = time.time()
        trained.train()
        rng = np.random.default_rng([config.seed, epoch])
        generator = torch.Generator().manual_seed(processes.seed(config.seed * 100003 + epoch))
        torch.manual_seed(processes.seed(config.seed * 7919 + epoch))
        order = rng.permutation(len(train_set))
        running = 0.0
        for step in range(steps_per_epoch):
            index = np.sort(order[step * config.batch_size:(step + 1) * config.batch_size])
            # Every rank draws the whole batch's conditions, so their generators stay in step.
            conditions = draw_conditions(len(index), rng, config.noise)
            if train_set.backgrounds is not None:  # a real sky patch under each galaxy
                conditions["background"] = rng.integers(len(train_set.backgrounds),
                                                        size=len(index))
            if config.psf_input:
                known = train_set.table.get("psf_known")
                conditions["psf_fwhm"] = psf_given(train_psf[index], rng,
                                                   known=None if known is None else known[index])
            own = processes.shard(len(index))
            conditions = {name: values[own] for name, values in conditions.items()}
            x = observed_batch(train_set.images, index[own], conditions, rng, generator,
                               backgrounds=train_set.backgrounds)
            y = targets_for(train_set.table, conditions, specs, index[own])
            psf = conditions.get("psf_fwhm")
            out = trained(x.to(device), psf_fwhm=None if psf is None else torch.from_numpy(psf))
            nll = gaussian_nll_ldl(out, y.to(device))
            if weights is not None:  # the loss under the prior the sizes were redrawn from
                nll = nll * torch.from_numpy(weights[index[own]]).to(nll)
            loss = processes.batch_loss(nll.mean(), len(x), len(index))
            running += optimisation_step(loss, trained, optimizer, scheduler)
            progress.update(step + 1, steps_per_epoch, stage=f"epoch {epoch + 1}/{config.epochs}",
                            loss=running / (step + 1))
        processes.sync_buffers(model)
        val_loss, val_rmse = evaluate_loss(model, val_x, val_y, device, processes, psf=val_psf)
        elapsed += time.time() - t0
        train_loss = float(processes.sum(running)) / (processes.world_size * steps_per_epoch)
        history.append({"stage": stage, "epoch": epoch + 1, "train_loss": train_loss,
                        "val_loss": val_loss, "val_rmse_scaled": val_rmse,
                        "elapsed_s": elapsed})
        progress.emit("epoch", **history[-1])
        if processes.is_rank0:
            save_checkpoint(ckpt_path, model, optimizer, scheduler, epoch + 1, elapsed, history)
    if last_epoch < config.epochs:
        progress.emit("paused", epoch=last_epoch, checkpoint=str(ckpt_path))
        return None
    bundle = None
    if processes.is_rank0:
        bundle = export_bundle(model, hyper, specs, config, train_set, history, elapsed,
                               out_dir / "bundle", train_path, previous, processes.world_size)
        progress.emit("bundle", path=str(bundle))
    processes.barrier()
    return bundle


@torch.no_grad()
def _warm_start(model: MorphologyNet, start) -> None:
    """Load a finished bundle's weights; a newly added flux skip or PSF input starts as the
    identity.

    Without the skip the flux-mean output was the whole (scaled) log flux; with it, that
    output is a correction, so its row restarts at zero and the new aperture gate at its
    initial weights. A newly added PSF input's columns of the head start at zero, so the
    network starts as the bundle's, whatever it is told.
    """
    weights = {k: torch.from_numpy(v) for k, v in start.tensors.items()}
    old = weights.get("head_hidden.weight")
    wide = model.head_hidden.weight
    if model.psf_input and old is not None and old.shape[1] < wide.shape[1]:
        weights["head_hidden.weight"] = torch.cat(
            [old, torch.zeros(old.shape[0], wide.shape[1] - old.shape[1])], dim=1)
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # tensors of other shapes
        raise ValueError(f"bundle {start.name!r} does not fit this network: "
                         f"{str(exc).splitlines()[-1].strip()}") from None
    new_skip = bool(model.flux_skip) and not start.card["hyperparameters"].get("flux_skip")
    allowed = {"flux_gate.weight", "flux_gate.bias"} if new_skip else set()
    if result.unexpected_keys or set(result.missing_keys) - allowed:
        raise ValueError(f"bundle {start.name!r} does not fit this network: missing "
                         f"{result.missing_keys}, unexpected {result.unexpected_keys}")
    if new_skip:
        row = model.flux_skip["output"]
        model.head_out.weight[row].zero_()
        model.head_out.bias[row].zero_()


@torch.no_grad()
def evaluate_loss(model, x, y, device, processes: Ranks | None = None, batch=256, psf=None):
    """Mean NLL and per-parameter RMSE of the mean (scaled units) on fixed observations (with
    PSF FWHMs ``psf`` for a network that reads them); under torchrun each rank passes its part
    of them and the sums are added over the ranks."""
    model.eval()
    loss_sum, sq_sum = 0.0, torch.zeros(y.shape[1], dtype=torch.float64)
    for i in range(0, len(x), batch):
        out = model(x[i:i + batch].unsqueeze(1).to(device),
                    psf_fwhm=None if psf is None else torch.from_numpy(psf[i:i + batch]))
        loss_sum += float(gaussian_nll_ldl(out, y[i:i + batch].to(device)).double().sum())
        sq_sum += ((out[:, :y.shape[1]].cpu() - y[i:i + batch]) ** 2).double().sum(0)
    sums = [len(x), loss_sum, *sq_sum.tolist()]
    n, loss_sum, *sq = processes.sum(sums) if processes else sums
    return float(loss_sum / n), [round(math.sqrt(v / n), 4) for v in sq]


def _as_text(paths):
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]


def _as_plain(seed):
    return int(seed) if np.ndim(seed) == 0 else [int(s) for s in seed]


def export_bundle(model, hyper, specs, config, train_set, history, elapsed, folder, train_path,
                  previous_stages=(), world_size=1):
    """Write the bundle: weights, and a card with the whole input/output contract
    (``world_size``: how many torchrun processes trained it)."""
    model = model.cpu().eval()
    tensors = {k: v.detach().contiguous().numpy() for k, v in model.state_dict().items()}
    table = train_set.table
    card = {
        "name": "morphology-hsc-g",
        "task": "morphology",
        "description": ("GaMPEN-style morphology posterior network (scale-only STN + CNN + "
                        "aperture photometry, Monte Carlo dropout head, full-covariance "
                        "Gaussian) trained on GalSim bulge+disk simulations of HSC-Wide g."),
        "architecture": ARCHITECTURE,
        "hyperparameters": hyper,
        "input": {
            "bands": ["g"], "kind": "flux", "unit": "nJy",
            "pixel_scale_arcsec": float(train_set.attrs["pixel_scale"]),
            "stamp_size": int(hyper["stamp_size"]),
            # Typical HSC-Wide sky: what stamps without a flux calibration are scaled to.
            "sky_sigma_njy": round(math.sqrt(math.prod(CONDITION_RANGES["sky_sigma_njy"])), 2),
            "preprocessing": {
                "pixels": f"arsinh(x / {hyper['arsinh_scale']} nJy) inside the network",
                "centring": "galaxy at the stamp centre ((size-1)/2, 0-based)",
                "fill": "masked or non-finite pixels replaced before the network",
            },
        },
        "outputs": [s.to_card() for s in specs],
        "training_ranges": {
            "bt": [0.0, 1.0],
            "re_arcsec": [float(table["re_arcsec"].min()), float(table["re_arcsec"].max())],
            "flux_njy": list(CONDITION_RANGES["flux_njy"]),
            "sky_sigma_njy": [CONDITION_RANGES["sky_sigma_njy"][0],
                              (WIDE_SKY_SIGMA_NJY if config.noise == "wide"
                               else CONDITION_RANGES["sky_sigma_njy"])[1]],
            "psf_fwhm_arcsec": [float(table["psf_fwhm"].min()), float(table["psf_fwhm"].max())],
            "hlr_disk_arcsec": [0.1, 5.0], "hlr_bulge_arcsec": [0.1, 5.0],
            "n_disk": [0.8, 1.2], "n_bulge": [3.5, 5.0], "axis_ratio": [0.25, 1.0],
        },
        "posterior": {"dropout": hyper["dropout"], "n_samples": 500,
                      "sigma_scale": [1.0] * len(specs), "calibrated": False},
        "labels": {"bt_disk_max": 0.1, "bt_bulge_min": 0.85, "re_small_arcsec": 1.0},
        "training": {
            "data": ("GalSim bulge+disk Sersic galaxies, GaMPEN Table 1 ranges, Moffat PSFs, "
                     "HSC-Wide-like sky and source noise drawn per epoch"
                     + (", plus 30 % shallower (6-40 nJy) and a third spatially correlated"
                        if config.noise == "wide" else "")),
            "train_file": _as_text(train_path), "n_train": len(train_set),
            "simulation_seed": _as_plain(train_set.attrs.get("seed", -1)),
            "broad_psf_fraction": np.round(train_set.attrs["broad_psf_fraction"], 4).tolist(),
            "config": config.as_dict(), "previous_stages": list(previous_stages),
            "history": history, "time_s": round(elapsed, 1),
            "device": str(pick_device(config.device)), "world_size": int(world_size),
        },
        "package_version": galaxy_inspector.__version__,
    }
    return save_bundle(folder, card, tensors)
