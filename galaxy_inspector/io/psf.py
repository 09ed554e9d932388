"""The FWHM of an image's PSF: from its header, a PSF image, or the stars in the field (no Qt).

The engine compares it with a model's training range (``domain.plan_stamp``): sharper PSFs are
convolved into the range, broader ones flagged. Every estimate is a ``PsfEstimate``: the FWHM
in arcsec and where it came from, in words for the catalogue's ``psf_source`` column.

* **Header.** ``HEADER_KEYWORDS`` in order, each with the unit its pipelines use: ESO Phase 3
  products (KiDS, VIKING) write ``PSF_FWHM`` in arcsec, HSC exposures ``SEEING`` in arcsec, the
  NOIRLab Community Pipeline writes DECam's ``FWHM`` and Mosaic/90Prime's ``SEEINGP1`` in
  pixels (as legacypipe reads them). A keyword's comment that names its unit ("[pixel]",
  "arcsec") overrides that (ZTF's ``SEEING`` is in pixels and says so). Values outside
  ``FWHM_LIMITS_ARCSEC`` (0, -1, 99 placeholders) are skipped. SDSS frames, Pan-STARRS stacks
  and HSC coadds keep their PSF elsewhere (psField files, PSF models): give a PSF image.
* **PSF image.** A 2-D FITS image of the PSF (HSC's PSF picker, a PSFEx or WebbPSF image): its
  FWHM is that of a Moffat profile fitted to the pixels, the model integrated over each pixel
  (``_fit_moffat``), right to 1 % for Moffat and Gaussian PSFs down to 1.5 pixels FWHM,
  where fitting a Gaussian to a Moffat PSF (photutils' ``fit_fwhm``) is 5-18 % too broad and
  a model sampled at pixel centres 2-9 % too broad. Its pixel scale is its own (WCS, CDELT,
  PIXSCALE), else the image's.
* **Stars.** Point sources of the field (``psf_fwhm_from_stars``): photutils segments of the
  background-subtracted image, kept when isolated (no other segment or masked pixel in the
  fitting box), unsaturated (no flat top), round and of high S/N, then the stellar locus: the
  narrowest group of sizes (moment FWHM within ``LOCUS_WIDTH``) holding at least half as many
  sources as the densest, stars being the smallest sources at a given brightness. Each star is
  fitted as a PSF image is; the FWHM is the sigma-clipped median.
"""

from __future__ import annotations

import math
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from galaxy_inspector.errors import GalaxyInspectorError, InputError, first_line

__all__ = ["PsfEstimate", "psf_from_header", "psf_fwhm_of_image", "psf_fwhm_from_stars",
           "check_psf_image", "HEADER_KEYWORDS", "FWHM_LIMITS_ARCSEC", "MIN_STARS"]

ARCSEC, PIXELS = "arcsec", "pixels"
#: Header keywords that record the PSF's FWHM, most specific first, with their usual unit.
HEADER_KEYWORDS = (("PSF_FWHM", ARCSEC), ("PSFFWHM", ARCSEC), ("FWHM_PSF", ARCSEC),
                   ("SEEING_FWHM", ARCSEC), ("SEEING", ARCSEC), ("FWHM", PIXELS),
                   ("SEEINGP1", PIXELS), ("SEEINGP", PIXELS))
