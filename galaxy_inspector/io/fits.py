"""Reading FITS images: single HDU, multi-extension, compressed, cubes, HSC/SDSS/HST layouts.

The image HDU is the one the user names (``hdu``), else the first HDU named IMAGE/SCI/DATA/FLUX
holding a 2-D or 3-D array, else the first such HDU of any name; PRIMARY HDUs without data (HSC
coadd cutouts) are skipped. ``MASK`` and ``VARIANCE`` (or ``IVAR``) extensions of the same shape
are used. HSC masks are bit planes: only the planes in ``BAD_MASK_PLANES`` (named by the ``MP_*``
keywords when present) make a pixel unusable; DETECTED and friends do not.
Keywords are looked up in the image HDU's header first, then in the primary header.

Memory: a plane larger than ``LAZY_ABOVE_BYTES`` (as float32) in a plain or tile-compressed
(``.fz``) file is not read: the ``SkyImage`` reads the windows it is asked for through astropy's
``section`` (only the tiles needed, BSCALE/BZERO applied to the window). A gzip'd file can only
be decompressed whole; one whose planes would need more than ``memory.whole_read_limit()`` is
refused from its header, before any pixel is decompressed.

The PSF FWHM a header records (``SEEING``, ``PSF_FWHM``, DECam's ``FWHM`` in pixels...) is
the image's ``psf_fwhm`` (``psf.psf_from_header``).

``fits_band_names`` says which band each plane holds (``BANDk`` keywords, or a comma-separated
``FILTERS``, as ``training/make_samples.py`` writes cubes; ``FILTER``/``BAND``/``FILTNAM`` for a
2-D image), so a multi-band property model can pick its planes by name.
"""

from __future__ import annotations

import warnings
from collections import ChainMap
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from galaxy_inspector.errors import GalaxyInspectorError, ImageReadError, InputError, first_line
from galaxy_inspector.io.calibration import calibration_from_header
from galaxy_inspector.io.image import PixelWindow, SkyImage
from galaxy_inspector.io.memory import format_bytes, whole_read_limit
from galaxy_inspector.io.psf import psf_from_header

__all__ = ["read_fits", "fits_band_names", "BAD_MASK_PLANES", "FITS_SUFFIXES",
           "LAZY_ABOVE_BYTES"]

#: File name endings read as FITS (``.fz``: tile-compressed).
FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fz")

IMAGE_HDU_TYPES = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
IMAGE_NAMES = ("IMAGE", "SCI", "DATA", "FLUX")
AUXILIARY_NAMES = ("MASK", "VARIANCE", "VAR", "IVAR", "WHT", "WEIGHT", "DQ", "ERR")
BAD_MASK_PLANES = ("BAD", "SAT", "CR", "NO_DATA", "SUSPECT", "UNMASKEDNAN")
#: Bit numbers of the bad planes in HSC pipeline masks when the header does not name them.
HSC_DEFAULT_BITS = {"BAD": 0, "SAT": 1, "CR": 3, "NO_DATA": 8}
PIXEL_SCALE_KEYS = ("PIXSCALE", "PIXSCAL1", "SECPIX", "SECPIX1")
SINGLE_BAND_KEYS = ("BAND", "FILTER", "FILTNAM", "FILTNAM1")
#: Planes larger than this (as float32) are read window by window, never whole.
LAZY_ABOVE_BYTES = 64 * 2 ** 20
#: Bytes per pixel a whole read holds at its peak beyond the file's own pixels: the float64
#: conversion and the float32 plane kept.
WHOLE_READ_BYTES_PER_PIXEL = 12
#: Rows per read when a mask is scanned for its largest value.
MASK_SCAN_ROWS = 1024
#: Relative difference below which a pixel scale the user gives is the file's own (kept as is).
SAME_SCALE_TOLERANCE = 1e-3
#: Connected runs of at least this many pixels of exactly zero are no data: where drizzle,
#: SWarp and WFPC2 mosaics had no exposure they write 0, and no sky noise holds such a run.
OFF_CHIP_MIN_PIXELS = 100


def _first_sentence(exc: BaseException) -> str:
    """astropy's FITS errors append hints as further sentences; the first one says what is wrong."""
    return first_line(exc).split(". ")[0].rstrip(".")


