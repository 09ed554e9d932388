"""The display-image morphology model: simulated SkyServer-style colour JPEGs, training,
calibration and evaluation (``galaxy-inspector-train display-*``).

A JPEG's levels are a stretched, clipped, compressed picture of three bands, not fluxes, so
the flux model cannot be brought to them; this model learns B/T and R_e from the picture
itself. Every training stamp is made as a user's would be: GalSim bulge+disk galaxies in SDSS
g, r, i (0.396″/px, Kolmogorov seeing 1.0-1.8″, SDSS-like sky and source noise, r = 13-18),
drawn into RGB with ``astropy.visualization.make_lupton_rgb`` the way SkyServer's colour images
are made, saved as a quality-75 JPEG by Pillow, read back through ``galaxy_inspector.io.
read_image`` and cut by ``engine.stamp_for`` with the display bundle's ``StampSpec``, so the
network is trained on exactly what it reads at inference.

The colour mapping is Lupton et al. (2004, PASP 116, 133) as their SDSS code (idlutils
``nw_rgb_make`` / ``nw_scale_rgb``, N. Wherry) makes it: i, r, g to R, G, B scaled by 4.9,
5.7, 7.8, an arcsinh stretch of nonlinearity b = 3 on the sum of the channels, colours kept
when a pixel saturates, JPEG quality 75. ``make_lupton_rgb`` stretches the channels' *mean*
``I`` as ``asinh(Q I / stretch) * slope / I`` with ``slope = 25.5 / asinh(Q / 10)``, which is
``nw_rgb_make``'s mapping exactly for ``Q = 10 sinh(0.3 b)``, ``stretch = Q / (3 b)``. The
channels are in nanomaggies, as SkyServer's FITS2JPEG reads the corrected frames since DR8;
its own constants are not published, so each galaxy's scales are multiplied by a factor drawn
log-uniform in ``DISPLAY_GAIN`` and the model does not depend on them to within that factor.

Truth: ``bt`` is the bulge's share of the r-band light (bulges are redder, so B/T is larger in
i and smaller in g); ``re_arcsec`` the circular half-light radius of the r-band intrinsic
light (``training.truth``), as for the flux model.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import galsim
import h5py
import numpy as np
import torch

import galaxy_inspector
from galaxy_inspector.models.bundle import OutputSpec, save_bundle
from galaxy_inspector.models.morphology import MorphologyModel
from galaxy_inspector.models.morphology_network import MorphologyNet, gaussian_nll_ldl
from galaxy_inspector.posterior import LEVELS, coverage, summarize
from training.calibrate import (
    DROPOUT_GRID,
    TOLERANCE,
    _coverage_table,
    _fit_affine,
    _solve_factor,
    _squared_errors,
    _worst_error,
    finish_calibration,
    posterior_pieces,
)
from training.dataset import BT_CLIP, PARAMETERS
from training.evaluate import residual_figures
from training.loop import CHECKPOINT_NAME, optimisation_step, resume_checkpoint, save_checkpoint
from training.progress import Progress
from training.simulate import _GSPARAMS as GSPARAMS
from training.simulate import intrinsic_profile
from training.truth import circular_half_light_radius

__all__ = ["DisplayConfig", "draw_display_parameters", "render_jpeg", "simulate_display",
           "DisplayTrainConfig", "train_display", "calibrate_display", "evaluate_display",
           "add_subcommands", "BUNDLE_NAME"]

BUNDLE_NAME = "morphology-display-sdss"
ARCHITECTURE = "gampen-stn-mcdropout-head"
#: SDSS bands in the order ``make_lupton_rgb`` takes them (R, G, B) and Lupton et al.'s scales.
RGB_BANDS = ("i", "r", "g")
LUPTON_SCALES = (4.9, 5.7, 7.8)
LUPTON_NONLINEARITY = 3.0
LUPTON_Q = 10.0 * math.sinh(0.3 * LUPTON_NONLINEARITY)
LUPTON_STRETCH = LUPTON_Q / (3.0 * LUPTON_NONLINEARITY)
JPEG_QUALITY = 75
DISPLAY_GAIN = (0.7, 1.4)
#: Seeing FWHM in r (arcsec); g and i scale as wavelength^-0.2 (Kolmogorov).
SEEING_R = (1.0, 1.8)
SEEING_RATIO = {"g": (4770 / 6231) ** -0.2, "r": 1.0, "i": (7625 / 6231) ** -0.2}
R_MAG = (13.0, 18.0)
AB_ZERO_POINT_NMGY = 22.5
#: r-band sky noise per pixel (nanomaggies, log-uniform) and the other bands' ratios to it.
SKY_SIGMA_R = (0.015, 0.04)
SKY_RATIO = {"g": (0.8, 1.2), "r": (1.0, 1.0), "i": (1.2, 1.8)}
#: Nanomaggies per photo-electron (SDSS: about 0.005 nmgy per DN, gain about 4.7).
NMGY_PER_ELECTRON = (0.0008, 0.0014)
#: Colours (g-r, r-i) of disks and bulges, uniform in these ranges.
DISK_COLOURS = ((0.3, 0.7), (0.15, 0.35))
BULGE_COLOURS = ((0.65, 0.9), (0.3, 0.45))
PARAM_COLUMNS = ("bt", "re_arcsec", "bt_g", "bt_i", "r_mag", "n_disk", "n_bulge", "hlr_disk",
                 "hlr_bulge", "q_disk", "q_bulge", "pa_disk", "pa_bulge", "psf_fwhm",
                 "sky_sigma_r", "display_gain", "dx", "dy", "components")
#: Display levels inside the network: arsinh(x / 255) is close to linear over 0-255, as the
#: levels are already stretched; aperture sums of levels enter as arsinh(F / 1000).
ARSINH_LEVELS = 255.0
APERTURE_LEVELS = 1000.0


@dataclass(frozen=True)
class DisplayConfig:
    """What a simulated display set looks like; stored in the HDF5 file's attributes."""

    pixel_scale: float = 0.396  # arcsec / pixel (SDSS)
    stamp_size: int = 128  # pixels: the JPEG's side and the model's stamp
    chunk: int = 100  # galaxies per work unit (each unit has its own fixed seed)