_PIXEL_WORDS = re.compile(r"\bpix|\bpx\b", re.IGNORECASE)
_ARCSEC_WORDS = re.compile(r"arcsec|\basec|\"|''", re.IGNORECASE)
#: FWHMs (arcsec) a real PSF has: HST's 0.03″ to a bad night's few arcsec, with room.
FWHM_LIMITS_ARCSEC = (0.02, 10.0)
#: Fewest stars whose median FWHM is trusted.
MIN_STARS = 3
#: Side (pixels) of the central window stars are looked for in: enough stars in any field,
#: and a large mosaic is not read whole.
STAR_FIELD_SIDE = 2048
#: Detection: 3 sigma of the smoothed image finds faint neighbours (for isolation too).
DETECT_SIGMA = 3.0
#: A star's flux S/N (over its segment) at least this: its fitted FWHM is then good to ~1 %.
MIN_STAR_SNR = 50.0
MAX_STAR_ELLIPTICITY = 0.2
#: The stellar locus: moment FWHMs within this factor of each other.
LOCUS_WIDTH = 1.25
#: Brightest locus members fitted (more add time, not accuracy).
MAX_FITTED_STARS = 60
#: A fitting box is this many moment FWHMs wide (at least ``MIN_BOX`` pixels).
BOX_FWHMS = 4.0
MIN_BOX = 11
#: Pixels within 1 % of the peak beyond the 4 a star centred on a pixel corner has: a flat top.
FLAT_TOP_PIXELS = 4
#: Sub-pixels per pixel side over which the fitted Moffat is integrated.
OVERSAMPLING = 5
#: Largest PSF image (pixels a side) that is fitted: PSF images are tens of pixels wide.
MAX_PSF_IMAGE_SIDE = 1024


class PsfEstimate(NamedTuple):
    """A PSF's FWHM (arcsec) and where it came from ("header SEEING", "measured from 7 stars")."""

    fwhm: float
    source: str


def _plausible(fwhm_arcsec: float) -> bool:
    low, high = FWHM_LIMITS_ARCSEC
    return bool(np.isfinite(fwhm_arcsec) and low <= fwhm_arcsec <= high)


def _unit(comment: str, usual: str) -> str:
    """The unit a keyword's comment names (the first named), else its pipelines' usual one."""
    pixel, arcsec = _PIXEL_WORDS.search(comment), _ARCSEC_WORDS.search(comment)
    if pixel and (not arcsec or pixel.start() < arcsec.start()):
        return PIXELS
    return ARCSEC if arcsec else usual


def _card(header, key):
    """``(value, comment)`` of ``key`` in the first header holding it (a ``ChainMap`` of headers
    is searched in order, as ``fits._keywords`` builds it), or None."""
    for h in getattr(header, "maps", [header]):
        if key in h:
            comments = getattr(h, "comments", None)
            return h[key], str(comments[key]) if comments is not None else ""
    return None


def psf_from_header(header, pixel_scale: float | None) -> PsfEstimate | None:
    """The PSF FWHM a FITS header records (``HEADER_KEYWORDS``), or None; a value in pixels needs
    ``pixel_scale`` (arcsec/px)."""
    for key, usual in HEADER_KEYWORDS:
        card = _card(header, key)
        if card is None:
            continue
        value, comment = card
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if _unit(comment, usual) == PIXELS:
            if not pixel_scale:
                continue
            fwhm, source = value * pixel_scale, f"header {key} ({value:.3g} px)"
        else:
            fwhm, source = value, f"header {key}"
        if _plausible(fwhm):
            return PsfEstimate(fwhm, source)
    return None


