"""A simulated labelled gri survey where the physical truth is known (SYNTHETIC relations).

Each galaxy is an exponential disk plus a de Vaucouleurs bulge at redshift z, seen in g, r, i
(GalSim's LSST_g/r/i throughputs; GalSim ships no SDSS curves) at SDSS-like pixel scale, seeing
and depth, selected like the SDSS main sample (r < 17.77). Colours come from GalSim's CWW
template SEDs: the bulge is the elliptical template, the disk a mix of the Sbc and Im templates
set by a "young fraction". Fluxes per band are computed once per template on a redshift grid
(SED x bandpass, K-corrections included) and each band is drawn as an achromatic profile, which is
much faster than chromatic drawing and exact for two-template galaxies without colour gradients
within a component.

Labels follow physically motivated, *synthetic* relations (``RELATIONS`` is written into every
file and model card):

* stellar mass: log M uniform in [8.8, 11.6] before selection; bulge mass fraction rises with mass;
* M/L of each component from its rest-frame dust-free g-r colour through Bell et al. (2003)
  (log M/L_g = -0.499 + 1.519 (g-r)), plus 0.05 dex scatter (age-metallicity degeneracy);
* dust in the disk only: a uniform slab, face-on optical depth rising with mass, path length
  1/cos i (so edge-on disks are dimmed and reddened: Dobbels' edge-on effect); tau ~ lambda^-0.7;
* ``ml_g``: stellar mass over the *attenuated* rest-frame g luminosity (solar units), so edge-on
  disks have high M/L as in GSWLC;
* gas-phase metallicity 12 + log(O/H): Tremonti et al. (2004) mass-metallicity relation, lowered
  for disks younger than typical at their mass (a fundamental-metallicity-relation-like term),
  plus 0.06 dex intrinsic scatter;
* catalogue values carry per-object measurement errors (``*_err``) and are the truth scattered by
  them; the truth is kept in ``*_true``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass

import h5py
import numpy as np

from galaxy_inspector.io.calibration import AB_ZERO_POINT_NJY
from galaxy_inspector.physical_properties.scaling import kpc_per_arcsec, luminosity_distance_mpc
from training.progress import Progress

__all__ = ["SurveyConfig", "RELATIONS", "BANDS", "simulate_survey", "draw_galaxy_parameters",
           "draw_survey_galaxy", "flux_tables", "SPLITS", "tremonti_mzr"]

BANDS = ("g", "r", "i")
TEMPLATES = ("CWW_E_ext.sed", "CWW_Sbc_ext.sed", "CWW_Im_ext.sed")
SPLITS = {"train": 0, "val": 1, "test": 2}
M_G_SUN_AB = 5.11  # absolute AB magnitude of the Sun in g (Willmer 2018)
REST_G_NM = 480.0  # wavelength where the dust optical depth and M/L_g are defined
BAND_NM = {"g": 480.0, "r": 620.0, "i": 750.0}  # effective wavelengths of the throughputs
SKY_SIGMA_NJY = {"g": 180.0, "r": 180.0, "i": 400.0}  # SDSS 5-sigma depths 22.2, 22.2, 21.3
R_LIMIT = 17.77  # SDSS main-sample selection
Z_GRID = np.linspace(0.0, 0.32, 65)

RELATIONS = {
    "synthetic": True,
    "selection": f"r < {R_LIMIT} (total catalogue magnitude)",
    "redshift": "p(z) ~ z^2 in [0.02, 0.2] before selection (Planck 2018 cosmology)",
    "log_mstar": "p ~ exp(-(log M - 8.8) / 0.6) in [8.8, 11.6] before selection",
    "bulge_mass_fraction": "Beta(8 m, 8 (1 - m)), m = 0.08 + 0.7 sigmoid(2.2 (log M - 10.6)); "
                           "> 0.85 becomes a pure spheroid",
    "disk_young_fraction": "f = clip(sigmoid(-1.8 (log M - 9.9)) + N(0, 0.15), 0, 1) mixes the "
                           "CWW Sbc (f=0) and Im (f=1) templates in rest-g light",
    "ml_components": "log10(M/L_g) = -0.499 + 1.519 (g - r)_rest,dust-free + N(0, 0.05) "
                     "(Bell et al. 2003); bulge: CWW E template",
    "dust": "disk only; uniform slab A = -2.5 log10((1 - exp(-t)) / t), t = tau / cos i, "
            "tau_g(face-on) = (0.2 + 0.6 clip((log M - 9) / 2.5, 0, 1)) 10^N(0, 0.1), "
            "tau ~ lambda^-0.7; disk intrinsic axis ratio 0.15, cos i uniform in [0.03, 1]",
    "ml_g": "M_star / L_g(rest, attenuated), solar units (M_g,sun = 5.11 AB)",
    "metallicity": "12+log(O/H) = -1.492 + 1.847 x - 0.08026 x^2 (x = log M; Tremonti 2004) "
                   "- 0.25 (f - <f>(M)) + N(0, 0.06)",
    "sizes": "disk R_e[kpc] = 10^(0.55 + 0.22 (log M - 10) + N(0, 0.15)); bulge R_e = "
             "10^(0.1 + 0.45 (log M - 10.5) + N(0, 0.15)); bulge axis ratio U(0.6, 1)",
    "label_errors": "metallicity_err U(0.02, 0.06) dex; log_mstar_err U(0.04, 0.12) dex; "
                    "ml_g: relative error 10^U(-2, -0.8) dex x ln 10; catalogue value = truth "
                    "scattered by its error",
    "observing": "Moffat beta=3, r-band FWHM U(1.0, 1.8)\" (g x1.05, i x0.95); Gaussian sky "
                 "noise g/r/i 180/180/400 nJy per 0.396\" pixel x U(0.8, 1.25); no source noise",
}


@dataclass(frozen=True)
class SurveyConfig:
    """Geometry of a simulated survey (stored in the file's attributes)."""

    pixel_scale: float = 0.396  # arcsec / pixel (SDSS)
    stamp_size: int = 64  # pixels (25.3 arcsec)
    chunk: int = 200  # galaxies per work unit; the unit's seed is fixed, so resumable


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def tremonti_mzr(log_mstar):
    """12 + log(O/H) of Tremonti et al. (2004), eq. 3."""
    x = np.asarray(log_mstar, dtype=float)
    return -1.492 + 1.847 * x - 0.08026 * x * x


def _draw_log_mass(rng):
    """log M from p ~ exp(-(log M - 8.8) / 0.6) truncated to [8.8, 11.6] (falling mass function)."""
    u = rng.uniform(np.exp(-2.8 / 0.6), 1.0)
    return 8.8 - 0.6 * np.log(u)


def _mean_young_fraction(log_mstar):
    return _sigmoid(-1.8 * (np.asarray(log_mstar) - 9.9))


def flux_tables() -> dict:
    """Observed flux (nJy) per band of each template normalised to 1 L_sun in rest-frame g at the
    luminosity distance, on ``Z_GRID``; and each template's rest-frame flux ratio f_r / f_g.

    Computed with GalSim SEDs and bandpasses (the K-correction and the (1 + z) bandwidth factor of
    a redshifted f_nu are in GalSim's ``atRedshift``).
    """
    import galsim

    bandpasses = {b: galsim.Bandpass(f"LSST_{b}.dat", "nm").withZeropoint("AB") for b in BANDS}
    distance_modulus = 5 * np.log10(luminosity_distance_mpc(np.maximum(Z_GRID, 1e-4)) * 1e5)
    table = {"z": Z_GRID.copy(), "flux": {}, "rest_r_over_g": {},
             "kpc_per_arcsec": kpc_per_arcsec(np.maximum(Z_GRID, 1e-4))}
    for name in TEMPLATES:
        sed = galsim.SED(name, "Angstrom", "flambda")
        rest_g = sed.calculateMagnitude(bandpasses["g"])
        rest_r = sed.calculateMagnitude(bandpasses["r"])
        table["rest_r_over_g"][name] = 10 ** (-0.4 * (rest_r - rest_g))
        flux = np.empty((len(Z_GRID), len(BANDS)))
        for k, (z, dm) in enumerate(zip(Z_GRID, distance_modulus, strict=True)):
            shifted = sed.atRedshift(float(z))
            for j, b in enumerate(BANDS):
                m = shifted.calculateMagnitude(bandpasses[b]) - rest_g + M_G_SUN_AB + dm
                flux[k, j] = 10 ** ((AB_ZERO_POINT_NJY - m) / 2.5)
        table["flux"][name] = flux
    return table


def _template_flux(tables, name, z):
    """Per-band nJy of 1 L_sun (rest g) of template ``name`` at redshift ``z`` (interpolated)."""
    return np.array([np.interp(z, tables["z"], tables["flux"][name][:, j])
                     for j in range(len(BANDS))])


def _slab_attenuation(tau):
    """Magnitudes of attenuation of a uniform dust slab of optical depth ``tau`` (along the ray)."""
    tau = np.maximum(np.asarray(tau, dtype=float), 1e-8)
    return -2.5 * np.log10(-np.expm1(-tau) / tau)


def draw_galaxy_parameters(rng: np.random.Generator, tables: dict) -> dict:
    """One galaxy's physics, observed fluxes and labels (before the r < 17.77 selection)."""
    z = (rng.uniform(0.02 ** 3, 0.2 ** 3)) ** (1 / 3)
    log_m = _draw_log_mass(rng)
    mean_bulge = 0.08 + 0.7 * _sigmoid(2.2 * (log_m - 10.6))
    bulge_frac = rng.beta(8 * mean_bulge, 8 * (1 - mean_bulge))
    if bulge_frac > 0.85:
        bulge_frac = 1.0
    young = float(np.clip(_mean_young_fraction(log_m) + rng.normal(0, 0.15), 0, 1))
    cos_i = rng.uniform(0.03, 1.0)
    q_disk = np.sqrt(cos_i ** 2 + 0.15 ** 2 * (1 - cos_i ** 2))
    tau_face = (0.2 + 0.6 * np.clip((log_m - 9) / 2.5, 0, 1)) * 10 ** rng.normal(0, 0.1)

    ratio = tables["rest_r_over_g"]
    disk_r_over_g = (1 - young) * ratio["CWW_Sbc_ext.sed"] + young * ratio["CWW_Im_ext.sed"]
    gr = {"bulge": 2.5 * np.log10(ratio["CWW_E_ext.sed"]),
          "disk": 2.5 * np.log10(disk_r_over_g)}
    log_ml = {k: -0.499 + 1.519 * v + rng.normal(0, 0.05) for k, v in gr.items()}
    mass = {"bulge": bulge_frac * 10 ** log_m, "disk": (1 - bulge_frac) * 10 ** log_m}
    lum = {k: mass[k] / 10 ** log_ml[k] for k in mass}  # L_sun, rest g, dust-free

    band_nm = np.array([BAND_NM[b] for b in BANDS]) / (1 + z)
    tau_bands = tau_face * (band_nm / REST_G_NM) ** -0.7 / cos_i
    disk_atten = 10 ** (-0.4 * _slab_attenuation(tau_bands))
    a_g_rest = float(_slab_attenuation(tau_face / cos_i))
    bulge_flux = lum["bulge"] * _template_flux(tables, "CWW_E_ext.sed", z)
    disk_flux = lum["disk"] * disk_atten * (
        (1 - young) * _template_flux(tables, "CWW_Sbc_ext.sed", z)
        + young * _template_flux(tables, "CWW_Im_ext.sed", z))
    lum_g_obs = lum["bulge"] + lum["disk"] * 10 ** (-0.4 * a_g_rest)

    scale = np.interp(z, tables["z"], tables["kpc_per_arcsec"])
    hlr_disk = 10 ** (0.55 + 0.22 * (log_m - 10) + rng.normal(0, 0.15)) / scale
    hlr_bulge = 10 ** (0.1 + 0.45 * (log_m - 10.5) + rng.normal(0, 0.15)) / scale
    fwhm_r = rng.uniform(1.0, 1.8)
    ml_true = 10 ** log_m / lum_g_obs
    metallicity_true = (tremonti_mzr(log_m) - 0.25 * (young - _mean_young_fraction(log_m))
                        + rng.normal(0, 0.06))
    p = {
        "redshift": z, "log_mstar_true": log_m, "bulge_mass_fraction": bulge_frac,
        "young_fraction": young, "cos_i": cos_i, "q_disk": q_disk, "q_bulge": rng.uniform(0.6, 1),
        "pa_deg": rng.uniform(0, 180), "tau_g_face_on": tau_face, "a_g_disk": a_g_rest,
        "hlr_disk_arcsec": hlr_disk, "hlr_bulge_arcsec": hlr_bulge,
        "ml_g_true": ml_true, "metallicity_true": metallicity_true,
        "psf_fwhm_r": fwhm_r, "dx": rng.uniform(-0.5, 0.5), "dy": rng.uniform(-0.5, 0.5),
        "depth_factor": rng.uniform(0.8, 1.25),
    }
    total_flux = bulge_flux + disk_flux
    p["bt_light_g"] = float(bulge_flux[0] / total_flux[0])
    for j, b in enumerate(BANDS):
        p[f"flux_bulge_{b}"] = float(bulge_flux[j])
        p[f"flux_disk_{b}"] = float(disk_flux[j])
        p[f"sky_sigma_{b}"] = SKY_SIGMA_NJY[b] * p["depth_factor"]
        # Catalogue photometry: aperture noise within 2 R_e (observed) plus 2 % calibration.
        r_ap_px = 2 * max(hlr_disk if bulge_frac < 1 else hlr_bulge, 1.0) / 0.396
        sigma = np.hypot(p[f"sky_sigma_{b}"] * np.sqrt(np.pi) * r_ap_px, 0.02 * total_flux[j])
        measured = max(total_flux[j] + rng.normal(0, sigma), 1.0)
        p[f"mag_{b}"] = AB_ZERO_POINT_NJY - 2.5 * np.log10(measured)
        p[f"mag_err_{b}"] = 1.0857 * sigma / measured

    p["metallicity_err"] = rng.uniform(0.02, 0.06)
    p["metallicity"] = metallicity_true + rng.normal(0, p["metallicity_err"])
    p["log_mstar_err"] = rng.uniform(0.04, 0.12)
    p["log_mstar"] = log_m + rng.normal(0, p["log_mstar_err"])
    ml_dex_err = 10 ** rng.uniform(-2, -0.8)
    p["ml_g"] = ml_true * 10 ** rng.normal(0, ml_dex_err)
    p["ml_g_err"] = p["ml_g"] * np.log(10) * ml_dex_err
    p["edge_on"] = float(cos_i < 0.3 and bulge_frac < 0.5)
    return p


COLUMNS = (
    "redshift", "log_mstar_true", "bulge_mass_fraction", "young_fraction", "cos_i", "q_disk",
    "q_bulge", "pa_deg", "tau_g_face_on", "a_g_disk", "hlr_disk_arcsec", "hlr_bulge_arcsec",
    "ml_g_true", "metallicity_true", "psf_fwhm_r", "dx", "dy", "depth_factor", "bt_light_g",
    *[f"{k}_{b}" for b in BANDS for k in ("flux_bulge", "flux_disk", "sky_sigma", "mag",
                                          "mag_err")],
    "metallicity", "metallicity_err", "log_mstar", "log_mstar_err", "ml_g", "ml_g_err",
    "edge_on",
)


def draw_survey_galaxy(p: dict, config: SurveyConfig, rng: np.random.Generator) -> np.ndarray:
    """Noisy gri stamp ``(3, n, n)`` in nJy per pixel of galaxy ``p``."""
    import galsim

    gsparams = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=5e-3)
    beta = p["pa_deg"] * galsim.degrees
    out = np.empty((len(BANDS), config.stamp_size, config.stamp_size), dtype=np.float32)
    fwhm_factor = {"g": 1.05, "r": 1.0, "i": 0.95}
    for j, b in enumerate(BANDS):
        parts = []
        if p["bulge_mass_fraction"] < 1.0:
            parts.append(galsim.Exponential(half_light_radius=p["hlr_disk_arcsec"],
                                            flux=p[f"flux_disk_{b}"], gsparams=gsparams)
                         .shear(q=p["q_disk"], beta=beta))
        if p["bulge_mass_fraction"] > 0.0:
            parts.append(galsim.DeVaucouleurs(half_light_radius=p["hlr_bulge_arcsec"],
                                              flux=p[f"flux_bulge_{b}"], gsparams=gsparams)
                         .shear(q=p["q_bulge"], beta=beta))
        psf = galsim.Moffat(beta=3.0, fwhm=p["psf_fwhm_r"] * fwhm_factor[b], gsparams=gsparams)
        image = galsim.Convolve(galsim.Add(parts), psf, gsparams=gsparams).drawImage(
            nx=config.stamp_size, ny=config.stamp_size, scale=config.pixel_scale,
            offset=(p["dx"], p["dy"]))
        out[j] = image.array + rng.normal(0, p[f"sky_sigma_{b}"], image.array.shape)
    return out


