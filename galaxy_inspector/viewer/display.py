"""Display scaling of images (no Qt): stretches, limits, colour composites, mask overlays.

These only decide how pixels look on screen, never what is measured. They wrap
``astropy.visualization`` so the stretches and zscale behave exactly as astronomers know them.
Limits are computed on the finite, unmasked pixels only, so bad columns and saturated stars do
not set the grey scale. Display images (JPEG/PNG) are already stretched: they are shown as they
are (``display_image_rgb``), never stretched again.
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

from galaxy_inspector.io.raster import RGB_BANDS

__all__ = ["normalize", "display_levels", "lupton_composite", "display_image_rgb",
           "mask_overlay", "band_labels", "DISPLAY_IMAGE_LEVELS", "MASK_COLOUR"]

#: Levels of a display image's channels (8-bit; 16-bit PNGs are read scaled to this range).
DISPLAY_IMAGE_LEVELS = (0.0, 255.0)
#: RGBA of the mask overlay: magenta, which no stretch of a grey image or sky colour shows.
MASK_COLOUR = (255, 0, 255, 140)

_STRETCHES = {"linear": LinearStretch, "sqrt": SqrtStretch, "log": LogStretch,
              "asinh": AsinhStretch}


def _interval(name: str):
    if name == "zscale":
        return ZScaleInterval()
    if name == "min-max":
        return MinMaxInterval()
    return PercentileInterval(float(name.rstrip("%")))


def normalize(data: np.ndarray, stretch: str, interval: str,
              mask: np.ndarray | None = None) -> np.ndarray:
    """``data`` mapped to [0, 1] by the limits ``interval`` and then ``stretch`` (float32 copy).

    The limits come from the finite pixels outside ``mask`` (True = unusable); masked pixels are
    still drawn, clipped to the limits. Non-finite pixels become 0 so they show as the
    background colour.
    """
    data = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(data)
    usable = _usable(data, mask)
    if not usable.any():
        usable = finite  # everything masked: the limits of what there is
    if not usable.any():
        return np.zeros_like(data)
    vmin, vmax = _interval(interval).get_limits(data[usable])
    if not vmax > vmin:
        vmin, vmax = float(data[usable].min()), float(data[usable].max()) + 1e-12
    norm = ImageNormalize(vmin=vmin, vmax=vmax, stretch=_STRETCHES[stretch](), clip=True)
    out = np.asarray(norm(np.where(finite, data, vmin)), dtype=np.float32)
    return np.nan_to_num(out, nan=0.0)


def _usable(data: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Pixels that may set display limits: finite and not masked."""
    finite = np.isfinite(data)
    return finite if mask is None else finite & ~np.asarray(mask, dtype=bool)


def display_levels(contrast: float, bias: float) -> tuple[float, float]:
    """Levels on the normalised [0, 1] image for DS9-style contrast and bias.

    Bias is the normalised value shown as mid-grey; contrast divides the range shown, as DS9's
    right-drag does (contrast 1, bias 0.5 show [0, 1]).
    """
    half = 0.5 / max(contrast, 1e-3)
    return bias - half, bias + half


def lupton_composite(red: np.ndarray, green: np.ndarray, blue: np.ndarray,
                     q: float = 8.0, mask: np.ndarray | None = None) -> np.ndarray:
    """Lupton et al. (2004) colour image (ny, nx, 3) uint8 from three planes (reddest first).

    The softening ``stretch`` is set from the middle plane's zscale range, and each plane's
    minimum from its median, both over the unmasked pixels, so that faint structure is visible
    whatever the flux unit and bad pixels do not set the scale.
    """
    planes = [np.nan_to_num(np.asarray(p, dtype=np.float32)) for p in (red, green, blue)]
    usable = _usable(np.asarray(green, dtype=np.float32), mask)
    if not usable.any():
        usable = np.ones(planes[1].shape, dtype=bool)
    lo, hi = ZScaleInterval().get_limits(planes[1][usable])
    stretch = max(float(hi - lo), 1e-12)
    minimum = [float(np.median(p[usable])) for p in planes]
    return make_lupton_rgb(*planes, minimum=minimum, stretch=stretch, Q=q)


def display_image_rgb(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """The colour channels of a display image stacked as they are, (ny, nx, 3) float32 at
    ``DISPLAY_IMAGE_LEVELS``: its stretch was applied when it was made."""
    return np.dstack([np.asarray(p, dtype=np.float32) for p in (red, green, blue)])


def mask_overlay(mask: np.ndarray) -> np.ndarray:
    """RGBA (ny, nx, 4) uint8 layer: ``MASK_COLOUR`` over masked pixels, transparent elsewhere."""
    mask = np.asarray(mask, dtype=bool)
    layer = np.zeros((*mask.shape, 4), dtype=np.uint8)
    layer[mask] = MASK_COLOUR
    return layer


def band_labels(images, composite: bool) -> list[str]:
    """Entries of the band chooser, the composite last when ``composite``: a display image's
    channels R, G, B (``io.raster.RGB_BANDS``, as ``read_raster_rgb`` orders them) and
    "colour" (the image as it is), or plane k and "colour composite" (Lupton) for FITS planes."""
    display = bool(images) and all(im.is_display_image for im in images)
    if display and len(images) == len(RGB_BANDS):
        names = list(RGB_BANDS)
    else:
        names = [f"plane {i}" for i in range(len(images))]
    if composite:
        names.append("colour" if display else "colour composite")
    return names
