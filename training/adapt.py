"""``galaxy-inspector-train adapt``: fine-tune a morphology bundle to a user's survey.

The steps, each recorded in ``OUT/work/state.json`` so that ``--resume`` skips the finished
ones (the training step resumes from its epoch checkpoint):

1. ``survey``: read the images as the engine does and measure the survey (``training.survey``:
   pixel scale, calibration, sky noise and its correlation, PSF) and its blank-sky patches,
   cut by the engine onto the model's grid. Too few patches is refused with the reason.
2. ``inject-train``, ``inject-calibration``, ``inject-test``: GalSim galaxies of the training
   simulator (``simulate.draw_parameters``, the same truth), drawn noise-free at the model's
   pixel scale through the PSF of a patch's image (Moffat of its FWHM, convolved with the
   Gaussian the engine matches a sharp PSF with), into sets whose ``backgrounds`` are the
   patches. The patches are split 70/15/15 % among the sets, so no test galaxy lies on a sky
   seen in training. Training draws flux, source noise, orientation and patch anew each epoch
   (``observe``'s ``survey`` regime); calibration and test sets keep one patch per galaxy.
3. ``train``: ``train.train`` from the model's weights (``init_from``), few epochs at a small
   learning rate; its validation set is the calibration set.
4. ``calibrate``: ``calibrate.calibrate`` on the calibration set.
5. ``bundle``: the bundle written to ``OUT`` (card: ``training.adapted_from``,
   ``training.survey``, the training ranges the survey spans).
6. ``evaluate``, ``evaluate-before``: ``evaluate.evaluate`` of the adapted bundle and of a copy
   of the original one on the same injected test set; ``OUT/report/`` gets both, with
   ``before_after.png`` and ``adaptation.json``.

``OUT/work/`` (sets, checkpoint) is removed at the end unless ``keep_work``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from galaxy_inspector.engine import StampSpec, _training_ranges
from galaxy_inspector.errors import GalaxyInspectorError, InputError, user_message
from galaxy_inspector.labels import thresholds_from_card
from galaxy_inspector.models.bundle import load_bundle, save_bundle
from training import survey
from training.progress import Progress
from training.simulate import (
    PARAM_COLUMNS,
    SimulationConfig,
    _chunks,
    _write,
    draw_galaxy,
    draw_parameters,
)

__all__ = ["AdaptOptions", "adapt", "SPLITS", "STEPS"]

#: Shares of the blank patches, and of the injected galaxies, in each set.
SPLITS = {"train": 0.70, "calibration": 0.15, "test": 0.15}
STEPS = ("survey", *(f"inject-{s}" for s in SPLITS), "train", "calibrate", "bundle",
         "evaluate", "evaluate-before")
#: Galaxies per injection work unit.
CHUNK = 50


@dataclass
class AdaptOptions:
    """What ``adapt`` does (the command's options); ``settings()`` are those a resumed run
    must share with the one it continues."""

    images: str
    out: str
    model: str = "morphology-hsc-g"
    psf: str | None = None
    psf_fwhm: float | None = None
    pixel_scale: float | None = None
    zero_point: float | None = None
    n: int = 3000
    epochs: int = 4
    lr: float = 3e-4
    batch_size: int = 64
    seed: int = 1
    samples: int = 200
    device: str | None = None
    workers: int = 0
    name: str | None = None
    keep_work: bool = False

    def settings(self) -> dict:
        return {k: v for k, v in asdict(self).items()
                if k not in ("out", "device", "workers", "keep_work")}


def _differing(saved: dict, settings: dict) -> str:
    """The options (as typed) whose values differ between two runs' settings ("" if none)."""
    return ", ".join("--" + k.replace("_", "-") for k in sorted(set(saved) | set(settings))
                     if saved.get(k) != settings.get(k))


class _State:
    """The finished steps of a run in ``work/state.json`` (written atomically)."""

    def __init__(self, work: Path, settings: dict):
        self.path, self.settings = work / "state.json", settings
        self.done: list[str] = []

    def load(self) -> None:
        saved = json.loads(self.path.read_text())
        differ = _differing(saved["settings"], self.settings)
        if differ:
            raise ValueError(f"cannot resume: this adaptation was started with other {differ}; "
                             "give the same options, or another --out")
        self.done = list(saved["done"])

    def finish(self, step: str) -> None:
        self.done.append(step)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "done": self.done}, indent=1))
        os.replace(tmp, self.path)


