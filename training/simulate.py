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

The realism options (``SimulationConfig``'s ``knots_fraction``, ``psf_variety``,
``neighbours_fraction``, ``masks_fraction``, ``psf_known_fraction``; ``training.realism``) add
star-forming clumps, other PSF shapes, neighbours and stars, masked pixels and a known/unknown
seeing flag. They are off by default, and then the file is byte for byte the one made before
they existed. ``small_fraction`` redraws some galaxies' sizes small and records the importance
weight (``prior_weight``) by which training keeps the size prior above (``draw_small``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from dataclasses import dataclass

import galsim
import h5py
import numpy as np

from training import realism
from training.progress import Progress
from training.truth import circular_half_light_radius

__all__ = ["DEFAULT_BROAD_PSF_FRACTION", "SimulationConfig", "draw_parameters", "draw_galaxy",
           "intrinsic_half_light_radius", "simulate"]

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
    knots_fraction: float = 0.0  # of the galaxies with a disk: clumps in it
    psf_variety: bool = False  # Moffat of beta 2-5 or Kolmogorov, instead of Moffat 2.5-4.5
    neighbours_fraction: float = 0.0  # of the stamps: other galaxies and stars
    masks_fraction: float = 0.0  # of the stamps: masked pixels (NaN in the file)
    psf_known_fraction: float | None = None  # of the stamps: PSF FWHM known (None: no column)
    small_fraction: float = 0.0  # of the galaxies: sizes redrawn small, weighted (prior_weight)

    def realism(self) -> dict:
        """The realism options that are on."""
        values = {name: getattr(self, name) for name in realism.OPTION_COLUMNS}
        return {name: value for name, value in values.items()
                if value is not None and value is not False and value != 0.0}

    def options(self) -> dict:
        """The options beyond GaMPEN's draw that are on, as the file's attributes record
        them: the realism options and ``small_fraction``."""
        small = {"small_fraction": self.small_fraction} if self.small_fraction else {}
        return {**self.realism(), **small}


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
        "hlr_disk": rng.uniform(*_size_range("disk", components)),
        "hlr_bulge": rng.uniform(*_size_range("bulge", components)),
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
    p["re_arcsec"] = intrinsic_half_light_radius(p)
    return p


#: Half-light radii (arcsec) of GaMPEN's Table 1, and of the galaxies ``small_fraction`` redraws.
SIZE_RANGE_ARCSEC, TWO_COMPONENT_BULGE_RANGE_ARCSEC = (0.1, 5.0), (0.1, 3.0)
SMALL_SIZE_RANGE_ARCSEC = (0.1, 1.5)


def _size_range(component: str, components: int) -> tuple[float, float]:
    two_component_bulge = component == "bulge" and components == 2
    return TWO_COMPONENT_BULGE_RANGE_ARCSEC if two_component_bulge else SIZE_RANGE_ARCSEC


def draw_small(p: dict, rng: np.random.Generator, fraction: float) -> None:
    """Redraw the sizes of ``fraction`` of the galaxies small, with the importance weight that
    keeps the training prior GaMPEN's (``p["prior_weight"]``).

    The shipped network measured small round disks 10-15 % small, with 68 % intervals holding
    them half the time (``benchmarks/axis_ratio_bias.py``): under the uniform size prior one
    galaxy in five has R_e under 1" (0.4 of them redrawn: two in five). With probability ``fraction`` the half-light radii of
    the components a galaxy has are drawn uniform in ``SMALL_SIZE_RANGE_ARCSEC`` instead; the
    sizes then follow the mixture ``(1 - f) p + f p_small``, and the weight ``p / mixture``
    makes the weighted loss an unbiased estimate of the loss under ``p``: the network sees
    more small galaxies without learning that galaxies are small.
    """
    present = [c for c, has in (("disk", p["bt"] < 1.0), ("bulge", p["bt"] > 0.0)) if has]
    lo, hi = SMALL_SIZE_RANGE_ARCSEC
    if rng.uniform() < fraction:
        for component in present:
            p[f"hlr_{component}"] = rng.uniform(lo, hi)
    density_ratio = 1.0  # p_small / p of the drawn sizes
    for component in present:
        size_lo, size_hi = _size_range(component, p["components"])
        inside = p[f"hlr_{component}"] < hi
        density_ratio *= (size_hi - size_lo) / (hi - lo) if inside else 0.0
    p["prior_weight"] = 1.0 / (1.0 - fraction + fraction * density_ratio)
    p["re_arcsec"] = intrinsic_half_light_radius(p)


def intrinsic_half_light_radius(p: dict) -> float:
    """The truth R_e of ``p``: the circular half-light radius of its intrinsic bulge, disk
    and clumps (``training.truth``), the clumps where this realisation put them."""
    clumps = knots_profile(p)
    points = () if clumps is None else np.column_stack([
        np.full(clumps.npoints, clumps.flux / clumps.npoints), np.hypot(*clumps.points.T)])
    return circular_half_light_radius(
        [((1.0 - p["bt"]) * (1.0 - p.get("knot_flux_fraction", 0.0)), p["n_disk"],
          p["hlr_disk"], p["q_disk"]),
         (p["bt"], p["n_bulge"], p["hlr_bulge"], p["q_bulge"])], points)


def _disk(p: dict, flux: float) -> galsim.GSObject:
    return (galsim.Sersic(p["n_disk"], half_light_radius=p["hlr_disk"], flux=flux,
                          gsparams=_GSPARAMS)
            .shear(q=p["q_disk"], beta=p["pa_disk"] * galsim.degrees))


def knots_profile(p: dict, flux: float = 1.0) -> galsim.GSObject | None:
    """The disk's star-forming clumps (point sources sampled from the disk's own profile,
    ``training.realism``), or ``None`` for a galaxy without them."""
    if not p.get("knot_npoints"):
        return None
    disk = _disk(p, flux * (1.0 - p["bt"]) * p["knot_flux_fraction"])
    return galsim.RandomKnots(int(p["knot_npoints"]), profile=disk,
                              rng=galsim.BaseDeviate(int(p["knot_seed"])), gsparams=_GSPARAMS)


def intrinsic_profile(p: dict, flux: float = 1.0) -> galsim.GSObject:
    """The pre-PSF light of parameters ``p``: bulge, disk and its clumps (unit total flux by
    default)."""
    knots = knots_profile(p, flux)
    smooth = _smooth_profile(p, flux)
    return smooth if knots is None else galsim.Add([smooth, knots])


def _smooth_profile(p: dict, flux: float) -> galsim.GSObject:
    """Bulge and disk without the disk's clumps (the disk gives them its flux)."""
    parts = []
    if p["bt"] < 1.0:
        parts.append(_disk(p, flux * (1.0 - p["bt"]) * (1.0 - p.get("knot_flux_fraction", 0.0))))
    if p["bt"] > 0.0:
        parts.append(
            galsim.Sersic(p["n_bulge"], half_light_radius=p["hlr_bulge"],
                          flux=flux * p["bt"], gsparams=_GSPARAMS)
            .shear(q=p["q_bulge"], beta=p["pa_bulge"] * galsim.degrees))
    return galsim.Add(parts) if len(parts) > 1 else parts[0]


def psf_profile(p: dict) -> galsim.GSObject:
    """The Moffat (or, with ``psf_kind``, Kolmogorov) PSF of ``p``, convolved with the Gaussian
    of FWHM ``p["psf_kernel_fwhm"]`` where it has one (the engine's PSF matching of a sharp
    image, ``training.adapt``)."""
    if realism.PSF_KINDS[int(p.get("psf_kind", 0))] == "kolmogorov":
        psf = galsim.Kolmogorov(fwhm=p["psf_fwhm"], gsparams=_GSPARAMS)
    else:
        psf = galsim.Moffat(beta=p["psf_beta"], fwhm=p["psf_fwhm"], gsparams=_GSPARAMS)
    psf = psf.shear(e1=p["psf_e1"], e2=p["psf_e2"])
    kernel = p.get("psf_kernel_fwhm", 0.0)
    return (galsim.Convolve(psf, galsim.Gaussian(fwhm=kernel, gsparams=_GSPARAMS),
                            gsparams=_GSPARAMS) if kernel else psf)


def _others_profile(p: dict, flux: float) -> galsim.GSObject | None:
    """Clumps and neighbouring galaxies: small, so they are drawn apart from the smooth
    galaxy, whose extended wings need a far larger FFT than theirs."""
    knots = knots_profile(p, flux)
    parts = [] if knots is None else [knots]
    for ratio, x, y, n, hlr, q, pa in p.get("neighbours", ()):
        if hlr > 0:
            parts.append(galsim.Sersic(n, half_light_radius=hlr, flux=flux * ratio,
                                       gsparams=_GSPARAMS)
                         .shear(q=q, beta=pa * galsim.degrees).shift(x, y))
    return galsim.Add(parts) if parts else None


#: Sub-pixels per pixel side on which stars are sampled.
_STAR_OVERSAMPLING = 3
#: GalSim's Moffat is zero where it falls below xvalue_accuracy (1e-5) of its peak: a bright
#: star's wings would end in a sharp circle.
_STAR_GSPARAMS = galsim.GSParams(xvalue_accuracy=1e-10)


def _add_stars(p: dict, flux: float, image: galsim.Image) -> None:
    """Stars drawn in real space (the PSF sampled on sub-pixels, summed per pixel): an FFT's
    ringing, a thousandth of a saturated star's flux, would stripe the whole stamp."""
    psf = psf_profile(p).withGSParams(_STAR_GSPARAMS)
    stars = [galsim.Transform(psf, offset=(x, y), flux_ratio=flux * ratio)
             for ratio, x, y, _, hlr, _, _ in p.get("neighbours", ()) if hlr == 0]
    if not stars:
        return
    k, (ny, nx) = _STAR_OVERSAMPLING, image.array.shape
    fine = galsim.Add(stars).drawImage(nx=nx * k, ny=ny * k, scale=image.scale / k,
                                       offset=(p["dx"] * k, p["dy"] * k), method="no_pixel")
    image.array[:] += fine.array.reshape(ny, k, nx, k).sum(axis=(1, 3))


def draw_galaxy(p: dict, config: SimulationConfig = SimulationConfig(), flux: float = 1.0):
    """PSF-convolved, pixel-integrated, noise-free image (nJy/pixel for ``flux`` in nJy);
    masked pixels (``training.realism``) are NaN."""
    obj = galsim.Convolve(_smooth_profile(p, flux), psf_profile(p), gsparams=_GSPARAMS)
    image = obj.drawImage(nx=config.stamp_size, ny=config.stamp_size,
                          scale=config.pixel_scale, offset=(p["dx"], p["dy"]))
    others = _others_profile(p, flux)
    if others is not None:
        galsim.Convolve(others, psf_profile(p), gsparams=_GSPARAMS).drawImage(
            image=image, add_to_image=True, offset=(p["dx"], p["dy"]))
    _add_stars(p, flux, image)
    pixels = image.array.astype(np.float32)
    masked = realism.mask_pixels(p, config.stamp_size)
    if masked is not None:
        pixels[masked] = np.nan
    return pixels


def _add_realism(p: dict, draws: list[np.random.Generator], config: SimulationConfig) -> None:
    """The realism options' draws for galaxy ``p``, each from its own stream."""
    knots, psf, neighbours, masks, known = draws
    if config.knots_fraction:
        realism.draw_knots(p, knots, config.knots_fraction)
        p["re_arcsec"] = intrinsic_half_light_radius(p)  # the clumps are intrinsic light
    if config.psf_variety:
        realism.draw_psf_variety(p, psf)
    if config.neighbours_fraction:
        realism.draw_neighbours(p, neighbours, config.neighbours_fraction,
                                config.stamp_size * config.pixel_scale / 2.0)
    if config.masks_fraction:
        realism.draw_masks(p, masks, config.masks_fraction, config.stamp_size,
                           config.pixel_scale)
        masked = realism.mask_pixels(p, config.stamp_size)
        p["masked_fraction"] = 0.0 if masked is None else float(masked.mean())
    if config.psf_known_fraction is not None:
        realism.draw_psf_known(p, known, config.psf_known_fraction)


def _columns(config: SimulationConfig) -> tuple[str, ...]:
    return PARAM_COLUMNS + tuple(c for name in config.realism()
                                 for c in realism.OPTION_COLUMNS[name]) + (
        ("prior_weight",) if config.small_fraction else ())


#: The random stream of ``draw_small``: the next after the realism options' (``realism.streams``).
_SMALL_STREAM = len(realism.OPTION_COLUMNS) + 1


def _simulate_chunk(args):
    seed, start, stop, config = args
    rng = np.random.default_rng([seed, start])
    draws = realism.streams(seed, start) if config.realism() else None
    small = np.random.default_rng([seed, start, _SMALL_STREAM])
    params = []
    for _ in range(start, stop):
        params.append(draw_parameters(rng, config.broad_psf_fraction))
        if config.small_fraction:  # first: clumps follow the disk's size
            draw_small(params[-1], small, config.small_fraction)
        if draws:
            _add_realism(params[-1], draws, config)
    images = np.stack([draw_galaxy(p, config) for p in params])
    table = {c: np.array([p[c] for p in params]) for c in _columns(config)}
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
    for name, value in config.options().items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name.replace('_', ' ')} must be within 0-1, got {value}")
    jobs = [(seed, s, min(s + config.chunk, n), config) for s in range(0, n, config.chunk)]
    with _chunks(jobs, workers, cluster, cluster_jobs) as chunks:  # a cluster that cannot be reached: no file
        _write(path, n, seed, config, chunks, progress)


