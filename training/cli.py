"""``galaxy-inspector-train``: simulate, train, calibrate and evaluate Galaxy Inspector models."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from training import distributed
from training.cli_help import OptionHelpFormatter
from training.progress import Progress


def _simulate(args, progress):
    from training.simulate import SimulationConfig, simulate

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # a fresh user folder too
    simulate(args.out, n=args.n, seed=args.seed, workers=args.workers, progress=progress,
             config=SimulationConfig(broad_psf_fraction=args.broad_psf_fraction),
             cluster=args.cluster, cluster_jobs=args.cluster_jobs)
    progress.emit("done", out=args.out, n=args.n)


def _train(args, progress):
    from training.train import TrainConfig, train

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, dropout=args.dropout, limit=args.limit,
                         device=args.device, init_from=args.init_from, noise=args.noise,
                         flux_skip=not args.no_flux_skip)
    train(args.train, args.val, args.out, config, resume=not args.restart, progress=progress,
          stop_after=args.stop_after_epochs)


def _calibrate(args, progress):
    from training.calibrate import calibrate

    calibrate(args.bundle, args.val, n_galaxies=args.n, n_samples=args.samples,
              orientations=args.orientations, progress=progress)


def _evaluate(args, progress):
    from training.evaluate import evaluate

    evaluate(args.bundle, args.test, n_samples=args.samples, limit=args.limit,
             progress=progress)


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

    from training.properties.cli import add_subcommands

    add_subcommands(sub)
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
