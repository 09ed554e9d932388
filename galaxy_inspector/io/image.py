"""``SkyImage``: one image plane in nJy per pixel with what is known about it.

Readers (``fits.py``, ``raster.py``) return a ``SkyImage``; preprocessing and the engine take one.
Its pixels come from a pixel source: arrays held in memory (``ArrayPixels``: fresh read-only
copies, so no step downstream can change them and a caller's own arrays are never touched), or,
for a large FITS file, the file itself, read window by window (``fits.py``). Consumers read what
they need: ``cutout`` (a stamp's window), ``window`` (any rows and columns), ``preview`` (a
subsampled view for display); ``data``/``mask``/``variance`` hold the whole plane, read on first
use and kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple, Protocol

import numpy as np
from astropy.nddata import Cutout2D

from galaxy_inspector.flags import Flag

__all__ = ["SkyImage", "PixelWindow", "PixelSource", "ArrayPixels", "ImageCutout"]

WHOLE = (slice(None), slice(None))
#: Pixels per read when a preview is subsampled from a file.
PREVIEW_BLOCK_PIXELS = 2 ** 22


class PixelWindow(NamedTuple):
    """Pixels of some rows and columns of an image plane."""

    data: np.ndarray  # float32, the image's units
    mask: np.ndarray | None  # bool, True = unusable
    variance: np.ndarray | None  # float32, data units squared

    def usable(self) -> tuple[np.ndarray, np.ndarray]:
        """The pixels in float64, and which of them are unusable (not finite, or masked)."""
        data = np.asarray(self.data, dtype=np.float64)
        bad = ~np.isfinite(data)
        if self.mask is not None:
            bad |= self.mask
        return data, bad


class PixelSource(Protocol):
    """Where a ``SkyImage``'s pixels come from: its shape, and the pixels of any window."""

    shape: tuple[int, int]

    def read(self, rows: slice, cols: slice) -> PixelWindow:
        """Pixels of ``rows`` x ``cols`` (slices, steps allowed)."""


def _frozen(array, dtype):
    if array is None:
        return None
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


class ArrayPixels:
    """Pixels held in memory, as read-only copies of the arrays given."""

    def __init__(self, data, mask=None, variance=None):
        self.data = _frozen(data, np.float32)
        if self.data.ndim != 2:
            raise ValueError(f"SkyImage data must be 2-D (ny, nx), got shape {self.data.shape}")
        self.mask = _frozen(mask, bool)
        self.variance = _frozen(variance, np.float32)
        for name, plane in (("mask", self.mask), ("variance", self.variance)):
            if plane is not None and plane.shape != self.data.shape:
                raise ValueError(f"{name} shape {plane.shape} differs from the image's "
                                 f"{self.data.shape}")
        self.shape = self.data.shape

    def read(self, rows: slice, cols: slice) -> PixelWindow:
        return PixelWindow(*(None if a is None else a[rows, cols]
                             for a in (self.data, self.mask, self.variance)))


@dataclass(frozen=True)
class ImageCutout:
    """A square window of an image, padded where it runs off the image.

    ``data`` and ``variance`` are NaN and ``mask`` is True off the image; ``in_image`` says
    which pixels lie on it. ``position`` is the cut's centre ``(x, y)`` in window pixels
    (``Cutout2D.input_position_cutout``), ``centre`` the same in the image's pixels.
    """

    data: np.ndarray
    mask: np.ndarray | None
    variance: np.ndarray | None
    in_image: np.ndarray
    position: tuple[float, float]
    centre: tuple[float, float]
    image_shape: tuple[int, int]
    image_wcs: object

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape

    @cached_property
    def wcs(self):
        """The window's WCS (``Cutout2D``'s), made when first asked for: a copy of the image's
        that only a resampled stamp reads (0.15 ms a stamp otherwise spent for nothing)."""
        if self.image_wcs is None:
            return None
        return _geometry(self.image_shape, self.centre, self.shape[0], self.image_wcs).wcs


def _geometry(shape, centre, side, wcs=None) -> Cutout2D:
    """``Cutout2D``'s ``mode="partial"`` window of ``side`` pixels at ``centre`` (x, y) of an
    image of ``shape``, on a zero-strided stand-in, so that no pixel is read."""
    stand_in = np.broadcast_to(np.float32(0.0), shape)
    return Cutout2D(stand_in, centre, side, wcs=wcs, mode="partial", fill_value=np.nan)


def _padded(cut: Cutout2D, window, fill, dtype):
    out = np.full(cut.shape, fill, dtype=dtype)
    out[cut.slices_cutout] = window
    return out


