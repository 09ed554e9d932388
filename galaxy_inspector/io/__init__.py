"""Image input: FITS (all layouts in ``fits.py``), JPEG/PNG (``raster.py``), batch INPUT lists.

``read_image`` is the one entry point for a file; it returns a ``SkyImage`` in nJy per pixel
(or flagged as uncalibrated), raising ``ImageReadError``/``InputError`` with a one-line message.
Its PSF FWHM comes from the user, a PSF image, the field's stars or the header (``psf.py``).
A large FITS image is not read then: its ``SkyImage`` reads the windows asked of it (``fits.py``),
and what must be read whole is bounded by ``memory.whole_read_limit``.
The several band images a multi-band property model reads are gathered by
``galaxy_inspector.physical_properties.bands.read_bands``.
"""

from __future__ import annotations

from pathlib import Path

from galaxy_inspector.errors import ImageReadError, InputError
from galaxy_inspector.io.calibration import Calibration, calibration_from_header
from galaxy_inspector.io.fits import fits_band_names, read_fits
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.io.inputs import (
    IMAGE_SUFFIXES,
    Target,
    expand_inputs,
    file_problem,
    is_image_path,
)
from galaxy_inspector.io.psf import (
    PsfEstimate,
    psf_from_header,
    psf_fwhm_from_stars,
    psf_fwhm_of_image,
)
from galaxy_inspector.io.raster import is_raster_path, read_raster, read_raster_rgb

__all__ = ["read_image", "read_fits", "read_raster", "read_raster_rgb", "is_raster_path",
           "fits_band_names", "SkyImage", "Target", "expand_inputs",
           "is_image_path", "IMAGE_SUFFIXES", "Calibration", "calibration_from_header",
           "PsfEstimate", "psf_from_header", "psf_fwhm_of_image", "psf_fwhm_from_stars",
           "PSF_FROM_STARS"]

#: The ``psf`` of ``read_image`` (and ``--psf``) that measures the PSF on the image's stars.
PSF_FROM_STARS = "stars"


def read_image(path, hdu=None, plane: int = 0, pixel_scale: float | None = None,
               zero_point: float | None = None, psf_fwhm: float | None = None,
               psf=None, sky_subtracted: bool = False) -> SkyImage:
    """Read an image file (FITS or JPEG/PNG, by its name) as a ``SkyImage``.

    ``pixel_scale`` (arcsec/px) replaces the file's own (a wrong WCS scale can be overridden);
    ``zero_point`` (AB) is used only where the file has no calibration. The image's PSF FWHM
    is, in this order: ``psf_fwhm`` (arcsec) as given, that of the PSF image ``psf`` names (a
    FITS path), measured on its stars (``psf="stars"``), its header's (``psf.psf_from_header``),
    else unknown (None); ``psf_source`` says which. ``sky_subtracted``: the user says the
    image's sky is 0 (``SkyImage.sky_subtracted``); a JPEG/PNG's sky never is.
    """
    p = Path(path)
    problem = file_problem(p)
    if problem:
        raise ImageReadError(problem)
    if p.stat().st_size == 0:
        raise ImageReadError(f"{p.name} is empty (0 bytes)")
    if is_raster_path(p):
        if sky_subtracted:
            raise InputError(f"{p.name} is a display image, whose sky is not 0: "
                             "--sky-subtracted is for FITS images")
        image = read_raster(p, pixel_scale=pixel_scale)
    else:
        image = read_fits(p, hdu=hdu, plane=plane, pixel_scale=pixel_scale,
                          zero_point=zero_point)
    if sky_subtracted:
        image = image.with_sky_subtracted()
    if psf_fwhm is not None:
        return image.with_psf(float(psf_fwhm), "given")
    if psf is None:
        return image
    known = (psf_fwhm_from_stars(image) if str(psf) == PSF_FROM_STARS
             else psf_fwhm_of_image(psf, pixel_scale=image.pixel_scale))
    return image.with_psf(known.fwhm, known.source)
