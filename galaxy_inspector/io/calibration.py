"""Turning pixel values into nJy per pixel from FITS header keywords.

The first rule that applies wins:

1. ``BUNIT`` nanomaggy / nanomaggies / nmgy (SDSS): 1 nanomaggy = 3631 nJy.
2. ``BUNIT`` any flux density astropy.units understands (nJy, uJy, mJy, Jy, erg/s/cm2/Hz), or
   a surface brightness (e.g. MJy/sr), which is multiplied by the pixel's solid angle.
3. ``FLUXMAG0`` (HSC, LSST): zp = 2.5 log10(FLUXMAG0).
4. A zero-point keyword ``MAGZERO``, ``MAGZP``, ``ZP``, ``PHOTZP``, ``MAGZPT``: values are counts
   with AB zero point zp, F_nJy = counts x 10^((AB_ZERO_POINT_NJY - zp) / 2.5).
5. ``PHOTFNU`` (Jy s / e) or ``PHOTFLAM`` + ``PHOTPLAM`` (HST): for count rates, so counts are
   divided by ``EXPTIME`` first (``_hst_units`` says which the values are: drizzle's ``D001OUUN``,
   else ``BUNIT``, else the product's file-name suffix, else WFPC2's DN). Values nothing tells
   apart are left uncalibrated with the reason, never guessed; a missing ``EXPTIME`` when one is
   needed is never replaced by 1.
6. A zero point the user gave (``--zero-point``), applied to the values as stored.

Otherwise the image is uncalibrated: it is still measured, its flux outputs are flagged.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import astropy.units as u

from galaxy_inspector.flags import Flag

__all__ = ["Calibration", "NJY_PER_NANOMAGGY", "AB_ZERO_POINT_NJY", "zero_point_factor",
           "calibration_from_header"]

NJY_PER_NANOMAGGY = 3631.0
#: The AB magnitude of 1 nJy, 2.5 log10(3631 Jy / 1 nJy), so that
#: m_AB = AB_ZERO_POINT_NJY - 2.5 log10(F / nJy).
AB_ZERO_POINT_NJY = 31.4
ZERO_POINT_KEYS = ("MAGZERO", "MAGZP", "ZP", "PHOTZP", "MAGZPT")
NANOMAGGY_UNITS = {"nanomaggy", "nanomaggies", "nmgy", "nanomaggys"}


@dataclass(frozen=True)
class Calibration:
    """Multiply pixel values by ``factor`` to get nJy per pixel (``factor`` None: uncalibrated)."""

    factor: float | None
    description: str
    flags: int = 0

    @property
    def calibrated(self) -> bool:
        return self.factor is not None


def zero_point_factor(zp: float) -> float:
    """nJy per count for an AB zero point ``zp``: 10^((AB_ZERO_POINT_NJY - zp) / 2.5)."""
    return 10.0 ** ((AB_ZERO_POINT_NJY - zp) / 2.5)


def _number(header, key):
    value = header.get(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _bunit(header, pixel_scale):
    text = str(header.get("BUNIT", "")).strip()
    if not text:
        return None
    if text.lower().replace(" ", "") in NANOMAGGY_UNITS:
        return Calibration(NJY_PER_NANOMAGGY, f"BUNIT {text}: 1 nanomaggy = 3631 nJy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            unit = u.Unit(text, parse_strict="silent")
        except (ValueError, TypeError):
            return None
    if isinstance(unit, u.UnrecognizedUnit):
        return None
    try:
        return Calibration(unit.to(u.nJy), f"BUNIT {text}")
    except u.UnitConversionError:
        pass
    try:
        per_sr = unit.to(u.nJy / u.sr)
    except u.UnitConversionError:
        return None
    if pixel_scale is None:
        return None
    pixel_sr = ((pixel_scale * u.arcsec) ** 2).to_value(u.sr)
    return Calibration(per_sr * pixel_sr,
                       f"BUNIT {text} x pixel solid angle ({pixel_scale:.4g}\"/px)")


def _is_rate(bunit: str) -> bool | None:
    """Whether a unit string states a count rate (True), counts (False) or nothing (None)."""
    b = bunit.lower().replace(" ", "")
    if not b:
        return None
    if "/s" in b or "cps" in b or "s-1" in b or "s**-1" in b or "s^-1" in b:
        return True
    if any(w in b for w in ("electron", "count", "e-", "adu", "dn")):
        return False
    return None


#: The file-name suffixes of HST pipeline products (``rootname_suffix.fits``) whose values are
#: counts, and those whose values are count rates, for a header whose BUNIT does not say:
#: WFPC2 ``c0f``/``c0m`` (GEIS ``.c0h``) are DN (STScI WFPC2 Photometry FAQ, "Are my data flux
#: calibrated?": flux density = DN x PHOTFLAM / EXPTIME; WFPC2 Instrument Handbook 8.7); ACS and
#: WFC3/UVIS ``flt``/``flc``/``crj``/``crc`` are electrons and ``drz``/``drc`` electrons/s (STScI
#: ACS pixel-area maps, "DRZ images have units of electrons/s"; ESA/HST "File names and
#: extensions used for WFC3"), except WFC3/IR, whose ``flt`` are already electrons/s.
HST_COUNT_SUFFIXES = ("c0f", "c0m", "c0h", "flt", "flc", "crj", "crc")
HST_RATE_SUFFIXES = ("drz", "drc")
_SUFFIX = re.compile(r"(?:^|[_.])(" + "|".join(HST_COUNT_SUFFIXES + HST_RATE_SUFFIXES)
                     + r")(?:[_.]|$)")


def _product_suffix(names) -> tuple[str, str] | None:
    """``(suffix, name)`` of the first of ``names`` that is an HST product's file name."""
    for name in names:
        found = _SUFFIX.search(str(name or "").strip().lower())
        if found:
            return found.group(1), str(name).strip()
    return None


