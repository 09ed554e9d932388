"""Reference measurements for ``real_galaxies.py``: what the tool is compared with.

Everything here works on a ``Window``: a square cut of a sky-subtracted image around one
galaxy, binned to at most ``MAX_WINDOW_PIXELS`` a side (flux-conserving sums, so that a galaxy
of 30″ costs what a galaxy of 3″ does), with a noise map, a mask (bad pixels, pixels off the
image, neighbours) and the PSF on the sky as a GalSim profile.

* ``fit_sersic`` and ``fit_bulge_disk``: a PSF-convolved Sérsic and a de Vaucouleurs bulge +
  exponential disk fitted by ``scipy.optimize.least_squares``, rendered with GalSim as the
  training simulations are (the Sérsic index is profiled: GalSim tabulates each index once, so
  ``n`` is a scalar search around inner fits at fixed ``n``).
* ``curve_of_growth``: model-free photometry with photutils apertures: sky from an annulus
  outside twice the Petrosian radius when the image has room for one, total flux within twice
  the Petrosian radius (η = 0.2, as SDSS), r50 where half of it is enclosed.
* ``circular_half_light_radius``: the radius of the circle holding half of a model's intrinsic
  (pre-PSF) light, the definition of the tool's ``re_arcsec``; every fitter's R_e goes
  through it so that all columns measure the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import galsim
import numpy as np
from astropy.stats import sigma_clipped_stats
from photutils.aperture import CircularAnnulus
from photutils.profiles import CurveOfGrowth
from photutils.segmentation import deblend_sources, detect_sources
from scipy import ndimage, optimize, special

#: Longest side of a fitted window, in (binned) pixels.
MAX_WINDOW_PIXELS = 100
#: Neighbours are segments above this many sigma of the binned window's noise...
MASK_N_SIGMA = 3.0
#: ...grown by this many binned pixels.
MASK_GROWTH_PIXELS = 2
#: Sérsic indices GalSim can draw.
SERSIC_N_RANGE = (0.3, 6.2)
PETROSIAN_ETA = 0.2
#: Bulge+disk fits start from each of these B/T (and keep the best): one start falls into
#: local minima where a faint bulge swaps roles with the disk.
BULGE_FRACTION_STARTS = (0.3, 0.7)
#: GalSim's accuracy: k-space amplitudes below 1 % dropped (the default is 0.1 %), which makes
#: a sharp HST PSF on binned pixels 10-20 times cheaper to draw and moves the brightest pixel by
#: up to 2 % of its value; the fits' R_e and flux move by far less (the test recovers a truth
#: drawn at GalSim's default accuracy).
GSPARAMS = galsim.GSParams(maximum_fft_size=16384, maxk_threshold=1e-2)
#: Finite-difference step of the fits' Jacobians, relative to each parameter (at least 1):
#: GalSim's drawings are not smooth at the default 1e-8 (its FFT grids change size).
JACOBIAN_STEP = 1e-3


@dataclass
class Window:
    """One galaxy's cut: ``data`` sky-subtracted (image units per binned pixel), ``sigma`` its
    1σ noise, ``mask`` True where unused (``bad``: off the image or unusable; the rest
    neighbours), ``scale`` arcsec per binned pixel, ``centre`` the
    galaxy's first-guess (x, y) in window pixels, ``segment`` the pixels of its own segment,
    ``binning`` source pixels per window pixel, ``origin`` the source pixel (x, y) of the
    window's corner."""

    data: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    bad: np.ndarray
    scale: float
    psf: galsim.GSObject
    centre: tuple[float, float]
    segment: np.ndarray
    binning: int
    origin: tuple[int, int]

    def to_source(self, x: float, y: float) -> tuple[float, float]:
        """Window pixel -> 0-based source pixel."""
        b = self.binning
        return self.origin[0] + (x + 0.5) * b - 0.5, self.origin[1] + (y + 0.5) * b - 0.5

    def psf_image(self, radius_arcsec: float = 3.0) -> np.ndarray:
        """The PSF sampled on the window's pixels (pixel response included), normalised."""
        n = max(15, 2 * math.ceil(radius_arcsec / self.scale) + 1)
        image = self.psf.drawImage(nx=n, ny=n, scale=self.scale).array.astype(float)
        return image / image.sum()


