"""The ``galaxy-inspector`` command: GUI, headless ``--batch``, ``--screenshot``, ``--export``.

Exit status: 0 all inputs succeeded; 2 the run finished but some inputs failed (each has an
error row) or some rows lack a property model's prediction (reason in ``property_error``, e.g.
no redshift); 1 it could not run (bad option, unreadable model, unwritable output), with a
one-line message and no traceback (an INPUT given on the command line that does not exist is
one of these; a missing path inside a table gets an error row); 130 interrupted (finish with
``--resume``).

``--model`` may be repeated: one morphology bundle plus physical-property bundles (or property
bundles alone); each bundle's card says which it is.

The GUI is imported only when needed: ``galaxy_inspector.gui.app.main(files) -> int`` opens the
window and ``galaxy_inspector.gui.app.screenshot(out, files) -> int`` saves one.
"""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
import time

from galaxy_inspector import __version__
from galaxy_inspector.errors import GalaxyInspectorError, printable
from galaxy_inspector.parallel import usable_cores
from galaxy_inspector.progress import RateEstimate, bar, batch_line

__all__ = ["main", "build_parser"]

EPILOG = """\
examples:
  galaxy-inspector                                open the app
  galaxy-inspector m51.fits                       open an image in the app
  galaxy-inspector --batch cutouts/ --out cat.h5  measure every image in a folder (recursive)
  galaxy-inspector --batch targets.csv --out cat.h5 --save-samples --workers 2
        targets.csv has a 'path' column and optionally 'id', 'ra'/'dec' (deg) or 'x'/'y'
        (0-based pixels: FITS/DS9 pixel X is x = X - 1); relative paths are relative to the table
  galaxy-inspector --batch field.fits --detect --out field.h5   find and measure all galaxies
  galaxy-inspector --batch targets.csv --out cat.h5 --model morphology-hsc-g \\
      --model properties-dobbels-sim
        morphology plus physical properties (repeat --model); each row's redshift comes
        from the table's 'z' or 'redshift' column (or the one --redshift-column names)
  galaxy-inspector --batch cutouts/ --out met.h5 --model bundles/sdss-metallicity
        property model only (colour JPEG cutouts for a model trained on JPEGs)
  galaxy-inspector --batch hst/ --out cat.h5 --psf-fwhm 0.1     the images' PSF FWHM (arcsec)
  galaxy-inspector --batch field.fits --detect --out f.h5 --psf stars
        measure the PSF on the field's stars (or --psf PSF.fits, a PSF image); the
        psf_fwhm_arcsec and psf_source columns say what each row used
  galaxy-inspector --batch cutouts/ --out cat.h5 --resume       finish a killed/interrupted run
  galaxy-inspector --batch cutouts/ --out cat.h5 --resume --retry-errors
        also measure the inputs of error rows again (after fixing them)
  galaxy-inspector --batch cutouts/ --out cat.h5 --cluster local:8
        on a Dask cluster: local:N worker processes, tcp://HOST:PORT or a scheduler file
        (dask scheduler / dask worker), or slurm|pbs|sge|lsf|htcondor (dask-jobqueue from
        ~/.config/dask/jobqueue.yaml, --cluster-jobs N); rows come in completion order
  galaxy-inspector --export cat.h5 cat.fits       catalogue to FITS (.fits .csv .ecsv .vot .h5)
  galaxy-inspector --export cat.h5 cat.reg        DS9 regions: circles of R_e with id, label,
        B/T; sky coordinates where rows have ra/dec, else image pixels (1-based, as DS9)
  galaxy-inspector --export cat.h5 --samp         send it to TOPCAT/Aladin/DS9 over SAMP
  python -c "from astropy.table import Table; print(Table.read('cat.h5', path='galaxies'))"

images: FITS (.fits .fit .fits.gz .fz; cubes, HSC IMAGE/MASK/VARIANCE, SDSS nanomaggies,
HST PHOTFLAM, BUNIT, zero-point keywords) and JPEG/PNG colour cutouts (rough, flagged).
property models: each target NAME gets NAME_mode/_median/_mean/_lo68/_hi68/.../_hi997 columns;
multi-band models read the planes of a FITS cube by band name (BAND1.., FILTERS) or a JPEG's
R, G, B channels; a row a model cannot predict (no redshift, missing band) keeps NaN there and
the reason in property_error. Demo bundles (trained on synthetic labels) are named in the
catalogue's demo_models/demo_warning attributes.
exit status: 0 all ok, 2 finished with failed inputs (see the status/error columns) or rows
without some property prediction (property_error), 1 could not run, 130 interrupted.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 1 and a one-line message on a bad option."""

    def error(self, message):
        self.exit(1, f"galaxy-inspector: error: {message} (see --help)\n")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive and finite")
    return value


