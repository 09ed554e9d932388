"""Make the sample images shipped in ``resources/samples`` (fixed seed, GalSim bulge+disk galaxies).

Run ``python -m training.make_samples --out resources/samples``. The script writes each image in
one of the formats Galaxy Inspector reads, a ``truth.csv`` with the true parameters of every
galaxy, two input tables for ``galaxy-inspector --batch`` and a ``README.md`` describing them.

Conventions used here (and stated in the samples' README):

* pixel positions ``x``, ``y`` are 0-based (numpy / astropy ``pixel_to_world`` convention), the
  centre of the first pixel is (0, 0); FITS ``CRPIX`` is 1-based as FITS requires;
* images are north-up, east-left (``CDELT1 < 0``) TAN projections;
* ``re_arcsec`` is the circular half-light radius of the intrinsic bulge+disk light
  (``training.truth.circular_half_light_radius``), ``flux_njy`` the total intrinsic flux.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from galaxy_inspector.io.calibration import AB_ZERO_POINT_NJY, NJY_PER_NANOMAGGY, zero_point_factor
from training.simulate import intrinsic_profile, psf_profile
from training.truth import circular_half_light_radius

__all__ = ["make_samples", "SEED", "HSC_ZP"]

SEED = 20240611
HSC_ZP = 27.0
HSC_FLUXMAG0 = 10.0 ** (HSC_ZP / 2.5)
HSC_NJY_PER_COUNT = zero_point_factor(HSC_ZP)
HSC_SCALE = 0.168
SDSS_SCALE = 0.396

# HSC pipeline mask planes (bit numbers), as written in HSC-SSP coadd headers.
HSC_MASK_PLANES = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5,
                   "DETECTED_NEGATIVE": 6, "SUSPECT": 7, "NO_DATA": 8}


def _params(bt, n_disk, hlr_disk, q_disk, pa_disk, n_bulge, hlr_bulge, q_bulge, dpa_bulge,
            psf_fwhm, psf_beta=3.5, psf_e1=0.01, psf_e2=-0.01):
    """A full parameter dict in ``training.simulate``'s conventions, with its exact R_e."""
    p = {"bt": bt, "components": 2 if 0.0 < bt < 1.0 else 1,
         "n_disk": n_disk, "hlr_disk": hlr_disk, "q_disk": q_disk, "pa_disk": pa_disk,
         "n_bulge": n_bulge, "hlr_bulge": hlr_bulge, "q_bulge": q_bulge,
         "pa_bulge": pa_disk + dpa_bulge,
         "psf_fwhm": psf_fwhm, "psf_beta": psf_beta, "psf_e1": psf_e1, "psf_e2": psf_e2}
    p["re_arcsec"] = circular_half_light_radius([
        (1.0 - bt, n_disk, hlr_disk, q_disk), (bt, n_bulge, hlr_bulge, q_bulge)])
    return p


def _draw(p, flux, image, x, y):
    """Add galaxy ``p`` of total intrinsic ``flux`` centred at 0-based pixel (x, y) of ``image``."""
    obj = galsim.Convolve(intrinsic_profile(p, flux), psf_profile(p))
    ny, nx = image.array.shape
    obj.drawImage(image=image, add_to_image=True,
                  offset=(x - (nx - 1) / 2.0, y - (ny - 1) / 2.0))


def _render(galaxies, shape, scale, sky_sigma, njy_per_electron, rng):
    """Noise-free and noisy images (nJy/pixel) and the variance, for ``(p, flux, x, y)`` tuples."""
    ny, nx = shape
    image = galsim.ImageF(nx, ny, scale=scale)
    for p, flux, x, y in galaxies:
        _draw(p, flux, image, x, y)
    clean = image.array.astype(np.float64)
    variance = sky_sigma ** 2 + np.clip(clean, 0.0, None) * njy_per_electron
    noisy = clean + rng.normal(size=clean.shape) * np.sqrt(variance)
    return clean, noisy, variance