def adapt(options: AdaptOptions, resume: bool = False, progress: Progress | None = None) -> Path:
    """Run (or, with ``resume``, continue) an adaptation; returns the bundle folder."""
    progress = progress or Progress()
    out = Path(options.out).absolute()
    work = out / "work"
    state = _State(work, options.settings())
    if (out / "card.json").is_file() and not work.exists():
        if not resume:
            raise ValueError(f"{out} already holds a model bundle; choose another --out")
        saved = json.loads((out / "card.json").read_text()).get("training", {})
        if "adapt_options" not in saved:
            raise ValueError(f"{out} holds a model bundle that is not an adaptation; choose "
                             "another --out")
        differ = _differing(saved["adapt_options"], options.settings())
        if differ:  # a finished adaptation of another survey or with other settings
            raise ValueError(f"{out} holds an adaptation made with other {differ}; choose "
                             "another --out")
        progress.emit("done", bundle=str(out), note="already adapted")
        return out
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise ValueError(f"{out} is not empty; add --resume to continue the adaptation "
                             "written there, or choose another --out")
        if not state.path.is_file():
            raise ValueError(f"{out} holds files that are not an adaptation; choose another "
                             "--out")
        state.load()
    original = load_bundle(options.model)
    card = original.card
    if card.get("task") != "morphology" or card["input"].get("kind") != "flux":
        raise ValueError(f"bundle {original.name!r} is not a morphology model of flux images; "
                         "adapt fine-tunes one")
    spec = StampSpec(int(card["input"]["stamp_size"]), float(card["input"]["pixel_scale_arcsec"]),
                     1.0, _training_ranges(card).get("psf_fwhm_arcsec"), bin_large=True)
    work.mkdir(parents=True, exist_ok=True)
    if not state.path.is_file():
        state.save()  # the folder is an adaptation's from now on
    if state.done:
        progress.emit("resumed", steps_done=len(state.done), steps=len(STEPS))
    for step in STEPS:
        if step in state.done:
            continue
        progress.emit("step", step=step, number=STEPS.index(step) + 1, steps=len(STEPS))
        _STEP_FUNCTIONS[step.split("-")[0]](step, options, original, spec, work, out, progress)
        state.finish(step)
    if not options.keep_work:
        shutil.rmtree(work)
    progress.emit("bundle", path=str(out))
    progress.emit("done", bundle=str(out))
    return out


# -- 1. the survey ----------------------------------------------------------------------------
def _survey(_step, options, _original, spec, work, _out, progress):
    paths = survey.image_paths(options.images)
    images, measured, patches, problems = [], [], [], {}
    for i, path in enumerate(paths):
        try:
            image, problem = survey.read_survey_image(path, options.pixel_scale,
                                                      options.zero_point, options.psf_fwhm,
                                                      options.psf)
        except GalaxyInspectorError as exc:  # one unusable file does not stop the others
            problems[path] = user_message(exc)
            continue
        if problem:
            problems[path] = problem
        images.append(image)
        progress.update(i + 1, len(paths), stage="reading images")
    known = [im.psf_fwhm for im in images if im.psf_fwhm is not None]
    if not images:
        raise InputError(f"no usable image in {options.images}: " + "; ".join(
            f"{Path(p).name}: {why}" for p, why in list(problems.items())[:3]))
    if not known:
        raise InputError(f"no PSF for the images of {options.images} "
                         f"({next(iter(problems.values()))}); give --psf-fwhm or --psf")
    median_psf = float(np.median(known))
    for i, image in enumerate(images):
        if image.psf_fwhm is None:
            image = image.with_psf(median_psf, "median of the survey's other images")
        try:
            properties, found = survey.measure_image(image, i, spec, options.seed)
        except GalaxyInspectorError as exc:
            problems[image.source] = user_message(exc)
            continue
        properties.problem = problems.get(image.source, "")
        measured.append(properties)
        patches.append(found)
        progress.update(i + 1, len(images), stage="measuring the survey",
                        patches=sum(len(p) for p in patches))
    found = survey.merge(patches) if patches else None
    count = 0 if found is None else len(found)
    if count < survey.MIN_PATCHES:
        blank = sum(m.blank_positions for m in measured)
        raise InputError(
            f"only {count} blank-sky patches found in {len(images)} image(s) of "
            f"{options.images}, {survey.MIN_PATCHES} needed (a patch is a "
            f"{spec.stamp_size * spec.pixel_scale:.1f}″ stamp with no source within "
            f"{survey.CENTRE_RADIUS_ARCSEC:g}″ of its centre; {blank} such position(s)); add "
            "images, or larger ones")
    summary = survey.survey_summary(measured, found)
    (work / "survey.json").write_text(json.dumps(
        {"summary": summary, "images": [m.as_dict() for m in measured],
         "skipped": problems}, indent=1, default=_plain) + "\n")
    np.savez(work / "patches.npz", **asdict(found))
    progress.emit("survey", images=len(measured), patches=count,
                  pixel_scale=summary["pixel_scale_arcsec"]["median"],
                  sky_sigma_njy=summary["sky_sigma_njy_per_pixel"]["median"],
                  psf_fwhm=summary["psf_fwhm_arcsec"]["median"],
                  binned_noise_ratio=summary["binned_noise_ratio"]["median"])


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def _patches(work: Path) -> survey.Patches:
    with np.load(work / "patches.npz", allow_pickle=False) as f:
        return survey.Patches(**{k: f[k] for k in f.files})