def _log_uniform(rng, lo, hi):
    return float(10.0 ** rng.uniform(math.log10(lo), math.log10(hi)))


def draw_display_parameters(rng: np.random.Generator) -> dict:
    """One galaxy's structure, colours, seeing and noise (SDSS-like, R_e about 0.3-12″)."""
    kind = rng.uniform()
    components, bt = (2, rng.uniform()) if kind < 0.75 else (1, 0.0 if kind < 0.875 else 1.0)
    hlr_disk = _log_uniform(rng, 0.6, 12.0)
    hlr_bulge = (_log_uniform(rng, 0.3, min(hlr_disk, 6.0)) if components == 2
                 else _log_uniform(rng, 0.5, 10.0))
    pa_disk = rng.uniform(-90.0, 90.0)
    disk_gr, disk_ri = (rng.uniform(*r) for r in DISK_COLOURS)
    bulge_gr, bulge_ri = (rng.uniform(*r) for r in BULGE_COLOURS)
    sky_r = _log_uniform(rng, *SKY_SIGMA_R)
    p = {
        "components": components, "bt": bt, "r_mag": rng.uniform(*R_MAG),
        "n_disk": round(rng.uniform(0.8, 1.2) / 0.05) * 0.05,
        "n_bulge": round(rng.uniform(3.5, 5.0) / 0.1) * 0.1,
        "hlr_disk": hlr_disk, "hlr_bulge": hlr_bulge,
        "q_disk": rng.uniform(0.25, 1.0), "q_bulge": rng.uniform(0.4, 1.0),
        "pa_disk": pa_disk, "pa_bulge": pa_disk + rng.uniform(-15.0, 15.0),
        "psf_fwhm": rng.uniform(*SEEING_R),
        "psf_e1": rng.normal(0.0, 0.02), "psf_e2": rng.normal(0.0, 0.02),
        "sky_sigma_r": sky_r,
        "sky_sigma": {b: sky_r * rng.uniform(*SKY_RATIO[b]) for b in "gri"},
        "nmgy_per_electron": rng.uniform(*NMGY_PER_ELECTRON),
        "display_gain": _log_uniform(rng, *DISPLAY_GAIN),
        "dx": rng.uniform(-1.0, 1.0), "dy": rng.uniform(-1.0, 1.0),
        # Band flux / r-band flux of each component.
        "disk_ratio": {"g": 10 ** (-0.4 * disk_gr), "r": 1.0, "i": 10 ** (0.4 * disk_ri)},
        "bulge_ratio": {"g": 10 ** (-0.4 * bulge_gr), "r": 1.0, "i": 10 ** (0.4 * bulge_ri)},
    }
    for band in "gi":
        bulge, disk = bt * p["bulge_ratio"][band], (1 - bt) * p["disk_ratio"][band]
        p[f"bt_{band}"] = bulge / (bulge + disk)
    p["re_arcsec"] = circular_half_light_radius([
        (1.0 - bt, p["n_disk"], hlr_disk, p["q_disk"]), (bt, p["n_bulge"], hlr_bulge, p["q_bulge"])])
    return p


