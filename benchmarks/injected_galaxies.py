"""Galaxies of known truth on the real images of ``real_galaxies.py``, where the real ones sit.

On a real image nobody knows the truth, so when the tool and the fitters disagree the
benchmark cannot say which is wrong. Here GalSim galaxies like a real target (its fitters'
median R_e and flux; a de Vaucouleurs, a bulge + disk of B/T 0.85 and an exponential) are
drawn through the image's PSF and added to the real file at the target's distance from the
big galaxy beside it (``ENVIRONMENTS``: rotated about that galaxy's centre), the file is
written again with its header, and ``real_galaxies.measure`` runs the tool and every fitter
on it exactly as on the real galaxy. Printed per profile: the truth, then the tool's and each
fitter's R_e and flux over the truth and B/T, medians over the positions.

    nice -n 10 python benchmarks/injected_galaxies.py [--angles 3] [--out results.json]

Needs what ``real_galaxies.py`` needs (the ``benchmark`` extra, petrofit's sdist for the
Abell 2744 image).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import galaxy_fitters as fitters  # noqa: E402
import real_galaxies as real  # noqa: E402

#: Target name -> (x, y) of the big galaxy whose halo it sits on (0-based file pixels), and
#: the R_e (arcsec) and flux (nJy) its galaxies are injected with (the fitters' medians).
ENVIRONMENTS = {
    "NGC 5831 field: elliptical": ((967.3, 969.2), 3.2, 1.09e6),
    "Abell 2744 cD field: elliptical": ((193.9, 196.6), 0.70, 6.0e4),
}
#: Where the injected galaxy goes: this far round from the real one, and on.
FIRST_ANGLE_DEG, ANGLE_STEP_DEG = 60.0, 75.0
AXIS_RATIO = 0.8
#: Half side of the drawn stamp in half-light radii (a de Vaucouleurs holds 99 % within 20;
#: the truth is the whole profile).
DRAWN_EXTENT = 20.0


def re_of(profile: galsim.GSObject) -> float:
    """The circular half-light radius (arcsec) of an injected profile."""
    return fitters.circular_half_light_radius(profile, profile.calculateHLR())


def profiles(re: float, flux: float) -> dict[str, tuple[galsim.GSObject, float]]:
    """Name -> (intrinsic profile, true B/T), each of half-light radius about ``re``."""
    return {
        "de Vaucouleurs": (galsim.DeVaucouleurs(half_light_radius=re, flux=flux), 1.0),
        "bulge + disk 0.85": (galsim.DeVaucouleurs(half_light_radius=0.8 * re, flux=0.85 * flux)
                              + galsim.Exponential(half_light_radius=1.8 * re,
                                                   flux=0.15 * flux), 0.85),
        "exponential": (galsim.Exponential(half_light_radius=re, flux=flux), 0.0),
    }


def positions(target: real.Target, centre, n: int, shape) -> list[tuple[float, float]]:
    """``n`` positions at the target's distance from ``centre``, inside the image and clear of
    the real galaxy by the fitters' window."""
    dx, dy = target.x - centre[0], target.y - centre[1]
    radius, start = math.hypot(dx, dy), math.atan2(dy, dx)
    ny, nx = shape
    out = []
    for k in range(60):
        angle = start + math.radians(FIRST_ANGLE_DEG + k * ANGLE_STEP_DEG)
        x, y = centre[0] + radius * math.cos(angle), centre[1] + radius * math.sin(angle)
        margin = target.half_size
        clear = math.hypot(x - target.x, y - target.y) > 2 * margin  # of the real galaxy
        if clear and margin <= x < nx - margin and margin <= y < ny - margin:
            out.append((x, y))
        if len(out) == n:
            break
    return out


