"""Exporting a catalogue's ``/galaxies`` (or the GUI's one-galaxy row) to the table formats
astropy writes, with units, column descriptions and provenance in each format's own place.

A table to export carries its provenance in ``meta`` as ``read_catalogue`` gives it
(``schema.table_meta``): the model name and SHA-256, the other models, the demo warning, the
command line and creation time under the keys of ``schema.META_KEYS``, and the meaning of every
bit of ``flags`` as ``flag_<NAME>`` = "<bit>: <meaning>". Per format:

FITS
    Units in ``TUNITn``, descriptions in ``TCOMMn`` (the keyword TOPCAT reads), provenance as
    header keywords (``MODEL``, ``MODELSHA``, ``CMDLINE`` ...; long values on ``CONTINUE``
    cards), flag meanings as ``FLAGn`` (bit n, value 2**n) and ``COMMENT`` cards that say so.
    FITS text is ASCII: see ``fits_text`` for how other characters are written.
VOTable
    ``FIELD`` units and ``DESCRIPTION``s, provenance as ``INFO`` elements of the resource, one
    ``PARAM`` per flag (its bit value, its meaning as description). UTF-8.
ECSV, HDF5
    astropy's YAML header: units, descriptions and ``meta`` as they are. UTF-8.
CSV
    Plain RFC 4180: one line of column names, then the rows. No units or provenance: comment
    lines would stop ``Table.read("x.csv")``, pandas and spreadsheets from reading the file
    (astropy's CSV reader does not skip them), so ``export_note`` points to ECSV instead.
"""

from __future__ import annotations

import os
import re
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from galaxy_inspector.catalogue.reader import read_catalogue
from galaxy_inspector.catalogue.regions import REGION_SUFFIX, write_regions
from galaxy_inspector.catalogue.schema import GALAXIES, META_KEYS, columns, table_meta
from galaxy_inspector.errors import InputError, OutputError, first_line

__all__ = ["EXPORT_FORMATS", "FITS_TEXT_POLICY", "export_catalogue", "write_table",
           "measurement_table", "export_note", "fits_text"]

#: File suffix -> astropy format name.
EXPORT_FORMATS = {".fits": "fits", ".fit": "fits", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv",
                  ".vot": "votable", ".xml": "votable", ".votable": "votable",
                  ".h5": "hdf5", ".hdf5": "hdf5"}
#: What a user should know about a format's export (``export_note``).
_NOTES = {"ascii.csv": "plain CSV holds no units or provenance; export to .ecsv to keep them"}

#: Non-ASCII symbols of our own text spelled out in FITS (a leading space: a unit's word).
_FITS_SPELLING = {"″": " arcsec", "′": " arcmin", "°": " deg", "±": "+/-", "×": "x", "−": "-",
                  "–": "-", "—": "-", "…": "...", "≈": "~", "≤": "<=", "≥": ">=", "µ": "u",
                  "μ": "u", "•": "*"}
#: Where a format keeps the flag meanings, for the description of the ``flags`` column.
_FLAGS_DESCRIPTION = {"fits": "quality bitmask, see the FLAGn keywords",
                      "votable": "quality bitmask, see the flag_* PARAMs"}
FITS_TEXT_POLICY = ("FITS text is ASCII: a double prime (arcsec) is written ' arcsec', other "
                    "symbols in words, accents are dropped and any other character is written "
                    "as a \\uXXXX escape; the CSV, ECSV, VOTable and HDF5 exports keep UTF-8.")


def export_catalogue(path, out, region_shape: str = "circle") -> int:
    """Write a catalogue's ``/galaxies`` to FITS, CSV, ECSV, VOTable or HDF5, or its galaxies
    as DS9 regions (``.reg``, ``regions.write_regions``).

    Parameters
    ----------
    path : str or Path
        The HDF5 catalogue.
    out : str or Path
        The table to write; its suffix (a key of ``EXPORT_FORMATS``, or ``.reg``) chooses the
        format.
    region_shape : str
        For ``.reg``: one of ``regions.REGION_SHAPES``.

    Returns
    -------
    int
        The number of rows written.

    Raises
    ------
    InputError
        ``path`` is not a catalogue, ``out`` has an unknown suffix, is a folder or is the
        catalogue itself.
    OutputError
        ``out`` cannot be written.
    """
    if Path(out).suffix.lower() == REGION_SUFFIX:
        return write_regions(path, out, region_shape)
    _check_target(out)
    if Path(out).resolve() == Path(path).resolve():
        raise InputError(f"exporting {path} to itself would overwrite it; choose another name")
    table = read_catalogue(path)
    write_table(table, out)
    return len(table)


def write_table(table, out) -> None:
    """Write ``table`` in the format of ``out``'s suffix with its units, descriptions and the
    provenance in its ``meta`` (the module docstring says where each format keeps them).

    Raises
    ------
    InputError
        ``out`` has an unknown suffix or is a folder.
    OutputError
        ``out`` cannot be written (its folder is missing or read-only, the disk is full).
    """
    fmt = _check_target(out)
    try:
        _WRITERS[fmt](table, str(out))
    except OSError as exc:  # h5py puts its own long text in strerror: say what errno means
        reason = os.strerror(exc.errno) if exc.errno else first_line(exc)
        raise OutputError(f"cannot write {out}: {reason}") from None


