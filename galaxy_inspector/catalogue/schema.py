"""What a catalogue holds: dataset names, the columns of ``/galaxies`` (name, type, unit,
description), the flag meanings written as root attributes, and the keys provenance travels
under in exported tables. Writer, row builder and reader all take the layout from here.
"""

from __future__ import annotations

import hashlib

import numpy as np

from galaxy_inspector.errors import printable
from galaxy_inspector.flags import FLAG_DESCRIPTIONS
from galaxy_inspector.posterior import SUMMARY_STATS

__all__ = ["GALAXIES", "SAMPLES", "PROPERTY_SAMPLES", "META", "STAT_DESCRIPTIONS",
           "PARAMETER_UNITS", "META_KEYS", "table_meta", "columns", "catalogue_dtype",
           "meta_lines", "flag_attributes", "fit_text", "plain_values",
           "key_digest"]

GALAXIES = "galaxies"
SAMPLES = "posterior_samples"
PROPERTY_SAMPLES = "property_samples"
META = GALAXIES + ".__table_column_meta__"

STAT_DESCRIPTIONS = {"mode": "posterior mode (KDE)", "median": "posterior median",
                     "mean": "posterior mean", "lo68": "68.27 % HPD interval, lower end",
                     "hi68": "68.27 % HPD interval, upper end",
                     "lo95": "95.45 % HPD interval, lower end",
                     "hi95": "95.45 % HPD interval, upper end",
                     "lo997": "99.73 % HPD interval, lower end",
                     "hi997": "99.73 % HPD interval, upper end"}
PARAMETER_UNITS = {"bt": "", "re_arcsec": "arcsec", "flux_njy": "nJy"}


def catalogue_parameters(names) -> list[str]:
    """The morphology columns of a catalogue: the model's parameters, then those of the
    catalogue contract it does not predict (a display model's flux_njy), NaN in every row."""
    return list(names) + [p for p in PARAMETER_UNITS if p not in names]

# (name, numpy type, unit, description); strings are fixed-width bytes.
_LEADING = [
    ("id", "S64", "", "object identifier (table id, or file name)"),
    ("source", "S400", "", "input image path"),
    ("hdu", "i2", "", "FITS HDU index of the image (-1: not FITS)"),
    ("x", "f8", "pix", "stamp centre, 0-based pixel column in the source image"),
    ("y", "f8", "pix", "stamp centre, 0-based pixel row in the source image"),
    ("ra", "f8", "deg", "stamp centre right ascension (NaN without WCS)"),
    ("dec", "f8", "deg", "stamp centre declination (NaN without WCS)"),
    ("status", "S8", "", "ok or error"),
    ("error", "S240", "", "why the object could not be measured; on an ok row, why its "
                          "morphology columns are empty (else empty)"),
    ("stn_scale", "f4", "", "spatial-transformer zoom: the CNN read stn_scale x stamp size"),
    ("label", "S64", "", "qualitative label (GaMPEN 6.4) or empty"),
    ("flags", "i4", "", "quality bitmask, see the file attributes flag_*"),
]
_TRAILING = [
    ("snr", "f4", "", "signal-to-noise ratio within 2 R_e"),
    ("masked_fraction", "f4", "", "fraction of stamp pixels masked/non-finite and filled"),
    ("pixel_scale", "f4", "arcsec", "source image pixel scale (arcsec per pixel)"),
    ("binning", "f4", "", "the stamp's pixels were this many times the model's (1: its own "
                          "scale; more for a galaxy too large for the model, flag RESCALED)"),
    ("psf_fwhm_arcsec", "f4", "arcsec", "FWHM of the image's PSF (NaN: unknown); a PSF sharper "
                                        "than the model's range was matched (flag PSF_MATCHED)"),
    ("psf_source", "S80", "", "where psf_fwhm_arcsec came from: given, PSF image FILE, measured "
                              "from N stars, header KEYWORD (empty: unknown)"),
    ("psf_told_arcsec", "f4", "arcsec", "PSF FWHM a seeing-conditioned model was told, in its "
                                        "frame (binned, matched, clipped to its training "
                                        "range); NaN: told unknown, or the model does not read "
                                        "the PSF (root attribute model_reads_psf)"),
    ("crop_x0", "f4", "pix", "region the CNN read: lower x, source pixels"),
    ("crop_y0", "f4", "pix", "region the CNN read: lower y, source pixels"),
    ("crop_x1", "f4", "pix", "region the CNN read: upper x, source pixels"),
    ("crop_y1", "f4", "pix", "region the CNN read: upper y, source pixels"),
    ("calibration", "S160", "", "how pixel values were converted to nJy"),
    ("input_key", "S440", "", "stable key of the input object, cut to fit (for reading)"),
    ("input_key_sha256", "S64", "", "SHA-256 of the exact input key (what --resume matches)"),
]
_PROPERTY_COLUMNS = [
    ("redshift", "f8", "", "redshift of the object from the input table (NaN: none given)"),
    ("property_error", "S400", "", 'why property columns are NaN in this row: a JSON object '
                                   '{"model name": "reason"} (empty when every property '
                                   'model predicted)'),
]

