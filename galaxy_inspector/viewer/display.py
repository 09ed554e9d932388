"""Display scaling of images (no Qt): stretches, limits and colour composites.

These only decide how pixels look on screen, never what is measured. They wrap
``astropy.visualization`` so the stretches and zscale behave exactly as astronomers know them.
"""

from __future__ import annotations

import numpy as np
from astropy.visualization import (
    AsinhStretch,
    ImageNormalize,
    LinearStretch,
    LogStretch,
    MinMaxInterval,
    PercentileInterval,
    SqrtStretch,
    ZScaleInterval,
    make_lupton_rgb,
)

__all__ = ["normalize", "display_levels", "lupton_composite"]

_STRETCHES = {"linear": LinearStretch, "sqrt": SqrtStretch, "log": LogStretch,
              "asinh": AsinhStretch}


def _interval(name: str):
    if name == "zscale":
        return ZScaleInterval()
    if name == "min-max":
        return MinMaxInterval()
    return PercentileInterval(float(name.rstrip("%")))


def normalize(data: np.ndarray, stretch: str, interval: str) -> np.ndarray:
    """``data`` mapped to [0, 1] by the limits ``interval`` and then ``stretch`` (float32 copy).

    Non-finite pixels become 0 so they show as the background colour.
    """
    data = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros_like(data)
    vmin, vmax = _interval(interval).get_limits(data[finite])
    if not vmax > vmin:
        vmin, vmax = float(data[finite].min()), float(data[finite].max()) + 1e-12
    norm = ImageNormalize(vmin=vmin, vmax=vmax, stretch=_STRETCHES[stretch](), clip=True)
    out = np.asarray(norm(np.where(finite, data, vmin)), dtype=np.float32)
    return np.nan_to_num(out, nan=0.0)


def display_levels(contrast: float, bias: float) -> tuple[float, float]:
    """Levels on the normalised [0, 1] image for DS9-style contrast and bias.

    Bias is the normalised value shown as mid-grey; contrast divides the range shown, as DS9's
    right-drag does (contrast 1, bias 0.5 show [0, 1]).
    """
    half = 0.5 / max(contrast, 1e-3)
    return bias - half, bias + half


def lupton_composite(red: np.ndarray, green: np.ndarray, blue: np.ndarray,
                     q: float = 8.0) -> np.ndarray:
    """Lupton et al. (2004) colour image (ny, nx, 3) uint8 from three planes (reddest first).

    The softening ``stretch`` is set from the middle plane's zscale range so that faint
    structure is visible whatever the flux unit.
    """
    planes = [np.nan_to_num(np.asarray(p, dtype=np.float32)) for p in (red, green, blue)]
    lo, hi = ZScaleInterval().get_limits(planes[1])
    stretch = max(float(hi - lo), 1e-12)
    minimum = [float(np.median(p)) for p in planes]
    return make_lupton_rgb(*planes, minimum=minimum, stretch=stretch, Q=q)
