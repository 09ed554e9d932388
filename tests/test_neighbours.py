"""Neighbour masking (issue 16): other sources in a stamp are replaced by sky and noise, the
target's own light never is, and an isolated galaxy's stamp is the one made without it."""

from __future__ import annotations

import galsim
import numpy as np
from scipy.ndimage import gaussian_filter

from galaxy_inspector.engine import load_model, measure_stamps
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import SkyImage
from galaxy_inspector.preprocessing import make_stamp
from training.simulate import (
    SimulationConfig,
    draw_galaxy,
    draw_parameters,
    intrinsic_profile,
    psf_profile,
)
from training.truth import circular_half_light_radius

SCALE, SIDE, IMAGE = 0.168, 128, 200
CENTRE = (IMAGE - 1) / 2.0
#: The target: B/T 0.3, a disk of 1.2″ and a bulge of 0.4″ (R_e about 1″), HSC-like seeing.
TARGET = {"bt": 0.3, "n_disk": 1.0, "n_bulge": 4.0, "hlr_disk": 1.2, "hlr_bulge": 0.4,
          "q_disk": 0.7, "q_bulge": 0.9, "pa_disk": 20.0, "pa_bulge": 25.0, "psf_fwhm": 0.8,
          "psf_beta": 3.0, "psf_e1": 0.0, "psf_e2": 0.0}
#: Neighbours (dx, dy arcsec, flux nJy, half-light radius arcsec): one touching the target.
NEIGHBOURS = [(3.0, 0.5, 4e4, 0.6), (-4.5, 3.5, 6e4, 0.9), (1.0, -6.5, 3e4, 0.5),
              (-7.0, -3.0, 5e4, 1.0)]


