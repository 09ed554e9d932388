"""DS9 region files (the astropy ``regions`` package): a catalogue's galaxies out, positions to
measure in.

Writing (``galaxy-inspector --export CAT.h5 OUT.reg``, the catalogue browser)
    One region per measured row (``status`` ok): a circle of radius R_e (``re_arcsec_mode``),
    or with ``shape="box"`` the square the STN cropped (``crop_x0`` ... ``crop_y1``: centred
    on the stamp, north-up on the sky as the model reads it); a point where the row has no
    R_e (a property-only catalogue). ``text={id; label; B/T=0.42}`` and ``tag={image name}``.
    Sky coordinates (``icrs``; ``ra``/``dec``, sizes in arcsec) when the row has them; else
    ``image`` coordinates of its source image, which DS9 counts from 1: ``regions`` writes our
    0-based (x, y) as (x + 1, y + 1), and reads them back 0-based.
Reading (``read_positions``, the GUI's "Load regions…")
    The centre of each included region (a polygon's or line's mean vertex), sky or pixel,
    named by the text before its first ``;`` (so an exported file gives its ids back).
    Regions marked excluded (DS9's ``-circle``) are left out.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxy_inspector.catalogue.reader import read_catalogue
from galaxy_inspector.errors import InputError, OutputError, first_line, printable

__all__ = ["REGION_SUFFIX", "REGION_SHAPES", "RegionPosition", "catalogue_regions",
           "write_regions", "read_positions", "pixel_positions", "image_pixel",
           "write_position_table"]

REGION_SUFFIX = ".reg"
#: ``circle``: radius R_e (posterior mode); ``box``: the STN crop.
REGION_SHAPES = ("circle", "box")


@dataclass(frozen=True)
class RegionPosition:
    """One region's centre: ``ra``/``dec`` (degrees, ICRS) for a sky region, else 0-based
    pixel ``x``/``y``."""

    name: str
    ra: float | None = None
    dec: float | None = None
    x: float | None = None
    y: float | None = None


def write_regions(path, out, shape: str = "circle") -> int:
    """Write the measured galaxies of the catalogue ``path`` to the DS9 file ``out``; returns
    how many regions were written. ``InputError`` for an unknown shape or a catalogue with no
    measured row, ``OutputError`` when ``out`` cannot be written."""
    out = Path(out)
    regions = catalogue_regions(read_catalogue(path), shape)
    if not len(regions):
        raise InputError(f"{Path(path).name} has no measured galaxy (status ok) to write as "
                         "a region")
    try:
        regions.write(str(out), format="ds9", overwrite=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or first_line(exc)}") from None
    return len(regions)


def catalogue_regions(table, shape: str = "circle"):
    """The ``regions.Regions`` of a catalogue table's measured rows (module docstring)."""
    from regions import Regions

    if shape not in REGION_SHAPES:
        raise InputError(f"region shape {shape!r}: use one of {', '.join(REGION_SHAPES)}")
    names = set(table.colnames)
    return Regions([_region(row, shape, names) for row in table
                    if str(row["status"]) == "ok"])


def _number(row, column: str, names) -> float:
    return float(row[column]) if column in names else math.nan


def _text(row, names) -> str:
    """'id; label; B/T=0.42' with DS9's delimiters made harmless (braces end a text) and the
    labels' arcsecond sign spelt out: older DS9 versions read region files as Latin-1."""
    label = str(row["label"]).replace("″", " arcsec") if "label" in names else ""
    parts = [str(row["id"]), label]
    bt = _number(row, "bt_mode", names)
    parts.append(f"B/T={bt:.2f}" if math.isfinite(bt) else "")
    return _delimited("; ".join(p for p in parts if p))


def _delimited(text: str) -> str:
    """``text`` safe inside DS9's ``{...}``: one printable line, braces (which end it) as
    parentheses."""
    return printable(text).replace("{", "(").replace("}", ")")


