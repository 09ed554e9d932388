"""Real galaxies: the tool beside established fitters on the same pixels (issue #16).

The images are real ones that Python packages ship, so nothing is downloaded at run time:

* ``mgefit`` (Cappellari 2002): HST/WFPC2 PC1 F814W of M32 and NGC 4342, a WFPC2 F702W
  mosaic of NGC 5831 (with an elliptical neighbour in its field) and a ground-based I-band
  image of M32 (INT). Pixel scales, PSFs and sky levels are those of mgefit's own example script (``mgefit/examples/mge_fit_example.py``); fluxes are
  in nJy by the tool's own calibration of each file (WFPC2 ``PHOTFLAM``), the INT image has
  none, so its flux is not compared.
* ``petrofit`` (Geda et al. 2022), in its source distribution (``docs/data``): Hubble
  Frontier Fields WFC3/IR F105W cutouts of the cluster Abell 2744 (0.06"/px, e-/s, from the
  sky-subtracted mosaic) and the F105W PSF image; the tool reads that PSF image itself. Get it
  once with ``pip download --no-deps --no-binary :all: petrofit==0.5.0 -d benchmarks/data``
  (without it these galaxies are skipped, and the run says so).
* ``scikit-image``: the Hubble Deep Field as a colour JPEG, which the tool must refuse.

Each galaxy is measured by the tool (``read_image`` with the PSF FWHM given, then
``analyse_position``: the engine as the GUI and ``--batch`` call it, with whatever scale
bridging and PSF matching it does, shown in its flags and ``binning``) and, on a window of
the same pixels with neighbours masked (``galaxy_fitters``), by Imfit (``pyimfit``:
PSF-convolved Sérsic, and n=4 bulge + n=1 disk), statmorph (PSF-convolved Sérsic), this
benchmark's own GalSim fits (Sérsic, de Vaucouleurs bulge + exponential disk) and a
model-free curve of growth. Every R_e is the radius of the circle holding half the intrinsic
light, the tool's definition. The fitters agree when all of their R_e lie within 15 % and
their fluxes within 10 % of the fitters' median; the tool agrees when that median lies inside
its 95 % interval or within 15 % (R_e) / 10 % (flux) of its mode; B/T is compared with Imfit's
bulge+disk B/T. Where the tool's answer is not confirmed it must say so: a refusal, or a flag
among ``WARNING_FLAGS``.

    nice -n 10 python benchmarks/real_galaxies.py [--quick] [--out results.json]
        [--petrofit PETROFIT_SDIST]

Needs the optional extra: ``pip install -e ".[benchmark]"`` (mgefit, statmorph, pyimfit,
which builds Imfit from source).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tarfile
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import galaxy_fitters as fitters  # noqa: E402

from galaxy_inspector.engine import analyse_position, load_model  # noqa: E402
from galaxy_inspector.errors import InputError, user_message  # noqa: E402
from galaxy_inspector.flags import Flag, describe_flags  # noqa: E402
from galaxy_inspector.io import read_image  # noqa: E402
from galaxy_inspector.preprocessing import detect_galaxies  # noqa: E402

OPTIONAL = {"mgefit": "mgefit", "statmorph": "statmorph", "pyimfit": "pyimfit",
            "skimage": "scikit-image"}
#: Fitters agree, and the tool agrees with them, within these fractions.
RE_TOLERANCE, FLUX_TOLERANCE = 0.15, 0.10
#: Flags that tell a user not to trust a row as it is.
WARNING_FLAGS = (Flag.EDGE | Flag.MASKED | Flag.OUTSIDE_TRAINING | Flag.LOW_SNR
                 | Flag.NONLINEAR_IMAGE)
#: Galaxies of the HDF JPEG the tool is asked about (brightest detected first).
HDF_GALAXIES = 2

# mgefit's example: the four-Gaussian PSF of WFPC2/PC1 F814W (Cappellari et al. 2002, ApJ
# 578, 787, Table 3; sigmas in PC1 pixels of 0.0455"), sigma 0.4 px for the 0.1"/px mosaic,
# and "FWHM = 1.0 arcsec" for the ground-based M32 image.
PC_SCALE = 0.0455
PC_F814W_PSF = galsim.Sum([galsim.Gaussian(sigma=s * PC_SCALE, flux=w) for s, w in
                           zip((0.494, 1.44, 4.71, 13.4), (0.294, 0.559, 0.0813, 0.0657),
                               strict=True)])
MOSAIC_PSF = galsim.Gaussian(sigma=0.4 * 0.1)
INT_PSF = galsim.Gaussian(fwhm=1.0)
#: mgefit's example masks the NGC 5831 mosaic's neighbour within 200 px when it takes the sky.
MOSAIC_NEIGHBOUR, MOSAIC_NEIGHBOUR_RADIUS = (1408.1, 357.7), 200.0

#: petrofit's source distribution, with its Hubble Frontier Fields cutouts in docs/data.
PETROFIT = "petrofit-0.5.0"
PETROFIT_SDIST = Path(__file__).resolve().parent / "data" / f"{PETROFIT}.tar.gz"
HFF_SCALE = 0.06
HFF_PSF = "f105w_psf.fits.gz"
#: The AB zero point of the F105W mosaic, from the PHOTFLAM and PHOTPLAM its cutouts record
#: (the spiral's cutout lost those keywords; it shares the mosaic's WCS reference point).
HFF_ZERO_POINT = -2.5 * math.log10(3.03865739999999e-20) - 5 * math.log10(10551.047) - 2.408


@dataclass(frozen=True)
class Target:
    """A real galaxy: its image (in ``mgefit/images``, or petrofit's ``docs/data`` where
    ``source`` says so), pixel scale, PSF (a GalSim profile, or the name of a PSF image beside
    the image, which the tool then reads too), the sky level of the file in its counts (None:
    mgefit's ``sky_level`` as its example takes it), its 0-based position, the half-size
    (source pixels) of the window the fitters read, and an AB zero point for a file that
    lacks its calibration."""

    name: str
    file: str
    pixel_scale: float
    psf: galsim.GSObject | str
    sky: float | None
    x: float
    y: float
    half_size: int
    quick: bool = False
    source: str = "mgefit"
    zero_point: float | None = None


TARGETS = (
    Target("M32 (INT I)", "m32_i.fits", 0.549, INT_PSF, None, 184.6, 376.0, 190),
    # The example adds 20.39 counts back: the pipeline over-subtracted the sky.
    Target("M32 (WFPC2 PC1 F814W)", "m32_f814w_pc.fits", PC_SCALE, PC_F814W_PSF, -20.39,
           316.6, 377.3, 378),
    Target("NGC 4342", "ngc4342_f814w_pc.fits", PC_SCALE, PC_F814W_PSF, 0.55, 370.1, 350.3,
           378, quick=True),
    Target("NGC 5831", "ngc5831_f702w_mosaic.fits", 0.1, MOSAIC_PSF, None, 967.3, 969.2, 700),
    Target("NGC 5831 field: elliptical", "ngc5831_f702w_mosaic.fits", 0.1, MOSAIC_PSF, None,
           1407.8, 357.9, 150, quick=True),
    # Positions are the tool's detections (detect_galaxies); the dwarf's is petrofit's own.
    *(Target(name, f"abell_2744_{file}_f105w.fits.gz", HFF_SCALE, HFF_PSF, 0.0, x, y, half,
             quick, "petrofit", HFF_ZERO_POINT) for name, file, x, y, half, quick in (
        ("Abell 2744 cD galaxy", "cd_galaxy", 193.9, 196.6, 190, False),
        ("Abell 2744 cD field: elliptical", "cd_galaxy", 198.4, 348.3, 50, False),
        ("Abell 2744 dwarf", "dwarf_galaxy", 138.6, 89.3, 60, True),
        ("Abell 2744 group: north", "group_of_galaxies", 43.3, 69.3, 30, False),
        ("Abell 2744 group: south", "group_of_galaxies", 69.7, 30.2, 30, False),
        ("Abell 2744 spiral", "spiral_galaxy", 78.1, 74.3, 72, False))),
)


def _require():
    missing = [pip for module, pip in OPTIONAL.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        sys.exit(f"real_galaxies.py needs {', '.join(missing)}: "
                 "pip install -e \".[benchmark]\"")


def _sky(target: Target, raw: np.ndarray, bad: np.ndarray) -> float:
    if target.sky is not None:
        return target.sky
    import mgefit

    use = ~bad
    if target.file.startswith("ngc5831"):
        yy, xx = np.indices(raw.shape)
        use &= np.hypot(xx - MOSAIC_NEIGHBOUR[0], yy - MOSAIC_NEIGHBOUR[1]) \
            > MOSAIC_NEIGHBOUR_RADIUS
    sky, _ = mgefit.sky_level(raw[use], quiet=True)
    return float(sky)


def _values(profile_fit: fitters.Fit | None, scale_flux: float) -> dict:
    if profile_fit is None:
        return {"re": math.nan, "flux": math.nan, "bt": math.nan}
    return {"re": profile_fit.re_arcsec, "flux": profile_fit.flux * scale_flux,
            "bt": profile_fit.bt}


def _imfit(window: fitters.Window, guess: fitters.Growth, bulge_disk: bool) -> dict:
    """Imfit's PSF-convolved Sérsic, or n=4 + n=1 Sérsics sharing a centre."""
    import pyimfit

    x, y = window.centre[0] + 1, window.centre[1] + 1  # Imfit counts pixels from 1
    r_e = max(guess.r50_arcsec / window.scale, 1.0) if guess.r50_arcsec > 0 else 5.0
    flux = guess.flux if guess.flux > 0 else float(window.data[window.segment].sum())

    def sersic(n, fixed, share, size):
        i_e = share * flux / fitters.sersic_total_flux(1.0, size, n, 0.8)
        return ["FUNCTION Sersic", "PA 0 -360,360", "ell 0.2 0,0.95",
                f"n {n} {'fixed' if fixed else '0.3,8'}", f"I_e {i_e} 0,{i_e * 1e4}",
                f"r_e {size} 0.05,{size * 30}"]

    lines = [f"X0 {x} {x - 5},{x + 5}", f"Y0 {y} {y - 5},{y + 5}"]
    if bulge_disk:
        lines += sersic(4, True, 0.5, 0.5 * r_e) + sersic(1, True, 0.5, 1.2 * r_e)
    else:
        lines += sersic(2, False, 1.0, r_e)
    fitter = pyimfit.Imfit(pyimfit.parse_config(lines), psf=window.psf_image())
    fitter.fit(window.data, error=window.sigma, mask=window.mask.astype(np.int32),
               solver="LM")
    params = fitter.getRawParameters()
    total, per_function = fitter.getModelFluxes()
    profiles = []
    for k, component_flux in enumerate(per_function):
        pa, ell, n, _, r = params[2 + 5 * k: 7 + 5 * k]
        profiles.append(fitters.sersic_profile(component_flux, r * window.scale, n, 1 - ell,
                                               pa + 90.0))
    model = galsim.Sum(profiles) if len(profiles) > 1 else profiles[0]
    hint = max(params[6::5]) * window.scale
    return {"re": fitters.circular_half_light_radius(model, hint), "flux": float(total),
            "bt": float(per_function[0] / total) if bulge_disk else math.nan,
            "converged": bool(fitter.fitConverged)}


def _statmorph(window: fitters.Window) -> dict:
    """statmorph's PSF-convolved Sérsic (its model-free r_half beside it)."""
    import statmorph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        morph = statmorph.SourceMorphology(window.data, window.segment.astype(np.int32), 1,
                                           mask=window.mask & ~window.segment,
                                           weightmap=window.sigma, psf=window.psf_image())
        r, n, ellip, amplitude = (morph.sersic_rhalf, morph.sersic_n, morph.sersic_ellip,
                                  morph.sersic_amplitude)
        flag = int(morph.flag_sersic)
    if flag or not np.isfinite([r, n, ellip, amplitude]).all():
        return {"re": math.nan, "flux": math.nan, "bt": math.nan, "flag_sersic": flag}
    q = 1 - ellip
    flux = fitters.sersic_total_flux(amplitude, r, n, q)
    profile = fitters.sersic_profile(flux, r * window.scale, n, q)
    return {"re": fitters.circular_half_light_radius(profile, r * window.scale),
            "flux": flux, "bt": math.nan, "flag_sersic": flag}


def _tool(image, x: float, y: float, model) -> dict:
    """The tool's answer: its modes and 95 % intervals, flags, binning, or why it refused."""
    try:
        m = analyse_position(image, x, y, model, seed=0, return_crops=False)
    except InputError as exc:  # no stamp it will measure at (x, y): a refusal
        nan3 = [math.nan] * 3
        return {"error": user_message(exc), "flags": [], "warned": True,
                "binning": math.nan, "re_arcsec": nan3, "flux_njy": nan3, "bt": nan3}
    out = {"error": m.error, "flags": describe_flags(m.flags), "warned": bool(
        m.error or m.flags & WARNING_FLAGS), "binning": float(getattr(m.stamp, "binning", 1.0))}
    for name in ("re_arcsec", "flux_njy", "bt"):
        out[name] = [m.summary.get(f"{name}_{s}", math.nan) for s in ("mode", "lo95", "hi95")]
    return out


def _agreement(row: dict) -> None:
    """Fitters' consensus and whether the tool matches it (in place)."""
    fits = row["fitters"]
    tool = row["tool"]
    for key, tool_key, tol in (("re", "re_arcsec", RE_TOLERANCE),
                               ("flux", "flux_njy", FLUX_TOLERANCE)):
        values = np.array([f[key] for f in fits.values()], float)
        values = values[np.isfinite(values)]
        if key == "flux" and not row["calibrated"] or values.size < 2:
            row[f"{key}_reference"] = math.nan
            row[f"{key}_fitters_agree"] = None
            row[f"{key}_tool_agrees"] = None
            continue
        ref = float(np.median(values))
        row[f"{key}_reference"] = ref
        row[f"{key}_fitters_agree"] = bool(np.all(np.abs(values / ref - 1) <= tol))
        mode, lo, hi = tool[tool_key]
        row[f"{key}_tool_agrees"] = (not tool["error"] and bool(
            lo <= ref <= hi or abs(mode / ref - 1) <= tol))
    bt_ref = fits["imfit B+D"]["bt"]
    lo, hi = tool["bt"][1:]
    row["bt_tool_agrees"] = (not tool["error"] and np.isfinite(bt_ref)
                             and bool(lo <= bt_ref <= hi))
    agree = [row["re_fitters_agree"]] + ([row["flux_fitters_agree"]]
                                         if row["calibrated"] else [])
    row["fitters_agree"] = all(a is True for a in agree)
    confirmed = [row["re_tool_agrees"]] + ([row["flux_tool_agrees"]]
                                           if row["calibrated"] else [])
    row["tool_confirmed"] = row["fitters_agree"] and all(c is True for c in confirmed)


def unpack_petrofit(sdist: Path, folder: Path) -> Path | None:
    """petrofit's ``docs/data`` FITS files, extracted into ``folder`` (None: no sdist)."""
    if not sdist.is_file():
        return None
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers()
                   if m.name.startswith(f"{PETROFIT}/docs/data/") and ".fits" in m.name]
        archive.extractall(folder, members=members, filter="data")
    return folder / PETROFIT / "docs" / "data"


