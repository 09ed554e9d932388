"""SDSS frames through the whole pipeline: do R_e and flux survive 0.396″ -> 0.168″ resampling?

Draws well-resolved GalSim bulge+disk galaxies (GaMPEN Table 1 shapes from
``training.simulate``, true R_e >= 1.5″) as SDSS frames would show them: 0.396″/px, Moffat
seeing FWHM ~1.4″, values in nanomaggies (``BUNIT = nanomaggy``, a TAN WCS), sky noise 0.05
nmgy per pixel plus source Poisson noise. Each goes through the real pipeline (FITS file ->
``read_image`` -> ``stamp_for`` (resampling) -> ``measure_stamps``) with the shipped model.
The same galaxies drawn directly at 0.168″/px with the same seeing and equivalent noise are
the control, so the difference between the two rows is what resampling costs.

Prints median |ΔR_e|/R_e and |ΔF|/F (posterior medians vs truth), the median signed R_e error
(a network not told the PSF sees seeing broader than most of its training draws, which biases
R_e high), how often the 68 and 95 % intervals hold the truth, and which flags the rows carry.
With ``--psf-in-header`` each frame's header holds its seeing (``PSF_FWHM``, arcsec) and the
control knows it too, so a seeing-conditioned model is told it. Only meaningful with the
trained model.

    nice -n 10 python benchmarks/sdss_resampling.py [--n 100] [--model NAME|PATH] [--psf-in-header]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from galaxy_inspector.engine import load_model, measure_stamps, stamp_for
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import SkyImage, read_image
from galaxy_inspector.io.calibration import AB_ZERO_POINT_NJY, NJY_PER_NANOMAGGY
from galaxy_inspector.posterior import LEVELS, coverage
from training.simulate import draw_parameters, intrinsic_profile

SDSS_SCALE, SDSS_SKY_NMGY = 0.396, 0.05
# ~0.005 nmgy per DN (NMGYPERCOUNT) and gain ~4.7 e-/DN: about 940 photo-electrons per nmgy.
ELECTRONS_PER_NJY = 940.0 / NJY_PER_NANOMAGGY
SIZE_ARCSEC = 60.0


def _galaxies(n, rng):
    out = []
    while len(out) < n:
        p = draw_parameters(rng)
        if p["re_arcsec"] < 1.5 or p["re_arcsec"] > 5.0:
            continue
        p.update(psf_fwhm=rng.uniform(1.2, 1.6), dx=0.0, dy=0.0,
                 mag=rng.uniform(15.0, 17.5))
        out.append(p)
    return out


def _draw(p, scale, rng):
    """Image in nJy/pixel with sky and source noise of SDSS depth, at ``scale``."""
    flux_njy = 10 ** ((AB_ZERO_POINT_NJY - p["mag"]) / 2.5)
    psf = galsim.Moffat(beta=3.0, fwhm=p["psf_fwhm"])
    n = int(round(SIZE_ARCSEC / scale))
    image = galsim.Convolve(intrinsic_profile(p, flux_njy), psf).drawImage(
        nx=n, ny=n, scale=scale).array
    # Same noise per unit area at both scales: sigma scales with the pixel side.
    sky = SDSS_SKY_NMGY * NJY_PER_NANOMAGGY * scale / SDSS_SCALE
    source = np.sqrt(np.clip(image, 0, None) / ELECTRONS_PER_NJY)
    return image + rng.normal(0.0, 1.0, image.shape) * np.hypot(sky, source), flux_njy


def _sdss_file(path, image_njy, psf_fwhm=None):
    n = image_njy.shape[0]
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [180.0, 30.0]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    w.wcs.cd = np.array([[-1.0, 0.0], [0.0, 1.0]]) * SDSS_SCALE / 3600.0
    header = w.to_header()
    header["BUNIT"] = "nanomaggy"
    if psf_fwhm is not None:
        header["PSF_FWHM"] = (psf_fwhm, "[arcsec] seeing FWHM")
    fits.PrimaryHDU((image_njy / NJY_PER_NANOMAGGY).astype(np.float32), header).writeto(path)


def _errors_and_coverage(measured, name, truth):
    """Median |posterior median - truth| / truth, the same signed, and how often the 68/95 %
    HPD intervals hold the truth."""
    median = np.array([m.summary[f"{name}_median"] for m in measured])
    j = measured[0].names.index(name)
    inside = coverage(np.stack([m.samples[:, j] for m in measured]), truth, levels=LEVELS[:2])
    relative = (median - truth) / truth
    return float(np.median(np.abs(relative))), float(np.median(relative)), *inside


def _flag_names(measured):
    counts = {}
    for m in measured:
        for flag in Flag:
            if m.flags & flag:
                counts[flag.name] = counts.get(flag.name, 0) + 1
    return ", ".join(f"{k} {v / len(measured):.2f}" for k, v in sorted(counts.items())) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--psf-in-header", action="store_true",
                        help="write each frame's seeing into its header (PSF_FWHM)")
    args = parser.parse_args()
    model = load_model(args.model)
    rng = np.random.default_rng(args.seed)
    params = _galaxies(args.n, rng)
    truth_re = np.array([p["re_arcsec"] for p in params])
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        sdss_stamps, native_stamps, truth_flux = [], [], []
        for i, p in enumerate(params):
            image, flux = _draw(p, SDSS_SCALE, rng)
            path = Path(tmp) / f"sdss{i}.fits"
            told = p["psf_fwhm"] if args.psf_in_header else None
            _sdss_file(path, image, told)
            frame = read_image(path)
            c = (frame.shape[0] - 1) / 2
            sdss_stamps.append(stamp_for(frame, c, c, model))
            native, _ = _draw(p, model.pixel_scale, rng)
            direct = SkyImage.from_array(native, model.pixel_scale, psf_fwhm=told,
                                         psf_source="given" if told else "")
            c = (direct.shape[0] - 1) / 2
            native_stamps.append(stamp_for(direct, c, c, model))
            truth_flux.append(flux)
        truth_flux = np.array(truth_flux)
        for name, stamps in (("SDSS 0.396″ resampled", sdss_stamps),
                             ("control, drawn at 0.168″", native_stamps)):
            measured = measure_stamps(stamps, model)
            rows[name] = [_errors_and_coverage(measured, "re_arcsec", truth_re),
                          _errors_and_coverage(measured, "flux_njy", truth_flux),
                          _flag_names(measured)]
    seeing = "in the header" if args.psf_in_header else "unknown"
    print(f"model {model.bundle.name} ({model.bundle.sha256[:12]}), {args.n} galaxies, "
          f"true R_e 1.5-5″, seeing 1.2-1.6″ ({seeing}), m = 15-17.5")
    print(f"{'input':<28} {'median |ΔR_e|/R_e':>18} {'median ΔR_e/R_e':>16} "
          f"{'median |ΔF|/F':>14} {'R_e in 68/95 %':>15} {'F in 68/95 %':>13}  "
          "flags (fraction of rows)")
    for name, ((dre, bias, re68, re95), (dflux, _, f68, f95), flags) in rows.items():
        print(f"{name:<28} {dre:18.3f} {bias:+16.3f} {dflux:14.3f} {re68:8.2f}/{re95:4.2f} "
              f"{f68:8.2f}/{f95:4.2f}  {flags}")


if __name__ == "__main__":
    main()