def _observed(light: np.ndarray, seed: int, sky: float = 2.0, corr: float = 0.0) -> np.ndarray:
    """``light`` with Poisson (10 nJy per electron) and sky noise, Gaussian-correlated over
    ``corr`` pixels when given."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, light.shape)
    if corr:
        noise = gaussian_filter(noise, corr)
        noise /= noise.std()
    poisson = rng.normal(0.0, 1.0, light.shape) * np.sqrt(np.maximum(light, 0.0) * 10.0)
    return (light + poisson + sky * noise).astype(np.float32)


def _scene(neighbours, flux=1e5, star=None) -> np.ndarray:
    image = galsim.ImageF(IMAGE, IMAGE, scale=SCALE)
    psf = psf_profile(TARGET)
    galsim.Convolve(intrinsic_profile(TARGET, flux), psf).drawImage(image, add_to_image=True)
    for dx, dy, f, r in neighbours:
        galsim.Convolve(galsim.Exponential(half_light_radius=r, flux=f), psf).shift(
            dx, dy).drawImage(image, add_to_image=True)
    if star:
        dx, dy, f = star
        psf.withFlux(f).shift(dx, dy).drawImage(image, add_to_image=True)
    return image.array.astype(np.float64)


def _stamps(data, **kw):
    image = SkyImage.from_array(data, SCALE)
    return [make_stamp(image, CENTRE, CENTRE, SIDE, SCALE, seed=3, mask_neighbours=mask, **kw)
            for mask in (True, False)]


def test_isolated_simulated_galaxies_are_left_alone():
    """Training-like galaxies alone in noise (sky 1.2-40 nJy, a third with correlated noise,
    large bright ones included): nothing is masked, the stamp is bit for bit the one made
    without masking."""
    rng = np.random.default_rng(16)
    config = SimulationConfig(stamp_size=IMAGE)
    for i in range(60):
        p = draw_parameters(rng)
        if i % 10 == 0:
            p.update(hlr_disk=5.0, hlr_bulge=min(p["hlr_bulge"], 3.0))  # the largest
        flux = 10 ** rng.uniform(3.0, 6.7)
        light = draw_galaxy(p, config, flux).astype(np.float64)
        data = _observed(light, i, sky=10 ** rng.uniform(0.08, 1.6),
                         corr=rng.uniform(0.4, 1.2) if i % 3 == 0 else 0.0)
        masked, plain = _stamps(data)
        np.testing.assert_array_equal(masked.data, plain.data, err_msg=str(i))
        assert masked.flags == plain.flags, i


def test_neighbours_are_masked_and_the_target_measured_closer_to_the_truth():
    data = _observed(_scene(NEIGHBOURS), seed=1)
    before = data.copy()
    masked, plain = _stamps(data)
    np.testing.assert_array_equal(data, before)  # the input image is untouched
    assert masked.flags & Flag.NEIGHBOURS_MASKED and masked.flags & Flag.BLENDED
    assert not plain.flags & (Flag.NEIGHBOURS_MASKED | Flag.BLENDED)
    assert masked.masked_fraction == plain.masked_fraction == 0.0
    assert not masked.flags & Flag.MASKED
    centre = slice(SIDE // 2 - 5, SIDE // 2 + 5)
    np.testing.assert_array_equal(masked.data[centre, centre], plain.data[centre, centre])
    model = load_model("morphology-hsc-g")
    truth_re = circular_half_light_radius([
        (1 - TARGET["bt"], TARGET["n_disk"], TARGET["hlr_disk"], TARGET["q_disk"]),
        (TARGET["bt"], TARGET["n_bulge"], TARGET["hlr_bulge"], TARGET["q_bulge"])])
    with_mask, without = (m.summary for m in measure_stamps([masked, plain], model, seed=1))
    assert (abs(with_mask["re_arcsec_mode"] - truth_re)
            < abs(without["re_arcsec_mode"] - truth_re))
    # B/T improves where the neighbours are apart from the target; the hole a touching one
    # leaves (filled with sky) costs B/T (0.11 -> 0.07 here; 0.34 alone): not asserted.
    apart = _stamps(_observed(_scene(NEIGHBOURS[1:]), seed=1))
    with_mask, without = (m.summary for m in measure_stamps(apart, model, seed=1))
    assert abs(with_mask["bt_mode"] - TARGET["bt"]) < abs(without["bt_mode"] - TARGET["bt"])
    assert (abs(with_mask["re_arcsec_mode"] - truth_re)
            < abs(without["re_arcsec_mode"] - truth_re))


def test_a_star_on_the_galaxy_is_a_touching_neighbour():
    """A bright star 2″ from the centre, inside the galaxy's isophote, is split from it and
    replaced; the galaxy's core is kept."""
    data = _observed(_scene([], star=(2.0, 0.0, 5e4)), seed=2)
    masked, plain = _stamps(data)
    assert masked.flags & Flag.BLENDED and masked.flags & Flag.NEIGHBOURS_MASKED
    star = (SIDE - 1) / 2 + 2.0 / SCALE
    row, col = int(round((SIDE - 1) / 2)), int(round(star))
    assert masked.data[row, col] < 0.1 * plain.data[row, col]
    core = slice(SIDE // 2 - 3, SIDE // 2 + 3)
    np.testing.assert_array_equal(masked.data[core, core], plain.data[core, core])


def test_masking_can_be_turned_off_and_keeps_masked_fraction_for_masked_pixels():
    """Masked pixels still count in ``masked_fraction`` and MASKED; neighbours do not."""
    data = _observed(_scene(NEIGHBOURS), seed=4)
    mask = np.zeros(data.shape, dtype=bool)
    mask[40:60, 40:60] = True
    image = SkyImage.from_array(data, SCALE, mask=mask)
    masked, plain = (make_stamp(image, CENTRE, CENTRE, SIDE, SCALE, mask_neighbours=m)
                     for m in (True, False))
    assert masked.masked_fraction == plain.masked_fraction > 0.01
    assert masked.flags & Flag.MASKED and plain.flags & Flag.MASKED
    assert masked.flags & Flag.NEIGHBOURS_MASKED and not plain.flags & Flag.NEIGHBOURS_MASKED


def test_a_knotty_disk_keeps_its_clumps_and_a_star_on_it_is_masked():
    """Clumps are the galaxy's light (and in its truth): kept, but for one rising over a
    quarter of the core's peak, which looks like a neighbour (here 1 disk in 4 loses 11 % of its
    light that way; raising the quarter to a half keeps them but misses touching neighbours).
    A star 3″ from the centre is masked, with its watershed basin: some of the disk's outskirts
    around it go too (a known cost, up to a fifth of the galaxy's flux here)."""
    psf = galsim.Moffat(beta=3.5, fwhm=0.7)
    noise = np.random.default_rng(1).normal(0.0, 2.68, (300, 300))
    star = galsim.Convolve(galsim.Gaussian(fwhm=0.1, flux=5e4).shift(3.0, 0.0), psf)
    star = star.drawImage(nx=300, ny=300, scale=0.168).array
    kept = []
    for seed in range(4):
        # 30 clumps holding 40 % of the light, placed like an exponential disk's (as GalSim's
        # RandomKnots, whose draws are not repeatable across calls in one process).
        rng = np.random.default_rng(seed)
        radius = rng.gamma(2.0, 2.0 / 1.678, 30)
        angle = rng.uniform(0.0, 2.0 * np.pi, 30)
        knots = galsim.Add([galsim.DeltaFunction(flux=4e4 / 30).shift(r * np.cos(a),
                                                                      r * np.sin(a))
                            for r, a in zip(radius, angle, strict=True)])
        disk = galsim.Exponential(half_light_radius=2.0, flux=6e4)
        galaxy = galsim.Convolve(disk + knots, psf).drawImage(nx=300, ny=300, scale=0.168).array
        alone, unmasked = (make_stamp(SkyImage.from_array(galaxy + noise, pixel_scale=0.168),
                                      149.5, 149.5, 128, 0.168, seed=1, mask_neighbours=mask)
                           for mask in (True, False))
        kept.append(alone.data.sum() / unmasked.data.sum())
        with_star = make_stamp(SkyImage.from_array(galaxy + star + noise, pixel_scale=0.168),
                               149.5, 149.5, 128, 0.168, seed=1)
        assert with_star.flags & Flag.NEIGHBOURS_MASKED
        assert 0.75 * unmasked.data.sum() < with_star.data.sum() < unmasked.data.sum()
    assert min(kept) > 0.85 and np.mean(kept) > 0.95, kept