def _split_patches(n_patches: int, seed: int) -> dict[str, np.ndarray]:
    """Patch indices of each set: disjoint, in the shares ``SPLITS``, at least one each."""
    order = np.random.default_rng([seed, 7]).permutation(n_patches)
    n_cal = max(1, round(SPLITS["calibration"] * n_patches))
    n_test = max(1, round(SPLITS["test"] * n_patches))
    return {"calibration": order[:n_cal], "test": order[n_cal:n_cal + n_test],
            "train": order[n_cal + n_test:]}


def _galaxies(n: int) -> dict[str, int]:
    counts = {s: max(1, round(share * n)) for s, share in SPLITS.items() if s != "train"}
    return {"train": max(1, n - sum(counts.values())), **counts}


# -- 2. injection -----------------------------------------------------------------------------
def _inject_chunk(job):
    """``(start, images, table)`` of galaxies ``start``-``stop`` with the PSFs of their patches
    (the simulator's drawing, so its truth)."""
    seed, split, start, stop, config, psf_fwhm, psf_kernel = job
    rng = np.random.default_rng([seed, split, start])
    params = []
    for fwhm, kernel in zip(psf_fwhm, psf_kernel, strict=True):
        p = draw_parameters(rng)
        p["psf_fwhm"], p["psf_kernel_fwhm"] = float(fwhm), float(kernel)
        params.append(p)
    images = np.stack([draw_galaxy(p, config) for p in params])
    return start, images, {c: np.array([p[c] for p in params]) for c in PARAM_COLUMNS}


def _set_path(work: Path, split: str) -> Path:
    return work / f"{split}.h5"


def _inject(step, options, _original, spec, work, _out, progress):
    split = step.split("-", 1)[1]
    patches = _patches(work)
    own = _split_patches(len(patches), options.seed)[split]
    n = _galaxies(options.n)[split]
    number = list(SPLITS).index(split)
    rng = np.random.default_rng([options.seed, number, 11])
    background = rng.permutation(np.arange(n) % len(own))  # each patch used about equally
    psf, kernel = patches.psf_fwhm[own][background], patches.psf_kernel_fwhm[own][background]
    config = SimulationConfig(pixel_scale=spec.pixel_scale, stamp_size=spec.stamp_size,
                              chunk=CHUNK)
    jobs = [(options.seed, number, s, min(s + CHUNK, n), config, psf[s:s + CHUNK],
             kernel[s:s + CHUNK]) for s in range(0, n, CHUNK)]
    progress.emit("inject", set=split, galaxies=n, patches=len(own))
    path = _set_path(work, split)
    with _chunks(jobs, options.workers, None, task=_inject_chunk) as chunks:
        _write(path, n, options.seed, config, chunks, progress)
    with h5py.File(path, "a") as f:
        f.attrs.update(generator="training.adapt", split=split,
                       broad_psf_fraction=0.0)
        f.create_dataset("backgrounds", data=patches.data[own].astype(np.float32),
                         compression="lzf")
        f.create_dataset("background_index", data=background.astype(np.int64))
        f.create_dataset("psf_kernel_fwhm", data=kernel)
        f.create_dataset("background_image", data=patches.image[own][background])


# -- 3-4. training and calibration ------------------------------------------------------------
def _run(work: Path) -> Path:
    return work / "run"