def _wcs(shape, scale, ra, dec) -> fits.Header:
    """North-up, east-left TAN WCS with the reference pixel at the image centre."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    return w.to_header()


def _sky(header, x, y):
    ra, dec = WCS(header, naxis=2).celestial.all_pix2world([[x, y]], 0)[0]
    return float(ra), float(dec)


def _mag(flux_njy):
    return AB_ZERO_POINT_NJY - 2.5 * np.log10(flux_njy)


# --------------------------------------------------------------------------- the samples

def _hsc_cutout(out: Path, rng, truth):
    """HSC-SSP coadd cutout: empty PRIMARY with FLUXMAG0, IMAGE (counts), MASK, VARIANCE."""
    shape = (128, 128)
    p = _params(bt=0.35, n_disk=1.0, hlr_disk=1.1, q_disk=0.55, pa_disk=30.0,
                n_bulge=4.0, hlr_bulge=0.35, q_bulge=0.85, dpa_bulge=5.0, psf_fwhm=0.75)
    flux, x, y = 2.0e5, 63.5 + 0.3, 63.5 - 0.2
    _, noisy, var = _render([(p, flux, x, y)], shape, HSC_SCALE, 2.5, 10.0, rng)
    wcs = _wcs(shape, HSC_SCALE, 150.11916, 2.20583)  # COSMOS
    counts = (noisy / HSC_NJY_PER_COUNT).astype(np.float32)
    variance = (var / HSC_NJY_PER_COUNT ** 2).astype(np.float32)
    mask = np.zeros(shape, dtype=np.int32)
    mask[np.abs(noisy) > 5 * np.sqrt(var)] |= 1 << HSC_MASK_PLANES["DETECTED"]
    # A bad column and a cosmic-ray hit, well away from the galaxy; the pixel values there are
    # garbage, as in real data, so a reader that ignores the mask sees it.
    mask[:, 12] |= 1 << HSC_MASK_PLANES["BAD"]
    counts[:, 12] = 50.0
    mask[100:103, 95:97] |= 1 << HSC_MASK_PLANES["CR"]
    counts[100:103, 95:97] += 400.0

    primary = fits.PrimaryHDU()
    primary.header["FLUXMAG0"] = (HSC_FLUXMAG0, "counts of a 0-mag source (zp 27.0)")
    primary.header["FILTER"] = ("HSC-G", "filter")
    primary.header["TELESCOP"] = "Subaru"
    primary.header["INSTRUME"] = "Hyper Suprime-Cam"
    primary.header["COMMENT"] = "Galaxy Inspector sample: simulated HSC-SSP-style coadd cutout"
    image_hdr = wcs.copy()
    image_hdr["EXTTYPE"] = "IMAGE"
    image_hdr["BUNIT"] = ("count", "coadd counts at FLUXMAG0 (zp 27.0)")
    mask_hdr = wcs.copy()
    mask_hdr["EXTTYPE"] = "MASK"
    for name, bit in HSC_MASK_PLANES.items():
        mask_hdr[f"HIERARCH MP_{name}"] = bit
    var_hdr = wcs.copy()
    var_hdr["EXTTYPE"] = "VARIANCE"
    var_hdr["BUNIT"] = ("count2", "variance of IMAGE")
    fits.HDUList([
        primary,
        fits.ImageHDU(counts, image_hdr, name="IMAGE"),
        fits.ImageHDU(mask, mask_hdr, name="MASK"),
        fits.ImageHDU(variance, var_hdr, name="VARIANCE"),
    ]).writeto(out / "hsc_coadd_cutout.fits", overwrite=True)
    ra, dec = _sky(wcs, x, y)
    truth.append(_row("hsc_coadd_cutout.fits", "IMAGE", "hsc-1", "HSC-G", x, y, ra, dec, p, flux,
                      HSC_SCALE))


def _sdss_cutout(out: Path, rng, truth):
    """SDSS frame cutout in nanomaggies, 0.396"/px, 1.4" seeing."""
    shape = (100, 100)
    p = _params(bt=0.7, n_disk=1.0, hlr_disk=3.0, q_disk=0.8, pa_disk=-50.0,
                n_bulge=4.0, hlr_bulge=1.4, q_bulge=0.8, dpa_bulge=0.0, psf_fwhm=1.4,
                psf_beta=3.0)
    flux, x, y = 1.0e6, 49.5 - 0.4, 49.5 + 0.1
    # SDSS r: sky sigma ~0.05 nanomaggy per 0.396" pixel (~180 nJy); ~5 nMgy ... per electron.
    _, noisy, _ = _render([(p, flux, x, y)], shape, SDSS_SCALE, 0.05 * NJY_PER_NANOMAGGY,
                          0.0052 * NJY_PER_NANOMAGGY / 4.7, rng)
    hdr = _wcs(shape, SDSS_SCALE, 185.72875, 15.82238)
    hdr["BUNIT"] = ("nanomaggy", "1 nanomaggy = 3631 nJy")
    hdr["FILTER"] = ("r", "SDSS filter")
    hdr["TELESCOP"] = "SDSS 2.5-m"
    # As in SDSS frame files: NMGY is the calibration that was applied (nanomaggies per count),
    # *not* a factor still to apply: the pixels are already in nanomaggies.
    hdr["NMGY"] = (0.0052, "nMgy per count, already applied")
    hdr["COMMENT"] = "Galaxy Inspector sample: simulated SDSS frame cutout"
    fits.PrimaryHDU((noisy / NJY_PER_NANOMAGGY).astype(np.float32), hdr).writeto(
        out / "sdss_frame_cutout.fits", overwrite=True)
    ra, dec = _sky(hdr, x, y)
    truth.append(_row("sdss_frame_cutout.fits", "PRIMARY", "sdss-1", "r", x, y, ra, dec, p, flux,
                      SDSS_SCALE))


def _plain_njy(out: Path, rng, truth):
    """A single-HDU image in nJy per pixel: a pure exponential disk (B/T = 0)."""
    shape = (128, 128)
    p = _params(bt=0.0, n_disk=1.0, hlr_disk=0.9, q_disk=0.35, pa_disk=70.0,
                n_bulge=4.0, hlr_bulge=0.5, q_bulge=1.0, dpa_bulge=0.0, psf_fwhm=0.65)
    flux, x, y = 4.0e4, 63.5, 63.5
    _, noisy, _ = _render([(p, flux, x, y)], shape, HSC_SCALE, 2.0, 10.0, rng)
    hdr = _wcs(shape, HSC_SCALE, 34.40417, -4.95722)  # XMM-LSS
    hdr["BUNIT"] = ("nJy", "flux density per pixel")
    hdr["FILTER"] = "g"
    hdr["COMMENT"] = "Galaxy Inspector sample: simulated image in nJy per pixel"
    fits.PrimaryHDU(noisy.astype(np.float32), hdr).writeto(out / "plain_njy.fits",
                                                           overwrite=True)
    ra, dec = _sky(hdr, x, y)
    truth.append(_row("plain_njy.fits", "PRIMARY", "plain-1", "g", x, y, ra, dec, p, flux,
                      HSC_SCALE))


def _gri_galaxy():
    """Bulge+disk galaxy with a red bulge and a blue disk: (band, parameters, flux) per band."""
    disk = {"g": 1.2e5, "r": 1.6e5, "i": 1.9e5}
    bulge = {"g": 0.4e5, "r": 0.9e5, "i": 1.3e5}
    fwhm = {"g": 0.8, "r": 0.7, "i": 0.6}
    out = []
    for band in "gri":
        total = disk[band] + bulge[band]
        p = _params(bt=bulge[band] / total, n_disk=1.0, hlr_disk=1.5, q_disk=0.6, pa_disk=-20.0,
                    n_bulge=4.0, hlr_bulge=0.5, q_bulge=0.9, dpa_bulge=10.0,
                    psf_fwhm=fwhm[band])
        out.append((band, p, total))
    return out


def _cube(out: Path, rng, truth):
    """A g, r, i cube (band, y, x) in nJy with band names in BAND1..3 and FILTERS."""
    shape = (128, 128)
    x, y = 63.5 + 0.5, 63.5 + 0.5
    planes = []
    hdr2 = _wcs(shape, HSC_SCALE, 216.75, 0.5)  # same sky as the cube's axes 1-2
    for band, p, flux in _gri_galaxy():
        _, noisy, _ = _render([(p, flux, x, y)], shape, HSC_SCALE, 2.5, 10.0, rng)
        planes.append(noisy.astype(np.float32))
        ra, dec = _sky(hdr2, x, y)
        truth.append(_row("cube_gri.fits", "PRIMARY", f"cube-{band}",
                          band, x, y, ra, dec, p, flux, HSC_SCALE))
    w = WCS(naxis=3)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN", "BAND"]  # axis 3 only counts bands (BANDk)
    w.wcs.crval = [216.75, 0.5, 1.0]
    w.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0, 1.0]
    w.wcs.cdelt = [-HSC_SCALE / 3600.0, HSC_SCALE / 3600.0, 1.0]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    hdr = w.to_header()
    hdr["BUNIT"] = ("nJy", "flux density per pixel")
    hdr["FILTERS"] = ("g,r,i", "bands of planes 1..3 (NAXIS3)")
    for k, band in enumerate("gri", start=1):
        hdr[f"BAND{k}"] = (band, f"band of plane {k}")
    hdr["COMMENT"] = "Galaxy Inspector sample: simulated g, r, i cube"
    fits.PrimaryHDU(np.stack(planes), hdr).writeto(out / "cube_gri.fits", overwrite=True)


def _jpeg(out: Path, rng, truth):
    """SDSS SkyServer-style gri colour JPEG (0.396"/px, north up, no WCS, no calibration)."""
    from astropy.visualization import make_lupton_rgb
    from PIL import Image

    shape = (128, 128)
    x, y = 63.5, 63.5
    bands = {}
    for band, p, flux in _gri_galaxy():
        p = dict(p, psf_fwhm=1.4)
        # SDSS-like depth: ~0.03-0.08 nanomaggy sky noise per pixel, in nanomaggies.
        sky = {"g": 0.04, "r": 0.05, "i": 0.07}[band] * NJY_PER_NANOMAGGY
        _, noisy, _ = _render([(p, 4 * flux, x, y)], shape, SDSS_SCALE, sky, 5.0, rng)
        bands[band] = noisy / NJY_PER_NANOMAGGY
        truth.append(_row("sdss_gri.jpg", "", f"jpeg-{band}", band, x, y, np.nan, np.nan, p,
                          4 * flux, SDSS_SCALE))
    # SkyServer maps i, r, g to red, green, blue; rows run north to south (top row = north).
    rgb = make_lupton_rgb(bands["i"] * 1.0, bands["r"] * 1.2, bands["g"] * 1.6,
                          minimum=0.0, stretch=0.6, Q=8.0)
    Image.fromarray(np.flipud(rgb)).save(out / "sdss_gri.jpg", quality=92)


def _field(out: Path, rng, truth):
    """A 200 x 200 nJy field with three galaxies, for detection and table-driven batches."""
    shape = (200, 200)
    hdr = _wcs(shape, HSC_SCALE, 150.25, 2.35)
    hdr["BUNIT"] = ("nJy", "flux density per pixel")
    hdr["FILTER"] = "g"
    hdr["COMMENT"] = "Galaxy Inspector sample: simulated field with three galaxies"
    gals = [
        (_params(0.0, 1.0, 0.8, 0.45, 10.0, 4.0, 0.5, 1.0, 0.0, 0.7), 6.0e4, 52.3, 140.8),
        (_params(0.55, 1.1, 1.0, 0.7, -35.0, 4.5, 0.4, 0.8, -8.0, 0.7), 2.5e5, 131.0, 121.6),
        (_params(1.0, 1.0, 0.5, 1.0, 0.0, 3.5, 0.45, 0.75, 40.0, 0.7), 1.2e5, 95.4, 45.2),
    ]
    _, noisy, _ = _render([(p, f, x, y) for p, f, x, y in gals], shape, HSC_SCALE, 2.5, 10.0,
                          rng)
    fits.PrimaryHDU(noisy.astype(np.float32), hdr).writeto(out / "field_3gal.fits",
                                                           overwrite=True)
    for k, (p, flux, x, y) in enumerate(gals, start=1):
        ra, dec = _sky(hdr, x, y)
        truth.append(_row("field_3gal.fits", "PRIMARY", f"field-{k}", "g", x, y, ra, dec, p,
                          flux, HSC_SCALE))


# --------------------------------------------------------------------------- tables, README

TRUTH_COLUMNS = ("path", "hdu", "id", "band", "x", "y", "ra", "dec", "bt", "re_arcsec",
                 "flux_njy", "mag_ab", "n_disk", "hlr_disk", "q_disk", "pa_disk", "n_bulge",
                 "hlr_bulge", "q_bulge", "pa_bulge", "psf_fwhm", "pixel_scale")


def _row(path, hdu, ident, band, x, y, ra, dec, p, flux, scale):
    return {"path": path, "hdu": hdu, "id": ident, "band": band, "x": x, "y": y, "ra": ra,
            "dec": dec, "bt": p["bt"], "re_arcsec": p["re_arcsec"], "flux_njy": flux,
            "mag_ab": _mag(flux), **{k: p[k] for k in TRUTH_COLUMNS[12:20]},
            "psf_fwhm": p["psf_fwhm"], "pixel_scale": scale}


def _fmt(v):
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.10g}" if abs(v) < 1e4 else f"{v:.6e}"
    return str(v)