def _band_image(p: dict, components: dict, band: str, config: DisplayConfig,
                rng) -> np.ndarray:
    """One band's observed image in nanomaggies per pixel: seeing, sky and source noise.
    ``components``: the unit-flux disk and bulge (shared by the bands, so drawn faster)."""
    flux_r = 10.0 ** ((AB_ZERO_POINT_NMGY - p["r_mag"]) / 2.5)
    fluxes = {"disk": (1 - p["bt"]) * p["disk_ratio"][band] * flux_r,
              "bulge": p["bt"] * p["bulge_ratio"][band] * flux_r}
    light = galsim.Add([components[c] * f for c, f in fluxes.items() if f > 0])
    # Kolmogorov seeing, as the atmosphere makes it (and fast to draw, unlike a Moffat).
    psf = (galsim.Kolmogorov(fwhm=p["psf_fwhm"] * SEEING_RATIO[band], gsparams=GSPARAMS)
           .shear(e1=p["psf_e1"], e2=p["psf_e2"]))
    image = galsim.Convolve(light, psf, gsparams=GSPARAMS).drawImage(
        nx=config.stamp_size, ny=config.stamp_size, scale=config.pixel_scale,
        offset=(p["dx"], p["dy"])).array.astype(np.float64)
    variance = p["sky_sigma"][band] ** 2 + np.clip(image, 0, None) * p["nmgy_per_electron"]
    return image + rng.normal(0.0, 1.0, image.shape) * np.sqrt(variance)


def render_jpeg(p: dict, config: DisplayConfig, rng: np.random.Generator) -> bytes:
    """The SkyServer-style JPEG of galaxy ``p`` (module docstring), north up."""
    import io

    from astropy.visualization import make_lupton_rgb
    from PIL import Image

    components = {"disk": intrinsic_profile({**p, "bt": 0.0}),
                  "bulge": intrinsic_profile({**p, "bt": 1.0})}
    bands = {b: _band_image(p, components, b, config, rng) for b in "gri"}
    rgb = make_lupton_rgb(*(bands[b] * s * p["display_gain"]
                            for b, s in zip(RGB_BANDS, LUPTON_SCALES, strict=True)),
                          minimum=0.0, stretch=LUPTON_STRETCH, Q=LUPTON_Q)
    out = io.BytesIO()
    Image.fromarray(np.flipud(rgb)).save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def display_spec(config: DisplayConfig):
    """The ``StampSpec`` a display bundle made with ``config`` reads its stamps with."""
    from galaxy_inspector.engine import StampSpec

    return StampSpec(config.stamp_size, config.pixel_scale, 1.0, display=True)


def jpeg_stamp(jpeg: bytes, spec, folder) -> np.ndarray:
    """The stamp the app cuts at the centre of ``jpeg``: written to a file in ``folder`` and
    read back through ``io.read_image`` and ``engine.stamp_for``, as a user's JPEG is."""
    from galaxy_inspector.engine import stamp_for
    from galaxy_inspector.io import read_image

    path = Path(folder) / "galaxy.jpg"
    path.write_bytes(jpeg)
    image = read_image(path)
    centre = (spec.stamp_size - 1) / 2.0
    return stamp_for(image, centre, centre, spec).data


def _simulate_chunk(args):
    seed, start, stop, config = args
    rng = np.random.default_rng([seed, start])
    spec = display_spec(config)
    params, stamps = [], []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(start, stop):
            p = draw_display_parameters(rng)
            stamps.append(jpeg_stamp(render_jpeg(p, config, rng), spec, folder))
            params.append(p)
    table = {c: np.array([p[c] for p in params], dtype=float) for c in PARAM_COLUMNS}
    return start, np.stack(stamps).astype(np.float32), table