def _hdu(text):
    return int(text) if text.lstrip("-").isdigit() else text


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="galaxy-inspector", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Inspect galaxies and measure calibrated Bayesian posteriors of their "
                            "morphology (bulge-to-total ratio, effective radius, flux) and "
                            "image-based estimates of physical properties.",
                epilog=EPILOG)
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="images to open; with --batch: images, folders or position tables")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--batch", action="store_true",
                      help="measure the inputs headless into the HDF5 catalogue --out")
    mode.add_argument("--screenshot", metavar="OUT.png",
                      help="open the app with FILEs, predict, save a screenshot and exit")
    mode.add_argument("--export", nargs="+", metavar=("CAT.h5", "OUT"),
                      help="write a catalogue's galaxies to FITS, CSV, ECSV, VOTable or HDF5, "
                           "with units and provenance, or to DS9 regions (OUT.reg); with "
                           "--samp instead of OUT: send it to the running SAMP hub")
    p.add_argument("--samp", action="store_true",
                   help="with --export CAT.h5: send the catalogue as a VOTable to the SAMP "
                        "clients (TOPCAT, Aladin, DS9) and exit; 1 when no hub is running")
    p.add_argument("--region-shape", choices=("circle", "box"), default="circle",
                   help="with --export CAT.h5 OUT.reg: circles of radius R_e (default) or "
                        "the boxes the spatial transformer cropped")
    b = p.add_argument_group("batch options")
    b.add_argument("--out", metavar="CAT.h5", help="the HDF5 catalogue to write")
    b.add_argument("--model", metavar="PATH|NAME", action="append",
                   help="model bundle folder or shipped name (default: morphology-hsc-g, or "
                        "morphology-display-sdss when every INPUT is a JPEG/PNG file); "
                        "repeat to add physical-property models (one morphology model at "
                        "most; property models alone run without morphology)")
    b.add_argument("--samples", type=int, metavar="N",
                   help="posterior samples per galaxy (default: the model's calibrated number)")
    b.add_argument("--save-samples", action="store_true",
                   help="store all posterior samples in /posterior_samples")
    b.add_argument("--resume", action="store_true",
                   help="complete an existing catalogue: skip inputs it already holds")
    b.add_argument("--retry-errors", action="store_true",
                   help="with --resume: measure the inputs of error rows again (their new rows "
                        "replace the old ones)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing catalogue")
    b.add_argument("--workers", type=int, default=min(2, usable_cores()), metavar="N",
                   help="processes reading and cutting images while the model runs "
                        "(default: 2, or 1 on a single core)")
    b.add_argument("--pixel-scale", type=_positive_float, metavar="ARCSEC",
                   help="arcsec per pixel; replaces a FITS file's own (WCS or keyword: the "
                        "WCS is rescaled, and the calibration column says so), and gives one "
                        "to images without (JPEG default 0.396)")
    b.add_argument("--zero-point", type=float, metavar="ZP",
                   help="AB zero point of the pixel values for images without calibration")
    b.add_argument("--psf-fwhm", type=_positive_float, metavar="ARCSEC",
                   help="FWHM of every image's PSF, arcsec (default: --psf, else the header's "
                        "SEEING, PSF_FWHM, FWHM... keyword, else unknown); a PSF sharper than "
                        "the model's training range is matched to it, a broader one flagged")
    b.add_argument("--psf", metavar="PSF.fits|stars",
                   help="a FITS image of the PSF (its FWHM is fitted; its pixel scale is its "
                        "own or the image's), or 'stars': measure each image's PSF on its "
                        "isolated stars (an image with fewer than 3 gets error rows)")
    b.add_argument("--sky-subtracted", action="store_true",
                   help="every image's sky is 0 (a pipeline took it off): measure none, "
                        "e.g. for a cutout too small to hold sky of its own (FITS only)")
    b.add_argument("--hdu", type=_hdu, metavar="N|NAME",
                   help="FITS HDU to read (default: the first image HDU)")
    b.add_argument("--plane", type=int, default=0, metavar="N",
                   help="plane (band) of 3-D FITS cubes to measure, counting from 0 (default 0)")
    b.add_argument("--detect", action="store_true",
                   help="find galaxies in each image (segmentation + deblending) and measure "
                        "each, instead of one galaxy at the centre")
    b.add_argument("--detect-min-area", type=_positive_float, metavar="ARCSEC2",
                   help="with --detect: the least area of a source, arcsec² (at least 10 "
                        "pixels; default: two PSF beams, 20 pixels at any pixel scale)")
    b.add_argument("--redshift-column", metavar="NAME",
                   help="table column with each object's redshift, for property models that "
                        "need one (default: 'z' or 'redshift')")
    b.add_argument("--cluster", metavar="ADDRESS",
                   help="measure on a Dask cluster: local:N, tcp://HOST:PORT, a scheduler "
                        "file, or slurm|pbs|sge|lsf|htcondor (dask-jobqueue); needs pip "
                        "install 'galaxy-inspector[cluster]'")
    b.add_argument("--cluster-jobs", type=int, default=1, metavar="N",
                   help="with --cluster slurm|pbs|...: batch jobs to start (default 1)")
    b.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    b.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--version", action="version", version=f"galaxy-inspector {__version__}")
    return p


class _Usage(Exception):
    """A bad combination of options (exit status 1)."""