def _psf_profile(psf_path: Path, scale: float) -> galsim.GSObject:
    """A PSF image as a GalSim profile for the fitters (it holds the pixel's response too,
    which the fitters' drawing adds again: 4 % in FWHM at 0.06"/px, negligible here)."""
    psf = fits.getdata(psf_path).astype(float)
    return galsim.InterpolatedImage(galsim.Image(psf / psf.sum(), scale=scale))


def tool_image(target: Target, folders: dict[str, Path]):
    """``(image, target, fwhm)``: the target's file as the tool reads it, PSF given or read
    from its PSF image, and the target with its PSF as a GalSim profile for the fitters. A
    file the fitters are told has sky 0 (HFF's sky-subtracted mosaics) the tool is told so
    too (``--sky-subtracted``)."""
    path = folders[target.source] / target.file
    told = dict(pixel_scale=target.pixel_scale, zero_point=target.zero_point,
                sky_subtracted=target.sky == 0.0)
    if isinstance(target.psf, str):
        psf_path = folders[target.source] / target.psf
        target = replace(target, psf=_psf_profile(psf_path, target.pixel_scale))
        image = read_image(path, psf=psf_path, **told)
        return image, target, float(image.psf_fwhm)
    image = read_image(path, **told)
    fwhm = float(target.psf.calculateFWHM(scale=target.pixel_scale / 10))
    return image.with_psf(fwhm, "given"), target, fwhm


