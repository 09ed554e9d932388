"""Turn stored unit-flux, noise-free stamps into observations: flux, sky noise, source noise.

HSC-Wide-like g band at 0.168"/pixel: sky sigma 1.2-6 nJy per pixel (log-uniform; HSC-Wide is
about 1.5-4), source (Poisson) noise with 5-20 nJy per detected electron, total flux log-uniform
over GaMPEN's 1e3-5e6 nJy. Drawing these at training time gives every stored shape a new
signal-to-noise level each epoch.

Two regimes:

* ``"hsc"``: the conditions above with white noise. Validation, calibration and test sets use
  it, so the reported figures are for HSC-Wide depth.
* ``"wide"`` (training): 70 % of draws as ``"hsc"``, 30 % with a sky of 6-40 nJy per pixel
  (shallower surveys, and coarser images such as SDSS frames resampled to 0.168"), and a
  third of all draws with spatially correlated noise (Gaussian-smoothed, rescaled to the same
  per-pixel sigma), as resampled and coadded images have. The network sees both and the
  bundle's training range covers the union.
* ``"survey"`` (``training.adapt``): no drawn sky noise; the stamps are injected into real
  blank-sky patches of a user's images, which bring their own noise, its correlation and
  their artifacts (``training.dataset`` sets with ``backgrounds``).

Total flux is log-uniform by default, so faint galaxies weigh as much as bright ones. GaMPEN
(§2) drew it uniform in linear flux instead, which puts 80 % of galaxies above 10^6 nJy;
``flux_prior="uniform"`` reproduces that draw, so figures can be compared with the paper's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["CONDITION_RANGES", "WIDE_SKY_SIGMA_NJY", "REGIMES", "FLUX_PRIORS", "draw_conditions",
           "observe"]

CONDITION_RANGES = {
    "flux_njy": (1e3, 5e6),
    "sky_sigma_njy": (1.2, 6.0),
    "njy_per_electron": (5.0, 20.0),
}
WIDE_SKY_SIGMA_NJY = (6.0, 40.0)
WIDE_FRACTION = 0.3
CORRELATED_FRACTION = 1.0 / 3.0
CORRELATION_PX = (0.4, 1.2)  # Gaussian smoothing sigma of the noise field, model pixels
REGIMES = ("hsc", "wide", "survey")
FLUX_PRIORS = ("log-uniform", "uniform")  # the second is GaMPEN's (§2)


def _log_uniform(lo_hi, n, rng):
    lo, hi = np.log10(lo_hi)
    return 10.0 ** rng.uniform(lo, hi, n)


def draw_conditions(n: int, rng: np.random.Generator, regime: str = "hsc",
                    flux_prior: str = "log-uniform") -> dict[str, np.ndarray]:
    """Total flux, sky noise, gain and noise correlation length for ``n`` observations."""
    if regime not in REGIMES:
        raise ValueError(f"unknown noise regime {regime!r}; known: {', '.join(REGIMES)}")
    if flux_prior not in FLUX_PRIORS:
        raise ValueError(f"unknown flux prior {flux_prior!r}; known: {', '.join(FLUX_PRIORS)}")
    flux_range = CONDITION_RANGES["flux_njy"]
    conditions = {
        "flux_njy": (_log_uniform(flux_range, n, rng) if flux_prior == "log-uniform"
                     else rng.uniform(*flux_range, n)),
        "sky_sigma_njy": _log_uniform(CONDITION_RANGES["sky_sigma_njy"], n, rng),
        "njy_per_electron": rng.uniform(*CONDITION_RANGES["njy_per_electron"], n),
        "noise_corr_px": np.zeros(n),
    }
    if regime == "wide":
        shallow = rng.random(n) < WIDE_FRACTION
        wide_sky = _log_uniform(WIDE_SKY_SIGMA_NJY, n, rng)
        conditions["sky_sigma_njy"] = np.where(shallow, wide_sky, conditions["sky_sigma_njy"])
        correlated = rng.random(n) < CORRELATED_FRACTION
        conditions["noise_corr_px"] = np.where(correlated, rng.uniform(*CORRELATION_PX, n), 0.0)
    if regime == "survey":  # a real sky patch is added instead (training.adapt)
        conditions["sky_sigma_njy"] = np.zeros(n)
    return conditions


def _unit_noise(shape, corr_px, generator, dtype, device) -> torch.Tensor:
    """Standard-normal noise per pixel, Gaussian-correlated over ``corr_px`` where it is > 0."""
    noise = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    if corr_px is None or not np.any(np.asarray(corr_px) > 0):
        return noise
    corr = torch.as_tensor(np.asarray(corr_px), dtype=dtype, device=device).reshape(-1)
    radius = 4
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    width = corr.clamp_min(1e-3).reshape(-1, 1, 1)
    kernels = torch.exp(-0.5 * r2 / width ** 2)
    kernels = torch.where((corr > 0).reshape(-1, 1, 1), kernels, (r2 == 0).to(dtype))
    kernels = kernels / kernels.square().sum((1, 2), keepdim=True).sqrt()  # unit variance
    smoothed = F.conv2d(F.pad(noise.unsqueeze(0), (radius,) * 4, mode="circular"),
                        kernels.unsqueeze(1), groups=len(kernels))
    return smoothed.squeeze(0)


def observe(unit_images: torch.Tensor, flux, sky_sigma, njy_per_electron,
            generator: torch.Generator | None = None, noise_corr_px=None) -> torch.Tensor:
    """Scale ``(B, H, W)`` unit-flux stamps to ``flux`` nJy and add sky + source noise (nJy/pixel).

    ``noise_corr_px`` (per stamp, model pixels; 0 = white) smooths the noise field with a
    Gaussian of that sigma, keeping its per-pixel standard deviation. Masked pixels (NaN,
    ``training.realism``) get what the app fills them with (``preprocessing.make_stamp``): the
    sky (0 here) plus white noise of the sky's per-pixel sigma, without the source's.
    """
    as_col = lambda v: torch.as_tensor(v, dtype=unit_images.dtype,  # noqa: E731
                                       device=unit_images.device).reshape(-1, 1, 1)
    image = unit_images * as_col(flux)
    variance = as_col(sky_sigma) ** 2 + image.clamp_min(0.0) * as_col(njy_per_electron)
    noise = _unit_noise(image.shape, noise_corr_px, generator, image.dtype, image.device)
    observed = image + noise * variance.sqrt()
    masked = torch.isnan(unit_images)
    if not masked.any():  # no draw more: sets without masks observe as they always did
        return observed
    fill = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    return torch.where(masked, fill * as_col(sky_sigma), observed)
