"""Expanding the INPUT arguments of ``--batch`` into objects to measure, lazily.

An INPUT is an image file, a folder (searched recursively for ``IMAGE_SUFFIXES``), or a table
(``.csv``, ``.ecsv``, or a ``.fits`` file with a table and no image) with a ``path`` column and
optional ``id``, ``ra``/``dec`` (degrees) or ``x``/``y`` (0-based pixels, see
``galaxy_inspector.conventions``; FITS/DS9 pixel X is x = X - 1) columns. Relative paths in a
table are relative to the table's folder. Column names are case-insensitive; a CSV may start
with a UTF-8 byte-order mark (as Excel writes one). An empty position cell means no position
(the image's central galaxy); one that is not a finite number (NaN, "abc") makes that row an
error row rather than a measurement of the wrong place.

Property models may need a redshift per object (``z`` or ``redshift`` column, or the column
``redshift_column`` names) and catalogue photometry (the ``columns`` asked for); a target
carries those values, or in ``redshift_note`` why it has no redshift, so that only the property
columns of that row stay empty while the morphology is still measured.

Every ``Target.path`` is absolute (resolved against the working folder at entry, without
following symbolic links), so the catalogue's ``source`` column names the file wherever the
catalogue is read. Each object has a ``key`` that is stable across runs (absolute path, plus the table row), which is
how ``--resume`` recognises finished work; it is the file system's own name (which need not be
UTF-8: ``catalogue.schema.key_digest`` hashes its bytes). An input that cannot be used (missing
file, a symbolic link loop, a named pipe or device, a table without a ``path`` column, a folder
without images) becomes a ``Target`` carrying an ``error``, so it gets its error row; nothing
here opens anything but a regular file, so no input can hang the run.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxy_inspector.errors import first_line
from galaxy_inspector.io.fits import FITS_SUFFIXES
from galaxy_inspector.io.raster import RASTER_SUFFIXES

__all__ = ["Target", "IMAGE_SUFFIXES", "TABLE_SUFFIXES", "expand_inputs", "is_image_path",
           "file_problem"]

#: Every file name ending read as an image (FITS, then JPEG/PNG).
IMAGE_SUFFIXES = FITS_SUFFIXES + RASTER_SUFFIXES
TABLE_SUFFIXES = (".csv", ".ecsv")


@dataclass(frozen=True)
class Target:
    """One object to measure: a whole image (its centre), a pixel or a sky position.

    ``x``/``y`` (0-based pixels) or ``ra``/``dec`` (degrees) fix the position; neither means the
    image centre (or every detected galaxy with ``--detect``). ``error`` marks an input that
    cannot be used at all. ``redshift`` comes from the table (None, with the reason in
    ``redshift_note``, when there is none).
    """

    key: str
    path: str
    id: str
    x: float | None = None
    y: float | None = None
    ra: float | None = None
    dec: float | None = None
    error: str = ""
    redshift: float | None = None
    redshift_note: str = ""
    values: tuple = ()  # (column, float) pairs of the extra numeric columns asked for

    def value(self, column: str) -> float | None:
        """An extra numeric column's value for this object (None when absent or empty)."""
        return dict(self.values).get(column.lower())


def is_image_path(path) -> bool:
    return str(path).lower().endswith(IMAGE_SUFFIXES)


