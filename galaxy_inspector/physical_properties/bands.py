"""The band images a multi-band model reads, picked from a file by the band names in its card.

A property bundle's card lists its input bands (``["g", "r", "i"]``, ``["R", "G", "B"]`` for
colour JPEG/PNG cutouts, ``["plane0", ...]`` for a model trained on unnamed cube planes) and
their kind (``flux`` or ``display``). ``read_bands`` returns one ``SkyImage`` per card band:

* ``display``: the R, G, B channels of a JPEG/PNG (``read_raster_rgb``); FITS is refused.
* ``flux`` from a FITS cube: each band's plane is found by name in the cube's ``BANDk`` /
  ``FILTERS`` keywords (``fits_band_names``; "HSC-G" matches "g"), or by index for
  ``planeK``; a cube without band keywords is read in plane order when its plane count equals
  the card's band count (the file cannot say otherwise). A named band the file lacks is refused
  with both lists of bands in the message.
* ``flux`` from a 2-D FITS image: only single-band models, and only when the image's
  ``FILTER``/``BAND`` keyword (if any) names the card's band.
"""

from __future__ import annotations

import re
from pathlib import Path

from galaxy_inspector.errors import InputError
from galaxy_inspector.io.fits import fits_band_names, read_fits
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.io.raster import RGB_BANDS, is_raster_path, read_raster_rgb

__all__ = ["read_bands", "band_matches"]

_PLANE = re.compile(r"^plane(\d+)$", re.IGNORECASE)


def band_matches(wanted: str, header_name: str | None) -> bool:
    """Whether a header's band name is the card's band: equal ignoring case, or its last
    alphanumeric token is ("HSC-G" and "SDSS_g" are g)."""
    if not header_name:
        return False
    w, h = wanted.strip().lower(), header_name.strip().lower()
    tokens = re.findall(r"[a-z0-9]+", h)
    return h == w or (bool(tokens) and tokens[-1] == w)


def _plane_indices(bands, names, label) -> list[int]:
    n = len(names)
    known = [b for b in names if b]
    out = []
    for band in bands:
        plane = _PLANE.match(band)
        if plane and int(plane.group(1)) < n:
            out.append(int(plane.group(1)))
            continue
        hits = [k for k, name in enumerate(names) if band_matches(band, name)]
        if hits:
            out.append(hits[0])
        elif not known and n == len(bands):
            out.append(bands.index(band))  # unnamed planes, same count: plane order
        else:
            has = ", ".join(known) if known else f"{n} unnamed plane{'s' * (n > 1)}"
            raise InputError(f"the model reads bands {', '.join(bands)} but {label} has "
                             f"{has}; give a cube (or image) with those bands")
    return out


def read_bands(path, bands, kind: str = "flux", hdu=None, pixel_scale: float | None = None,
               zero_point: float | None = None) -> list[SkyImage]:
    """One image per entry of ``bands`` (a model card's ``input.bands``) from ``path``."""
    bands = list(bands)
    label = Path(path).name
    is_raster = is_raster_path(path)
    if kind == "display":
        if not is_raster:
            raise InputError(f"the model reads colour JPEG/PNG cutouts (bands "
                             f"{', '.join(bands)}); {label} is not one")
        channels = read_raster_rgb(path, pixel_scale=pixel_scale)
        order = [RGB_BANDS.index(b.upper()) if b.upper() in RGB_BANDS else k
                 for k, b in enumerate(bands)]
        if len(bands) != 3 or sorted(order) != [0, 1, 2]:
            raise InputError(f"the model's display bands {bands} are not the three colour "
                             "channels R, G, B")
        return [channels[k] for k in order]
    if is_raster:
        raise InputError(f"the model reads calibrated flux images (bands {', '.join(bands)}); "
                         f"{label} is a display JPEG/PNG")
    names = fits_band_names(path, hdu)
    planes = _plane_indices(bands, names, label)
    return [read_fits(path, hdu=hdu, plane=k, pixel_scale=pixel_scale, zero_point=zero_point)
            for k in planes]