def simulate_display(path, n: int, seed: int, workers: int = 1, config=DisplayConfig(),
                     progress: Progress | None = None) -> None:
    """Simulate ``n`` display stamps into the HDF5 file ``path``; the file depends only on
    ``seed`` (and ``n``), not on ``workers``: each chunk has its own seed, written in order."""
    progress = progress or Progress()
    jobs = [(seed, s, min(s + config.chunk, n), config) for s in range(0, n, config.chunk)]
    size, t0 = config.stamp_size, time.time()
    with h5py.File(path, "w") as f, mp.get_context("spawn").Pool(max(1, workers)) as pool:
        f.attrs.update(generator="training.display", seed=seed, n=n, **asdict(config),
                       lupton_scales=LUPTON_SCALES, lupton_q=LUPTON_Q,
                       lupton_stretch=LUPTON_STRETCH, jpeg_quality=JPEG_QUALITY,
                       units="display levels 0-255 (grey mean of R, G, B) as stamp_for cuts them")
        images = f.create_dataset("images", (n, size, size), dtype="f4",
                                  chunks=(min(16, n), size, size), compression="lzf")
        columns = {c: f.create_dataset(c, (n,), dtype="f8") for c in PARAM_COLUMNS}
        for start, stamps, table in pool.imap(_simulate_chunk, jobs):
            images[start:start + len(stamps)] = stamps
            for c, values in table.items():
                columns[c][start:start + len(stamps)] = values
            progress.update(start + len(stamps), n, stage="simulate display",
                            elapsed=time.time() - t0)
        f.attrs["complete"] = True


def load_display_set(path, limit: int | None = None):
    """``(stamps (N, H, W) tensor, truth table dict, attrs)`` of a simulated display set."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("generator") != "training.display" or not f.attrs.get("complete"):
            raise ValueError(f"{path} is not a complete display set (make it with "
                             "'galaxy-inspector-train display-simulate')")
        n = len(f["images"]) if limit is None else min(limit, len(f["images"]))
        return (torch.from_numpy(f["images"][:n]), {k: f[k][:n] for k in PARAM_COLUMNS},
                dict(f.attrs))


def _output_specs(table) -> list[OutputSpec]:
    """Standard scalers of B/T (logit) and R_e (log10), as the flux model's (no flux)."""
    specs = []
    for name, unit, transform, description in PARAMETERS[:2]:
        clip = BT_CLIP if transform == "logit" else None
        values = OutputSpec(name, unit, transform, 0.0, 1.0, clip).forward(table[name])
        specs.append(OutputSpec(name, unit, transform, float(values.mean()),
                                float(values.std()), clip, description))
    return specs


def _hyperparameters(stamp_size: int, dropout: float) -> dict:
    return {"stamp_size": stamp_size, "crop_size": 64, "n_params": 2, "dropout": dropout,
            "arsinh_scale": ARSINH_LEVELS, "aperture_radii": [2, 4, 8, 16, 32, 60],
            "aperture_scale": APERTURE_LEVELS, "channels": [32, 48, 96, 128], "hidden": 256}


@dataclass
class DisplayTrainConfig:
    """Options of one display training run (stored in the card)."""

    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    seed: int = 1
    limit: int | None = None


def _targets(table, specs, index) -> torch.Tensor:
    return torch.tensor(np.stack([s.forward(table[s.name][index]) for s in specs], axis=1),
                        dtype=torch.float32)