#: Root attributes carried into the table's meta, under FITS-friendly (<= 8 character) keys.
META_KEYS = {"app_version": "APPVERS", "model_name": "MODEL", "model_sha256": "MODELSHA",
             "model_names": "MODELS", "demo_models": "DEMOMODS", "demo_warning": "DEMOWARN",
             "created": "CREATED", "command_line": "CMDLINE"}


def table_meta(attrs) -> dict:
    """The ``meta`` an exported table carries, from catalogue root attributes: the provenance
    under the keys of ``META_KEYS`` and the flag meanings as ``flag_<NAME>`` = "<bit>: <meaning>"
    (the attributes' own names and wording)."""
    meta = {key: str(attrs[attr]) for attr, key in META_KEYS.items() if attr in attrs}
    meta.update({name: str(text) for name, text in attrs.items() if name.startswith("flag_")})
    return meta


def columns(parameters, property_parameters=(), units=None, notes=None) -> list[tuple]:
    """(name, type, unit, description) of every column; ``units``/``notes`` (per parameter)
    give property units and a note appended to their descriptions (e.g. the model)."""
    units, notes = units or {}, notes or {}
    cols = list(_LEADING)
    for p in [*parameters, *property_parameters]:
        unit = units.get(p, PARAMETER_UNITS.get(p, ""))
        note = f" ({notes[p]})" if notes.get(p) else ""
        cols += [(f"{p}_{s}", "f8", unit, f"{p}: {STAT_DESCRIPTIONS[s]}{note}")
                 for s in SUMMARY_STATS]
    if property_parameters:
        cols += _PROPERTY_COLUMNS
    return cols + _TRAILING


def catalogue_dtype(parameters, property_parameters=()) -> np.dtype:
    """The row type of ``/galaxies`` for the given morphology and property parameter names."""
    return np.dtype([(name, kind) for name, kind, _, _ in columns(parameters,
                                                                   property_parameters)])


def meta_lines(cols) -> np.ndarray:
    """astropy's YAML column header of ``columns(...)``, so Table.read gives units and
    descriptions."""
    from astropy.table import Column, Table, meta

    table = Table([Column(np.zeros(0, kind), name=name, unit=unit or None,
                          description=description)
                   for name, kind, unit, description in cols])
    return np.array([line.encode("utf-8") for line in meta.get_yaml_from_table(table)])


def flag_attributes() -> dict:
    """Root attributes that document the ``flags`` bits: ``flag_<NAME>`` = "<bit>: <meaning>"."""
    out = {"flags_doc": "flags is a bitmask; flag_<NAME> = '<bit value>: <meaning>'"}
    for flag, text in FLAG_DESCRIPTIONS.items():
        out[f"flag_{flag.name}"] = f"{int(flag)}: {text}"
    return out


def fit_text(value, width: int) -> bytes:
    """UTF-8 bytes of ``value`` cut to ``width`` (a text column's size) without splitting a
    character; control characters and the undecodable bytes of a file name are written as
    backslash escapes (``errors.printable``), so every text cell is one line of UTF-8."""
    raw = printable(str(value)).encode("utf-8")[:width]
    return raw.decode("utf-8", errors="ignore").encode("utf-8")


def key_digest(key: str) -> str:
    """The SHA-256 hex digest of an input key: exact for any length, and for file names that
    are not valid UTF-8 (their bytes, as the file system gave them)."""
    return hashlib.sha256(key.encode("utf-8", errors="surrogateescape")).hexdigest()


def plain_values(row: np.void) -> dict:
    """One ``/galaxies`` row as ``{column: value}``: text as str, numbers as Python numbers."""
    return {name: (row[name].decode("utf-8") if isinstance(row[name], bytes)
                   else row[name].item()) for name in row.dtype.names}