_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def file_problem(path) -> str:
    """Why ``path`` cannot be read as a file ("" for a regular file): missing, a broken or
    looping symbolic link, unreadable, or not a regular file (opening a named pipe would wait
    forever for a writer)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if path.is_symlink():
            what = "loops" if exc.errno == errno.ELOOP else "points to nothing"
            return f"{path.name} is a symbolic link that {what}"
        if isinstance(exc, FileNotFoundError):
            return f"{path}: no such file"
        return f"cannot read {path.name} ({exc.strerror or exc})"
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), None)
    return f"{path.name} is {kind}, not a regular file" if kind else ""


def _is_position_table(path: Path) -> bool:
    """A FITS file with a table that has a ``path`` column and no image."""
    from astropy.io import fits

    if file_problem(path):  # let the image reader explain why
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path) as hdul:
                if any(int(h.header.get("NAXIS", 0) or 0) >= 2
                       and not isinstance(h, (fits.BinTableHDU, fits.TableHDU)) for h in hdul):
                    return False
                return any(isinstance(h, (fits.BinTableHDU, fits.TableHDU))
                           and "path" in [c.lower() for c in h.columns.names] for h in hdul)
    except Exception:  # unreadable: let the image reader explain why
        return False


def _number(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _blank(value) -> bool:
    """An empty table cell (masked, or text of only spaces): the value was not given."""
    return value is None or (isinstance(value, (str, bytes)) and not value.strip())


def _cell_text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


POSITION_COLUMNS = ("x", "y", "ra", "dec")
#: Excel starts a "CSV UTF-8" file with one; astropy's fast reader keeps it in the first name.
BYTE_ORDER_MARK = "\ufeff"
REDSHIFT_COLUMNS = ("z", "redshift")
NO_REDSHIFT_FOR_IMAGES = ("an image given directly has no redshift; list it in a table with a "
                          "'z' or 'redshift' column")


def _table_targets(path: Path, redshift_column: str | None = None,
                   extra_columns=()) -> Iterator[Target]:
    from astropy.table import Table

    key = os.path.realpath(path)
    problem = file_problem(path)
    if problem:  # a named pipe would block the reader forever
        yield Target(key=key, path=str(path), id=path.name, error=problem)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fmt = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}.get(path.suffix.lower())
            table = Table.read(path, format=fmt) if fmt else Table.read(path)
        if table.colnames and table.colnames[0].startswith(BYTE_ORDER_MARK):  # as Excel writes
            table.rename_column(table.colnames[0], table.colnames[0][1:])
    except Exception as exc:  # any parse failure is the user's table's problem
        yield Target(key=key, path=str(path), id=path.name,
                     error=f"cannot read table {path.name} ({first_line(exc)})")
        return
    columns = {c.lower(): c for c in table.colnames}
    if "path" not in columns:
        yield Target(key=key, path=str(path), id=path.name,
                     error=f"table {path.name} has no 'path' column naming the images "
                           f"(columns: {', '.join(table.colnames)})")
        return
    if not len(table):  # an INPUT that gave nothing must say so, not vanish
        yield Target(key=key, path=str(path), id=path.name,
                     error=f"table {path.name} has no rows")
        return

    if redshift_column:
        z_name = redshift_column.lower() if redshift_column.lower() in columns else None
        z_missing = (f"table {path.name} has no redshift column {redshift_column!r} "
                     f"(columns: {', '.join(table.colnames)})")
    else:
        z_name = next((c for c in REDSHIFT_COLUMNS if c in columns), None)
        z_missing = (f"table {path.name} has no 'z' or 'redshift' column (or name one with "
                     "--redshift-column)")
    wanted = [c.lower() for c in extra_columns if c.lower() in columns]

    def cell(row, name):
        if name not in columns:
            return None
        value = row[columns[name]]
        return None if np.ma.is_masked(value) else value

    # A FITS table's bytes are a file name as the file system spells it, UTF-8 or not: read
    # them raw (astropy would decode them, replacing what is not UTF-8).
    paths = table[columns["path"]]
    paths = paths.data if paths.dtype.kind == "S" else paths
    for i, row in enumerate(table):
        raw_path = "" if np.ma.is_masked(paths[i]) else paths[i]
        raw_path = os.fsdecode(raw_path) if isinstance(raw_path, bytes) else str(raw_path)
        image = Path(raw_path).expanduser()
        if raw_path and not image.is_absolute():
            image = Path(os.path.abspath(path.parent / image))
        ident = cell(row, "id")
        ident = _cell_text(ident) if isinstance(ident, bytes) else ident
        position = {name: _number(cell(row, name)) for name in POSITION_COLUMNS}
        x, y, ra, dec = (position[name] for name in POSITION_COLUMNS)
        unusable = [f"{columns[name]} {_cell_text(cell(row, name))!r}"
                    for name in POSITION_COLUMNS
                    if position[name] is None and not _blank(cell(row, name))]
        z = _number(cell(row, z_name)) if z_name else None
        z_note = "" if z is not None else z_missing if z_name is None else (
            f"row {i} of {path.name} has no finite value in column {columns[z_name]!r}")
        values = tuple((c, v) for c in wanted if (v := _number(cell(row, c))) is not None)
        error = "" if raw_path else f"row {i} of {path.name} has an empty path"
        if (x is None) != (y is None) or (ra is None) != (dec is None):
            error = f"row {i} of {path.name} gives only one of x/y or ra/dec"
        if unusable and x is None and ra is None:  # not the image centre: it gave a position
            error = (f"row {i} of {path.name} has no usable position ({', '.join(unusable)}: "
                     "not a finite number)")
        yield Target(key=f"{key}:{i}", path=str(image), id=str(ident if ident is not None
                                                                 else f"{image.name}:{i}"),
                     x=x, y=y, ra=ra, dec=dec, error=error, redshift=z, redshift_note=z_note,
                     values=values)


def _folder_images(folder: Path) -> Iterator[Path]:
    """Image names in ``folder`` and below, sorted; symbolic links to folders are not followed
    (a link loop is never walked), links named like images are listed and read_image says
    what they point to."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and is_image_path(name):
                yield Path(root) / name


def _file_target(path: Path) -> Target:
    # realpath, unlike Path.resolve, gives a key for a symbolic link loop instead of raising
    return Target(key=os.path.realpath(path), path=str(path), id=path.name,
                  redshift_note=NO_REDSHIFT_FOR_IMAGES)


def expand_inputs(inputs, redshift_column: str | None = None,
                  extra_columns=()) -> Iterator[Target]:
    """Targets of the INPUT arguments, in order, one at a time (memory flat in their number).

    ``redshift_column`` names the tables' redshift column (default: ``z`` or ``redshift``);
    ``extra_columns`` are numeric columns (e.g. a property model's photometry) to carry along.
    """
    for item in inputs:
        # Absolute from here on: a catalogue's ``source`` names the file from any folder.
        path = Path(os.path.abspath(Path(item).expanduser()))
        if path.is_dir():
            found = False
            for image in _folder_images(path):
                found = True
                yield _file_target(image)
            if not found:  # an INPUT that gave nothing must say so, not vanish
                yield Target(key=os.path.realpath(path), path=str(path), id=path.name,
                             error=f"folder {item} holds no images "
                                   f"({' '.join(IMAGE_SUFFIXES)})")
        elif not path.exists():
            yield Target(key=str(path.absolute()), path=str(path), id=path.name,
                         error=f"{item}: no such file or folder")
        elif path.suffix.lower() in TABLE_SUFFIXES or (
                path.suffix.lower() == ".fits" and _is_position_table(path)):
            yield from _table_targets(path, redshift_column, extra_columns)
        else:
            yield _file_target(path)