class SkyImage:
    """An image plane with its calibration, pixel scale, WCS, mask and variance.

    Give either ``data`` (with optional ``mask`` and ``variance`` arrays, copied) or ``pixels``
    (a ``PixelSource``). Read-only.

    Attributes
    ----------
    data : ndarray (ny, nx), float32
        nJy per pixel when ``calibrated``; otherwise the file's values (see ``calibration``).
        The whole plane: read from the source on first use and kept.
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
    pixels : PixelSource
        Where the pixels come from.
    psf_fwhm : float or None
        FWHM of the image's PSF in arcsec (given, from a header or measured); None: unknown.
    psf_source : str
        Where ``psf_fwhm`` came from ("" when unknown), for the catalogue.
    sky_subtracted : bool
        The user says the image's sky is 0 (``--sky-subtracted``): none is measured or taken
        off, where a cutout too small to hold sky would otherwise be refused or have the
        background around its galaxy removed.
    """

    def __init__(self, data=None, pixel_scale: float | None = None, wcs=None, mask=None,
                 variance=None, calibrated: bool = False, calibration: str = "uncalibrated",
                 flags: int = 0, source: str = "", hdu: int = -1, plane: int = 0, *,
                 pixels: PixelSource | None = None, psf_fwhm: float | None = None,
                 psf_source: str = "", sky_subtracted: bool = False):
        if (data is None) == (pixels is None):
            raise ValueError("a SkyImage needs either data arrays or a pixel source")
        values = dict(pixels=pixels or ArrayPixels(data, mask, variance),
                      pixel_scale=pixel_scale, wcs=wcs, calibrated=calibrated,
                      calibration=calibration, flags=flags, source=source, hdu=hdu, plane=plane,
                      psf_fwhm=psf_fwhm, psf_source=psf_source,
                      sky_subtracted=bool(sky_subtracted))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"SkyImage is read-only (cannot set {name})")

    def __repr__(self) -> str:
        ny, nx = self.shape
        return f"SkyImage({nx}x{ny}, source={self.source!r}, hdu={self.hdu}, plane={self.plane})"

    @classmethod
    def from_array(cls, data, pixel_scale=None, *, calibrated=True, **kwargs) -> SkyImage:
        """An image from an array already in nJy per pixel (the array is copied, not kept)."""
        calibration = kwargs.pop("calibration", "array in nJy" if calibrated else "uncalibrated")
        return cls(data=data, pixel_scale=pixel_scale, calibrated=calibrated,
                   calibration=calibration, **kwargs)

    def with_psf(self, fwhm: float | None, source: str) -> SkyImage:
        """The same image (pixels shared, not copied) with its PSF FWHM (arcsec) known."""
        return self._replaced(psf_fwhm=fwhm, psf_source=source)

    def with_sky_subtracted(self) -> SkyImage:
        """The same image (pixels shared) with its sky known to be 0 (``sky_subtracted``)."""
        return self._replaced(sky_subtracted=True)

    def _replaced(self, **changes) -> SkyImage:
        kept = ("pixel_scale", "wcs", "calibrated", "calibration", "flags", "source", "hdu",
                "plane", "pixels", "psf_fwhm", "psf_source", "sky_subtracted")
        return SkyImage(**{**{name: getattr(self, name) for name in kept}, **changes})

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pixels.shape)

    @cached_property
    def _whole(self) -> PixelWindow:
        return self.pixels.read(*WHOLE)

    @property
    def data(self) -> np.ndarray:
        return self._whole.data

    @property
    def mask(self) -> np.ndarray | None:
        return self._whole.mask

    @property
    def variance(self) -> np.ndarray | None:
        return self._whole.variance

    def window(self, rows: slice, cols: slice) -> PixelWindow:
        """Pixels of ``rows`` x ``cols``, read only there (unless the whole plane is held)."""
        if "_whole" in self.__dict__ or isinstance(self.pixels, ArrayPixels):
            return PixelWindow(*(None if a is None else a[rows, cols] for a in self._whole))
        return self.pixels.read(rows, cols)

    def cutout(self, x: float, y: float, side: int) -> ImageCutout:
        """The ``side`` x ``side`` window centred on 0-based pixel (x, y), padded off the image.

        Its geometry (slices, WCS, centre) is ``Cutout2D``'s in ``mode="partial"`` (``_geometry``),
        so that only the window's pixels are read.
        """
        cut = _geometry(self.shape, (x, y), side)
        window = self.window(*cut.slices_original)
        return ImageCutout(
            data=_padded(cut, window.data, np.nan, np.float32),
            mask=None if window.mask is None else _padded(cut, window.mask, True, bool),
            variance=(None if window.variance is None
                      else _padded(cut, window.variance, np.nan, np.float32)),
            in_image=_padded(cut, True, False, bool), position=tuple(cut.input_position_cutout),
            centre=(x, y), image_shape=self.shape, image_wcs=self.wcs)

    def preview_step(self, max_side: int) -> int:
        """Subsampling step that brings the image's longer side to at most ``max_side``."""
        return max(1, math.ceil(max(self.shape) / max_side))

    @property
    def is_display_image(self) -> bool:
        """Whether the pixels are a display image's levels (JPEG/PNG, already stretched), to be
        shown as they are rather than scaled like fluxes."""
        return bool(self.flags & Flag.NONLINEAR_IMAGE)

    def preview(self, max_side: int, plane: str = "data") -> np.ndarray | None:
        """Every ``preview_step(max_side)``-th pixel of ``plane`` ("data" or "mask"; None when
        the image has no mask) along each axis (for display), read in blocks of whole rows
        (strided file reads go pixel by pixel) of about ``PREVIEW_BLOCK_PIXELS``, so the whole
        plane is never held."""
        step = self.preview_step(max_side)
        if "_whole" in self.__dict__ or isinstance(self.pixels, ArrayPixels):
            whole = getattr(self._whole, plane)
            return None if whole is None else whole[::step, ::step]
        ny, nx = self.shape
        rows = max(1, PREVIEW_BLOCK_PIXELS // (nx * step)) * step
        blocks = [self._preview_block(slice(y0, min(y0 + rows, ny)), step, plane)
                  for y0 in range(0, ny, rows)]
        if blocks[0] is None:
            return None
        return np.concatenate(blocks)

    def _preview_block(self, rows: slice, step: int, plane: str) -> np.ndarray | None:
        block = getattr(self.window(rows, WHOLE[1]), plane)
        # A copy, not a view: a view would keep its whole block alive.
        return None if block is None else block[::step, ::step].copy()

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