def _train(_step, options, original, _spec, work, _out, progress):
    from training.train import TrainConfig, train

    hyper = original.card["hyperparameters"]
    config = TrainConfig(epochs=options.epochs, batch_size=options.batch_size, lr=options.lr,
                         seed=options.seed, dropout=hyper["dropout"],
                         channels=hyper["channels"], hidden=hyper["hidden"],
                         device=options.device, init_from=str(original.path), noise="survey",
                         flux_skip=bool(hyper.get("flux_skip")),
                         psf_input=bool(hyper.get("psf_input")))
    batch = min(options.batch_size, _galaxies(options.n)["train"])
    config.batch_size = batch
    train(_set_path(work, "train"), _set_path(work, "calibration"), _run(work), config,
          resume=True, progress=progress)


def _calibrate(_step, options, original, _spec, work, _out, progress):
    from training.calibrate import calibrate

    calibrate(_run(work) / "bundle", _set_path(work, "calibration"),
              n_galaxies=_galaxies(options.n)["calibration"], n_samples=options.samples,
              orientations=int(original.card.get("posterior", {}).get("orientations", 1)),
              progress=progress)


# -- 5. the bundle ----------------------------------------------------------------------------
def _bundle(_step, options, original, _spec, work, out, progress):
    trained = load_bundle(_run(work) / "bundle")
    measured = json.loads((work / "survey.json").read_text())
    summary = measured["summary"]
    card = {k: v for k, v in trained.card.items() if k not in ("format", "weights")}
    name = options.name or out.name
    card["name"] = name
    card["description"] = (f"{original.card.get('description', original.name)} Fine-tuned "
                           f"to the survey of {options.images} (galaxy-inspector-train adapt: "
                           "simulated galaxies injected into its blank sky).")
    ranges = dict(card["training_ranges"])
    with h5py.File(_set_path(work, "train"), "r") as f:
        seen = np.hypot(f["psf_fwhm"][:], f["psf_kernel_fwhm"][:])  # the PSF the model saw
    before = _training_ranges(original.card)
    lo, hi = before.get("psf_fwhm_arcsec", (float(seen.min()), float(seen.max())))
    # The engine's PSF matching (which depends on the lower end) stays as it was adapted under.
    ranges["psf_fwhm_arcsec"] = [lo, max(hi, float(seen.max()))]
    sky = summary["stamp_sky_sigma_njy"]
    ranges["sky_sigma_njy"] = [sky["min"], sky["max"]]
    card["training_ranges"] = ranges
    card["input"] = {**card["input"], "sky_sigma_njy": round(sky["median"], 4)}
    counts = _galaxies(options.n)
    card["training"] = {
        **card["training"],
        "data": (f"{counts['train']} GalSim bulge+disk galaxies (the training simulator's "
                 "ranges) drawn through the survey's measured PSFs and injected into "
                 f"{summary['blank_patches']} blank-sky patches of its images (real noise, "
                 "artifacts, masked neighbours), flux and source noise drawn per epoch"),
        "adapted_from": {"name": original.name, "sha256": original.sha256,
                         "path": str(original.path)},
        "survey": {**summary, "folder": str(Path(options.images).absolute()),
                   "per_image": measured["images"], "skipped": measured["skipped"]},
        "injection": {"galaxies": counts, "patch_shares": SPLITS, "seed": options.seed,
                      "calibration_samples": options.samples},
        "adapt_options": options.settings(),
    }
    save_bundle(out, card, trained.tensors)
    load_bundle(out)  # what the app will load: verified now
    progress.emit("written", bundle=str(out))


# -- 6. evaluation and report -----------------------------------------------------------------
def _before_copy(original, folder: Path) -> Path:
    """A copy of the original bundle that ``evaluate`` can score (it needs label thresholds
    and a training record; an uncalibrated bundle may lack them) and write a report into."""
    card = {k: v for k, v in original.card.items() if k not in ("format", "weights", "test")}
    card.setdefault("labels", thresholds_from_card(card))
    card["training"] = {"n_train": 0, "time_s": 0.0, "device": "unknown",
                        **card.get("training", {})}
    return save_bundle(folder, card, original.tensors)


