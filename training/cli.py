"""``galaxy-inspector-train``: simulate, train, calibrate and evaluate Galaxy Inspector models."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from training import distributed
from training.cli_help import OptionHelpFormatter
from training.progress import Progress
from training.realism import PRESET

#: ``simulate``'s option (its ``args`` name) for each realism field of ``SimulationConfig``.
REALISM_OPTIONS = {"knots_fraction": "knots", "psf_variety": "psf_variety",
                   "neighbours_fraction": "neighbours", "masks_fraction": "masks",
                   "psf_known_fraction": "psf_known"}


def _simulate(args, progress):
    from training.simulate import SimulationConfig, simulate

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # a fresh user folder too
    simulate(args.out, n=args.n, seed=args.seed, workers=args.workers, progress=progress,
             config=SimulationConfig(broad_psf_fraction=args.broad_psf_fraction,
                                     small_fraction=args.small_fraction,
                                     **_realism_options(args)),
             cluster=args.cluster, cluster_jobs=args.cluster_jobs)
    progress.emit("done", out=args.out, n=args.n)


def _realism_options(args) -> dict:
    """The realism options given, over ``--realism``'s preset (``training.realism.PRESET``)."""
    given = {name: getattr(args, option) for name, option in REALISM_OPTIONS.items()}
    preset = PRESET if args.realism else {}
    return {name: preset[name] if value is None else value for name, value in given.items()
            if value is not None or name in preset}


def _train(args, progress):
    from training.train import TrainConfig, train

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, dropout=args.dropout, limit=args.limit,
                         device=args.device, init_from=args.init_from, noise=args.noise,
                         flux_skip=not args.no_flux_skip, psf_input=args.psf_input,
                         head_only=args.head_only)
    train(args.train, args.val, args.out, config, resume=not args.restart, progress=progress,
          stop_after=args.stop_after_epochs)


def _calibrate(args, progress):
    from training.calibrate import calibrate

    calibrate(args.bundle, args.val, n_galaxies=args.n, n_samples=args.samples,
              orientations=args.orientations, progress=progress,
              flux_priors=tuple(args.flux_priors))


def _evaluate(args, progress):
    from training.evaluate import evaluate

    evaluate(args.bundle, args.test, n_samples=args.samples, limit=args.limit,
             progress=progress)


def _adapt(args, progress):
    import signal

    from galaxy_inspector.errors import GalaxyInspectorError, user_message
    from training.adapt import AdaptOptions, adapt

    options = AdaptOptions(
        images=args.images, out=args.out, model=args.model, psf=args.psf,
        psf_fwhm=args.psf_fwhm, pixel_scale=args.pixel_scale, zero_point=args.zero_point,
        n=args.n, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
        samples=args.samples, device=args.device, workers=args.workers, name=args.name,
        keep_work=args.keep_work)
    # SIGTERM (the GUI's cancel, a batch system's limit) ends it like Ctrl-C: the finished
    # steps and the last epoch's checkpoint stay for --resume.
    signal.signal(signal.SIGTERM, progress.cancel)
    try:
        adapt(options, resume=args.resume, progress=progress)
        progress.check_cancelled()  # a cancel too late to stop a step still ends it so
    except GalaxyInspectorError as exc:
        raise ValueError(user_message(exc)) from None
    except KeyboardInterrupt:
        print("galaxy-inspector-train: adapt interrupted; run it again with --resume to "
              "continue from the last finished step", file=sys.stderr)
        raise SystemExit(130) from None