def _write_tables(out: Path, truth):
    with open(out / "truth.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(TRUTH_COLUMNS)
        for r in truth:
            w.writerow([_fmt(r[c]) for c in TRUTH_COLUMNS])
    # Batch input tables: paths are relative to the table's own folder.
    with open(out / "galaxies_radec.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "id", "ra", "dec"])
        for r in truth:
            if r["path"] in ("field_3gal.fits", "plain_njy.fits", "hsc_coadd_cutout.fits"):
                w.writerow([r["path"], r["id"], f"{r['ra']:.7f}", f"{r['dec']:.7f}"])
    with open(out / "field_xy.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "id", "x", "y"])
        for r in truth:
            if r["path"] == "field_3gal.fits":
                w.writerow([r["path"], r["id"], f"{r['x']:.2f}", f"{r['y']:.2f}"])


README_HEAD = """\
# Sample images

Small simulated galaxy images in every format Galaxy Inspector reads, made with GalSim by
`python -m training.make_samples --out resources/samples` (seed {seed}; rerunning it rewrites
these files). Each galaxy is a Sérsic bulge (n = 3.5-4.5) plus exponential-like disk
(n = 1.0-1.1), sheared to its axis ratio, convolved with a Moffat PSF and pixel-integrated,
with Gaussian sky noise and Poisson-like source noise. `truth.csv` lists every galaxy's true
parameters (one row per galaxy and band).

Conventions: `x`, `y` are **0-based** pixel positions (numpy / astropy `pixel_to_world(x, y)`;
the first pixel's centre is (0, 0); add 1 for DS9 / FITS). Images are north up, east left, TAN
projection. `re_arcsec` is the circular half-light radius of the intrinsic (pre-PSF) bulge+disk
light relative to the total flux (`training.truth.circular_half_light_radius`), `flux_njy` the
total intrinsic flux in nJy (AB mag = {ab_zero_point:g} - 2.5 log10 F).

| file | format | what to expect |
| --- | --- | --- |
| `hsc_coadd_cutout.fits` | HSC-SSP coadd cutout: empty PRIMARY (with `FLUXMAG0` = 10^(27/2.5), i.e. zp 27.0, as HSC writes it), then `IMAGE` (float32 counts), `MASK` (int32 HSC mask planes, bit numbers in the `MP_*` keywords), `VARIANCE` (counts²). 128 × 128 px at 0.168″/px. | F[nJy] = counts × 10^(({ab_zero_point:g} − 27)/2.5) = counts × {hsc_njy:.4f}. Sky σ ≈ 2.5 nJy per pixel. Column x = 12 is flagged `BAD` and a 2 × 3 px cosmic ray at x = 95-96, y = 100-102 is flagged `CR`; both hold garbage values, so a reader that ignores `MASK` will see them. |
| `sdss_frame_cutout.fits` | single HDU, `BUNIT = 'nanomaggy'`, 100 × 100 px at 0.396″/px, 1.4″ seeing (SDSS r). | F[nJy] = pixel × 3631. The header also carries `NMGY` (nanomaggies per count) as SDSS frames do: it was *already applied*, multiplying by it again is wrong. Sky σ ≈ 0.05 nanomaggy. |
| `plain_njy.fits` | single HDU, `BUNIT = 'nJy'`, 128 × 128 px at 0.168″/px. | A pure disk (B/T = 0), seen fairly edge-on (q = 0.35). Sky σ ≈ 2 nJy. |
| `cube_gri.fits` | single HDU cube, shape (band, y, x) = (3, 128, 128), `BUNIT = 'nJy'`, 0.168″/px. Band of plane k (1-based) in `BANDk` (`BAND1 = 'g'`, `BAND2 = 'r'`, `BAND3 = 'i'`) and all of them in `FILTERS = 'g,r,i'`. WCS: axes 1-2 celestial TAN, axis 3 `CTYPE3 = 'BAND'` (plane index; use `WCS(header).celestial`). | One galaxy with a red bulge and a blue disk, so B/T rises from g to i. |
| `sdss_gri.jpg` | SDSS SkyServer-style colour JPEG: i, r, g → red, green, blue via `astropy.visualization.make_lupton_rgb` (stretch 0.6, Q 8); top row is north; 128 × 128 px at 0.396″/px, no WCS and no flux calibration (display RGB). | The galaxy of the cube at 4× its flux and 1.4″ seeing. Only pixel scale (default 0.396″/px for JPEGs) is known. |
| `field_3gal.fits` | single HDU, `BUNIT = 'nJy'`, 200 × 200 px at 0.168″/px. | Three galaxies (a disk, a bulge+disk, a pure bulge) for detection and for table-driven batches. |
| `galaxies_radec.csv` | batch input table `path,id,ra,dec` (paths relative to the table's folder). | The HSC cutout, the nJy image and the three field galaxies, by sky position. |
| `field_xy.csv` | batch input table `path,id,x,y` (0-based pixels). | The three field galaxies, by pixel position. |
| `truth.csv` | the true parameters of every galaxy. | Columns below. |

## True parameters

| id | file | band | x | y | B/T | R_e (″) | flux (nJy) | AB mag |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
"""

README_TAIL = """
`truth.csv` also gives each component's Sérsic index `n_*`, half-light radius before shearing
`hlr_*` (arcsec), axis ratio `q_*`, position angle `pa_*` (degrees, GalSim convention,
counter-clockwise from +x), the PSF FWHM (arcsec) and the pixel scale. B/T = bulge flux /
total flux. For the JPEG, the fluxes are those of the nanomaggy images it was made from; the
JPEG itself carries no calibration.
"""


def _write_readme(out: Path, truth):
    lines = [README_HEAD.format(seed=SEED, hsc_njy=HSC_NJY_PER_COUNT,
                                ab_zero_point=AB_ZERO_POINT_NJY)]
    for r in truth:
        lines.append(f"| {r['id']} | `{r['path']}` | {r['band']} | {r['x']:.2f} | {r['y']:.2f} | "
                     f"{r['bt']:.3f} | {r['re_arcsec']:.3f} | {r['flux_njy']:.3g} | "
                     f"{r['mag_ab']:.2f} |\n")
    lines.append(README_TAIL)
    (out / "README.md").write_text("".join(lines))


def make_samples(out) -> list[dict]:
    """Write every sample into folder ``out``; returns the truth rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth: list[dict] = []
    for k, maker in enumerate((_hsc_cutout, _sdss_cutout, _plain_njy, _cube, _jpeg, _field)):
        maker(out, np.random.default_rng([SEED, k]), truth)
    _write_tables(out, truth)
    _write_readme(out, truth)
    return truth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.make_samples",
        description="Write the simulated sample images of resources/samples (fixed seed).")
    parser.add_argument("--out", default="resources/samples",
                        help="output folder (default: resources/samples)")
    args = parser.parse_args(argv)
    truth = make_samples(args.out)
    print(f"wrote {len(truth)} galaxies' samples to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
