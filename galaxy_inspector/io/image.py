"""``SkyImage``: one image plane in nJy per pixel with what is known about it.

Readers (``fits.py``, ``raster.py``) return a ``SkyImage``; preprocessing and the engine take one.
The arrays are fresh copies owned by the image and are marked read-only, so no step downstream
can change them in place (and a caller's own arrays are never touched).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SkyImage"]


def _frozen(array, dtype):
    if array is None:
        return None
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class SkyImage:
    """An image plane with its calibration, pixel scale, WCS, mask and variance.

    Attributes
    ----------
    data : ndarray (ny, nx), float32
        nJy per pixel when ``calibrated``; otherwise the file's values (see ``calibration``).
    pixel_scale : float or None
        Arcsec per pixel (WCS, keyword or user); None when unknown.
    wcs : astropy.wcs.WCS or None
        Celestial WCS of ``data`` (0-based pixel convention through the high-level API).
    mask : ndarray (ny, nx) of bool or None
        True where a pixel must not be used (bad, saturated, cosmic ray, no data).
    variance : ndarray (ny, nx), float32, or None
        Per-pixel variance in the units of ``data`` squared.
    calibrated : bool
        Whether ``data`` is in nJy per pixel.
    calibration : str
        How the values were turned into nJy (or why they were not), for the catalogue.
    flags : int
        Image-level ``galaxy_inspector.flags.Flag`` bits (guessed calibration or scale...).
    source : str
        Path of the file ("" for an array).
    hdu : int
        FITS HDU index the plane came from; -1 for non-FITS images.
    plane : int
        Index of the plane in a cube (0 for 2-D images).
    """

    data: np.ndarray
    pixel_scale: float | None
    wcs: object = None
    mask: np.ndarray | None = None
    variance: np.ndarray | None = None
    calibrated: bool = False
    calibration: str = "uncalibrated"
    flags: int = 0
    source: str = ""
    hdu: int = -1
    plane: int = 0

    def __post_init__(self):
        data = _frozen(self.data, np.float32)
        if data.ndim != 2:
            raise ValueError(f"SkyImage data must be 2-D (ny, nx), got shape {data.shape}")
        object.__setattr__(self, "data", data)
        mask = _frozen(self.mask, bool)
        variance = _frozen(self.variance, np.float32)
        for name, plane in (("mask", mask), ("variance", variance)):
            if plane is not None and plane.shape != data.shape:
                raise ValueError(f"{name} shape {plane.shape} differs from the image's "
                                 f"{data.shape}")
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "variance", variance)

    @classmethod
    def from_array(cls, data, pixel_scale=None, *, calibrated=True, **kwargs) -> SkyImage:
        """An image from an array already in nJy per pixel (the array is copied, not kept)."""
        calibration = kwargs.pop("calibration", "array in nJy" if calibrated else "uncalibrated")
        return cls(data=data, pixel_scale=pixel_scale, calibrated=calibrated,
                   calibration=calibration, **kwargs)

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape

    def pixel_to_sky(self, x: float, y: float) -> tuple[float, float]:
        """(RA, Dec) in degrees of 0-based pixel (x, y); NaNs without a WCS."""
        if self.wcs is None:
            return float("nan"), float("nan")
        ra, dec = self.wcs.all_pix2world([[x, y]], 0)[0]
        return float(ra), float(dec)

    def sky_to_pixel(self, ra: float, dec: float) -> tuple[float, float]:
        """0-based pixel (x, y) of (RA, Dec) in degrees; raises ``ValueError`` without a WCS."""
        if self.wcs is None:
            raise ValueError("the image has no celestial WCS")
        x, y = self.wcs.all_world2pix([[ra, dec]], 0)[0]
        return float(x), float(y)