def njy_per_count(image, raw: np.ndarray) -> float:
    """The tool's calibration of a file's counts ``raw`` (its ``image``), in nJy per count."""
    bad = ~np.isfinite(raw) | (raw == 0)
    return float(np.median(image.data[~bad] / raw[~bad]))


def measure(target: Target, model, folders: dict[str, Path]) -> dict:
    """One galaxy through the tool and every fitter (``folders``: each source's images)."""
    raw = fits.getdata(folders[target.source] / target.file).astype(float)
    image, target, fwhm = tool_image(target, folders)
    bad = ~np.isfinite(raw) | (raw == 0)
    data = (raw - _sky(target, raw, bad)) * njy_per_count(image, raw)
    window = fitters.cut_window(data, fitters.noise_variance(data, bad), bad, target.x,
                                target.y, target.half_size, target.pixel_scale, target.psf)
    growth = fitters.curve_of_growth(window, *window.centre)
    sersic = fitters.fit_sersic(window)
    bulge_disk = fitters.fit_bulge_disk(window, sersic)
    where = "mgefit/images" if target.source == "mgefit" else f"{PETROFIT}/docs/data"
    row = {"name": target.name, "image": f"{where}/{target.file}",
           "calibrated": bool(image.calibrated), "psf_fwhm_arcsec": fwhm,
           "window_binning": window.binning,
           "fitters": {"imfit Sersic": _imfit(window, growth, False),
                       "imfit B+D": _imfit(window, growth, True),
                       "statmorph Sersic": _statmorph(window),
                       "GalSim Sersic": _values(sersic, 1.0) | {"n": sersic.n},
                       "GalSim B+D": _values(bulge_disk, 1.0)},
           "curve_of_growth": {"r50": growth.r50_arcsec, "flux": growth.flux,
                               "converged": growth.converged,
                               "sky_from_annulus": bool(np.isfinite(growth.sky))},
           "tool": _tool(image, target.x, target.y, model)}
    _agreement(row)
    return row