def _shape(hdu) -> tuple:
    """Array shape without reading the data, numpy order: an image HDU's own (worked out from
    its header once, when the HDU was read: 25 times faster than looking the keywords up)."""
    if isinstance(hdu, IMAGE_HDU_TYPES) and not isinstance(hdu, fits.GroupsHDU):
        return tuple(hdu.shape)
    naxis = int(hdu.header.get("NAXIS", 0) or 0)
    return tuple(int(hdu.header.get(f"NAXIS{i}", 0) or 0) for i in range(naxis, 0, -1))


def _keywords(hdul, index) -> ChainMap:
    """The keywords of HDU ``index``, then those of the primary header: each value is parsed
    only when it is looked up (parsing every card of both headers took a third of a read)."""
    return ChainMap(hdul[index].header, *([hdul[0].header] if index else []))


def _is_image(hdu) -> bool:
    if not isinstance(hdu, IMAGE_HDU_TYPES):
        return False
    dims = [n for n in _shape(hdu) if n > 1]
    return 2 <= len(dims) <= 3


def _name(hdu) -> str:
    return str(hdu.name or "").upper()


def _pick_hdu(hdul, hdu, label) -> int:
    if hdu is not None:
        try:
            index = hdul.index_of(hdu)
        except (KeyError, IndexError, ValueError):
            names = ", ".join(f"{i}:{h.name or '-'}" for i, h in enumerate(hdul))
            raise InputError(f"{label} has no HDU {hdu!r} (it has {names})") from None
        if not _is_image(hdul[index]):
            raise InputError(f"HDU {hdu!r} of {label} holds no 2-D image; choose another --hdu")
        return index
    images = [i for i, h in enumerate(hdul) if _is_image(h) and _name(h) not in AUXILIARY_NAMES]
    named = [i for i in images if _name(hdul[i]) in IMAGE_NAMES]
    if named or images:
        return (named or images)[0]
    tiny = [_shape(h) for h in hdul if _shape(h) and not isinstance(
        h, (fits.BinTableHDU, fits.TableHDU))]
    if tiny:
        raise ImageReadError(f"{label} holds only an array of shape {tiny[0]}, too small to "
                             "be an image of a galaxy")
    if any(isinstance(h, (fits.BinTableHDU, fits.TableHDU)) for h in hdul):
        raise ImageReadError(f"{label} holds only tables, no image; a table of positions "
                             "needs a 'path' column naming the images")
    raise ImageReadError(f"{label} contains no image data (no HDU with a 2-D array)")


def _plane_index(shape, plane, label) -> tuple[tuple, bool]:
    """Index of the 2-D plane in an array of ``shape`` (leading axes of length 1 dropped,
    ``plane`` of a cube), and whether the array is a cube."""
    shape, index = tuple(shape), ()
    while len(shape) > 2 and shape[0] == 1:
        shape, index = shape[1:], index + (0,)
    if len(shape) == 3:
        if not 0 <= plane < shape[0]:
            raise InputError(f"{label} has {shape[0]} planes; plane {plane} does not exist")
        return index + (plane,), True
    if len(shape) != 2:
        raise ImageReadError(f"{label} has a {len(shape)}-D array of shape {shape}; "
                             "expected an image or a cube of band images")
    return index, False


def _celestial_wcs(header):
    """The header's celestial WCS (longitude, latitude), or None. A 2-D one already in that
    order is kept as built: ``.celestial`` would copy it to the same transformation."""
    try:
        wcs = WCS(header)
        if not (wcs.naxis == 2 and wcs.wcs.lng == 0 and wcs.wcs.lat == 1):
            wcs = wcs.celestial
    except Exception:  # astropy raises many types on malformed WCS keywords
        return None
    if not wcs.has_celestial or wcs.naxis != 2:
        return None
    scales = proj_plane_pixel_scales(wcs)
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        return None
    return wcs


def _bad_mask_bits(mask_header, mask) -> int:
    named = {key[3:]: mask_header[key] for key in mask_header if str(key).startswith("MP_")}
    if named:
        bits = [int(named[p]) for p in BAD_MASK_PLANES if p in named]
    elif mask.size and np.nanmax(mask) <= 1:
        return 1
    else:
        bits = list(HSC_DEFAULT_BITS.values())
    return int(sum(1 << b for b in bits))