@contextlib.contextmanager
def _chunks(jobs: list, workers: int, cluster: str | None, cluster_jobs: int = 1,
            task=_simulate_chunk):
    """``task`` (``_simulate_chunk``) of each job, in order, from ``workers`` local processes
    (0: all cores) or from the tasks of a Dask cluster (a jobqueue one scaled to
    ``cluster_jobs``)."""
    if cluster is None:
        with mp.get_context("spawn").Pool(workers or mp.cpu_count()) as pool:
            yield pool.imap(task, jobs)
        return
    from galaxy_inspector.cluster import open_client, stream

    with open_client(cluster, cluster_jobs) as client:
        yield _in_order(stream(client, task, jobs, failed=_chunk_failed))


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
        options = config.options()
        crowded = "neighbours_fraction" in options or "masks_fraction" in options
        f.attrs.update(pixel_scale=config.pixel_scale, stamp_size=size, seed=seed, n=n,
                       broad_psf_fraction=config.broad_psf_fraction,
                       flux_unit="image normalised to unit total intrinsic flux" + (
                           " of the target (neighbours and stars add theirs; NaN pixels are "
                           "masked)" if crowded else ""),
                       generator="training.simulate", galsim_version=galsim.__version__,
                       **options)
        images = f.create_dataset("images", (n, size, size), dtype="f4",
                                  chunks=(min(16, max(n, 1)), size, size), compression="lzf")
        columns = {c: f.create_dataset(c, (n,), dtype="f8") for c in _columns(config)}
        done = 0
        for start, imgs, table in chunks:
            images[start:start + len(imgs)] = imgs
            for c, values in table.items():
                columns[c][start:start + len(imgs)] = values
            done += len(imgs)
            if progress:
                progress.update(done, n, stage="simulate", elapsed=time.time() - t0)
        f.attrs["complete"] = True