def _region(row, shape: str, names):
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from regions import (
        CirclePixelRegion,
        CircleSkyRegion,
        PixCoord,
        PointPixelRegion,
        PointSkyRegion,
        RectanglePixelRegion,
        RectangleSkyRegion,
        RegionMeta,
    )

    meta = RegionMeta({"text": _text(row, names),
                       "tag": [_delimited(Path(str(row["source"])).name)]})
    ra, dec = _number(row, "ra", names), _number(row, "dec", names)
    scale = _number(row, "pixel_scale", names)  # arcsec per source pixel
    on_sky = math.isfinite(ra) and math.isfinite(dec)
    centre = SkyCoord(ra, dec, unit="deg") if on_sky else PixCoord(float(row["x"]),
                                                                  float(row["y"]))
    if shape == "box":
        x0, y0, x1, y1 = (_number(row, f"crop_{c}", names) for c in ("x0", "y0", "x1", "y1"))
        side = x1 - x0  # the crop is square, centred on the stamp (preprocessing.source_box)
        if math.isfinite(side) and side > 0:
            if not on_sky:
                return RectanglePixelRegion(PixCoord((x0 + x1) / 2, (y0 + y1) / 2), side,
                                            y1 - y0, meta=meta)
            if math.isfinite(scale):
                width = side * scale * u.arcsec
                return RectangleSkyRegion(centre, width, width, 0 * u.deg, meta=meta)
    else:
        re_arcsec = _number(row, "re_arcsec_mode", names)
        if math.isfinite(re_arcsec) and re_arcsec > 0:
            if on_sky:
                return CircleSkyRegion(centre, re_arcsec * u.arcsec, meta=meta)
            if math.isfinite(scale) and scale > 0:
                return CirclePixelRegion(centre, re_arcsec / scale, meta=meta)
    return (PointSkyRegion if on_sky else PointPixelRegion)(centre, meta=meta)


def read_positions(path) -> list[RegionPosition]:
    """The centre of every included region of the DS9 (or CRTF, by its suffix) file ``path``;
    ``InputError`` when it cannot be read or holds none."""
    from regions import Regions

    path = Path(path)
    fmt = "crtf" if path.suffix.lower() == ".crtf" else "ds9"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shapes regions cannot parse are skipped
            regions = Regions.read(str(path), format=fmt)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as exc:  # any parse failure is the user's file's problem
        raise InputError(f"cannot read regions from {path.name}: {first_line(exc)}") from None
    positions = [_position(region, i) for i, region in enumerate(regions)
                 if region.meta.get("include", 1)]
    if not positions:
        raise InputError(f"{path.name} holds no region to measure")
    return positions


def _position(region, index: int) -> RegionPosition:
    from astropy.coordinates import SkyCoord
    from regions import PixCoord

    text = str(region.meta.get("text") or region.meta.get("label") or "")
    name = text.split(";")[0].strip() or f"region {index + 1}"
    centre = getattr(region, "center", None)
    if centre is None:
        points = getattr(region, "vertices", None)
        if points is None:
            points = [region.start, region.end]
        if isinstance(points, list) and isinstance(points[0], PixCoord):
            points = PixCoord([p.x for p in points], [p.y for p in points])
        if isinstance(points, PixCoord):
            centre = PixCoord(float(np.mean(points.x)), float(np.mean(points.y)))
        else:
            points = SkyCoord(points) if isinstance(points, list) else points
            mean = points.icrs.cartesian.mean()
            centre = SkyCoord(mean, frame="icrs")
    if isinstance(centre, PixCoord):
        return RegionPosition(name, x=float(centre.x), y=float(centre.y))
    sky = centre.icrs
    return RegionPosition(name, ra=float(sky.ra.deg), dec=float(sky.dec.deg))


def pixel_positions(positions, image) -> tuple[list[tuple[str, float, float]], list[str]]:
    """``([(name, x, y)], [reasons])``: each position as a 0-based pixel of the ``SkyImage``
    (``image_pixel`` for sky positions), and why the others cannot be placed (a sky position
    on an image without WCS)."""
    placed, reasons = [], []
    for p in positions:
        if p.x is not None:
            placed.append((p.name, p.x, p.y))
        elif image.wcs is None:
            reasons.append(f"{p.name}: a sky position, and the image has no WCS")
        else:
            placed.append((p.name, *image_pixel(image, p.ra, p.dec)))
    return placed, reasons


def image_pixel(image, ra: float, dec: float) -> tuple[float, float]:
    """0-based pixel of ICRS (``ra``, ``dec``) in degrees on the ``SkyImage``, through
    ``sky_to_pixel`` in its WCS's own frame (FK5, galactic...); ``ValueError`` without WCS."""
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import wcs_to_celestial_frame

    if image.wcs is None:
        raise ValueError("the image has no celestial WCS")
    native = SkyCoord(ra, dec, unit="deg").transform_to(
        wcs_to_celestial_frame(image.wcs)).spherical
    return image.sky_to_pixel(float(native.lon.deg), float(native.lat.deg))


def write_position_table(placed, image_path, out) -> None:
    """``placed`` (``pixel_positions``) as the position table ``--batch`` reads: ``path``,
    ``id`` and 0-based ``x``/``y`` in ECSV (``OutputError`` when it cannot be written)."""
    from astropy.table import Table

    table = Table(rows=[(str(image_path), name, x, y) for name, x, y in placed],
                  names=("path", "id", "x", "y"), dtype=(str, str, float, float))
    table["x"].description = table["y"].description = "0-based pixel (FITS/DS9 X is x + 1)"
    try:
        table.write(str(out), format="ascii.ecsv", overwrite=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or first_line(exc)}") from None