def _evaluate(step, options, original, _spec, work, out, progress):
    from training.evaluate import evaluate

    test = _set_path(work, "test")
    if step == "evaluate":
        evaluate(out, test, n_samples=options.samples, progress=progress)
        return
    before = _before_copy(original, work / "before")
    evaluate(before, test, n_samples=options.samples, progress=progress)
    shutil.copytree(before / "report", out / "report" / "before", dirs_exist_ok=True)
    _report(out, json.loads((before / "report" / "report.json").read_text()), original)


#: Headline figures compared before and after: (key in the report's figures, words, better).
COMPARED = (("sigma_bt_residual", "σ(B/T residual)", "lower"),
            ("median_rel_re_error", "median |ΔR_e|/R_e", "lower"),
            ("median_rel_flux_error", "median |ΔF|/F", "lower"))


def _report(out: Path, before: dict, original) -> None:
    """``before_after.png``, ``adaptation.json`` and a section of ``report.md``."""
    after = json.loads((out / "report" / "report.json").read_text())
    card_path = out / "card.json"
    card = json.loads(card_path.read_text())
    rows = {key: {"before": before["figures"][key], "after": after["figures"][key]}
            for key, _, _ in COMPARED}
    coverage = {name: {"before": before["coverage"][name], "after": after["coverage"][name]}
                for name in after["coverage"]}
    comparison = {"test_galaxies": after["test_galaxies"], "original": original.name,
                  "figures": rows, "coverage": coverage,
                  "survey": card["training"]["survey"]}
    (out / "report" / "adaptation.json").write_text(json.dumps(comparison, indent=2) + "\n")
    _before_after_plot(out / "report" / "before_after.png", rows, coverage, original.name)
    lines = ["", "## Before and after adaptation", "",
             f"The same {after['test_galaxies']} galaxies injected into blank sky of the survey "
             f"(patches never used in training), measured by `{original.name}` and by this "
             "bundle. The original model's full report is in `before/`.", "",
             "| figure | before | after |", "|---|---|---|"]
    lines += [f"| {words} | {rows[key]['before']:.4f} | {rows[key]['after']:.4f} |"
              for key, words, _ in COMPARED]
    lines += ["", "| coverage of the 68.27 % interval | before | after |", "|---|---|---|"]
    lines += [f"| {name} | {100 * c['before']['0.6827']:.1f} % | "
              f"{100 * c['after']['0.6827']:.1f} % |" for name, c in coverage.items()]
    s = card["training"]["survey"]
    lines += ["", f"Survey: {s['images_used']} images, pixel scale "
              f"{s['pixel_scale_arcsec']['median']:.4g}″, sky noise "
              f"{s['sky_sigma_njy_per_pixel']['median']:.4g} nJy/px (2x2-binned noise ratio "
              f"{s['binned_noise_ratio']['median']:.3f}), PSF FWHM "
              f"{s['psf_fwhm_arcsec']['median']:.3g}″ ({', '.join(s['psf_sources'])}), "
              f"{s['blank_patches']} blank-sky patches.", "",
              "![before and after](before_after.png)", ""]
    with open(out / "report" / "report.md", "a") as f:
        f.write("\n".join(lines))
    card["test"]["before_adaptation"] = {"figures": before["figures"],
                                         "coverage": before["coverage"]}
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def _before_after_plot(path: Path, rows: dict, coverage: dict, original: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(COMPARED))
    for offset, when, colour in ((-0.2, "before", "#999999"), (0.2, "after", "#1f5fa8")):
        axes[0].bar(x + offset, [rows[k][when] for k, _, _ in COMPARED], 0.4, color=colour,
                    label=f"{original}" if when == "before" else "adapted")
        axes[1].bar(np.arange(len(coverage)) + offset,
                    [100 * c[when]["0.6827"] for c in coverage.values()], 0.4, color=colour)
    axes[0].set_xticks(x, [words for _, words, _ in COMPARED])
    axes[0].set_yscale("log")  # figures that differ by orders of magnitude stay readable
    axes[0].set_ylabel("on the injected test set (lower is better)")
    axes[0].legend()
    axes[1].axhline(68.27, color="k", lw=1, ls="--")
    axes[1].set_xticks(np.arange(len(coverage)), list(coverage))
    axes[1].set_ylabel("coverage of the 68.27 % interval [%]")
    fig.suptitle("Before and after adaptation: the same injected test galaxies")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


_STEP_FUNCTIONS = {"survey": _survey, "inject": _inject, "train": _train,
                   "calibrate": _calibrate, "bundle": _bundle, "evaluate": _evaluate}
