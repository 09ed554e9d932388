"""Exporting a catalogue's ``/galaxies`` to the table formats astropy writes."""

from __future__ import annotations

from pathlib import Path

from galaxy_inspector.catalogue.reader import read_catalogue
from galaxy_inspector.errors import InputError, OutputError

__all__ = ["EXPORT_FORMATS", "export_catalogue"]

#: File suffix -> astropy format name.
EXPORT_FORMATS = {".fits": "fits", ".fit": "fits", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv",
                  ".vot": "votable", ".xml": "votable", ".votable": "votable"}


def export_catalogue(path, out) -> int:
    """Write a catalogue's ``/galaxies`` to FITS, CSV, ECSV or VOTable.

    Parameters
    ----------
    path : str or Path
        The HDF5 catalogue.
    out : str or Path
        The table to write; its suffix (a key of ``EXPORT_FORMATS``) chooses the format.

    Returns
    -------
    int
        The number of rows written.
    """
    fmt = EXPORT_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot export to {Path(out).name}: use one of "
                         f"{', '.join(EXPORT_FORMATS)}")
    table = read_catalogue(path)
    try:
        table.write(out, format=fmt, overwrite=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc}") from None
    return len(table)
