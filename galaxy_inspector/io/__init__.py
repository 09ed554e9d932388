"""Image input: FITS (all layouts in ``fits.py``), JPEG/PNG (``raster.py``), batch INPUT lists.

``read_image`` is the one entry point for a file; it returns a ``SkyImage`` in nJy per pixel
(or flagged as uncalibrated), raising ``ImageReadError``/``InputError`` with a one-line message.
"""

from __future__ import annotations

from pathlib import Path

from galaxy_inspector.errors import ImageReadError
from galaxy_inspector.io.calibration import Calibration, calibration_from_header
from galaxy_inspector.io.fits import read_fits
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.io.inputs import IMAGE_SUFFIXES, Target, expand_inputs, is_image_path
from galaxy_inspector.io.raster import read_raster

__all__ = ["read_image", "read_fits", "read_raster", "SkyImage", "Target", "expand_inputs",
           "is_image_path", "IMAGE_SUFFIXES", "Calibration", "calibration_from_header"]

RASTER_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_image(path, hdu=None, plane: int = 0, pixel_scale: float | None = None,
               zero_point: float | None = None) -> SkyImage:
    """Read an image file (FITS or JPEG/PNG, by its name) as a ``SkyImage``.

    ``pixel_scale`` (arcsec/px) and ``zero_point`` (AB) are used only where the file has none.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{path}: no such file")
    if p.stat().st_size == 0:
        raise ImageReadError(f"{p.name} is empty (0 bytes)")
    if p.name.lower().endswith(RASTER_SUFFIXES):
        return read_raster(p, pixel_scale=pixel_scale)
    return read_fits(p, hdu=hdu, plane=plane, pixel_scale=pixel_scale, zero_point=zero_point)