def _hst_units(header, file_name: str = "") -> tuple[bool | None, str, bool]:
    """Whether an HST image's values are count rates: ``(rate, evidence, assumed)``.

    ``rate`` is None when nothing says. In order: drizzle's own record of its output units,
    ``D001OUUN`` ('cps' or 'counts'; it wins over BUNIT because drizzlepac's ``outputimage.py``
    keeps the input's BUNIT 'COUNTS' on a WFPC2 product it wrote in cps); ``BUNIT``; the product's suffix in ``FILENAME``
    or the file's own name; else ``INSTRUME`` WFPC2, whose pipeline images are DN. The last two
    are conventions, so ``assumed`` is True for them.
    """
    drizzled = str(header.get("D001OUUN", "")).strip()
    if _is_rate(drizzled) is not None:
        return _is_rate(drizzled), f"D001OUUN {drizzled}", False
    bunit = str(header.get("BUNIT", "")).strip()
    if _is_rate(bunit) is not None:
        return _is_rate(bunit), f"BUNIT {bunit}", False
    product = _product_suffix((header.get("FILENAME"), file_name))
    if product:
        suffix, name = product
        infrared = (str(header.get("INSTRUME", "")).strip().upper() == "WFC3"
                    and str(header.get("DETECTOR", "")).strip().upper() == "IR")
        rate = suffix in HST_RATE_SUFFIXES or infrared
        return rate, f"{name} is an HST {suffix} product ({'rates' if rate else 'counts'})", True
    if str(header.get("INSTRUME", "")).strip().upper() == "WFPC2":
        return False, "INSTRUME WFPC2 without BUNIT (pipeline images are DN)", True
    return None, "", False


def _hst(header, file_name: str = ""):
    photfnu, photflam, photplam = (_number(header, k) for k in ("PHOTFNU", "PHOTFLAM",
                                                                 "PHOTPLAM"))
    if photfnu and photfnu > 0:
        factor, what = photfnu * 1e9, "PHOTFNU"
    elif photflam and photflam > 0 and photplam and photplam > 0:
        flam = photflam * u.erg / u.s / u.cm**2 / u.AA
        factor = flam.to_value(u.nJy, u.spectral_density(photplam * u.AA))
        what = "PHOTFLAM/PHOTPLAM"
    else:
        return None
    rate, evidence, assumed = _hst_units(header, file_name)
    flags = int(Flag.CALIBRATION_GUESSED) if assumed else 0
    if rate is None:
        return Calibration(None, f"{what} found but nothing says whether the values are counts "
                                 "or count rates (no BUNIT); give --zero-point")
    if rate:
        return Calibration(factor, f"{what}, {evidence}", flags)
    exptime = _number(header, "EXPTIME")
    if not exptime or exptime <= 0:
        return Calibration(None, f"{what} found but {evidence} gives counts and EXPTIME is "
                                 "missing; give --zero-point")
    return Calibration(factor / exptime, f"{what}, {evidence} / EXPTIME {exptime:g} s", flags)


def calibration_from_header(header, pixel_scale: float | None = None,
                            user_zero_point: float | None = None,
                            file_name: str = "") -> Calibration:
    """How to turn the values of an image with ``header`` into nJy per pixel (rules above);
    ``file_name``, the image file's name, can say which HST product it is."""
    found = _bunit(header, pixel_scale)
    if found:
        return found
    fluxmag0 = _number(header, "FLUXMAG0")
    if fluxmag0 and fluxmag0 > 0:
        zp = 2.5 * math.log10(fluxmag0)
        return Calibration(zero_point_factor(zp), f"FLUXMAG0 {fluxmag0:.6g} (zp {zp:.3f})")
    for key in ZERO_POINT_KEYS:
        zp = _number(header, key)
        if zp is not None and 0 < zp < 50:
            return Calibration(zero_point_factor(zp), f"{key} {zp:.3f}")
    hst = _hst(header, file_name)
    if hst is not None and (hst.calibrated or user_zero_point is None):
        return hst
    if user_zero_point is not None:
        return Calibration(zero_point_factor(user_zero_point),
                           f"user zero point {user_zero_point:.3f}")
    return Calibration(None, "uncalibrated: no BUNIT, FLUXMAG0, zero point or PHOTFLAM; "
                             "give --zero-point")
