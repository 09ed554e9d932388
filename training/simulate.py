"""GalSim training sets for the morphology engine (GaMPEN Table 1, HSC-Wide g band).

Each galaxy is drawn *noise-free at unit total flux*, convolved with its own PSF; total flux,
sky noise and source noise are drawn later (``training.noise``), so one stored shape serves many
signal-to-noise levels during training while validation and test sets get fixed realisations.

Parameter ranges (GaMPEN Table 1): 75 % bulge+disk, 25 % single component (half disk-like,
half bulge-like); disk n 0.8-1.2, bulge n 3.5-5.0 (quantised to 0.05 / 0.1 so GalSim can reuse
its Sérsic tables; the truth uses the quantised index exactly); half-light radii 0.1-5" (bulge of a
two-component galaxy <= 3"); axis ratios 0.25-1; bulge position angle within +-15 deg of the
disk's; B/T uniform in [0, 1] for two-component galaxies. PSF: Moffat, FWHM mostly 0.6-1.1"
(HSC-Wide g) with a tail to 1.6" so poorer seeing is not out of distribution, beta 2.5-4.5,
ellipticity of a few per cent. Sub-pixel to 1.5-pixel centring offsets.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from dataclasses import dataclass

import galsim
import h5py
import numpy as np

from training.progress import Progress
from training.truth import circular_half_light_radius

__all__ = ["DEFAULT_BROAD_PSF_FRACTION", "SimulationConfig", "draw_parameters", "draw_galaxy",
           "simulate"]

PARAM_COLUMNS = (
    "bt", "re_arcsec", "n_disk", "n_bulge", "hlr_disk", "hlr_bulge", "q_disk", "q_bulge",
    "pa_disk", "pa_bulge", "psf_fwhm", "psf_beta", "psf_e1", "psf_e2", "dx", "dy", "components",
)

# Looser than GalSim's defaults (5e-3, 1e-3) for a 2x speed-up; the flux error this allows is
# far below the noise of any simulated galaxy.
_GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=5e-3)


# Share of PSFs with FWHM 1.1-1.6" (the rest 0.6-1.1", HSC-Wide g).
DEFAULT_BROAD_PSF_FRACTION = 0.15


@dataclass(frozen=True)
class SimulationConfig:
    """What a simulated set looks like; stored in the HDF5 file's attributes."""

    pixel_scale: float = 0.168  # arcsec / pixel (HSC)
    stamp_size: int = 128  # pixels
    chunk: int = 250  # galaxies per work unit (the seed of each unit is fixed)
    broad_psf_fraction: float = DEFAULT_BROAD_PSF_FRACTION


def draw_parameters(rng: np.random.Generator,
                    broad_psf_fraction: float = DEFAULT_BROAD_PSF_FRACTION) -> dict:
    """Draw one galaxy's structural and PSF parameters (GaMPEN Table 1).

    ``broad_psf_fraction`` of the PSFs have FWHM 1.1-1.6", the rest 0.6-1.1" (HSC-Wide g).
    """
    kind = rng.uniform()
    if kind < 0.75:
        components, bt = 2, rng.uniform(0.0, 1.0)
    elif kind < 0.875:
        components, bt = 1, 0.0
    else:
        components, bt = 1, 1.0
    pa_disk = rng.uniform(-90.0, 90.0)
    typical = rng.uniform() < 1.0 - broad_psf_fraction
    fwhm = rng.uniform(0.6, 1.1) if typical else rng.uniform(1.1, 1.6)
    p = {
        "components": components,
        "bt": bt,
        "n_disk": round(rng.uniform(0.8, 1.2) / 0.05) * 0.05,
        "n_bulge": round(rng.uniform(3.5, 5.0) / 0.1) * 0.1,
        "hlr_disk": rng.uniform(0.1, 5.0),
        "hlr_bulge": rng.uniform(0.1, 3.0 if components == 2 else 5.0),
        "q_disk": rng.uniform(0.25, 1.0),
        "q_bulge": rng.uniform(0.25, 1.0),
        "pa_disk": pa_disk,
        "pa_bulge": pa_disk + rng.uniform(-15.0, 15.0),
        "psf_fwhm": fwhm,
        "psf_beta": rng.uniform(2.5, 4.5),
        "psf_e1": rng.normal(0.0, 0.03),
        "psf_e2": rng.normal(0.0, 0.03),
        "dx": rng.uniform(-1.5, 1.5),
        "dy": rng.uniform(-1.5, 1.5),
    }
    p["re_arcsec"] = circular_half_light_radius([
        (1.0 - bt, p["n_disk"], p["hlr_disk"], p["q_disk"]),
        (bt, p["n_bulge"], p["hlr_bulge"], p["q_bulge"]),
    ])
    return p