def train_display(train_path, val_path, out_dir, config: DisplayTrainConfig,
                  progress: Progress | None = None, stop_after: int | None = None):
    """Train from scratch on the CPU, checkpointing each epoch into ``out_dir`` (resumed when
    run again); returns the exported bundle folder, or None when ``stop_after`` paused it.

    Each epoch sees every stored stamp once in one of its 8 dihedral orientations (a JPEG's
    8x8 blocks stay on their grid), in an order seeded by ``(seed, epoch)``.
    """
    progress = progress or Progress()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    images, table, attrs = load_display_set(train_path, config.limit)
    val_x, val_table, _ = load_display_set(val_path, 1000)
    specs = _output_specs(table)
    hyper = _hyperparameters(int(images.shape[-1]), config.dropout)
    model = MorphologyNet(**hyper)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps = math.ceil(len(images) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=config.epochs * steps,
                                                    pct_start=0.15)
    val_y = _targets(val_table, specs, np.arange(len(val_x)))
    ckpt = out_dir / CHECKPOINT_NAME
    start, elapsed, history = resume_checkpoint(ckpt, model, optimizer, scheduler) or (0, 0.0, [])
    last = config.epochs if stop_after is None else min(config.epochs, start + stop_after)
    progress.emit("start", n_train=len(images), epochs=config.epochs, resumed_at=start)
    for epoch in range(start, last):
        t0, running = time.time(), 0.0
        model.train()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 7919 + epoch)
        order = rng.permutation(len(images))
        for step in range(steps):
            index = np.sort(order[step * config.batch_size:(step + 1) * config.batch_size])
            x = torch.rot90(images[torch.as_tensor(index)], int(rng.integers(4)), dims=(1, 2))
            x = torch.flip(x, dims=(2,)) if rng.integers(2) else x
            loss = gaussian_nll_ldl(model(x.unsqueeze(1)), _targets(table, specs, index)).mean()
            running += optimisation_step(loss, model, optimizer, scheduler)
            progress.update(step + 1, steps, stage=f"epoch {epoch + 1}/{config.epochs}",
                            loss=running / (step + 1))
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(val_x[i:i + 200].unsqueeze(1)) for i in range(0, len(val_x), 200)])
        val_loss = float(gaussian_nll_ldl(out, val_y).mean())
        rmse = ((out[:, :2] - val_y) ** 2).mean(0).sqrt().tolist()
        elapsed += time.time() - t0
        history.append({"epoch": epoch + 1, "train_loss": running / steps, "val_loss": val_loss,
                        "val_rmse_scaled": [round(v, 4) for v in rmse], "elapsed_s": elapsed})
        progress.emit("epoch", **history[-1])
        save_checkpoint(ckpt, model, optimizer, scheduler, epoch + 1, elapsed, history)
    if last < config.epochs:
        progress.emit("paused", epoch=last, checkpoint=str(ckpt))
        return None
    bundle = _export(model, hyper, specs, config, table, attrs, history, elapsed,
                     out_dir / "bundle", train_path)
    progress.emit("bundle", path=str(bundle))
    return bundle


def _export(model, hyper, specs, config, table, attrs, history, elapsed, folder, train_path):
    tensors = {k: v.detach().contiguous().numpy() for k, v in model.cpu().state_dict().items()}
    card = {
        "name": BUNDLE_NAME,
        "task": "morphology",
        "description": ("GaMPEN-style morphology posterior network (B/T and R_e, no flux) for "
                        "display images: trained on simulated SDSS SkyServer-style gri colour "
                        "JPEGs (Lupton et al. 2004 stretch, quality 75), read as the app reads "
                        "a JPEG (the grey mean of R, G, B)."),
        "architecture": ARCHITECTURE,
        "hyperparameters": hyper,
        "input": {
            "bands": ["gri-display"], "kind": "display",
            "unit": "display levels 0-255 (grey mean of the R, G, B channels, not fluxes)",
            "pixel_scale_arcsec": float(attrs["pixel_scale"]),
            "stamp_size": int(hyper["stamp_size"]),
            "preprocessing": {
                "pixels": "the file's levels as they are (no sky subtraction or scaling); "
                          f"arsinh(x / {ARSINH_LEVELS:g}) inside the network",
                "colour": "SDSS i, r, g as R, G, B: make_lupton_rgb, scales 4.9, 5.7, 7.8, "
                          f"Q {LUPTON_Q:.2f}, stretch {LUPTON_STRETCH:.3f}, minimum 0",
                "centring": "galaxy at the stamp centre ((size-1)/2, 0-based)",
            },
        },
        "outputs": [s.to_card() for s in specs],
        "training_ranges": {
            "bt": [0.0, 1.0],
            "re_arcsec": [float(table["re_arcsec"].min()), float(table["re_arcsec"].max())],
            "psf_fwhm_arcsec": [SEEING_R[0] * SEEING_RATIO["i"], SEEING_R[1] * SEEING_RATIO["g"]],
            "r_mag": list(R_MAG),
            "sky_sigma_r_nmgy": list(SKY_SIGMA_R),
        },
        "training": {
            "data": ("GalSim bulge+disk Sersic galaxies in SDSS g, r, i at 0.396\"/px, redder "
                     "bulges, Kolmogorov seeing 1.0-1.8\" in r, SDSS-like sky and source noise, "
                     "r = 13-18, drawn into SkyServer-style JPEGs (training/display.py)"),
            "train_file": str(train_path), "n_train": int(len(table["bt"])),
            "simulation_seed": int(attrs["seed"]), "config": asdict(config),
            "history": history, "time_s": round(elapsed, 1), "device": "cpu",
        },
        "package_version": galaxy_inspector.__version__,
    }
    return save_bundle(folder, card, tensors)