def inject(target: real.Target, folders, folder: Path, profile, re, x, y, psf,
           to_njy) -> Path:
    """The target's file with ``profile`` (nJy, half-light radius ``re`` arcsec) drawn through
    ``psf`` at (x, y) added, in the file's units; PSF images beside it are linked along."""
    source = folders[target.source] / target.file
    raw, header = fits.getdata(source, header=True)
    raw = raw.astype(np.float64)
    ny, nx = raw.shape
    drawn = galsim.Convolve(profile.shear(q=AXIS_RATIO, beta=0.5 * galsim.radians), psf)
    side = min(max(nx, ny), 2 * int(DRAWN_EXTENT * re / target.pixel_scale) + 1)
    stamp = drawn.drawImage(nx=side, ny=side, scale=target.pixel_scale,
                            center=galsim.PositionD(x + 1.0, y + 1.0))  # GalSim is 1-based
    image = galsim.ImageD(nx, ny, scale=target.pixel_scale)
    overlap = stamp.bounds & image.bounds
    image[overlap] += stamp[overlap]
    out = folder / target.file
    fits.writeto(out, (raw + image.array / to_njy).astype(np.float32), header, overwrite=True)
    if isinstance(target.psf, str) and not (folder / target.psf).exists():
        (folder / target.psf).symlink_to(folders[target.source] / target.psf)
    return out


def _ratios(row: dict, truth: dict) -> dict:
    """Per method, R_e and flux over the truth and B/T."""
    out = {"tool": {"re": row["tool"]["re_arcsec"][0] / truth["re"],
                    "flux": row["tool"]["flux_njy"][0] / truth["flux"],
                    "bt": row["tool"]["bt"][0], "error": row["tool"]["error"],
                    "flags": row["tool"]["flags"]}}
    for name, fit in row["fitters"].items():
        out[name] = {"re": fit["re"] / truth["re"], "flux": fit["flux"] / truth["flux"],
                     "bt": fit.get("bt", math.nan)}
    return out


def run(target: real.Target, model, folders, n_angles: int) -> list[dict]:
    centre, re, flux = ENVIRONMENTS[target.name]
    image, with_profile, _ = real.tool_image(target, folders)
    psf = with_profile.psf
    raw = fits.getdata(folders[target.source] / target.file).astype(np.float64)
    to_njy = real.njy_per_count(image, raw)
    rows = []
    for name, (profile, bt) in profiles(re, flux).items():
        truth = {"re": re_of(profile), "flux": flux, "bt": bt}
        for x, y in positions(target, centre, n_angles, raw.shape):
            with tempfile.TemporaryDirectory() as tmp:
                inject(target, folders, Path(tmp), profile, truth["re"], x, y, psf, to_njy)
                row = real.measure(replace(target, x=x, y=y), model,
                                   {**folders, target.source: Path(tmp)})
            rows.append({"target": target.name, "profile": name, "x": x, "y": y,
                         "truth": truth, "ratios": _ratios(row, truth)})
    return rows


def print_summary(rows: list[dict]) -> None:
    for target in dict.fromkeys(r["target"] for r in rows):
        print(f"\n{target}: injected at its distance from the big galaxy "
              "(R_e and flux over the truth, B/T; medians over the positions)")
        for profile in dict.fromkeys(r["profile"] for r in rows if r["target"] == target):
            these = [r for r in rows if r["target"] == target and r["profile"] == profile]
            truth = these[0]["truth"]
            print(f"  {profile} (R_e {truth['re']:.3g}″, B/T {truth['bt']:g}), "
                  f"{len(these)} positions")
            for method in these[0]["ratios"]:
                values = {k: np.nanmedian([r["ratios"][method][k] for r in these])
                          for k in ("re", "flux", "bt")}
                extra = ""
                if method == "tool":
                    refused = sum(bool(r["ratios"]["tool"]["error"]) for r in these)
                    extra = f"  refused {refused}" if refused else ""
                print(f"    {method:17s} R_e {values['re']:.2f}  flux {values['flux']:.2f}  "
                      f"B/T {values['bt']:.2f}{extra}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--angles", type=int, default=3, help="positions per profile")
    parser.add_argument("--out", type=Path, help="write every row as JSON")
    parser.add_argument("--petrofit", type=Path, default=real.PETROFIT_SDIST)
    args = parser.parse_args(argv)
    real._require()
    start = time.perf_counter()
    model = real.load_model(None)  # the shipped model
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = {"mgefit": Path(str(resources.files("mgefit") / "images"))}
        petrofit = real.unpack_petrofit(args.petrofit, Path(tmp))
        if petrofit is not None:
            folders["petrofit"] = petrofit
        for target in real.TARGETS:
            if target.name in ENVIRONMENTS and target.source in folders:
                rows += run(target, model, folders, args.angles)
    print_summary(rows)
    print(f"[{time.perf_counter() - start:.0f} s]")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
