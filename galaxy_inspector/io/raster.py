"""Reading JPEG/PNG colour cutouts (e.g. SDSS SkyServer) through Pillow.

A display image has a non-linear stretch and no flux calibration, so it yields a rough,
flagged measurement. Two views of the same file:

* ``read_raster`` (morphology): the channels are averaged to one grey plane, treated as
  uncalibrated.
* ``read_raster_rgb`` (property models whose card says ``kind = "display"``): the R, G, B
  channels kept separately at their 0-255 values, as the bundle was trained on them.

A 16-bit grey PNG keeps its 65536 levels (scaled to 0-255, as floats): Pillow's own conversion
to RGB would clip every value above 255 to white.

Rows are flipped so that ``y`` grows upwards as in FITS (north up for SkyServer cutouts); the
property training reader (``training.properties.byo.read_stamp``) flips them the same way.
Without ``pixel_scale`` the SDSS scale 0.396″/px is assumed and flagged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxy_inspector.errors import ImageReadError, first_line
from galaxy_inspector.flags import Flag
from galaxy_inspector.io.image import SkyImage

__all__ = ["read_raster", "read_raster_rgb", "is_raster_path", "SDSS_PIXEL_SCALE", "RGB_BANDS",
           "RASTER_SUFFIXES"]

#: File name endings read as display (JPEG/PNG) images rather than FITS.
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png")

SDSS_PIXEL_SCALE = 0.396
#: Names of the channels ``read_raster_rgb`` returns, in order (a display bundle's bands).
RGB_BANDS = ("R", "G", "B")
_DISPLAY_NOTE = "display image (JPEG/PNG, non-linear stretch): no flux calibration"
#: Pillow modes of 16-bit grey PNGs (``I`` in older Pillow versions), whose levels are 0-65535.
_DEEP_GREY_MODES = ("I;16", "I;16B", "I;16L", "I")


def is_raster_path(path) -> bool:
    """Whether ``path`` names a JPEG/PNG display image (by its ending, case-insensitive)."""
    return str(path).lower().endswith(RASTER_SUFFIXES)


def _rgb_pixels(path) -> np.ndarray:
    """(ny, nx, 3) float32 values 0-255, rows flipped so y grows upwards."""
    from PIL import Image, UnidentifiedImageError

    label = Path(path).name
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in _DEEP_GREY_MODES:
                grey = np.asarray(img, dtype=np.float32) * np.float32(255.0 / 65535.0)
                rgb = np.repeat(grey[..., None], 3, axis=2)
            else:
                rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read {label} as an image ({first_line(exc)})") from None
    return np.flipud(rgb)


def _scale_and_flags(pixel_scale):
    flags = int(Flag.NONLINEAR_IMAGE | Flag.CALIBRATION_GUESSED)
    if pixel_scale is None:
        pixel_scale, flags = SDSS_PIXEL_SCALE, flags | int(Flag.PIXEL_SCALE_GUESSED)
    return float(pixel_scale), flags


def read_raster(path, pixel_scale: float | None = None) -> SkyImage:
    """Grey plane (mean of the colour channels, 0-255) of a JPEG/PNG image."""
    rgb = _rgb_pixels(path)
    scale, flags = _scale_and_flags(pixel_scale)
    return SkyImage(data=rgb.mean(axis=2), pixel_scale=scale, calibrated=False, flags=flags,
                    source=str(path), hdu=-1, calibration=_DISPLAY_NOTE)


def read_raster_rgb(path, pixel_scale: float | None = None) -> list[SkyImage]:
    """The R, G and B channels (0-255, y up) of a JPEG/PNG image as three ``SkyImage``s."""
    rgb = _rgb_pixels(path)
    scale, flags = _scale_and_flags(pixel_scale)
    return [SkyImage(data=rgb[..., k], pixel_scale=scale, calibrated=False, flags=flags,
                     source=str(path), hdu=-1, plane=k,
                     calibration=f"{_DISPLAY_NOTE}; channel {band}")
            for k, band in enumerate(RGB_BANDS)]
