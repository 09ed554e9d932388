"""The realism options of ``galaxy-inspector-train simulate`` (training/realism.py): off by
default and then the file of old; clumps in the truth; masked pixels filled as the app fills
them; neighbours and stars outside the truth."""

from __future__ import annotations

import hashlib

import galsim
import h5py
import numpy as np
import pytest
import torch
from photutils.aperture import CircularAperture, aperture_photometry
from scipy.optimize import brentq

from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.preprocessing import make_stamp
from training import realism
from training.cli import _realism_options, build_parser
from training.cli import main as train_main
from training.dataset import load_set
from training.observe import observe
from training.simulate import (
    SimulationConfig,
    _add_stars,
    draw_galaxy,
    draw_parameters,
    intrinsic_half_light_radius,
    intrinsic_profile,
    knots_profile,
    psf_profile,
    simulate,
)

SMALL = dict(stamp_size=48, chunk=8)
#: sha256 of ``simulate(n=16, seed=5, workers=1, SimulationConfig(**SMALL))`` made by the code
#: before the realism options existed (commit a42597d), with these library versions, on the
#: CPUs named: GalSim's FFTs round differently from one CPU to another, so each CPU has its own
#: file (a42597d run on another CPU gives the hash to add).
BEFORE_OPTIONS = {
    "b6697b7913652ebaea7dee30100d77460d4887832dbb9ad8bf011f4435980837": "the first CI machine",
    "1984d5c85dec4b755914ab4c04d5b99bac53490ae406f7df30083875afbc6a75": "AMD EPYC",
}
BEFORE_VERSIONS = {"galsim": "2.8.5", "hdf5": "2.0.0", "h5py": "3.16.0"}
EVERYTHING = SimulationConfig(**SMALL, knots_fraction=1.0, psf_variety=True,
                              neighbours_fraction=1.0, masks_fraction=1.0, psf_known_fraction=0.5)


@pytest.fixture(scope="module")
def plain_set(simulated_set):
    return simulated_set(simulate, SimulationConfig(**SMALL), n=16, seed=5)


@pytest.fixture(scope="module")
def realistic_set(simulated_set):
    return simulated_set(simulate, EVERYTHING, n=16, seed=5)


def test_default_file_is_byte_for_byte_the_one_before_the_options(plain_set):
    versions = {"galsim": galsim.__version__, "hdf5": h5py.version.hdf5_version,
                "h5py": h5py.__version__}
    if versions != BEFORE_VERSIONS:
        pytest.skip(f"the reference hash was made with {BEFORE_VERSIONS}, not {versions}")
    assert hashlib.sha256(plain_set.read_bytes()).hexdigest() in BEFORE_OPTIONS


def test_options_add_their_columns_and_keep_the_galaxies(plain_set, realistic_set):
    with h5py.File(plain_set) as plain, h5py.File(realistic_set) as real:
        assert set(real) - set(plain) == {c for cs in realism.OPTION_COLUMNS.values() for c in cs}
        assert real.attrs["masks_fraction"] == 1.0 and real.attrs["psf_variety"]
        # Each option draws from its own stream: the galaxies and their seeing are the same.
        for name in ("bt", "hlr_disk", "q_bulge", "psf_fwhm", "dx"):
            np.testing.assert_array_equal(real[name][:], plain[name][:])
        smooth = real["knot_npoints"][:] == 0
        np.testing.assert_array_equal(real["re_arcsec"][:][smooth], plain["re_arcsec"][:][smooth])
        assert np.all(real["knot_npoints"][:][plain["bt"][:] < 1] >= 5)
        images = real["images"][:]
        np.testing.assert_allclose(np.isnan(images).mean(axis=(1, 2)), real["masked_fraction"][:])
        assert np.all(real["masked_fraction"][:] > 0)
        kinds = real["psf_kind"][:]
        assert np.isnan(real["psf_beta"][:][kinds == 1]).all()
        assert np.all((real["psf_beta"][:][kinds == 0] >= 2) & (real["psf_beta"][:][kinds == 0] <= 5))
        assert set(np.unique(real["psf_known"][:])) <= {0.0, 1.0}
    training = load_set(realistic_set)  # NaN pixels are masks here, not a broken file
    assert torch.isnan(training.images).any()