def _auxiliary_hdus(hdul, shape) -> dict:
    """HDU index of the MASK and of the VARIANCE/VAR/IVAR extension of ``shape``, by name."""
    found = {}
    for index, h in enumerate(hdul):
        name = _name(h)
        if name in ("MASK", "VARIANCE", "VAR", "IVAR") and _shape(h) == shape:
            found["MASK" if name == "MASK" else "VARIANCE"] = index
    return found


def _mask_from(values, bits):
    """True where a MASK extension's ``values`` mark a pixel unusable (``bits``: integer masks)."""
    if np.issubdtype(values.dtype, np.integer):
        return (values.astype(np.int64) & bits) != 0
    return np.nan_to_num(values.astype(float), nan=1.0) != 0


def _with_off_chip(data: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
    """``mask`` (None: none) with the pixels off the chips of a mosaic (``OFF_CHIP_MIN_PIXELS``)
    marked unusable. Taken as data, the 28 % of the NGC 5831 WFPC2 mosaic that is 0 spread its
    sky so wide that the image seemed to have none, and a galaxy beside NGC 5831 was measured
    against a local level that took 12 % of its light."""
    zero = data == 0
    if zero.sum() < OFF_CHIP_MIN_PIXELS:
        return mask
    from scipy.ndimage import label

    runs, _ = label(zero)
    sizes = np.bincount(runs.ravel())
    sizes[0] = 0
    off_chip = sizes[runs] >= OFF_CHIP_MIN_PIXELS
    if not off_chip.any():
        return mask
    return off_chip if mask is None else mask | off_chip


def _variance_from(name, values):
    """Variance (file units) from a VARIANCE/VAR or IVAR extension's ``values``."""
    if name == "IVAR":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(values > 0, 1.0 / values.astype(float), np.nan)
    return values.astype(float)


def _auxiliary(hdul, shape):
    """Bad-pixel mask (True = unusable) and variance (file units) from MASK/VARIANCE HDUs."""
    mask = variance = None
    found = _auxiliary_hdus(hdul, shape)
    if "MASK" in found:
        h = hdul[found["MASK"]]
        data = np.asarray(h.data)
        mask = _mask_from(data, _bad_mask_bits(h.header, data))
    if "VARIANCE" in found:
        h = hdul[found["VARIANCE"]]
        variance = _variance_from(_name(h), np.asarray(h.data))
    return mask, variance


def _section_mask_bits(mask_hdu) -> int:
    """``_bad_mask_bits`` of a MASK extension that is not read whole: without ``MP_`` keywords
    it needs the mask's largest value, found ``MASK_SCAN_ROWS`` rows at a time."""
    named = any(str(key).startswith("MP_") for key in mask_hdu.header)
    if named or int(mask_hdu.header.get("BITPIX", 8)) < 0:  # named planes, or a float mask
        return _bad_mask_bits(mask_hdu.header, np.zeros(0))
    ny = _shape(mask_hdu)[0]
    largest = max(float(np.nanmax(mask_hdu.section[r:r + MASK_SCAN_ROWS]))
                  for r in range(0, ny, MASK_SCAN_ROWS))
    return _bad_mask_bits(mask_hdu.header, np.array([largest]))


class FitsSectionPixels:
    """The pixels of one FITS image plane, read window by window from the file.

    Each read opens the file and takes astropy ``section``s of the image (and of its MASK and
    VARIANCE extensions), so only the window's bytes, or its tiles of a tile-compressed image,
    are read and held; BSCALE/BZERO apply to the window alone. Values are calibrated as a whole
    read would be (float64 times ``factor``, then float32).
    """

    def __init__(self, path, index, plane_index, shape, factor, auxiliary, mask_bits):
        self.path, self.index, self.plane_index = path, index, plane_index
        self.shape, self.factor = tuple(shape), factor
        self.auxiliary, self.mask_bits = auxiliary, mask_bits

    def read(self, rows: slice, cols: slice) -> PixelWindow:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(self.path, memmap=False) as hdul:
                data = np.asarray(hdul[self.index].section[self.plane_index + (rows, cols)],
                                  dtype=np.float64)
                mask = variance = None
                if "MASK" in self.auxiliary:
                    values = np.asarray(hdul[self.auxiliary["MASK"]].section[rows, cols])
                    mask = _mask_from(values, self.mask_bits)
                if "VARIANCE" in self.auxiliary:
                    h = hdul[self.auxiliary["VARIANCE"]]
                    variance = _variance_from(_name(h), np.asarray(h.section[rows, cols]))
        mask = _with_off_chip(data, mask)
        if self.factor is not None:
            data = data * self.factor
            if variance is not None:
                variance = variance * self.factor ** 2
        return PixelWindow(data.astype(np.float32),
                           mask, None if variance is None else variance.astype(np.float32))


def _file_pixel_scale(wcs, header) -> float | None:
    """Arcsec per pixel as the file states it: its celestial WCS, else a scale keyword."""
    if wcs is not None:
        sx, sy = proj_plane_pixel_scales(wcs) * 3600.0
        return float(np.sqrt(sx * sy))
    for key in PIXEL_SCALE_KEYS:
        try:
            value = float(header.get(key))
        except (TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            return value
    return None


def _pixel_scale(wcs, header, user_scale) -> tuple[float | None, object, str]:
    """``(scale, wcs, note)``: the image's pixel scale, its WCS, and what the calibration text
    says about them. A scale the user gave wins over the file's (a WCS can be wrong): the WCS
    is then rescaled about its reference pixel to that scale, orientation and reference
    position kept, so stamps are cut and resampled at the scale given."""
    own = _file_pixel_scale(wcs, header)
    if user_scale is None or own is None:
        return (own if own is not None else user_scale), wcs, ""
    if abs(user_scale / own - 1.0) <= SAME_SCALE_TOLERANCE:
        return own, wcs, ""
    if wcs is not None:
        wcs = wcs.deepcopy()
        if wcs.wcs.has_cd():
            wcs.wcs.cd = wcs.wcs.cd * (user_scale / own)
        else:
            wcs.wcs.cdelt = wcs.wcs.cdelt * (user_scale / own)
        wcs.wcs.set()
    return user_scale, wcs, (f"; pixel scale {user_scale:.4g}\"/px as given, not the file's "
                             f"{own:.4g}\"/px")


def read_fits(path, hdu=None, plane: int = 0, pixel_scale: float | None = None,
              zero_point: float | None = None) -> SkyImage:
    """Read one image plane of a FITS file in nJy per pixel (uncalibrated if nothing says how).

    Parameters
    ----------
    path : str or Path
        ``.fits``, ``.fit``, ``.fits.gz``, ``.fz`` (tile-compressed).
    hdu : int or str, optional
        HDU index or EXTNAME; default: chosen as described in the module docstring.
    plane : int
        Plane of a 3-D cube (bands first).
    pixel_scale : float, optional
        Arcsec per pixel: the file's own (WCS, scale keyword) when not given; when given, it
        replaces the file's (the WCS is rescaled to it, and the calibration text says so).
    zero_point : float, optional
        AB zero point of the stored values, used only when the file has no calibration.
    """
    label = Path(path).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                return _read_hdul(hdul, str(path), label, hdu, plane, pixel_scale, zero_point)
    except GalaxyInspectorError:
        raise
    except MemoryError:
        raise ImageReadError(f"{label} is too large to read into memory") from None
    except Exception as exc:  # a hostile file can make astropy raise anything
        raise ImageReadError(f"cannot read {label} as FITS ({_first_sentence(exc)}); the file "
                             "may be truncated or not FITS") from None


def _check_decompressible(hdul, index, plane_shape, label) -> None:
    """Refuse, from the headers alone, a gzip'd (or zip/bzip2) file whose image would not fit:
    such a file cannot be read piece by piece, only decompressed from its start."""
    compression = hdul[index].fileinfo()["file"].compression
    if not compression:
        return
    n_pixels = int(np.prod(plane_shape))
    bitpix = abs(int(hdul[index].header.get("BITPIX", 32)))
    needed = n_pixels * (bitpix // 8 + WHOLE_READ_BYTES_PER_PIXEL)
    limit = whole_read_limit()
    if needed > limit:
        ny, nx = plane_shape
        raise ImageReadError(
            f"{label} is a {compression} file holding a {nx}x{ny} image that would need "
            f"{format_bytes(needed)} of memory to decompress, more than the "
            f"{format_bytes(limit)} allowed; decompress it to a plain .fits (which is read "
            "piece by piece) or tile-compress it (fpack, .fz)")


def _check_complete(hdul, index, path, label) -> None:
    """Refuse a file whose header declares more image data than the file holds (a truncated
    download, a hostile header): read piece by piece, it would fail only once a window is read,
    after trying to allocate what the header declares."""
    image_hdu = hdul[index]
    declared = int(np.prod(_shape(image_hdu))) * abs(int(image_hdu.header.get("BITPIX", 8))) // 8
    held = max(0, Path(path).stat().st_size - int(hdul[index].fileinfo()["datLoc"]))
    if held < declared:
        raise ImageReadError(f"{label} is truncated: its header declares "
                             f"{format_bytes(declared)} of image data, the file holds "
                             f"{format_bytes(held)}")


def _read_hdul(hdul, path, label, hdu, plane, user_scale, user_zp) -> SkyImage:
    index = _pick_hdu(hdul, hdu, label)
    image_hdu = hdul[index]
    header = _keywords(hdul, index)
    plane_index, is_cube = _plane_index(_shape(image_hdu), plane, label)
    plane_shape = _shape(image_hdu)[len(plane_index):]
    _check_decompressible(hdul, index, plane_shape, label)
    scale, wcs, scale_note = _pixel_scale(_celestial_wcs(image_hdu.header), header, user_scale)
    calibration = calibration_from_header(header, scale, user_zp, file_name=label)
    description = calibration.description + scale_note
    if is_cube:
        description += f"; plane {plane} of a cube"
    psf = psf_from_header(header, scale)
    meta = dict(pixel_scale=scale, wcs=wcs, calibrated=calibration.calibrated,
                calibration=description, flags=calibration.flags,
                source=path, hdu=index, plane=plane if is_cube else 0,
                psf_fwhm=psf.fwhm if psf else None, psf_source=psf.source if psf else "")
    factor = calibration.factor if calibration.calibrated else None
    if (not hdul[index].fileinfo()["file"].compression
            and 4 * int(np.prod(plane_shape)) > LAZY_ABOVE_BYTES):
        _check_complete(hdul, index, path, label)
        auxiliary = {} if is_cube else _auxiliary_hdus(hdul, plane_shape)
        mask_bits = _section_mask_bits(hdul[auxiliary["MASK"]]) if "MASK" in auxiliary else 0
        pixels = FitsSectionPixels(path, index, plane_index, plane_shape, factor, auxiliary,
                                   mask_bits)
        return SkyImage(pixels=pixels, **meta)
    raw = image_hdu.data
    if raw is None:
        raise ImageReadError(f"HDU {index} of {label} has no data")
    data = np.asarray(raw)[plane_index]
    mask, variance = (None, None) if is_cube else _auxiliary(hdul, data.shape)
    data = np.asarray(data, dtype=np.float64)
    mask = _with_off_chip(data, mask)
    if factor is not None:
        data = data * factor
        if variance is not None:
            variance = variance * factor ** 2
    return SkyImage(data=data, mask=mask, variance=variance, **meta)


def fits_band_names(path, hdu=None) -> list:
    """Band name of each plane of the image HDU (``None`` where the header does not say).

    A cube of n planes gives n entries (from ``BAND1``..``BANDn``, else ``FILTERS`` = "g,r,i"
    when it lists n names); a 2-D image gives one (``BAND``, ``FILTER``, ``FILTNAM``).
    Raises ``ImageReadError``/``InputError`` like ``read_fits``.
    """
    label = Path(path).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path) as hdul:
                index = _pick_hdu(hdul, hdu, label)
                header = _keywords(hdul, index)
                dims = [n for n in _shape(hdul[index]) if n > 1]
    except GalaxyInspectorError:
        raise
    except Exception as exc:  # as in read_fits: a hostile file can raise anything
        raise ImageReadError(f"cannot read {label} as FITS ({_first_sentence(exc)})") from None

    def text(key):
        value = header.get(key)
        return str(value).strip() if value not in (None, "") else None

    if len(dims) == 3:
        n = dims[0]
        names = [text(f"BAND{k}") for k in range(1, n + 1)]
        listed = [b.strip() for b in (text("FILTERS") or "").split(",") if b.strip()]
        if not any(names) and len(listed) == n:
            names = listed
        return names
    return [next((text(k) for k in SINGLE_BAND_KEYS if text(k)), None)]