def measurement_table(row: dict, measurement, attrs: dict):
    """One galaxy's row (``single_row``'s columns, and any more) as a table with the
    catalogue's units and descriptions, and ``table_meta(attrs)`` as its provenance, so the
    GUI's row export carries what a catalogue export does."""
    from astropy.table import Table

    properties = measurement.properties.values()
    targets = [n for p in properties for n in p.names]
    units = {n: u for p in properties for n, u in zip(p.names, p.units, strict=True)}
    notes = {n: f"model {p.model}" for p in properties for n in p.names}
    described = {name: (unit, text) for name, _, unit, text
                 in columns(measurement.names, targets, units, notes)}
    table = Table(rows=[row], names=list(row), meta=table_meta(attrs))
    for name in table.colnames:
        unit, text = described.get(name, ("", ""))
        table[name].unit = unit or None
        table[name].description = text or None
    return table


def export_note(out) -> str:
    """What a user should know about an export to ``out`` ("" when nothing): shown beside the
    number of rows written."""
    return _NOTES.get(EXPORT_FORMATS.get(Path(out).suffix.lower()), "")


def fits_text(text) -> str:
    """``text`` as the printable ASCII a FITS table or header holds: our symbols in words
    (``″`` -> `` arcsec``), accents dropped (é -> e), anything else as a ``\\uXXXX`` escape."""
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    for symbol, word in _FITS_SPELLING.items():
        pattern = re.escape(symbol)
        text = re.sub(rf"\s*{pattern}" if word.startswith(" ") else pattern, word, text)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _check_target(out) -> str:
    """The astropy format of ``out``; ``InputError`` for an unknown suffix or a folder."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out} is a folder; give a file name ending in one of "
                         f"{', '.join(EXPORT_FORMATS)}")
    fmt = EXPORT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot export to {out.name}: use one of {', '.join(EXPORT_FORMATS)} "
                         f"(or {REGION_SUFFIX} for DS9 regions)")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {out.parent} does not exist")
    return fmt


def _flag_meanings(meta) -> list[tuple[str, int, str]]:
    """``(name, bit value, meaning)`` of every ``flag_<NAME>`` = "<bit>: <meaning>" in meta."""
    out = []
    for key, text in meta.items():
        bit, _, meaning = str(text).partition(": ")
        if key.startswith("flag_") and bit.isdigit():
            out.append((key.removeprefix("flag_"), int(bit), meaning))
    return sorted(out, key=lambda flag: flag[1])


def _provenance(meta) -> list[tuple[str, str]]:
    return [(key, str(meta[key])) for key in META_KEYS.values() if key in meta]


def _fits_unit(unit) -> str | None:
    """The unit as the FITS standard writes it; None for one it has no syntax for (dex)."""
    try:
        return unit.to_string("fits")
    except ValueError:
        return None


def _write_fits(table, out: str) -> None:
    from astropy.io import fits
    from astropy.table import Table

    plain = Table([np.array([fits_text(v) for v in col], dtype=str) if col.dtype.kind in "US"
                   else col.copy() for col in table.itercols()], names=table.colnames)
    for col in plain.itercols():
        col.unit = col.description = None  # written below, in FITS syntax and ASCII
    hdu = fits.table_to_hdu(plain)
    header = hdu.header
    for i, col in enumerate(table.itercols(), start=1):
        text = _FLAGS_DESCRIPTION["fits"] if col.name == "flags" else col.description
        unit = None if col.unit is None else _fits_unit(col.unit)
        if unit is not None:
            hdu.columns[col.name].unit = unit
        elif col.unit is not None:  # kept in words, where readers do not parse it
            text = f"{text or col.name} [unit: {col.unit}]"
        if text:
            header.insert(f"TFORM{i}", (f"TCOMM{i}", fits_text(text)), after=True)
    for key, value in _provenance(table.meta):
        header[key] = fits_text(value)
    flags = _flag_meanings(table.meta)
    if flags:
        header.add_comment("FLAGn: meaning of bit n (value 2**n) of the flags column")
    for name, bit, meaning in flags:
        header[f"FLAG{bit.bit_length() - 1}"] = fits_text(f"{name} ({bit}): {meaning}")
    header.add_comment(FITS_TEXT_POLICY)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out, overwrite=True)


def _write_votable(table, out: str) -> None:
    from astropy.io.votable import from_table
    from astropy.io.votable.exceptions import W50
    from astropy.io.votable.tree import Info, Param

    votable = from_table(table)
    for key, value in _provenance(table.meta):
        votable.resources[0].infos.append(Info(name=key, value=value))
    vot_table = votable.get_first_table()
    if "flags" in table.colnames:
        vot_table.get_field_by_id("flags").description = _FLAGS_DESCRIPTION["votable"]
    params = vot_table.params
    for name, bit, meaning in _flag_meanings(table.meta):
        param = Param(votable, name=f"flag_{name}", datatype="int", value=bit)
        param.description = f"flags bit {bit}: {meaning}"
        params.append(param)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", W50)  # a unit outside VOUnit (dex) is kept as it is
        votable.to_xml(out)


def _write_astropy(fmt: str, **options):
    def write(table, out: str) -> None:
        table.write(out, format=fmt, overwrite=True, **options)
    return write


_WRITERS = {"fits": _write_fits, "votable": _write_votable,
            "ascii.csv": _write_astropy("ascii.csv"), "ascii.ecsv": _write_astropy("ascii.ecsv"),
            "hdf5": _write_astropy("hdf5", path=GALAXIES, serialize_meta=True)}
