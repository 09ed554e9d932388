"""Write the simulated field the README's screenshots were taken on.

``python docs/screenshots/simulated_field.py OUT_FOLDER`` writes ``field.fits``: a 1400 x 1400
HSC-g-like field (0.168″/px, nJy per pixel, north-up TAN WCS in COSMOS) with 64 GalSim
bulge+disk galaxies drawn as the bundled samples are (``training.make_samples``), on a jittered
grid 175 pixels apart, so that no neighbour falls inside a galaxy's stamp (the model was
trained on isolated galaxies, and a table position does not deblend), and
``field_positions.csv``, their ids and 0-based x, y for ``galaxy-inspector --batch``, with the
true B/T, R_e and flux beside them. Fixed seed, so the screenshots can be taken again.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from training.make_samples import HSC_SCALE, _params, _render, _wcs

SEED = 14
GRID = 8  # galaxies per row and column
SPACING = 175  # pixels between grid points: more than the network's field (about 155 pixels)
JITTER = 15  # pixels, either way


def main(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    shape = (GRID * SPACING, GRID * SPACING)
    header = _wcs(shape, HSC_SCALE, 150.119, 2.206)
    header["BUNIT"] = ("nJy", "flux density per pixel")
    header["FILTER"] = "g"
    header["COMMENT"] = f"Galaxy Inspector screenshots: simulated field of {GRID ** 2} galaxies"
    galaxies, rows = [], []
    for k in range(GRID ** 2):
        bt = float(rng.choice([0.0, 1.0])) if rng.random() < 0.2 else float(rng.uniform(0, 1))
        p = _params(bt=bt, n_disk=1.0, hlr_disk=float(rng.uniform(0.4, 1.6)),
                    q_disk=float(rng.uniform(0.3, 1.0)), pa_disk=float(rng.uniform(0, 180)),
                    n_bulge=4.0, hlr_bulge=float(rng.uniform(0.2, 0.6)),
                    q_bulge=float(rng.uniform(0.6, 1.0)), dpa_bulge=float(rng.normal(0, 10)),
                    psf_fwhm=0.75)
        flux = float(10 ** rng.uniform(4.3, 5.8))
        x, y = ((float(i) + 0.5) * SPACING + float(rng.uniform(-JITTER, JITTER))
                for i in (k % GRID, k // GRID))
        galaxies.append((p, flux, x, y))
        rows.append({"id": f"gal-{k + 1:02d}", "path": "field.fits", "x": round(x, 2),
                     "y": round(y, 2), "true_bt": bt,
                     "true_re_arcsec": round(p["re_arcsec"], 4), "true_flux_njy": round(flux)})
    _, noisy, _ = _render(galaxies, shape, HSC_SCALE, 2.5, 10.0, rng)
    out.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(noisy.astype(np.float32), header).writeto(out / "field.fits", overwrite=True)
    with open(out / "field_positions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "path", "x", "y"] + list(rows[0])[4:])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