def noise_variance(data: np.ndarray, bad: np.ndarray, block: int = 16) -> np.ndarray:
    """Per-pixel noise variance as ``a + b * signal``, fitted to the scatter of second
    differences (which cancel a galaxy's smooth gradient) in blocks of the image: the sky's
    noise and the source's Poisson noise without knowing the gain."""
    d = np.where(bad, np.nan, data)
    second = (2 * d[:, 1:-1] - d[:, :-2] - d[:, 2:]) / math.sqrt(6.0)
    level = d[:, 1:-1]
    ny, nx = (s // block * block for s in second.shape)
    shape = (ny // block, block, nx // block, block)
    blocks = second[:ny, :nx].reshape(shape).transpose(0, 2, 1, 3).reshape(-1, block * block)
    levels = level[:ny, :nx].reshape(shape).transpose(0, 2, 1, 3).reshape(-1, block * block)
    good = np.isfinite(blocks).mean(axis=1) > 0.8
    mad = np.nanmedian(np.abs(blocks[good] - np.nanmedian(blocks[good], axis=1)[:, None]),
                       axis=1)
    var = (1.4826 * mad) ** 2
    signal = np.nanmedian(levels[good], axis=1)
    faint = signal <= np.percentile(signal, 90)
    slope, floor = np.polyfit(signal[faint], var[faint], 1)
    floor = max(floor, float(np.percentile(var, 5)))
    return floor + max(slope, 0.0) * np.clip(np.nan_to_num(data), 0, None)


def _binned(array: np.ndarray, b: int, how=np.sum) -> np.ndarray:
    ny, nx = array.shape
    return how(array.reshape(ny // b, b, nx // b, b), axis=(1, 3))


def cut_window(data, variance, bad, x: float, y: float, half_size: int, pixel_scale: float,
               psf: galsim.GSObject) -> Window:
    """The binned, masked window of ``half_size`` source pixels around (x, y); ``data`` is
    sky-subtracted, ``bad`` marks unusable source pixels. Neighbours are found here."""
    b = max(1, math.ceil(2 * half_size / MAX_WINDOW_PIXELS))
    side = math.ceil(2 * half_size / b) * b
    x0, y0 = int(round(x)) - side // 2, int(round(y)) - side // 2
    cut = np.full((side, side), np.nan)
    var = np.full((side, side), np.nan)
    cut_bad = np.ones((side, side), bool)
    ys, xs = slice(max(y0, 0), min(y0 + side, data.shape[0])), slice(max(x0, 0),
                                                                       min(x0 + side,
                                                                           data.shape[1]))
    inner = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    cut[inner], var[inner], cut_bad[inner] = data[ys, xs], variance[ys, xs], bad[ys, xs]
    cut_bad |= ~np.isfinite(cut)
    binned_bad = _binned(cut_bad, b, np.any)
    binned = np.where(binned_bad, 0.0, _binned(np.where(cut_bad, 0.0, cut), b))
    sigma = np.sqrt(np.where(binned_bad, 1.0, _binned(np.where(cut_bad, 0.0, var), b)))
    centre = ((x - x0 + 0.5) / b - 0.5, (y - y0 + 0.5) / b - 0.5)
    neighbours, segment = _neighbours(binned, sigma, binned_bad, centre)
    return Window(binned, sigma, binned_bad | neighbours, binned_bad, pixel_scale * b, psf,
                  centre, segment & ~neighbours, b, (x0, y0))


def _neighbours(data, sigma, bad, centre):
    """(mask of other sources, the galaxy's own segment): photutils segments above
    ``MASK_N_SIGMA``, deblended; the galaxy is the deblended piece under its centre, and
    every other piece (of its segment or not) is masked."""
    smooth = ndimage.gaussian_filter(np.where(bad, 0.0, data), 1.0)
    segments = detect_sources(smooth, MASK_N_SIGMA * sigma, n_pixels=5, mask=bad)
    ic, jc = int(round(centre[1])), int(round(centre[0]))
    if segments is None or segments.data[ic, jc] == 0:
        return np.zeros_like(bad), np.zeros_like(bad)
    parent = segments.data == segments.data[ic, jc]
    pieces = deblend_sources(smooth, segments, n_pixels=5, progress_bar=False).data
    own = pieces == pieces[ic, jc]
    grown = ndimage.binary_dilation((pieces > 0) & ~own, iterations=MASK_GROWTH_PIXELS)
    return grown & ~own, parent


@dataclass
class Fit:
    """A fitted model: ``profile`` the intrinsic light centred on (0, 0) in arcsec, ``x``,
    ``y`` its centre in window pixels, ``re_arcsec`` its circular intrinsic half-light radius,
    ``bt`` bulge fraction (NaN for one component), ``n`` Sérsic index, ``shape`` its reduced
    shear (g1, g2; the disk's for two components), ``chi2_dof``."""

    profile: galsim.GSObject
    x: float
    y: float
    re_arcsec: float
    flux: float
    bt: float
    n: float
    shape: tuple[float, float]
    chi2_dof: float


def circular_half_light_radius(profile: galsim.GSObject, size_hint: float) -> float:
    """Radius (arcsec) of the circle about the centre holding half of ``profile``'s total
    flux; ``size_hint`` is about its half-light radius (arcsec). The light is integrated on a
    polar grid, logarithmic in radius, so that the cusp of a high-index Sérsic is resolved
    (a pixel grid puts a large share of it into one pixel)."""
    radii = np.geomspace(1e-4, 30.0, 500) * size_hint
    angles = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
    rings = np.array([np.mean([profile.xValue(r * math.cos(t), r * math.sin(t))
                               for t in angles]) for r in radii])
    # d(enclosed)/d(ln r) = 2 pi r^2 * (mean surface brightness on the ring)
    integrand = 2 * np.pi * radii ** 2 * rings
    steps = 0.5 * (integrand[1:] + integrand[:-1]) * np.diff(np.log(radii))
    enclosed = np.concatenate([[0.0], np.cumsum(steps)])
    half = 0.5 * profile.flux
    return float(np.interp(half, enclosed, radii)) if enclosed[-1] >= half else math.nan


def _shear(g1, g2):
    g = math.hypot(g1, g2)
    limit = 0.95
    if g > limit:
        g1, g2 = g1 * limit / g, g2 * limit / g
    return galsim.Shear(g1=g1, g2=g2)


def _residuals(window: Window, build):
    """Chi residuals of ``build(p, trunc)`` (an intrinsic profile) convolved with the PSF.
    Profiles are truncated beyond the window (``trunc``, arcsec), which changes nothing
    inside it and keeps GalSim's FFTs the window's size instead of the whole profile's."""
    ny, nx = window.data.shape
    use = ~window.mask
    data, sigma = window.data[use], window.sigma[use]
    mid = ((nx - 1) / 2, (ny - 1) / 2)
    trunc = max(nx, ny) * window.scale

    def residuals(p):
        profile = galsim.Convolve(build(p, trunc), window.psf, gsparams=GSPARAMS)
        model = profile.drawImage(nx=nx, ny=ny, scale=window.scale,
                                  offset=(p[0] - mid[0], p[1] - mid[1])).array
        return (data - model[use]) / sigma

    return residuals


def _least_squares(residuals, p0, lower, upper):
    result = optimize.least_squares(residuals, p0, bounds=(lower, upper), x_scale="jac",
                                    diff_step=JACOBIAN_STEP, ftol=1e-5, xtol=1e-6,
                                    max_nfev=300)
    dof = max(result.fun.size - len(p0), 1)
    return result.x, float(np.sum(result.fun ** 2) / dof)


def _first_guess(window: Window):
    """Centre, flux and half-light radius (arcsec) from the galaxy's segment."""
    own = window.segment & ~window.mask
    flux = float(window.data[own].sum())
    yy, xx = np.indices(window.data.shape)
    r = np.hypot(xx - window.centre[0], yy - window.centre[1])[own]
    order = np.argsort(r)
    enclosed = np.cumsum(window.data[own][order])
    r50 = float(np.interp(0.5 * flux, enclosed, r[order])) * window.scale
    return window.centre, max(flux, 1e-30), max(r50, window.scale)


def _position_bounds(window, x, y):
    return [x - 5, y - 5], [x + 5, y + 5]


def fit_sersic(window: Window) -> Fit:
    """PSF-convolved Sérsic (free centre, flux, size, shape; ``n`` profiled)."""
    (x, y), flux, r50 = _first_guess(window)
    (xlo, ylo), (xhi, yhi) = _position_bounds(window, x, y)
    lower = [xlo, ylo, math.log(flux) - 5, math.log(window.scale / 4), -0.7, -0.7]
    upper = [xhi, yhi, math.log(flux) + 5, math.log(r50 * 20), 0.7, 0.7]
    start = np.array([x, y, math.log(flux), math.log(r50), 0.0, 0.0])
    fits = {}

    def inner(n):
        def build(p, trunc=0.0):
            return galsim.Sersic(n, half_light_radius=math.exp(p[3]), flux=math.exp(p[2]),
                                 trunc=trunc, flux_untruncated=True,
                                 gsparams=GSPARAMS).shear(_shear(p[4], p[5]))

        best = min(fits.values(), key=lambda f: f[1])[0] if fits else start
        p, chi2 = _least_squares(_residuals(window, build), np.clip(best, lower, upper),
                                 lower, upper)
        fits[n] = (p, chi2, build)
        return chi2

    optimize.minimize_scalar(inner, bounds=SERSIC_N_RANGE, method="bounded",
                             options={"xatol": 0.1})
    n, (p, chi2, build) = min(fits.items(), key=lambda item: item[1][1])
    profile = build(p)
    hlr = math.exp(p[3])
    return Fit(profile, p[0], p[1], circular_half_light_radius(profile, hlr), math.exp(p[2]),
               math.nan, n, (p[4], p[5]), chi2)


def fit_bulge_disk(window: Window, start: Fit | None = None) -> Fit:
    """PSF-convolved de Vaucouleurs bulge + exponential disk sharing a centre; ``start``
    (a Sérsic fit) seeds the centre, flux and sizes."""
    if start is None:
        start = fit_sersic(window)
    flux, hlr = start.flux, start.re_arcsec
    (xlo, ylo), (xhi, yhi) = _position_bounds(window, start.x, start.y)
    lower = [xlo, ylo, math.log(flux) - 3, 0.0, math.log(window.scale / 4),
             math.log(window.scale / 4), -0.7, -0.7, -0.7, -0.7]
    upper = [xhi, yhi, math.log(flux) + 3, 1.0, math.log(hlr * 20), math.log(hlr * 20),
             0.7, 0.7, 0.7, 0.7]

    def build(p, trunc=0.0):
        total = math.exp(p[2])
        bulge = galsim.DeVaucouleurs(half_light_radius=math.exp(p[4]), flux=total * p[3],
                                     trunc=trunc, flux_untruncated=True,
                                     gsparams=GSPARAMS).shear(_shear(p[6], p[7]))
        disk = galsim.Sersic(1, half_light_radius=math.exp(p[5]), flux=total * (1 - p[3]),
                             trunc=trunc, flux_untruncated=True,
                             gsparams=GSPARAMS).shear(_shear(p[8], p[9]))
        return bulge + disk

    residuals = _residuals(window, build)
    g1, g2 = start.shape
    p, chi2 = min((_least_squares(residuals, np.clip(
        [start.x, start.y, math.log(flux), bt, math.log(hlr * 0.4), math.log(hlr * 1.3),
         g1, g2, g1, g2], lower, upper), lower, upper) for bt in BULGE_FRACTION_STARTS),
        key=lambda fit: fit[1])
    profile = build(p)
    hint = max(math.exp(p[4]), math.exp(p[5]))
    return Fit(profile, p[0], p[1], circular_half_light_radius(profile, hint),
               math.exp(p[2]), float(p[3]), math.nan, (p[8], p[9]), chi2)


def sersic_total_flux(amplitude: float, r_eff: float, n: float, axis_ratio: float) -> float:
    """Total flux of an elliptical Sérsic profile with surface brightness ``amplitude`` at
    its semi-major half-light radius ``r_eff`` (astropy's and Imfit's I_e, r_e)."""
    b = special.gammaincinv(2 * n, 0.5)
    return float(2 * math.pi * axis_ratio * r_eff ** 2 * amplitude * n * math.exp(b)
                 * b ** (-2 * n) * special.gamma(2 * n))


def sersic_profile(flux: float, r_eff_arcsec: float, n: float, axis_ratio: float,
                   angle_deg: float = 0.0) -> galsim.GSObject:
    """GalSim's elliptical Sérsic of semi-major half-light radius ``r_eff_arcsec``."""
    q = min(max(axis_ratio, 0.05), 1.0)
    n = min(max(n, SERSIC_N_RANGE[0]), SERSIC_N_RANGE[1])
    return galsim.Sersic(n, half_light_radius=r_eff_arcsec * math.sqrt(q), flux=flux,
                         gsparams=GSPARAMS).shear(q=q, beta=angle_deg * galsim.degrees)


@dataclass
class Growth:
    """Model-free photometry: ``r50_arcsec`` and ``flux`` within twice the Petrosian radius,
    ``sky`` the annulus' residual sky per pixel (NaN: no room for an annulus), ``converged``
    False when twice the Petrosian radius runs off the usable window (the values are then
    lower limits)."""

    r50_arcsec: float
    flux: float
    petrosian_arcsec: float
    sky: float
    converged: bool


#: Apertures with more of their area off the image (or unusable) than this stop the curve.
MAX_BAD_FRACTION = 0.02


def _filled(window: Window, x: float, y: float) -> np.ndarray:
    """The window with its neighbours replaced by the median of the galaxy's other pixels at
    the same radius (a galaxy's light is about symmetric; a masked star's is not its own)."""
    yy, xx = np.indices(window.data.shape)
    rings = np.hypot(xx - x, yy - y).astype(int)
    good = ~window.mask
    medians = np.zeros(rings.max() + 1)
    for ring in np.unique(rings[good]):
        medians[ring] = np.median(window.data[good & (rings == ring)])
    return np.where(good | window.bad, window.data, medians[rings])


def curve_of_growth(window: Window, x: float, y: float) -> Growth:
    """Circular-aperture photometry about (x, y) (window pixels), out to the largest circle
    with at most ``MAX_BAD_FRACTION`` of it off the image."""
    ny, nx = window.data.shape
    radii = np.geomspace(0.5, math.hypot(nx, ny) / 2, 80)
    bad_area = CurveOfGrowth(window.bad.astype(float), (x, y), radii).profile
    inside = bad_area <= MAX_BAD_FRACTION * math.pi * radii ** 2
    radii = radii[:np.argmin(inside)] if not inside.all() else radii
    data = _filled(window, x, y)
    sky = math.nan
    for _ in range(2):
        cog = CurveOfGrowth(data, (x, y), radii, mask=window.bad)
        enclosed = cog.profile
        mean_sb = enclosed / (math.pi * radii ** 2)
        local_sb = np.gradient(enclosed, radii) / (2 * math.pi * radii)
        below = np.nonzero((local_sb < PETROSIAN_ETA * mean_sb) & (radii > 1.0))[0]
        petrosian = radii[below[0]] if below.size else math.nan
        if not math.isnan(sky) or not below.size:
            break
        annulus = CircularAnnulus((x, y), 2.5 * petrosian, 3.5 * petrosian)
        in_annulus = annulus.to_mask(method="center").to_image(window.data.shape) > 0
        if in_annulus.sum() == 0 or (in_annulus & ~window.mask).sum() < 0.5 * annulus.area:
            break
        _, sky, _ = sigma_clipped_stats(window.data[in_annulus & ~window.mask])
        data = data - sky
    converged = bool(below.size) and 2 * petrosian <= radii[-1]
    flux = float(np.interp(2 * petrosian if converged else radii[-1], radii, enclosed))
    r50 = float(cog.calc_radius_at_ee(0.5 * flux)) if flux > 0 else math.nan
    return Growth(r50 * window.scale, flux, petrosian * window.scale, sky, converged)
