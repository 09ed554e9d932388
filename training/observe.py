"""Turn stored unit-flux, noise-free stamps into observations: flux, sky noise, source noise.

HSC-Wide-like g band at 0.168"/pixel: sky sigma 1.2-6 nJy per pixel (log-uniform; HSC-Wide is
about 1.5-4), source (Poisson) noise with 5-20 nJy per detected electron, total flux log-uniform
over GaMPEN's 1e3-5e6 nJy. Drawing these at training time gives every stored shape a new
signal-to-noise level each epoch.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["CONDITION_RANGES", "draw_conditions", "observe"]

CONDITION_RANGES = {
    "flux_njy": (1e3, 5e6),
    "sky_sigma_njy": (1.2, 6.0),
    "njy_per_electron": (5.0, 20.0),
}


def draw_conditions(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Total flux, sky noise and gain for ``n`` observations."""
    lo, hi = np.log10(CONDITION_RANGES["flux_njy"])
    slo, shi = np.log10(CONDITION_RANGES["sky_sigma_njy"])
    return {
        "flux_njy": 10.0 ** rng.uniform(lo, hi, n),
        "sky_sigma_njy": 10.0 ** rng.uniform(slo, shi, n),
        "njy_per_electron": rng.uniform(*CONDITION_RANGES["njy_per_electron"], n),
    }


def observe(unit_images: torch.Tensor, flux, sky_sigma, njy_per_electron,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale ``(B, H, W)`` unit-flux stamps to ``flux`` nJy and add sky + source noise (nJy/pixel)."""
    as_col = lambda v: torch.as_tensor(v, dtype=unit_images.dtype,  # noqa: E731
                                       device=unit_images.device).reshape(-1, 1, 1)
    image = unit_images * as_col(flux)
    variance = as_col(sky_sigma) ** 2 + image.clamp_min(0.0) * as_col(njy_per_electron)
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    return image + noise * variance.sqrt()