def hdf_rows(model, count: int) -> list[dict]:
    """The HDF colour JPEG: the tool must refuse it (no fitter runs on a stretched image)."""
    path = resources.files("skimage") / "data" / "hubble_deep_field.jpg"
    image = read_image(path)
    rows = []
    for x, y, _ in detect_galaxies(image)[:count]:
        rows.append({"name": f"HDF galaxy at ({x:.0f}, {y:.0f})",
                     "image": "skimage/data/hubble_deep_field.jpg", "calibrated": False,
                     "fitters": {}, "tool": _tool(image, x, y, model),
                     "fitters_agree": False, "tool_confirmed": False})
    return rows


def _fmt(value, digits=4):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def _yes(value):
    return {True: "yes", False: "no", None: "n/a"}[value]


def print_row(row: dict) -> None:
    tool = row["tool"]
    print(f"\n{row['name']}  [{row['image']}]")
    if row["fitters"]:
        cog = row["curve_of_growth"]
        for key, tool_key, unit in (("re", "re_arcsec", 'R_e ["]'),
                                    ("flux", "flux_njy", "flux [nJy]")):
            if key == "flux" and not row["calibrated"]:
                print(f"  {unit:11s} not compared: the image has no flux calibration")
                continue
            fits = "  ".join(f"{name} {_fmt(f[key])}" for name, f in row["fitters"].items())
            mode, lo, hi = tool[tool_key]
            cog_value = cog["r50" if key == "re" else "flux"]
            print(f"  {unit:11s} {fits}  | CoG {_fmt(cog_value)}"
                  f"{'' if cog['converged'] else ' (lower limit)'}"
                  f" | tool {_fmt(mode)} [{_fmt(lo)}, {_fmt(hi)}]"
                  f" | fitters agree {_yes(row[f'{key}_fitters_agree'])},"
                  f" tool agrees {_yes(row[f'{key}_tool_agrees'])}")
        mode, lo, hi = tool["bt"]
        print(f"  {'B/T':11s} imfit B+D {_fmt(row['fitters']['imfit B+D']['bt'], 3)}  "
              f"GalSim B+D {_fmt(row['fitters']['GalSim B+D']['bt'], 3)}"
              f" | tool {_fmt(mode, 3)} [{_fmt(lo, 3)}, {_fmt(hi, 3)}]"
              f" | inside {_yes(row['bt_tool_agrees'])}")
    print(f"  tool: {'refused: ' + tool['error'] if tool['error'] else 'measured'}; "
          f"flags {','.join(tool['flags']) or '-'}; binning {_fmt(tool['binning'])}; "
          f"said so where unconfirmed: {_yes(tool['warned'] if not row['tool_confirmed'] else None)}")