def _fit_moffat(box: np.ndarray, background: bool) -> tuple[float, float, float] | None:
    """``(fwhm, beta, flux)`` (pixels) of the Moffat profile that, integrated over each pixel,
    best fits ``box`` (a constant sky too when ``background``), or None when the fit fails.
    The profile is astropy's ``Moffat2D`` (``gamma`` core radius, ``alpha`` = beta)."""
    from astropy.modeling.models import Moffat2D
    from scipy.optimize import least_squares

    ny, nx = box.shape
    good = np.isfinite(box)
    peak_y, peak_x = np.unravel_index(np.argmax(np.where(good, box, -np.inf)), box.shape)
    peak = float(box[peak_y, peak_x])
    if not peak > 0:
        return None
    half_area = float(np.sum(box[good] > 0.5 * peak))
    fwhm0 = max(1.0, 2.0 * math.sqrt(half_area / math.pi))
    offsets = (np.arange(OVERSAMPLING) + 0.5) / OVERSAMPLING - 0.5
    rows, cols = np.mgrid[:ny, :nx]
    sub_y = (rows[:, :, None, None] + offsets[None, None, :, None])[good]
    sub_x = (cols[:, :, None, None] + offsets[None, None, None, :])[good]
    values = box[good]

    def residuals(p):
        model = Moffat2D.evaluate(sub_x, sub_y, p[0], p[1], p[2], p[3], p[4]).mean(axis=(1, 2))
        return model + (p[5] if background else 0.0) - values

    beta0 = 3.0
    start = [peak, peak_x, peak_y, fwhm0 / (2.0 * math.sqrt(2.0 ** (1.0 / beta0) - 1.0)), beta0,
             0.0]
    low = [0.0, peak_x - 2.0, peak_y - 2.0, 0.05, 1.05, -np.inf]
    high = [np.inf, peak_x + 2.0, peak_y + 2.0, max(nx, ny), 200.0, np.inf]
    if not background:
        start, low, high = start[:5], low[:5], high[:5]
    try:
        fit = least_squares(residuals, start, bounds=(low, high), x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    amplitude, _, _, gamma, beta = fit.x[:5]
    if not fit.success:
        return None
    fwhm = 2.0 * gamma * math.sqrt(2.0 ** (1.0 / beta) - 1.0)
    flux = amplitude * math.pi * gamma ** 2 / (beta - 1.0)
    return fwhm, float(beta), flux


def _psf_array(path) -> tuple[np.ndarray, float | None, str]:
    """The 2-D array of a PSF FITS file, its own pixel scale (or None) and its name."""
    from astropy.io import fits
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    p = Path(path)
    label = p.name
    if not p.is_file():
        raise InputError(f"PSF image {label} does not exist or is not a file")
    if p.stat().st_size == 0:
        raise InputError(f"PSF image {label} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(p, memmap=False) as hdul:
                hdu = next((h for h in hdul if getattr(h, "is_image", False) and h.data is not None
                            and np.squeeze(h.data).ndim == 2), None)
                if hdu is None:
                    raise InputError(f"PSF image {label} holds no 2-D image (a PSF image is a "
                                     "FITS image of one point source)")
                data = np.asarray(np.squeeze(hdu.data), dtype=np.float64)
                header = hdu.header
                scale = None
                try:
                    wcs = WCS(header).celestial
                    if wcs.has_celestial:
                        scale = float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs)))) * 3600.0
                except Exception:  # astropy raises many types on malformed WCS keywords
                    scale = None
                if not scale:
                    for key in ("PIXSCALE", "PIXSCAL1", "SECPIX"):
                        value = header.get(key)
                        if isinstance(value, (int, float)) and value > 0:
                            scale = float(value)
                            break
    except GalaxyInspectorError:
        raise
    except Exception as exc:  # a hostile file can make astropy raise anything
        raise InputError(f"cannot read PSF image {label} as FITS "
                         f"({first_line(exc).split('. ')[0]})") from None
    return data, (scale if scale and np.isfinite(scale) else None), label


def _image_fwhm_pixels(data: np.ndarray, label: str) -> float:
    """FWHM (pixels) of the point source a PSF image holds; ``InputError`` if it holds none."""
    ny, nx = data.shape
    if max(ny, nx) > MAX_PSF_IMAGE_SIDE or min(ny, nx) < 5:
        raise InputError(f"PSF image {label} is {nx}x{ny} pixels: not a PSF image (one point "
                         f"source, 5 to {MAX_PSF_IMAGE_SIDE} pixels a side)")
    finite = np.isfinite(data)
    if not finite.any() or not np.nanmax(data) > 0:
        raise InputError(f"PSF image {label} has no positive pixel: not a PSF image")
    fit = _fit_moffat(np.where(finite, data, np.nan), background=False)
    if fit is None or not fit[0] < 0.5 * min(nx, ny):
        raise InputError(f"PSF image {label} holds no compact point source: not a PSF image "
                         "(give --psf-fwhm instead)")
    fwhm, _, flux = fit
    total = float(np.nansum(data))
    if not 0.5 * flux < total < 2.0 * flux:
        raise InputError(f"PSF image {label} is not one point source (its light is not in its "
                         "peak): not a PSF image")
    return fwhm


