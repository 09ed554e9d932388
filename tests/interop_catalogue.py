"""A small catalogue for the region and SAMP tests: rows on the sky, rows in pixels only (no WCS),
an error row, with R_e, B/T, labels and STN crop boxes."""

from __future__ import annotations

import numpy as np

from galaxy_inspector.catalogue import CatalogueWriter
from galaxy_inspector.catalogue.rows import empty_rows, set_text

PARAMS = ["bt", "re_arcsec", "flux_njy"]
ATTRS = {"model_name": "morphology-hsc-g", "model_sha256": "5bf6c16a" * 8,
         "model_names": "morphology-hsc-g", "parameters": PARAMS, "n_samples_saved": 0,
         "command_line": "galaxy-inspector --batch field.fits --out cat.h5"}
#: id, source, status, label, x, y (0-based), ra, dec, R_e mode ("), B/T mode, crop side (px)
ROWS = [("g1", "/data/field.fits", "ok", "highly bulge-dominated", 10.5, 20.25, 150.1, 2.2,
         1.5, 0.81, 30.0),
        ("g2", "/data/field.fits", "ok", "", 40.0, 8.0, 150.11, 2.21, 0.6, 0.12, 24.0),
        ("p1", "/data/plain.fits", "ok", "disk {odd}", 10.5, 20.25, np.nan, np.nan, 1.68,
         0.40, 16.0),
        ("bad", "/data/blank.fits", "error", "", 5.0, 5.0, np.nan, np.nan, np.nan, np.nan,
         np.nan)]
PIXEL_SCALE = 0.168  # arcsec per pixel


def write_catalogue(path, rows=ROWS):
    """``path`` written as a finished HDF5 catalogue of ``rows`` (``ROWS``' layout)."""
    writer = CatalogueWriter.create(path, PARAMS, None, ATTRS)
    table = empty_rows(writer.dtype, len(rows))
    for i, (ident, source, status, label, x, y, ra, dec, re, bt, side) in enumerate(rows):
        for name, value in (("id", ident), ("source", source), ("status", status),
                            ("label", label), ("input_key", f"key-{i}")):
            set_text(table, i, name, value)
        table["x"][i], table["y"][i], table["ra"][i], table["dec"][i] = x, y, ra, dec
        table["re_arcsec_mode"][i], table["bt_mode"][i] = re, bt
        table["pixel_scale"][i] = PIXEL_SCALE
        half = side / 2
        table["crop_x0"][i], table["crop_x1"][i] = x - half, x + half
        table["crop_y0"][i], table["crop_y1"][i] = y - half, y + half
    writer.append(table)
    writer.finish({})
    return path