def summary(rows: list[dict]) -> dict:
    """The done-when fractions of issue #16."""
    agreeing = [r for r in rows if r["fitters_agree"]]
    calibrated = [r for r in agreeing if r["calibrated"]]
    unconfirmed = [r for r in rows if not r["tool_confirmed"]]

    def fraction(subset, test):
        return [sum(bool(test(r)) for r in subset), len(subset)]

    return {"galaxies": len(rows), "fitted": sum(bool(r["fitters"]) for r in rows),
            "fitters_agree": len(agreeing),
            "re_tool_agrees": fraction(agreeing, lambda r: r["re_tool_agrees"]),
            "flux_tool_agrees": fraction(calibrated, lambda r: r["flux_tool_agrees"]),
            "bt_inside_95": fraction(agreeing, lambda r: r["bt_tool_agrees"]),
            "said_so_where_unconfirmed": fraction(unconfirmed, lambda r: r["tool"]["warned"])}


def _ratio(pair):
    return f"{pair[0]}/{pair[1]}" + (f" ({100 * pair[0] / pair[1]:.0f} %)" if pair[1] else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few galaxies only")
    parser.add_argument("--out", type=Path, help="write every row and the summary as JSON")
    parser.add_argument("--model", default=None, help="morphology bundle (default: shipped)")
    parser.add_argument("--petrofit", type=Path, default=PETROFIT_SDIST,
                        help=f"petrofit's source distribution (default: {PETROFIT_SDIST})")
    args = parser.parse_args(argv)
    _require()
    start = time.perf_counter()
    try:
        model = load_model(args.model)
    except Exception as exc:  # a bad --model is the user's: one line
        sys.exit(user_message(exc))
    targets = [t for t in TARGETS if t.quick or not args.quick]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = {"mgefit": Path(str(resources.files("mgefit") / "images"))}
        petrofit = unpack_petrofit(args.petrofit, Path(tmp))
        if petrofit is None:
            print(f"{args.petrofit} not found: the Abell 2744 galaxies are skipped (pip "
                  "download --no-deps --no-binary :all: petrofit==0.5.0 -d benchmarks/data)")
            targets = [t for t in targets if t.source != "petrofit"]
        else:
            folders["petrofit"] = petrofit
        for target in targets:
            rows.append(measure(target, model, folders))
            print_row(rows[-1])
    for row in hdf_rows(model, 1 if args.quick else HDF_GALAXIES):
        rows.append(row)
        print_row(row)
    s = summary(rows)
    print(f"\n{s['galaxies']} galaxies ({s['fitted']} fitted); fitters agree on "
          f"{s['fitters_agree']}: tool R_e agrees {_ratio(s['re_tool_agrees'])}, flux "
          f"{_ratio(s['flux_tool_agrees'])}, fitters' B/T inside its 95 % interval "
          f"{_ratio(s['bt_inside_95'])}; where not confirmed it said so (refusal or "
          f"{'/'.join(f.name for f in Flag if f & WARNING_FLAGS)}) "
          f"{_ratio(s['said_so_where_unconfirmed'])}  [{time.perf_counter() - start:.0f} s]")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": s}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
