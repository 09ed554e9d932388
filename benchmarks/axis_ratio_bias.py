"""R_e of the shipped morphology model by axis ratio, on the training simulator's own galaxies.

The test set's figures are binned by flux and seeing; this bins single-component galaxies
(pure exponential-like disks and pure de Vaucouleurs-like bulges, as ``simulate`` draws them)
by their axis ratio and size, and prints per bin the median of the tool's R_e mode over the
truth and how often the 68 % interval holds the truth. Galaxies are drawn with
``training.simulate.draw_parameters`` (seeing, PSF shape, offsets as in training), their kind,
size and axis ratio then set, at HSC-Wide noise (2.7 nJy per 0.168″ pixel), PSF FWHM told.

    nice -n 10 python benchmarks/axis_ratio_bias.py [--n 16] [--seed 22]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from galaxy_inspector.engine import load_model, measure_stamps, stamp_for
from galaxy_inspector.io.image import SkyImage
from training.simulate import draw_galaxy, draw_parameters, intrinsic_half_light_radius

SKY_SIGMA_NJY = 2.7
LOG_FLUX_RANGE = (4.5, 5.5)
AXIS_RATIO_BINS = ((0.3, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.0))
SIZE_BINS_ARCSEC = ((0.5, 1.0), (1.5, 3.0))


def measure_bin(model, rng, kind: str, sizes, ratios, n: int) -> tuple[float, float]:
    """Median R_e mode / truth and the 68 % interval's coverage of ``n`` galaxies."""
    ratio, covered = [], []
    for _ in range(n):
        p = draw_parameters(rng)
        size, q = rng.uniform(*sizes), rng.uniform(*ratios)
        if kind == "disk":
            p.update(components=1, bt=0.0, hlr_disk=size, q_disk=q)
        else:
            p.update(components=1, bt=1.0, hlr_bulge=size, q_bulge=q)
        p["re_arcsec"] = intrinsic_half_light_radius(p)
        image = draw_galaxy(p, flux=10 ** rng.uniform(*LOG_FLUX_RANGE)).astype(np.float64)
        image += rng.normal(0.0, SKY_SIGMA_NJY, image.shape)
        sky = SkyImage.from_array(image, pixel_scale=0.168, psf_fwhm=p["psf_fwhm"],
                                  psf_source="given")
        centre = (image.shape[0] - 1) / 2.0
        stamp = stamp_for(sky, centre + p["dx"], centre + p["dy"], model)
        summary = measure_stamps([stamp], model, seed=1)[0].summary
        ratio.append(summary["re_arcsec_mode"] / p["re_arcsec"])
        covered.append(summary["re_arcsec_lo68"] <= p["re_arcsec"] <= summary["re_arcsec_hi68"])
    return float(np.median(ratio)), float(np.mean(covered))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="galaxies per bin")
    parser.add_argument("--seed", type=int, default=22)
    args = parser.parse_args(argv)
    model = load_model()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    print(f"{'kind':5s} {'R_e (″)':9s} {'q':9s} R_e/truth  68 % holds ({args.n} per bin)")
    for kind in ("disk", "bulge"):
        for sizes in SIZE_BINS_ARCSEC:
            for ratios in AXIS_RATIO_BINS:
                median, coverage = measure_bin(model, rng, kind, sizes, ratios, args.n)
                print(f"{kind:5s} {sizes[0]:.1f}-{sizes[1]:.1f}   {ratios[0]:.1f}-{ratios[1]:.1f}  "
                      f"  {median:.2f}       {coverage:.0%}", flush=True)
    print(f"[{time.perf_counter() - start:.0f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
