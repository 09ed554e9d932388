"""Reading JPEG/PNG colour cutouts (e.g. SDSS SkyServer) through Pillow.

A display image has a non-linear stretch and no flux calibration, so it yields a rough,
flagged measurement: the channels are averaged to one grey plane and the result is treated as
uncalibrated. Rows are flipped so that ``y`` grows upwards as in FITS (north up for SkyServer
cutouts). Without ``pixel_scale`` the SDSS scale 0.396″/px is assumed and flagged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxy_inspector.errors import ImageReadError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io.image import SkyImage

__all__ = ["read_raster", "SDSS_PIXEL_SCALE"]

SDSS_PIXEL_SCALE = 0.396


def read_raster(path, pixel_scale: float | None = None) -> SkyImage:
    """Grey plane (mean of the colour channels, 0-255) of a JPEG/PNG image."""
    from PIL import Image, UnidentifiedImageError

    label = Path(path).name
    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read {label} as an image ({exc})") from None
    flags = int(Flag.NONLINEAR_IMAGE | Flag.CALIBRATION_GUESSED)
    if pixel_scale is None:
        pixel_scale, flags = SDSS_PIXEL_SCALE, flags | int(Flag.PIXEL_SCALE_GUESSED)
    return SkyImage(data=np.flipud(rgb.mean(axis=2)), pixel_scale=float(pixel_scale),
                    calibrated=False, flags=flags, source=str(path), hdu=-1,
                    calibration="display image (JPEG/PNG, non-linear stretch): no flux "
                                "calibration")
