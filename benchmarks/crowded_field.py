"""Morphology in a crowded field, with and without neighbour masking (issue 16, "Neighbours").

Simulates ``--targets`` HSC-Wide g scenes (GalSim, 0.168″/px, a fixed seed): a bulge+disk
target drawn from the training distribution (``training.simulate.draw_parameters``, at
least 1e4 nJy so it is well measured) at the centre of a 200-pixel image, with 2-4
neighbours 3-8″ away (one of them 3″ away, touching it where the isophotes meet), each a
galaxy of the same distribution at 0.2-2 times its flux, all through the target's PSF, with
Poisson and sky noise (1.2-6 nJy/px). Each target is measured by the shipped model on
stamps made with ``mask_neighbours`` True and False, and the script prints the median
|ΔR_e|/R_e and |ΔB/T| of the posterior modes against the truth, how often the flags
NEIGHBOURS_MASKED and BLENDED are set, and what the masking costs per stamp: the CPU time of
``make_stamp`` with it minus without, on the same images (process time, one thread; the lazy
imports of deblending are made first).

    python benchmarks/crowded_field.py [--targets 40] [--seed 16]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import galsim  # noqa: E402
import numpy as np  # noqa: E402

from galaxy_inspector.engine import load_model, measure_stamps  # noqa: E402
from galaxy_inspector.flags import Flag  # noqa: E402
from galaxy_inspector.io import SkyImage  # noqa: E402
from galaxy_inspector.preprocessing import make_stamp  # noqa: E402
from training.simulate import draw_parameters, intrinsic_profile, psf_profile  # noqa: E402

SCALE, IMAGE_SIDE, STAMP_SIDE = 0.168, 200, 128
MIN_TARGET_FLUX, MAX_TARGET_FLUX = 1e4, 1e6  # nJy
NEIGHBOURS = (2, 4)  # how many, inclusive
TOUCHING_ARCSEC, NEIGHBOUR_ARCSEC = 3.0, (3.0, 8.0)
NEIGHBOUR_FLUX_RATIO = (0.2, 2.0)
SKY_SIGMA_NJY = (1.2, 6.0)
NJY_PER_ELECTRON = (5.0, 20.0)


def crowded_scene(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A noisy image (nJy/px) of a target at its centre pixel among neighbours, and the
    target's parameters."""
    p = draw_parameters(rng)
    flux = 10 ** rng.uniform(np.log10(MIN_TARGET_FLUX), np.log10(MAX_TARGET_FLUX))
    image = galsim.ImageF(IMAGE_SIDE, IMAGE_SIDE, scale=SCALE)
    psf = psf_profile(p)
    galsim.Convolve(intrinsic_profile(p, flux), psf).drawImage(image, add_to_image=True)
    n = rng.integers(NEIGHBOURS[0], NEIGHBOURS[1] + 1)
    for k in range(n):
        distance = TOUCHING_ARCSEC if k == 0 else rng.uniform(*NEIGHBOUR_ARCSEC)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        other = draw_parameters(rng)
        galsim.Convolve(intrinsic_profile(other, flux * rng.uniform(*NEIGHBOUR_FLUX_RATIO)),
                        psf).shift(distance * np.cos(angle), distance * np.sin(angle)) \
            .drawImage(image, add_to_image=True)
    light = image.array.astype(np.float64)
    gain = rng.uniform(*NJY_PER_ELECTRON)
    sky = 10 ** rng.uniform(*np.log10(SKY_SIGMA_NJY))
    noisy = (light + rng.normal(0.0, 1.0, light.shape) * np.sqrt(np.maximum(light, 0) * gain)
             + rng.normal(0.0, sky, light.shape))
    return noisy.astype(np.float32), {"bt": p["bt"], "re_arcsec": p["re_arcsec"]}


def _stamp_cpu_ms(images, mask_neighbours: bool) -> float:
    centre = (IMAGE_SIDE - 1) / 2.0
    t0 = time.process_time()
    for image in images:
        make_stamp(image, centre, centre, STAMP_SIDE, SCALE, mask_neighbours=mask_neighbours)
    return (time.process_time() - t0) / len(images) * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    import photutils.segmentation  # noqa: F401  the lazy imports, made before any timing
    import skimage.morphology  # noqa: F401
    import skimage.segmentation  # noqa: F401

    rng = np.random.default_rng(args.seed)
    scenes = [crowded_scene(rng) for _ in range(args.targets)]
    images = [SkyImage.from_array(data, SCALE) for data, _ in scenes]
    truth = {name: np.array([t[name] for _, t in scenes]) for name in ("bt", "re_arcsec")}
    model = load_model("morphology-hsc-g")
    centre = (IMAGE_SIDE - 1) / 2.0
    print(f"{args.targets} targets, each with {NEIGHBOURS[0]}-{NEIGHBOURS[1]} neighbours "
          f"({TOUCHING_ARCSEC:g}″ and {NEIGHBOUR_ARCSEC[0]:g}-{NEIGHBOUR_ARCSEC[1]:g}″ away), "
          f"seed {args.seed}")
    for mask in (False, True):
        stamps = [make_stamp(image, centre, centre, STAMP_SIDE, SCALE, seed=i,
                             mask_neighbours=mask) for i, image in enumerate(images)]
        rows = measure_stamps(stamps, model, seed=args.seed)
        re = np.array([r.summary.get("re_arcsec_mode", np.nan) for r in rows])
        bt = np.array([r.summary.get("bt_mode", np.nan) for r in rows])
        flags = np.array([s.flags for s in stamps])
        print(f"mask_neighbours={mask!s:5}: median |ΔR_e|/R_e "
              f"{np.nanmedian(np.abs(re - truth['re_arcsec']) / truth['re_arcsec']):.1%}, "
              f"median |ΔB/T| {np.nanmedian(np.abs(bt - truth['bt'])):.3f}; "
              f"NEIGHBOURS_MASKED {np.mean(flags & Flag.NEIGHBOURS_MASKED > 0):.0%}, "
              f"BLENDED {np.mean(flags & Flag.BLENDED > 0):.0%}")
    _stamp_cpu_ms(images[:5], True)  # warm
    cost = _stamp_cpu_ms(images, True) - _stamp_cpu_ms(images, False)
    isolated = [SkyImage.from_array(
        (np.random.default_rng(i).normal(0.0, 2.0, (IMAGE_SIDE, IMAGE_SIDE))).astype(np.float32),
        SCALE) for i in range(args.targets)]
    sky_cost = _stamp_cpu_ms(isolated, True) - _stamp_cpu_ms(isolated, False)
    print(f"masking cost per {STAMP_SIDE}-px stamp (CPU): {cost:.2f} ms in these crowded "
          f"scenes, {sky_cost:.2f} ms on empty sky")


if __name__ == "__main__":
    main()
