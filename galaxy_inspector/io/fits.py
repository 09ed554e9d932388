"""Reading FITS images: single HDU, multi-extension, compressed, cubes, HSC/SDSS/HST layouts.

The image HDU is the one the user names (``hdu``), else the first HDU named IMAGE/SCI/DATA/FLUX
holding a 2-D or 3-D array, else the first such HDU of any name; PRIMARY HDUs without data (HSC
coadd cutouts) are skipped. ``MASK`` and ``VARIANCE`` (or ``IVAR``) extensions of the same shape
are used. HSC masks are bit planes: only the planes in ``BAD_MASK_PLANES`` (named by the ``MP_*``
keywords when present) make a pixel unusable; DETECTED and friends do not.
Keywords are looked up in the image HDU's header first, then in the primary header.

``fits_band_names`` says which band each plane holds (``BANDk`` keywords, or a comma-separated
``FILTERS``, as ``training/make_samples.py`` writes cubes; ``FILTER``/``BAND``/``FILTNAM`` for a
2-D image), so a multi-band property model can pick its planes by name.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from galaxy_inspector.errors import GalaxyInspectorError, ImageReadError, InputError, first_line
from galaxy_inspector.io.calibration import calibration_from_header
from galaxy_inspector.io.image import SkyImage

__all__ = ["read_fits", "fits_band_names", "BAD_MASK_PLANES", "FITS_SUFFIXES"]

#: File name endings read as FITS (``.fz``: tile-compressed).
FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fz")

IMAGE_NAMES = ("IMAGE", "SCI", "DATA", "FLUX")
AUXILIARY_NAMES = ("MASK", "VARIANCE", "VAR", "IVAR", "WHT", "WEIGHT", "DQ", "ERR")
BAD_MASK_PLANES = ("BAD", "SAT", "CR", "NO_DATA", "SUSPECT", "UNMASKEDNAN")
#: Bit numbers of the bad planes in HSC pipeline masks when the header does not name them.
HSC_DEFAULT_BITS = {"BAD": 0, "SAT": 1, "CR": 3, "NO_DATA": 8}
PIXEL_SCALE_KEYS = ("PIXSCALE", "PIXSCAL1", "SECPIX", "SECPIX1")
SINGLE_BAND_KEYS = ("BAND", "FILTER", "FILTNAM", "FILTNAM1")


def _first_sentence(exc: BaseException) -> str:
    """astropy's FITS errors append hints as further sentences; the first one says what is wrong."""
    return first_line(exc).split(". ")[0].rstrip(".")


def _shape(hdu) -> tuple:
    """Array shape from the header (without reading the data), numpy order."""
    naxis = int(hdu.header.get("NAXIS", 0) or 0)
    return tuple(int(hdu.header.get(f"NAXIS{i}", 0) or 0) for i in range(naxis, 0, -1))


def _is_image(hdu) -> bool:
    if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
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


def _squeeze_plane(data, plane, label):
    data = np.asarray(data)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3:
        if not 0 <= plane < data.shape[0]:
            raise InputError(f"{label} has {data.shape[0]} planes; plane {plane} does not exist")
        return data[plane], True
    if data.ndim != 2:
        raise ImageReadError(f"{label} has a {data.ndim}-D array of shape {data.shape}; "
                             "expected an image or a cube of band images")
    return data, False


def _celestial_wcs(header):
    try:
        wcs = WCS(header).celestial
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


def _auxiliary(hdul, shape):
    """Bad-pixel mask (True = unusable) and variance (file units) from MASK/VARIANCE HDUs."""
    mask = variance = None
    for h in hdul:
        name = _name(h)
        if name not in ("MASK", "VARIANCE", "VAR", "IVAR") or _shape(h) != shape:
            continue
        data = np.asarray(h.data)
        if name == "MASK":
            if np.issubdtype(data.dtype, np.integer):
                mask = (data.astype(np.int64) & _bad_mask_bits(h.header, data)) != 0
            else:
                mask = np.nan_to_num(data.astype(float), nan=1.0) != 0
        elif name == "IVAR":
            with np.errstate(divide="ignore", invalid="ignore"):
                variance = np.where(data > 0, 1.0 / data.astype(float), np.nan)
        else:
            variance = data.astype(float)
    return mask, variance


def _pixel_scale(wcs, header, user_scale):
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
    return user_scale


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
        Arcsec per pixel, used only when the file has no celestial WCS or scale keyword.
    zero_point : float, optional
        AB zero point of the stored values, used only when the file has no calibration.
    """
    label = Path(path).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path) as hdul:
                return _read_hdul(hdul, str(path), label, hdu, plane, pixel_scale, zero_point)
    except GalaxyInspectorError:
        raise
    except MemoryError:
        raise ImageReadError(f"{label} is too large to read into memory") from None
    except Exception as exc:  # a hostile file can make astropy raise anything
        raise ImageReadError(f"cannot read {label} as FITS ({_first_sentence(exc)}); the file "
                             "may be truncated or not FITS") from None


def _read_hdul(hdul, path, label, hdu, plane, user_scale, user_zp) -> SkyImage:
    index = _pick_hdu(hdul, hdu, label)
    image_hdu = hdul[index]
    header = dict(hdul[0].header.items()) if index else {}
    header.update(image_hdu.header.items())
    raw = image_hdu.data
    if raw is None:
        raise ImageReadError(f"HDU {index} of {label} has no data")
    data, is_cube = _squeeze_plane(raw, plane, label)
    mask, variance = (None, None) if is_cube else _auxiliary(hdul, data.shape)
    wcs = _celestial_wcs(image_hdu.header)
    scale = _pixel_scale(wcs, header, user_scale)
    calibration = calibration_from_header(header, scale, user_zp)
    data = np.asarray(data, dtype=np.float64)
    if calibration.calibrated:
        data = data * calibration.factor
        if variance is not None:
            variance = variance * calibration.factor ** 2
    description = calibration.description
    if is_cube:
        description += f"; plane {plane} of a cube"
    return SkyImage(data=data, pixel_scale=scale, wcs=wcs, mask=mask, variance=variance,
                    calibrated=calibration.calibrated, calibration=description,
                    flags=calibration.flags,
                    source=path, hdu=index, plane=plane if is_cube else 0)


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
                header = dict(hdul[0].header.items()) if index else {}
                header.update(hdul[index].header.items())
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