def _simulate_chunk(args):
    seed, chunk_index, size, config, tables = args
    rng = np.random.default_rng([seed, chunk_index])
    params, tried = [], 0
    while len(params) < size:
        tried += 1
        p = draw_galaxy_parameters(rng, tables)
        if p["mag_r"] < R_LIMIT:
            params.append(p)
    images = np.stack([draw_survey_galaxy(p, config, rng) for p in params])
    table = {c: np.array([p[c] for p in params], dtype=np.float64) for c in COLUMNS}
    return chunk_index, images, table, tried


def simulate_survey(path, n: int, seed: int, workers: int = 0,
                    config: SurveyConfig = SurveyConfig(),
                    progress: Progress | None = None) -> None:
    """Simulate ``n`` selected galaxies into the HDF5 file ``path``; deterministic in ``seed``.

    Work is done in chunks with fixed seeds; an interrupted run resumes where it stopped when
    called again with the same arguments (finished chunks are marked in ``chunk_done``).
    Datasets: ``images`` (n, 3, size, size) float32 nJy/pixel with noise; one float64 column per
    entry of ``COLUMNS``; ``split`` (0 train 80 %, 1 validation 10 %, 2 test 10 %).
    """
    workers = workers or mp.cpu_count()
    size = config.stamp_size
    n_chunks = -(-n // config.chunk)
    attrs = {"pixel_scale": config.pixel_scale, "stamp_size": size, "seed": seed, "n": n,
             "bands": json.dumps(list(BANDS)), "unit": "nJy per pixel",
             "relations": json.dumps(RELATIONS), "config": json.dumps(asdict(config)),
             "generator": "training.properties.survey"}
    mode = "a"
    try:
        with h5py.File(path, "r") as f:
            same = all(str(f.attrs.get(k)) == str(v) for k, v in attrs.items())
    except (OSError, FileNotFoundError):
        same = False
    if not same:
        mode = "w"
    t0 = time.time()
    with h5py.File(path, mode) as f:
        if mode == "w":
            import galsim

            f.attrs.update(attrs, galsim_version=galsim.__version__)
            f.create_dataset("images", (n, len(BANDS), size, size), dtype="f4",
                             chunks=(8, len(BANDS), size, size), compression="lzf")
            for c in COLUMNS:
                f.create_dataset(c, (n,), dtype="f8")
            f.create_dataset("chunk_done", data=np.zeros(n_chunks, dtype=bool))
            split = np.zeros(n, dtype=np.int8)
            order = np.random.default_rng([seed, 7]).permutation(n)
            split[order[int(0.8 * n):int(0.9 * n)]] = SPLITS["val"]
            split[order[int(0.9 * n):]] = SPLITS["test"]
            f.create_dataset("split", data=split)
        done_mask = f["chunk_done"][:]
        tables = flux_tables()
        jobs = [(seed, k, min(config.chunk, n - k * config.chunk), config, tables)
                for k in range(n_chunks) if not done_mask[k]]
        accepted, tried = 0, 0
        if jobs:
            if progress:
                progress.emit("simulate", todo=len(jobs), chunks=n_chunks)
            if workers == 1:
                results = map(_simulate_chunk, jobs)
                pool = None
            else:
                pool = mp.get_context("spawn").Pool(min(workers, len(jobs)))
                results = pool.imap_unordered(_simulate_chunk, jobs)
            try:
                for k, images, table, n_tried in results:
                    start = k * config.chunk
                    f["images"][start:start + len(images)] = images
                    for c, values in table.items():
                        f[c][start:start + len(images)] = values
                    f["chunk_done"][k] = True
                    f.flush()
                    accepted += len(images)
                    tried += n_tried
                    if progress:
                        progress.update(int(f["chunk_done"][:].sum()), n_chunks,
                                        stage="survey chunks", elapsed=time.time() - t0)
            finally:
                if pool is not None:
                    pool.terminate()
            f.attrs["selection_acceptance"] = accepted / max(tried, 1)
        f.attrs["complete"] = bool(f["chunk_done"][:].all())