class _ProgressBar:
    """A one-line progress bar on stderr (only on a terminal) over ``total`` inputs."""

    def __init__(self, stream, total: int):
        self.stream = stream
        self.total = max(1, total)
        self.last = 0.0
        self.estimate = RateEstimate()

    def __call__(self, p) -> None:
        self.estimate.observe(p.inputs, p.elapsed)
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        answered = p.inputs + p.skipped
        left = self.estimate.seconds_left(self.total - answered)
        self.stream.write(f"\r\033[K{bar(answered / self.total)} "
                          f"{batch_line(p, self.total, left)} ")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\033[K")
        self.stream.flush()


def _run_batch(args, argv) -> int:
    from galaxy_inspector.batch import BatchOptions, run_batch

    if not args.files:
        raise _Usage("--batch needs at least one INPUT (image, folder or table)")
    if not args.out:
        raise _Usage("--batch needs --out CATALOGUE.h5")
    options = BatchOptions(model=args.model, n_samples=args.samples,
                           save_samples=args.save_samples, resume=args.resume,
                           retry_errors=args.retry_errors,
                           overwrite=args.overwrite, workers=args.workers,
                           pixel_scale=args.pixel_scale, zero_point=args.zero_point,
                           hdu=args.hdu, plane=args.plane, detect=args.detect,
                           detect_min_area=args.detect_min_area,
                           psf_fwhm=args.psf_fwhm, psf=args.psf,
                           sky_subtracted=args.sky_subtracted, seed=args.seed, redshift_column=args.redshift_column,
                           cluster=args.cluster, cluster_jobs=args.cluster_jobs,
                           command_line=printable(shlex.join(["galaxy-inspector", *argv])))
    if hasattr(signal, "SIGXFSZ"):  # a file-size limit is then an error we report, not a kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    bar = None
    if sys.stderr.isatty() and not args.quiet:
        from galaxy_inspector.io import expand_inputs

        bar = _ProgressBar(sys.stderr, sum(1 for _ in expand_inputs(args.files)))

    dashboard_shown = False

    def progress(p) -> None:
        nonlocal dashboard_shown
        if p.dashboard and not args.quiet and not dashboard_shown:  # reported before any row
            print(f"Dask dashboard: {p.dashboard}", file=sys.stderr)
            dashboard_shown = True
        if bar:
            bar(p)

    try:
        result = run_batch(args.files, args.out, options, progress=progress)
    finally:
        if bar:
            bar.close()
    if not args.quiet:
        out = printable(args.out)  # one line, whatever the name holds
        partial = f" ({result.partial} without some model's columns)" if result.partial else ""
        print(f"{result.done} done{partial}, {result.failed} failed, {result.skipped} skipped "
              f"in {result.elapsed:.1f} s ({result.rate:.1f} galaxies/s) -> {out}",
              file=sys.stderr)
        if result.failed:
            print(f"failed inputs have status=error and a reason in the 'error' column of "
                  f"{out}", file=sys.stderr)
        if result.partial:
            print(f"rows without some model's predictions say why in the 'property_error' "
                  f"column (property models) or the 'error' column (morphology) of {out}",
                  file=sys.stderr)
        for note in result.notes:
            print(printable(note), file=sys.stderr)
    return 2 if result.failed or result.partial else 0


def _export(args) -> int:
    """``--export CAT.h5 OUT`` (a table or DS9 regions) or ``--export CAT.h5 --samp``."""
    if len(args.export) != (1 if args.samp else 2):
        raise _Usage("use --export CAT.h5 OUT (a table or .reg file) or --export CAT.h5 --samp")
    if args.samp:
        from galaxy_inspector.interop.samp import delivery_line, send_catalogue_to_hub

        deliveries = send_catalogue_to_hub(args.export[0])
        print(printable(delivery_line(args.export[0], deliveries)), file=sys.stderr)
        return 0 if any(d.accepted for d in deliveries) else 1
    from galaxy_inspector.catalogue import export_catalogue, export_note

    n = export_catalogue(*args.export, region_shape=args.region_shape)
    if not args.quiet:
        note = export_note(args.export[1])
        what = "regions" if args.export[1].lower().endswith(".reg") else "rows"
        print(f"{n} {what} -> {args.export[1]}{f' ({note})' if note else ''}", file=sys.stderr)
    return 0


def _gui(entry: str, *args) -> int:
    from galaxy_inspector.gui_requirements import gui_start_problem

    problem = gui_start_problem()
    if problem:
        print(f"galaxy-inspector: error: {problem}", file=sys.stderr)
        return 1
    try:
        from galaxy_inspector.gui import app
    except ImportError as exc:
        print(f"galaxy-inspector: the desktop app cannot start ({exc}); --batch works "
              "without it", file=sys.stderr)
        return 1
    return int(getattr(app, entry)(*args) or 0)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.batch:
            return _run_batch(args, argv)
        if args.export:
            return _export(args)
        if args.screenshot:
            return _gui("screenshot", args.screenshot, args.files)
        return _gui("main", args.files)
    except (GalaxyInspectorError, _Usage) as exc:
        print(f"galaxy-inspector: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ngalaxy-inspector: interrupted; rows written so far are kept, add --resume "
              "to finish", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