@lru_cache(maxsize=16)
def _file_fwhm_pixels(path: str, _mtime_ns: int) -> tuple[float, float | None, str]:
    """A PSF file's FWHM (pixels), own pixel scale and name, measured once per file version
    (a batch reads it for every image)."""
    data, scale, label = _psf_array(path)
    return _image_fwhm_pixels(data, label), scale, label


def check_psf_image(path) -> tuple[float, float | None]:
    """FWHM (pixels) and own pixel scale (or None) of a PSF image file; ``InputError`` (one
    line) when it is unreadable, empty or not a PSF image."""
    p = Path(path)
    mtime = p.stat().st_mtime_ns if p.is_file() else 0
    fwhm, scale, _ = _file_fwhm_pixels(str(p), mtime)
    return fwhm, scale


def psf_fwhm_of_image(path_or_array, pixel_scale: float | None = None) -> PsfEstimate:
    """The FWHM (arcsec) of a PSF image: a FITS file or a 2-D array. Its pixel scale is the file's
    own, else ``pixel_scale`` (the image's)."""
    if isinstance(path_or_array, np.ndarray):
        fwhm_px, own, label = _image_fwhm_pixels(np.asarray(path_or_array, float), "array"), \
            None, ""
    else:
        fwhm_px, own = check_psf_image(path_or_array)
        label = Path(path_or_array).name
    scale = own or pixel_scale
    if not scale:
        raise InputError(f"PSF image {label or 'array'} has no pixel scale, nor has the image: "
                         "give --pixel-scale or --psf-fwhm")
    fwhm = float(fwhm_px * scale)
    if not _plausible(fwhm):
        raise InputError(f"PSF image {label or 'array'} gives a FWHM of {fwhm:.3g}″, not a PSF "
                         f"({FWHM_LIMITS_ARCSEC[0]:g}-{FWHM_LIMITS_ARCSEC[1]:g}″); check its "
                         "pixel scale")
    return PsfEstimate(fwhm, f"PSF image {label}".rstrip())