def test_nan_pixels_are_refused_in_a_set_without_masks(plain_set, tmp_path):
    broken = tmp_path / "nan.h5"
    broken.write_bytes(plain_set.read_bytes())
    with h5py.File(broken, "r+") as f:
        f["images"][2, 5, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite pixels"):
        load_set(broken)


def _knotty():
    p = draw_parameters(np.random.default_rng(8))
    p.update(bt=0.25, components=2, hlr_disk=1.2, hlr_bulge=0.4, q_disk=0.6, n_bulge=4.0,
             dx=0.0, dy=0.0, knot_flux_fraction=0.3, knot_npoints=6, knot_seed=12345)
    p["re_arcsec"] = intrinsic_half_light_radius(p)
    return p


def test_clumps_are_in_the_truth_and_the_numerical_half_light_radius_of_the_image():
    p = _knotty()
    smooth = intrinsic_half_light_radius({**p, "knot_npoints": 0, "knot_flux_fraction": 0.0})
    assert abs(p["re_arcsec"] / smooth - 1.0) > 0.02  # six clumps move R_e: the check can fail
    scale, size = p["re_arcsec"] / 40.0, 1024
    gsp = galsim.GSParams(folding_threshold=1e-4, maxk_threshold=1e-4)
    # Bulge and disk without its clumps (the disk keeps the rest of its flux).
    smooth_light = intrinsic_profile({**p, "knot_npoints": 0}).withGSParams(gsp)
    image = smooth_light.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    # The clumps where GalSim's RandomKnots puts them (the points its profile is made of),
    # each a Gaussian two pixels wide (well sampled, far narrower than the gaps between their
    # distances and R_e), drawn in real space.
    knots = knots_profile(p)
    clumps = galsim.Add([galsim.Gaussian(sigma=2.0 * scale, flux=knots.flux / knots.npoints)
                         .shift(x, y) for x, y in knots.points])
    image += clumps.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    centre = (size - 1) / 2.0

    def enclosed(radius_arcsec):  # of the total untruncated (unit) flux
        aperture = CircularAperture((centre, centre), radius_arcsec / scale)
        return float(aperture_photometry(image, aperture, method="exact")["aperture_sum"][0])

    numerical = brentq(lambda r: enclosed(r) - 0.5, 0.5 * p["re_arcsec"], 2.0 * p["re_arcsec"])
    assert numerical == pytest.approx(p["re_arcsec"], rel=0.01)


def test_bulge_disk_and_clumps_sum_to_the_total_and_bt_is_the_bulge_share():
    p = _knotty()
    clumps = knots_profile(p)
    assert clumps.npoints == 6 and clumps.flux == pytest.approx(0.75 * 0.3)
    assert intrinsic_profile(p).flux == pytest.approx(1.0, rel=1e-12)
    assert intrinsic_profile(p, flux=1234.0).flux == pytest.approx(1234.0, rel=1e-12)
    # The clumps sit where they sat for the truth, whatever the flux.
    np.testing.assert_array_equal(knots_profile(p, 1234.0).points, clumps.points)
    stamp = draw_galaxy(p, SimulationConfig(stamp_size=256))
    assert stamp.sum() == pytest.approx(1.0, rel=0.01)


def test_masked_pixels_get_the_noise_the_app_fills_them_with():
    sigma, size = 4.0, 128
    masked = np.zeros((size, size), bool)
    masked[10:40, 70:110] = True
    # The app: a sky-subtracted image with a masked patch, cut into a stamp (a window of it
    # from pixel 86 on).
    sky = np.random.default_rng(1).normal(0.0, sigma, (300, 300))
    mask = np.zeros(sky.shape, bool)
    mask[96:126, 156:196] = True
    stamp = make_stamp(SkyImage.from_array(sky, 0.168, mask=mask), 149.5, 149.5, size, 0.168)
    app_fill = stamp.data[masked]
    assert abs(np.corrcoef(app_fill, sky[mask])[0, 1]) < 0.1  # filled, not the sky beneath
    # Training: a bright galaxy whose stored stamp is NaN there.
    unit = torch.from_numpy(draw_galaxy(_knotty(), SimulationConfig(stamp_size=size)))
    unit[torch.from_numpy(masked)] = np.nan
    generator = torch.Generator().manual_seed(3)
    observed = observe(unit[None], [1e6], [sigma], [10.0], generator=generator)[0].numpy()
    train_fill = observed[masked]
    assert np.isfinite(observed).all()
    for fill in (app_fill, train_fill):
        assert fill.std() == pytest.approx(sigma, rel=0.05)
        assert abs(fill.mean()) < 0.2
    # The rest of the stamp is observed as without masks.
    unmasked = observe(torch.nan_to_num(unit[None]), [1e6], [sigma], [10.0],
                       generator=torch.Generator().manual_seed(3))[0].numpy()
    np.testing.assert_array_equal(observed[~masked], unmasked[~masked])


def test_masks_stay_clear_of_the_target_and_within_the_stamp():
    rng = np.random.default_rng(4)
    for _ in range(200):
        p = draw_parameters(rng)
        realism.draw_masks(p, rng, 1.0, 128, 0.168)
        masked = realism.mask_pixels(p, 128)
        assert masked is not None and masked.any()
        yy, xx = np.mgrid[:128, :128]
        near = np.hypot(xx - 63.5 - p["dx"], yy - 63.5 - p["dy"]) < realism.MASK_CLEARANCE_PX
        assert not masked[near].any()


def test_neighbours_and_stars_add_light_but_not_truth():
    p = _knotty()
    crowded = {**p, "neighbours": [(0.5, 5.0, -4.0, 1.0, 0.6, 0.7, 30.0),
                                   (2.0, -6.0, -5.0, 0.0, 0.0, 1.0, 0.0)]}
    config = SimulationConfig(stamp_size=128)
    extra = draw_galaxy(crowded, config) - draw_galaxy(p, config)
    assert extra.sum() == pytest.approx(2.5, rel=0.02)
    assert extra[64, 64] < 1e-3 * extra.max()  # their light is theirs, not the target's
    assert intrinsic_half_light_radius(crowded) == p["re_arcsec"]


def test_stars_are_drawn_without_fft_ringing():
    p = draw_parameters(np.random.default_rng(2))
    p.update(dx=0.3, dy=-0.2, neighbours=[(1000.0, -4.0, 3.0, 0.0, 0.0, 1.0, 0.0)])
    image = galsim.ImageF(128, 128, scale=0.168)
    _add_stars(p, 1.0, image)
    exact = galsim.Convolve(galsim.DeltaFunction(flux=1000.0).shift(-4.0, 3.0), psf_profile(p),
                            gsparams=galsim.GSParams(folding_threshold=1e-5,
                                                     maxk_threshold=1e-6))
    reference = exact.drawImage(nx=128, ny=128, scale=0.168, offset=(0.3, -0.2)).array
    assert image.array.min() > 0  # an FFT would ring below zero, a real-space cut end at zero
    assert np.abs(image.array - reference).max() < 0.01 * reference.max()


def test_realism_preset_and_options_on_the_command_line(tmp_path):
    parse = build_parser().parse_args
    base = ["simulate", "--n", "1", "--seed", "1", "--out", "x.h5"]
    assert _realism_options(parse(base)) == {}
    assert _realism_options(parse(base + ["--realism"])) == realism.PRESET
    chosen = _realism_options(parse(base + ["--realism", "--knots", "0.2", "--no-psf-variety"]))
    assert chosen == {**realism.PRESET, "knots_fraction": 0.2, "psf_variety": False}
    assert _realism_options(parse(base + ["--masks", "0.1"])) == {"masks_fraction": 0.1}
    assert train_main(["simulate", "--n", "4", "--seed", "1", "--out", str(tmp_path / "x.h5"),
                       "--neighbours", "1.5"]) == 1
    assert not (tmp_path / "x.h5").exists()