def calibrate_display(bundle_dir, val_path, n_galaxies: int = 2000, n_samples: int = 300,
                      progress: Progress | None = None) -> dict:
    """Fit the display bundle's affine correction, dropout rate, one spread factor per output
    and label thresholds on a validation set, as ``training.calibrate`` does for the flux model
    (without flux there are no brightness bins: one factor per output); writes the card."""
    progress = progress or Progress()
    bundle_dir = Path(bundle_dir)
    model = MorphologyModel(bundle_dir, device="cpu")
    x, table, _ = load_display_set(val_path, n_galaxies)
    truth = np.stack([table["bt"], table["re_arcsec"]], axis=1)
    mu0, _, _ = posterior_pieces(model, x, 1, 0.0, seed=2024)
    affine = np.array(_fit_affine(model, mu0, truth))
    model.affine = affine.astype(np.float32)
    results = []
    for p in DROPOUT_GRID:
        mu, draw, _ = posterior_pieces(model, x, n_samples, p, seed=2024)
        mu, draw = affine[:, 0] + affine[:, 1] * mu, affine[:, 1] * draw
        factors = [_solve_factor(model, mu, draw, truth, j) for j in range(2)]
        cov = _coverage_table(model, mu, draw, truth, np.tile(factors, (len(x), 1)))
        results.append({"dropout": p, "sigma_scale": factors, "coverage": cov,
                        "score": _squared_errors([cov]), "worst_error": _worst_error(cov)})
        progress.emit("calibrate", dropout=p, factors=[round(f, 3) for f in factors],
                      coverage=[[round(c, 4) for c in row] for row in cov])
    rule = (f"largest dropout rate with every coverage within {TOLERANCE:.3f} of its level "
            "(else the least squared error), one spread factor per output fitted to all three "
            "levels")
    return finish_calibration(bundle_dir, model, x.numpy(), truth, results, affine, 1,
                              n_samples, rule, progress)


