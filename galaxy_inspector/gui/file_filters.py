"""The name filters of the app's file dialogs (Qt's ``"Title (*.a *.b);;..."`` syntax), built
from the suffixes the readers and writers own, so a dialog offers what the engine accepts."""

from __future__ import annotations

from galaxy_inspector.catalogue import EXPORT_FORMATS
from galaxy_inspector.io.inputs import IMAGE_SUFFIXES, TABLE_SUFFIXES

__all__ = ["IMAGE_FILTER", "TABLE_FILTER", "CATALOGUE_FILTER", "CATALOGUE_SUFFIXES",
           "EXPORT_FILTER", "ROW_FILTER", "FIGURE_FILTER", "REGION_FILTER", "name_filter"]

#: Files the app opens as HDF5 catalogues (in the catalogue browser) rather than as images.
CATALOGUE_SUFFIXES = (".h5", ".hdf5")
#: Titles of astropy's table formats in the dialogs (a format without one shows its name).
FORMAT_TITLES = {"ascii.csv": "CSV", "ascii.ecsv": "ECSV", "fits": "FITS table",
                 "votable": "VOTable", "hdf5": "HDF5 table"}
ALL_FILES = "All files (*)"


def name_filter(title: str, suffixes) -> str:
    """'Title (*.a *.b)'."""
    return f"{title} ({' '.join('*' + s for s in suffixes)})"


def _per_format(first: str) -> str:
    """One filter per export format, ``first`` (an astropy format) first."""
    suffixes: dict[str, list[str]] = {first: []}
    for suffix, fmt in EXPORT_FORMATS.items():
        suffixes.setdefault(fmt, []).append(suffix)
    return ";;".join(name_filter(FORMAT_TITLES.get(fmt, fmt), found)
                     for fmt, found in suffixes.items() if found)


IMAGE_FILTER = f"{name_filter('Images', IMAGE_SUFFIXES)};;{ALL_FILES}"
#: Position tables: CSV/ECSV, or FITS tables (told apart from FITS images by their content).
TABLE_FILTER = f"{name_filter('Position tables', TABLE_SUFFIXES + ('.fits',))};;{ALL_FILES}"
CATALOGUE_FILTER = name_filter("HDF5 catalogues", CATALOGUE_SUFFIXES)
#: Region files (read and written by the ``regions`` package).
REGION_FILTER = f"DS9 regions (*.reg);;CASA regions (*.crtf);;{ALL_FILES}"
#: A whole catalogue exported to any table format.
EXPORT_FILTER = name_filter("Tables", EXPORT_FORMATS)
#: One galaxy's row (CSV first: the row export's default name is galaxy.csv).
ROW_FILTER = _per_format("ascii.csv")
FIGURE_FILTER = "PNG image (*.png);;PDF document (*.pdf);;SVG drawing (*.svg)"