def _star_field(image):
    """The central ``STAR_FIELD_SIDE`` window of ``image``: background-subtracted pixels (0
    where unusable), the unusable pixels, and the sky noise."""
    from astropy.stats import sigma_clipped_stats

    ny, nx = image.shape
    y0, x0 = max(0, (ny - STAR_FIELD_SIDE) // 2), max(0, (nx - STAR_FIELD_SIDE) // 2)
    window = image.window(slice(y0, y0 + STAR_FIELD_SIDE), slice(x0, x0 + STAR_FIELD_SIDE))
    data, bad = window.usable()
    if bad.all():
        raise InputError("the image has no usable pixels to find stars in")
    _, sky, noise = sigma_clipped_stats(data[~bad], sigma=3.0, maxiters=10)
    if not noise > 0:
        raise InputError("the image has no sky noise to find stars against")
    return np.where(bad, 0.0, data - sky), bad, float(noise)


def _flat_top(box: np.ndarray) -> bool:
    peak = np.nanmax(box)
    return int(np.sum(box >= 0.99 * peak)) > FLAT_TOP_PIXELS


def _locus(sizes: np.ndarray) -> np.ndarray:
    """Which of ``sizes`` lie on the stellar locus: the smallest window [s, LOCUS_WIDTH s]
    holding at least half as many sizes as the densest such window."""
    order = np.sort(sizes)
    counts = np.searchsorted(order, order * LOCUS_WIDTH, side="right") - np.arange(order.size)
    start = order[np.argmax(counts >= 0.5 * counts.max())]
    return (sizes >= start) & (sizes <= start * LOCUS_WIDTH)


def psf_fwhm_from_stars(image) -> PsfEstimate:
    """The PSF FWHM (arcsec) of ``image`` (a ``SkyImage``) measured on its stars; ``InputError``
    with the reason when fewer than ``MIN_STARS`` usable stars are found."""
    from astropy.convolution import convolve
    from astropy.stats import sigma_clip
    from photutils.segmentation import SourceCatalog, detect_sources, make_2dgaussian_kernel

    if not image.pixel_scale:
        raise InputError("the image has no pixel scale, so its stars' FWHM has no size in "
                         "arcsec: give --pixel-scale")
    if image.is_display_image:
        raise InputError("a display image's stretch changes the profiles of its stars: give "
                         "--psf-fwhm instead")
    data, bad, noise = _star_field(image)
    kernel = make_2dgaussian_kernel(2.0, size=5)
    smoothed = convolve(data, kernel, mask=bad, normalize_kernel=True)
    threshold = DETECT_SIGMA * noise * math.sqrt(float(np.sum(kernel.array ** 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segments = detect_sources(smoothed, threshold, n_pixels=5, mask=bad)
        if segments is None:
            raise InputError("no sources found in the image to measure its PSF on: give "
                             "--psf-fwhm or a PSF image (--psf)")
        catalogue = SourceCatalog(data, segments, mask=bad)
        labels = np.asarray(catalogue.label)
        sizes = np.asarray(catalogue.fwhm.value, dtype=float)
        snr = np.asarray(catalogue.segment_flux, dtype=float) / (
            noise * np.sqrt(np.asarray(catalogue.area.value, dtype=float)))
        ellipticity = np.asarray(catalogue.ellipticity.value, dtype=float)
        peaks_x = np.asarray(catalogue.maxval_xindex)
        peaks_y = np.asarray(catalogue.maxval_yindex)
    ny, nx = data.shape
    boxes, kept = [], []
    for i in np.flatnonzero((snr >= MIN_STAR_SNR) & (ellipticity <= MAX_STAR_ELLIPTICITY)
                            & (sizes >= 1.0)):
        half = max(MIN_BOX, int(math.ceil(BOX_FWHMS * sizes[i]))) // 2
        y, x = int(peaks_y[i]), int(peaks_x[i])
        if y < half or x < half or y + half >= ny or x + half >= nx:
            continue  # at the window's edge
        window = (slice(y - half, y + half + 1), slice(x - half, x + half + 1))
        if bad[window].any() or not np.isin(segments.data[window], (0, labels[i])).all():
            continue  # a neighbour or an unusable pixel in the box: not isolated
        box = data[window]
        if _flat_top(box):
            continue  # saturated
        boxes.append(box)
        kept.append(i)
    reason = ("isolated, unsaturated, round point sources of S/N above "
              f"{MIN_STAR_SNR:g}; give --psf-fwhm or a PSF image (--psf)")
    if len(kept) < MIN_STARS:
        raise InputError(f"only {len(kept)} usable star(s) in the image, {MIN_STARS} needed ("
                         f"{reason})")
    on_locus = _locus(sizes[kept])
    candidates = sorted((i for i, on in zip(range(len(kept)), on_locus, strict=True) if on),
                        key=lambda j: -snr[kept[j]])[:MAX_FITTED_STARS]
    fits = [_fit_moffat(boxes[j], background=True) for j in candidates]
    fwhms = np.array([f[0] for f in fits if f is not None and f[0] > 0.5])
    if fwhms.size >= MIN_STARS:
        fwhms = fwhms[~np.ma.getmaskarray(sigma_clip(fwhms, sigma=3.0, maxiters=5))]
    if fwhms.size < MIN_STARS:
        raise InputError(f"only {fwhms.size} usable star(s) on the stellar locus of the image, "
                         f"{MIN_STARS} needed ({reason})")
    fwhm = float(np.median(fwhms)) * image.pixel_scale
    if not _plausible(fwhm):
        raise InputError(f"the image's stars have a FWHM of {fwhm:.3g}″, not a PSF: check its "
                         "pixel scale, or give --psf-fwhm")
    return PsfEstimate(fwhm, f"measured from {fwhms.size} stars")