def evaluate_display(bundle_dir, test_path, n_samples: int = 500, limit: int | None = None,
                     progress: Progress | None = None) -> dict:
    """Coverage, B/T and R_e figures on a held-out display set through the app's own
    ``MorphologyModel.predict`` (per-galaxy seeds as the app's); writes ``report/``."""
    progress = progress or Progress()
    bundle_dir = Path(bundle_dir)
    model = MorphologyModel(bundle_dir, device="cpu")
    x, table, attrs = load_display_set(test_path, limit)
    truth = np.stack([table["bt"], table["re_arcsec"]], axis=1)
    stamps = x.numpy()
    samples = np.concatenate([model.predict(stamps[i:i + 256], n_samples=n_samples,
                                            seed=0).samples for i in range(0, len(x), 256)])
    summary = summarize(samples, model.names, model.mode_transforms())
    mode = np.stack([summary["bt_mode"], summary["re_arcsec_mode"]], axis=1)
    covered = coverage(samples, truth)
    with np.errstate(invalid="ignore", divide="ignore"):  # the flux columns: no flux here
        figures = {k: v for k, v in residual_figures(
            np.column_stack([mode, np.ones(len(x))]), np.column_stack([truth, np.ones(len(x))])
        ).items() if "flux" not in k}
    figures["re_scatter_dex"] = float(np.std(np.log10(mode[:, 1] / truth[:, 1])))
    report = {
        "test_file": str(test_path), "simulation_seed": int(attrs["seed"]), "n": len(x),
        "samples_per_galaxy": n_samples, "figures": figures,
        "coverage": {name: {f"{lev:.4f}": float(covered[i, j]) for i, lev in enumerate(LEVELS)}
                     for j, name in enumerate(model.names)},
    }
    folder = bundle_dir / "report"
    folder.mkdir(exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(_report_markdown(report))
    card_path = bundle_dir / "card.json"
    card = json.loads(card_path.read_text())
    card["test"] = {"figures": figures, "coverage": report["coverage"], "test_galaxies": len(x)}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    progress.emit("evaluated", **figures)
    return report


def _report_markdown(report: dict) -> str:
    f = report["figures"]
    lines = [f"# {BUNDLE_NAME}: test report", "",
             f"{report['n']} simulated SkyServer-style JPEGs never seen in training "
             f"(`{report['test_file']}`, seed {report['simulation_seed']}), "
             f"{report['samples_per_galaxy']} posterior samples each; point estimates are "
             "the KDE modes.", "",
             "| figure | value |", "| --- | --- |",
             f"| σ(B/T residual) | {f['sigma_bt_residual']:.3f} |",
             f"| median abs B/T residual | {f['median_abs_bt_residual']:.3f} |",
             f"| median rel R_e error | {f['median_rel_re_error']:.3f} |",
             f"| R_e scatter (dex) | {f['re_scatter_dex']:.3f} |",
             f"| R² B/T | {f['r2_bt']:.3f} |", f"| R² log R_e | {f['r2_log_re']:.3f} |", "",
             "Coverage of the highest-density intervals:", "",
             "| parameter | 68.27 % | 95.45 % | 99.73 % |", "| --- | --- | --- | --- |"]
    for name, cov in report["coverage"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f} %" for v in cov.values()) + " |")
    return "\n".join(lines) + "\n"


def add_subcommands(sub) -> None:
    """``display-simulate``, ``display-train``, ``display-calibrate``, ``display-evaluate``."""
    from training.cli_help import OptionHelpFormatter

    sim = sub.add_parser("display-simulate", formatter_class=OptionHelpFormatter,
                         help="draw simulated SkyServer-style JPEG stamps into HDF5")
    sim.add_argument("--n", type=int, required=True, help="number of galaxies")
    sim.add_argument("--seed", type=int, required=True, help="random seed (fixes the set)")
    sim.add_argument("--out", required=True, help="output HDF5 file")
    sim.add_argument("--workers", type=int, default=1, help="processes")
    sim.set_defaults(func=lambda a, p: simulate_display(a.out, a.n, a.seed, a.workers,
                                                        progress=p))
    tr = sub.add_parser("display-train", formatter_class=OptionHelpFormatter,
                        help="train the display model (resumes from a checkpoint)")
    tr.add_argument("--train", required=True, help="display set (from display-simulate)")
    tr.add_argument("--val", required=True, help="validation display set")
    tr.add_argument("--out", required=True, help="run folder: checkpoint.pt, then bundle/")
    tr.add_argument("--epochs", type=int, default=8, help="passes over the set")
    tr.add_argument("--batch-size", type=int, default=64, help="galaxies per step")
    tr.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    tr.add_argument("--seed", type=int, default=1, help="fixes weights, order and dropout")
    tr.add_argument("--limit", type=int, default=None, help="use only the first N galaxies")
    tr.add_argument("--stop-after-epochs", type=int, default=None,
                    help="stop after this many epochs in this run; run again to resume")
    tr.set_defaults(func=lambda a, p: train_display(
        a.train, a.val, a.out, DisplayTrainConfig(epochs=a.epochs, batch_size=a.batch_size,
                                                  lr=a.lr, seed=a.seed, limit=a.limit),
        progress=p, stop_after=a.stop_after_epochs))
    cal = sub.add_parser("display-calibrate", formatter_class=OptionHelpFormatter,
                         help="calibrate a display bundle's posteriors; updates its card")
    cal.add_argument("--bundle", required=True, help="bundle folder (from display-train)")
    cal.add_argument("--val", required=True, help="validation display set")
    cal.add_argument("--n", type=int, default=2000, help="validation galaxies to use")
    cal.add_argument("--samples", type=int, default=300, help="posterior samples per galaxy")
    cal.set_defaults(func=lambda a, p: calibrate_display(a.bundle, a.val, a.n, a.samples, p))
    ev = sub.add_parser("display-evaluate", formatter_class=OptionHelpFormatter,
                        help="evaluate a display bundle on a test set; writes its report/")
    ev.add_argument("--bundle", required=True, help="calibrated display bundle folder")
    ev.add_argument("--test", required=True, help="test display set, never used before")
    ev.add_argument("--samples", type=int, default=500, help="posterior samples per galaxy")
    ev.add_argument("--limit", type=int, default=None, help="use only the first N galaxies")
    ev.set_defaults(func=lambda a, p: evaluate_display(a.bundle, a.test, a.samples, a.limit, p))