EPILOG = """\
The morphology model is made in four steps, each resumable (README, "Reproducing the shipped
model", gives the exact commands and seeds of the shipped bundle):

  1. simulate: a training, a validation and a test set
       galaxy-inspector-train simulate --n 36000 --seed 1 --out data/train.h5
       galaxy-inspector-train simulate --n 4000 --seed 2 --out data/val.h5
       galaxy-inspector-train simulate --n 4000 --seed 3 --out data/test.h5
  2. train: the network, from its checkpoint when run again
       galaxy-inspector-train train --train data/train.h5 --val data/val.h5 --out runs/morph
  3. calibrate: its posteriors, on the validation set
       galaxy-inspector-train calibrate --bundle runs/morph/bundle --val data/val.h5
  4. evaluate: on the test set (writes the bundle's report/)
       galaxy-inspector-train evaluate --bundle runs/morph/bundle --test data/test.h5

then use it with: galaxy-inspector --batch IMAGES --model runs/morph/bundle --out cat.h5

A physical-property model is made in two steps (docs/properties.md):

  1. properties-survey: a simulated labelled gri survey (or bring your own labelled table)
  2. properties: a bundle trained on the table or the survey

and properties-demo trains the shipped demo bundles with their full reports.

The display-image model (JPEG/PNG, B/T and R_e) is made by display-simulate, display-train,
display-calibrate and display-evaluate (README, "The display-image model").

adapt fine-tunes a morphology model to your own survey in one resumable command:
       galaxy-inspector-train adapt --images MY_FOLDER --out bundles/my-survey
Add --json before the sub-command for machine-readable progress (JSON lines).
"""
_DEFAULTS = OptionHelpFormatter  # each default said once, required options marked


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="galaxy-inspector-train",
        description="Simulate training sets, train, calibrate and evaluate Galaxy Inspector's "
                    "morphology and physical-property models (also runs as 'python -m "
                    "training').",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true",
                        help="print machine-readable progress as JSON lines (used by the GUI)")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", formatter_class=_DEFAULTS,
                         help="draw a GalSim bulge+disk training set into HDF5")
    sim.add_argument("--n", type=int, required=True, help="number of galaxies")
    sim.add_argument("--seed", type=int, required=True, help="random seed (fixes the set)")
    sim.add_argument("--out", required=True, help="output HDF5 file")
    sim.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    sim.add_argument("--cluster", metavar="ADDRESS", default=None,
                     help="simulate on a Dask cluster instead: local:N, tcp://HOST:PORT, a "
                          "scheduler file, or slurm|pbs|sge|lsf|htcondor (the same file as a "
                          "local run; pip install 'galaxy-inspector[cluster]')")
    sim.add_argument("--cluster-jobs", type=int, default=1, metavar="N",
                     help="with --cluster slurm|pbs|sge|lsf|htcondor: batch jobs to start")
    sim.add_argument("--broad-psf-fraction", type=float, default=0.15,
                     help="share of PSFs with FWHM 1.1-1.6\" (the rest 0.6-1.1\", HSC-Wide g)")
    sim.add_argument("--realism", action="store_true",
                     help="the sky as it is: " + " ".join(
                         "--" + REALISM_OPTIONS[name].replace("_", "-")
                         + ("" if value is True else f" {value:g}")
                         for name, value in PRESET.items()) + " (each given on its own wins)")
    sim.add_argument("--knots", type=float, default=None, metavar="FRACTION",
                     help="share of disk galaxies with star-forming clumps (GalSim "
                          "RandomKnots: 5-50 holding 0-30 %% of the disk's light, part of the "
                          "truth) (default: 0)")
    sim.add_argument("--psf-variety", action=argparse.BooleanOptionalAction, default=None,
                     help="Moffat PSFs of beta 2-5 or Kolmogorov, ellipticity sigma 0.05 "
                          "(default: Moffat of beta 2.5-4.5, sigma 0.03)")
    sim.add_argument("--neighbours", type=float, default=None, metavar="FRACTION",
                     help="share of stamps with other galaxies and stars in them (not in the "
                          "truth) (default: 0)")
    sim.add_argument("--masks", type=float, default=None, metavar="FRACTION",
                     help="share of stamps with masked pixels (a saturated star's core and "
                          "bleed trail, a bad column, an edge strip), filled in training with "
                          "sky noise as the app fills them (default: 0)")
    sim.add_argument("--psf-known", type=float, default=None, metavar="FRACTION",
                     help="share of stamps whose PSF FWHM counts as known: a psf_known "
                          "column for training conditioned on seeing (default: no column)")
    sim.add_argument("--small-fraction", type=float, default=0.0, metavar="FRACTION",
                     help="share of galaxies whose sizes are redrawn in 0.1-1.5\", with a "
                          "prior_weight column by which training keeps GaMPEN's size prior "
                          "(more small galaxies seen, none assumed) (default: 0)")
    sim.set_defaults(func=_simulate)

    tr = sub.add_parser("train", formatter_class=_DEFAULTS,
                        help="train the morphology network (resumes from a checkpoint)")
    tr.add_argument("--train", required=True, nargs="+",
                    help="training set(s) (HDF5 from 'simulate'); several are concatenated")
    tr.add_argument("--val", required=True, help="validation set (HDF5 from 'simulate')")
    tr.add_argument("--out", required=True,
                    help="run folder: checkpoint.pt, and bundle/ when training ends")
    tr.add_argument("--epochs", type=int, default=10,
                    help="passes over the set (each with new noise, flux and orientation)")
    tr.add_argument("--batch-size", type=int, default=128, help="galaxies per step")
    tr.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    tr.add_argument("--dropout", type=float, default=0.1, help="dropout rate of the MC head")
    tr.add_argument("--seed", type=int, default=1,
                    help="fixes initial weights, data order, noise and dropout")
    tr.add_argument("--limit", type=int, default=None, help="use only the first N galaxies")
    tr.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA if present)")
    tr.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    tr.add_argument("--init-from", default=None, metavar="BUNDLE",
                    help="start from this bundle's weights (a second, fine-tuning stage)")
    tr.add_argument("--noise", choices=("wide", "hsc"), default="wide",
                    help="training noise: HSC-Wide depth only, or also shallower and "
                         "correlated noise (training/observe.py)")
    tr.add_argument("--no-flux-skip", action="store_true",
                    help="predict log flux outright instead of as a correction to aperture "
                         "photometry")
    tr.add_argument("--psf-input", action="store_true",
                    help="the head reads the PSF FWHM (withheld from 30 %% of the stamps, so it "
                         "also learns 'unknown'); with --init-from, its new weights start at 0")
    tr.add_argument("--head-only", action="store_true",
                    help="with --init-from: freeze the trunk and train only the MC-dropout head "
                         "(a cheap stage, e.g. to add --psf-input)")
    tr.add_argument("--stop-after-epochs", type=int, default=None,
                    help="stop after this many epochs in this run; run again to resume")
    tr.set_defaults(func=_train, data_parallel=True)

    cal = sub.add_parser("calibrate", formatter_class=_DEFAULTS,
                         help="fit dropout rate, spread factors and label thresholds"
                         " on the validation set; updates the bundle's card")
    cal.add_argument("--bundle", required=True, help="bundle folder (from 'train')")
    cal.add_argument("--val", required=True, help="validation set (HDF5)")
    cal.add_argument("--n", type=int, default=4000, help="validation galaxies to use")
    cal.add_argument("--samples", type=int, default=300, help="posterior samples per galaxy")
    cal.add_argument("--flux-priors", nargs="+", choices=("log-uniform", "uniform"),
                     default=["log-uniform"], metavar="PRIOR",
                     help="observe the validation galaxies once per flux draw named "
                          "(log-uniform, uniform: GaMPEN's, mostly bright)")
    cal.add_argument("--orientations", type=int, default=1, choices=range(1, 9),
                     metavar="1-8", help="dihedral views of each stamp read at inference "
                                         "(test-time augmentation)")
    cal.set_defaults(func=_calibrate)

    ev = sub.add_parser("evaluate", formatter_class=_DEFAULTS,
                        help="evaluate on a test set; writes <bundle>/report/")
    ev.add_argument("--bundle", required=True, help="calibrated bundle folder")
    ev.add_argument("--test", required=True, help="test set (HDF5), never used before")
    ev.add_argument("--samples", type=int, default=500, help="posterior samples per galaxy")
    ev.add_argument("--limit", type=int, default=None, help="use only the first N galaxies")
    ev.set_defaults(func=_evaluate)

    ad = sub.add_parser(
        "adapt", formatter_class=_DEFAULTS,
        help="fine-tune a morphology model to your survey: galaxies injected into its sky",
        description="Measure your images (pixel scale, calibration, sky noise and its "
                    "correlation, PSF), inject simulated galaxies into their blank sky, "
                    "fine-tune the model from its weights, recalibrate it and evaluate the "
                    "original and the adapted model on injected test galaxies. Writes a "
                    "bundle with a before/after report to --out (work files in OUT/work "
                    "until it finishes; --resume continues an interrupted run).")
    ad.add_argument("--images", required=True, metavar="FOLDER",
                    help="folder of the survey's FITS images (searched recursively)")
    ad.add_argument("--out", required=True, metavar="BUNDLE",
                    help="folder of the adapted bundle (card.json, model.safetensors, report/)")
    psf = ad.add_mutually_exclusive_group()
    psf.add_argument("--psf", metavar="PSF.fits", default=None,
                     help="a PSF image of the survey (default: measured on each image's stars, "
                          "else its header's)")
    psf.add_argument("--psf-fwhm", type=float, metavar="ARCSEC", default=None,
                     help="the survey's PSF FWHM in arcsec")
    ad.add_argument("--model", default="morphology-hsc-g", metavar="BUNDLE",
                    help="the morphology bundle to adapt (a folder or a shipped name)")
    ad.add_argument("--pixel-scale", type=float, metavar="ARCSEC", default=None,
                    help="arcsec per pixel, replacing the images' WCS")
    ad.add_argument("--zero-point", type=float, metavar="MAG", default=None,
                    help="AB zero point of images without a flux calibration")
    ad.add_argument("--n", type=int, default=3000,
                    help="galaxies to inject (70 %% train, 15 %% calibration, 15 %% test)")
    ad.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs")
    ad.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (one-cycle)")
    ad.add_argument("--batch-size", type=int, default=64, help="galaxies per step")
    ad.add_argument("--samples", type=int, default=200,
                    help="posterior samples per galaxy in calibration and evaluation")
    ad.add_argument("--seed", type=int, default=1,
                    help="fixes the patches' split, the galaxies, the noise and the training")
    ad.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA if present)")
    ad.add_argument("--workers", type=int, default=0,
                    help="processes drawing galaxies (default: all cores)")
    ad.add_argument("--name", default=None,
                    help="the adapted bundle's name (default: the --out folder's name)")
    ad.add_argument("--resume", action="store_true",
                    help="continue the adaptation in --out, skipping its finished steps")
    ad.add_argument("--keep-work", action="store_true",
                    help="keep OUT/work (injected sets, checkpoint) when it finishes")
    ad.set_defaults(func=_adapt)

    from training.display import add_subcommands as add_display_subcommands
    from training.properties.cli import add_subcommands

    add_subcommands(sub)
    add_display_subcommands(sub)
    return parser


def main(argv=None) -> int:
    code = _main(argv)
    if distributed.launched():
        distributed.exit_process(code)
    return code


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    # Under torchrun only rank 0 reports; the others train silently beside it.
    progress = Progress(json_lines=args.json,
                        stream=None if distributed.is_rank0() else open(os.devnull, "w"))
    try:
        if distributed.world_size() > 1 and not getattr(args, "data_parallel", False):
            raise ValueError(f"'{args.command}' runs in one process: start it without torchrun "
                             "(only 'train' and 'properties' train on several)")
        args.func(args, progress)
    except (OSError, ValueError) as exc:
        line = f"galaxy-inspector-train: error: {distributed.rank_label()}{exc}"
        print(line, file=sys.stderr)
        distributed.report_failure(line)
        return 1
    except KeyboardInterrupt:
        print(f"galaxy-inspector-train: {distributed.rank_label()}interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