def intrinsic_profile(p: dict, flux: float = 1.0) -> galsim.GSObject:
    """The pre-PSF bulge+disk light of parameters ``p`` (unit total flux by default)."""
    parts = []
    if p["bt"] < 1.0:
        parts.append(
            galsim.Sersic(p["n_disk"], half_light_radius=p["hlr_disk"],
                          flux=flux * (1.0 - p["bt"]), gsparams=_GSPARAMS)
            .shear(q=p["q_disk"], beta=p["pa_disk"] * galsim.degrees))
    if p["bt"] > 0.0:
        parts.append(
            galsim.Sersic(p["n_bulge"], half_light_radius=p["hlr_bulge"],
                          flux=flux * p["bt"], gsparams=_GSPARAMS)
            .shear(q=p["q_bulge"], beta=p["pa_bulge"] * galsim.degrees))
    return galsim.Add(parts) if len(parts) > 1 else parts[0]


def psf_profile(p: dict) -> galsim.GSObject:
    return (galsim.Moffat(beta=p["psf_beta"], fwhm=p["psf_fwhm"], gsparams=_GSPARAMS)
            .shear(e1=p["psf_e1"], e2=p["psf_e2"]))


def draw_galaxy(p: dict, config: SimulationConfig = SimulationConfig(), flux: float = 1.0):
    """PSF-convolved, pixel-integrated, noise-free image (nJy/pixel for ``flux`` in nJy)."""
    obj = galsim.Convolve(intrinsic_profile(p, flux), psf_profile(p), gsparams=_GSPARAMS)
    image = obj.drawImage(nx=config.stamp_size, ny=config.stamp_size,
                          scale=config.pixel_scale, offset=(p["dx"], p["dy"]))
    return image.array.astype(np.float32)


def _simulate_chunk(args):
    seed, start, stop, config = args
    rng = np.random.default_rng([seed, start])
    params = [draw_parameters(rng, config.broad_psf_fraction) for _ in range(start, stop)]
    images = np.stack([draw_galaxy(p, config) for p in params])
    table = {c: np.array([p[c] for p in params]) for c in PARAM_COLUMNS}
    return start, images, table


def simulate(path, n: int, seed: int, workers: int = 0, config=SimulationConfig(),
             progress: Progress | None = None, cluster: str | None = None,
             cluster_jobs: int = 1) -> None:
    """Simulate ``n`` galaxies into the HDF5 file ``path``; deterministic in ``seed``.

    The file does not depend on ``workers`` or on ``cluster`` (a Dask cluster's address, as
    ``galaxy-inspector --batch --cluster`` takes it: ``galaxy_inspector.cluster``): each chunk
    of galaxies has its own seed, and chunks are written in order.
    """
    if not 0.0 <= config.broad_psf_fraction <= 1.0:
        raise ValueError(f"broad PSF fraction must be within 0-1, got {config.broad_psf_fraction}")
    jobs = [(seed, s, min(s + config.chunk, n), config) for s in range(0, n, config.chunk)]
    with _chunks(jobs, workers, cluster, cluster_jobs) as chunks:  # a cluster that cannot be reached: no file
        _write(path, n, seed, config, chunks, progress)


@contextlib.contextmanager
def _chunks(jobs: list, workers: int, cluster: str | None, cluster_jobs: int = 1):
    """``_simulate_chunk`` of each job, in order, from ``workers`` local processes (0: all
    cores) or from the tasks of a Dask cluster (a jobqueue one scaled to ``cluster_jobs``)."""
    if cluster is None:
        with mp.get_context("spawn").Pool(workers or mp.cpu_count()) as pool:
            yield pool.imap(_simulate_chunk, jobs)
        return
    from galaxy_inspector.cluster import open_client, stream

    with open_client(cluster, cluster_jobs) as client:
        yield _in_order(stream(client, _simulate_chunk, jobs, failed=_chunk_failed))


def _chunk_failed(job, reason: str):
    raise ValueError(f"simulating galaxies {job[1]}-{job[2] - 1}: the Dask task {reason}")


def _in_order(chunks):
    """Chunks ``(start, images, table)`` that arrive in any order, yielded by ``start``."""
    waiting, expected = {}, 0
    for chunk in chunks:
        waiting[chunk[0]] = chunk
        while expected in waiting:
            chunk = waiting.pop(expected)
            expected += len(chunk[1])
            yield chunk


def _write(path, n: int, seed: int, config: SimulationConfig, chunks,
           progress: Progress | None) -> None:
    size = config.stamp_size
    t0 = time.time()
    with h5py.File(path, "w") as f:
        f.attrs.update(pixel_scale=config.pixel_scale, stamp_size=size, seed=seed, n=n,
                       broad_psf_fraction=config.broad_psf_fraction,
                       flux_unit="image normalised to unit total intrinsic flux",
                       generator="training.simulate", galsim_version=galsim.__version__)
        images = f.create_dataset("images", (n, size, size), dtype="f4",
                                  chunks=(16, size, size), compression="lzf")
        columns = {c: f.create_dataset(c, (n,), dtype="f8") for c in PARAM_COLUMNS}
        done = 0
        for start, imgs, table in chunks:
            images[start:start + len(imgs)] = imgs
            for c, values in table.items():
                columns[c][start:start + len(imgs)] = values
            done += len(imgs)
            if progress:
                progress.update(done, n, stage="simulate", elapsed=time.time() - t0)
        f.attrs["complete"] = True
