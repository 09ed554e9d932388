"""Sub-commands of ``galaxy-inspector-train`` for the physical-property models.

``training/cli.py`` calls ``add_subcommands(subparsers)``; each sub-command's ``func`` takes
``(args, progress)`` like the morphology commands.

* ``properties-survey`` — simulate the labelled gri survey (resumable, seeded).
* ``properties`` — train a bundle from a user's table (``--table``) or a survey (``--survey``)
  with ``--method cnn`` (Wu & Boada) or ``--method cnn+gbm`` (Dobbels).
* ``properties-demo`` — the shipped demo bundles with their full reports (baselines, resolution
  study, ablation, importances) from a simulated survey.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.cli_help import OptionHelpFormatter
from training.distributed import is_rank0

__all__ = ["add_subcommands", "DEMO_NAMES"]

DEMO_NAMES = {"wu-boada": "properties-wu-boada-sim", "dobbels": "properties-dobbels-sim"}


def _cnn_config(args):
    from training.properties.cnn import CNNConfig

    return CNNConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     schedule=args.schedule, seed=args.seed, depth=args.depth,
                     widths=list(args.widths), hidden=args.hidden, threads=args.threads or None,
                     device=args.device)


def _survey(args, progress):
    from training.properties.survey import SurveyConfig, simulate_survey

    simulate_survey(args.out, n=args.n, seed=args.seed, workers=args.workers,
                    config=SurveyConfig(stamp_size=args.stamp_size, chunk=args.chunk),
                    progress=progress)
    progress.emit("done", out=args.out, n=args.n)


def _run(data, method, opts, progress):
    from training.properties.pipelines import run_cnn_pipeline, run_gbm_pipeline

    run = run_cnn_pipeline if method == "cnn" else run_gbm_pipeline
    result = run(data, opts, progress)
    if not is_rank0():  # under torchrun: the CNN is trained, rank 0 finishes the bundle
        return
    if result is None:
        progress.emit("paused", message="run the same command again to continue")
    else:
        progress.emit("done", bundle=str(result), report=str(Path(opts.work_dir) / "report"))


def _properties(args, progress):
    from training.properties.data import load_survey
    from training.properties.pipelines import PipelineOptions

    if bool(args.table) == bool(args.survey):
        raise ValueError("give exactly one of --table (your labelled catalogue) or --survey")
    if args.table:
        from training.properties.byo import BadTableError, read_labelled_table

        if not args.image_column or not args.target:
            raise ValueError("--table needs --image-column and --target")
        try:
            data = read_labelled_table(
                args.table, args.image_column, args.target, args.target_err or (),
                redshift=args.redshift, photometry=args.photometry or (),
                log_targets=args.log_target or (), aux_targets=args.aux_target or (),
                pixel_scale=args.pixel_scale, stamp_size=args.stamp_size,
                split_column=args.split_column, seed=args.seed, drop_bad=args.drop_bad,
                progress=progress)
        except BadTableError as exc:
            print(str(exc), file=sys.stderr)
            raise ValueError(f"{len(exc.problems)} bad row(s) in {args.table}; nothing was "
                             "trained") from None
        if data.info["dropped_rows"]:
            progress.emit("dropped", rows=data.info["dropped_rows"])
    else:
        bands = ["g"] if args.method == "cnn+gbm" and not args.all_bands else None
        data = load_survey(args.survey, targets=tuple(args.target or ("ml_g",)),
                           limit=args.limit, bands=bands)
    out = Path(args.out)
    opts = PipelineOptions(work_dir=Path(args.work_dir or f"{out}-work"), bundle_dir=out,
                           name=args.name or out.name, cnn=_cnn_config(args), seed=args.seed,
                           threads=args.threads, photometry=list(args.photometry or [])
                           if args.table else [], stop_after=args.stop_after_epochs,
                           studies=args.studies)
    _run(data, args.method, opts, progress)


def _demo(args, progress):
    from training.properties.data import load_survey
    from training.properties.pipelines import PipelineOptions

    name = DEMO_NAMES[args.pipeline]
    out = Path(args.bundle)
    if args.pipeline == "wu-boada":
        data = load_survey(args.survey, targets=("metallicity", "log_mstar", "ml_g"),
                           limit=args.limit)
        method, extra = "cnn", {"resolutions": list(args.resolutions)}
    else:
        data = load_survey(args.survey, targets=("ml_g", "log_mstar"), limit=args.limit,
                           bands=["g"])
        method, extra = "cnn+gbm", {"ablation_photometry": ["mag_g", "mag_i"]}
    opts = PipelineOptions(work_dir=Path(args.work_dir) / args.pipeline, bundle_dir=out,
                           name=name, cnn=_cnn_config(args), studies=True, demo=True,
                           seed=args.seed, threads=args.threads,
                           stop_after=args.stop_after_epochs, **extra)
    _run(data, method, opts, progress)


def _add_cnn_options(p, epochs):
    p.add_argument("--epochs", type=int, default=epochs, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=64, help="galaxies per step")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--schedule", choices=("one-cycle", "cosine"), default="one-cycle",
                   help="learning-rate schedule")
    p.add_argument("--depth", type=int, choices=(18, 34), default=18,
                   help="ResNet-18 (2-2-2-2 blocks) or ResNet-34 (3-4-6-3)")
    p.add_argument("--widths", type=int, nargs=4, default=[16, 32, 64, 128],
                   help="channels of the four stages")
    p.add_argument("--hidden", type=int, default=64, help="width of the feature layer")
    p.add_argument("--seed", type=int, default=1,
                   help="fixes the split, initial weights and data order")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu",
                   help="cpu or cuda (under torchrun: each process on its own GPU)")
    p.add_argument("--stop-after-epochs", type=int, default=None,
                   help="stop each CNN after this many epochs in this run; run again to resume")


def add_subcommands(sub) -> None:
    """Register ``properties-survey``, ``properties`` and ``properties-demo``."""
    sv = sub.add_parser("properties-survey", formatter_class=OptionHelpFormatter,
                        help="simulate the labelled gri survey (synthetic M/L, mass, metallicity)")
    sv.add_argument("--n", type=int, required=True, help="galaxies (after r < 17.77 selection)")
    sv.add_argument("--seed", type=int, required=True, help="random seed (fixes the survey)")
    sv.add_argument("--out", required=True, help="HDF5 file (an interrupted run resumes)")
    sv.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    sv.add_argument("--stamp-size", type=int, default=64, help="side of each stamp in pixels")
    sv.add_argument("--chunk", type=int, default=200,
                    help="galaxies per work unit (each with its own seed, so a resumed run "
                         "draws the same survey)")
    sv.set_defaults(func=_survey)

    pr = sub.add_parser("properties", formatter_class=OptionHelpFormatter, help="train a physical-property bundle from your "
                        "labelled table (or a simulated survey)")
    pr.add_argument("--table", help="CSV/ECSV/FITS table of image paths and labels")
    pr.add_argument("--survey", help="or: a survey HDF5 from properties-survey")
    pr.add_argument("--image-column", action="append",
                    help="image path column (repeat once per band for per-band FITS)")
    pr.add_argument("--target", action="append", help="label column to predict (repeatable)")
    pr.add_argument("--target-err", action="append",
                    help="error column of each --target, in the same order (weights the GBM)")
    pr.add_argument("--log-target", action="append",
                    help="a --target to learn in log10 (positive quantities such as M/L)")
    pr.add_argument("--aux-target", action="append",
                    help="extra label that only shapes the CNN features (e.g. Galaxy Zoo votes)")
    pr.add_argument("--redshift", help="redshift column (luminosity and kpc features)")
    pr.add_argument("--photometry", action="append",
                    help="magnitude column for the GBM (repeatable; in band order)")
    pr.add_argument("--split-column", help="column with train/val/test per row "
                    "(default: seeded 80/10/10)")
    pr.add_argument("--pixel-scale", type=float, help="arcsec/pixel when the images lack it")
    pr.add_argument("--stamp-size", type=int, help="cut every image to its central N x N pixels")
    pr.add_argument("--drop-bad", action="store_true",
                    help="train without the rows that cannot be used (they are listed)")
    pr.add_argument("--method", choices=("cnn", "cnn+gbm"), default="cnn",
                    help="a CNN alone (Wu & Boada) or CNN features with LightGBM (Dobbels)")
    pr.add_argument("--all-bands", action="store_true",
                    help="with --survey and cnn+gbm: use gri, not only g (Dobbels used g)")
    pr.add_argument("--limit", type=int, help="with --survey: use only about N galaxies")
    pr.add_argument("--studies", action="store_true",
                    help="also run baselines/resolution or ablation/importances")
    pr.add_argument("--out", required=True, help="bundle folder to write")
    pr.add_argument("--name", help="bundle name (default: the folder name)")
    pr.add_argument("--work-dir", help="checkpoints and report (default: OUT-work)")
    _add_cnn_options(pr, epochs=15)
    pr.set_defaults(func=_properties, data_parallel=True)

    dm = sub.add_parser("properties-demo", formatter_class=OptionHelpFormatter, help="train a demo bundle with its full report on "
                        "the simulated survey")
    dm.add_argument("pipeline", choices=sorted(DEMO_NAMES),
                    help="which demo: wu-boada (CNN on gri) or dobbels (CNN+LightGBM on g)")
    dm.add_argument("--survey", required=True, help="survey HDF5 from properties-survey")
    dm.add_argument("--work-dir", required=True, help="checkpoints and studies (resumable)")
    dm.add_argument("--bundle", required=True,
                    help="bundle folder to write (the shipped ones: resources/models/"
                         f"{DEMO_NAMES['wu-boada']} and .../{DEMO_NAMES['dobbels']})")
    dm.add_argument("--resolutions", type=int, nargs="*", default=[32, 16, 8, 4, 1],
                    help="wu-boada: image sides of the resolution study")
    dm.add_argument("--limit", type=int, help="use only about N galaxies (tests)")
    _add_cnn_options(dm, epochs=15)
    dm.set_defaults(func=_demo)
