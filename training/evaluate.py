"""Evaluate a calibrated morphology bundle on a test set it never saw; write its report.

The report (``<bundle>/report/``: ``report.md``, ``report.json`` and PNG figures) gives the
residual figures (sigma of B/T residuals, median |dR_e|/R_e and |dF|/F, R^2), the coverage
table per parameter and level, residuals against predicted values, true against predicted, the
coverage curve, label accuracy, and training set size and time. The point estimate is the KDE
mode, as in GaMPEN.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from galaxy_inspector.engine import noise_gain
from galaxy_inspector.models.morphology import MorphologyModel
from galaxy_inspector.posterior import LEVELS, coverage, summarize
from galaxy_inspector.preprocessing import stamp_sky_sigma
from training.calibrate import truth_table
from training.dataset import load_set, psf_in_stamps
from training.progress import Progress
from training.realism import PSF_KINDS
from training.train import fixed_observations, psf_given

__all__ = ["evaluate", "residual_figures"]

TEST_NOISE_SEED = 31337
LABELS = {"bt": "B/T", "re_arcsec": "R_e [arcsec]", "flux_njy": "flux [nJy]"}
#: Bins the coverage is also reported in: PSF FWHM (arcsec) and true total flux (nJy). The
#: done-when of calibration is per bin, not on average (an average hides a seeing or a
#: brightness at which intervals are too wide and another at which they are too narrow).
SEEING_EDGES = (0.6, 0.8, 1.0, 1.2, 1.6)
FLUX_EDGES = (1e3, 1e4, 1e5, 1e6, 5e6)
#: Bins of the axis ratio of a galaxy's brighter component (``dominant_axis_ratio``).
AXIS_RATIO_EDGES = (0.25, 0.5, 0.7, 0.9, 1.0)
#: Conditions of a realism test set (``simulate --realism``) scored apart: the column that
#: says whether a stamp has it, and which stamps do (from the set's table).
REALISM_CONDITIONS = {
    "star-forming clumps": ("knot_flux_fraction", lambda t: t["knot_flux_fraction"] > 0),
    "neighbours or stars": ("n_neighbours",
                            lambda t: t["n_neighbours"] + t.get("n_stars", 0) > 0),
    "masked pixels": ("masked_fraction", lambda t: t["masked_fraction"] > 0),
    "Kolmogorov PSF": ("psf_kind", lambda t: t["psf_kind"] == PSF_KINDS.index("kolmogorov")),
}
#: Bins with fewer test galaxies are listed but not counted in the worst per-bin error (at 68 %
#: a bin of 200 has a binomial scatter of 3.3 points).
MIN_BIN_GALAXIES = 200


def residual_figures(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Headline figures from point estimates ``pred`` and truths ``truth`` (N, 3)."""
    d_bt = pred[:, 0] - truth[:, 0]
    rel_re = np.abs(pred[:, 1] - truth[:, 1]) / truth[:, 1]
    rel_f = np.abs(pred[:, 2] - truth[:, 2]) / truth[:, 2]

    def r2(p, t):
        return float(1.0 - np.sum((p - t) ** 2) / np.sum((t - t.mean()) ** 2))

    return {"sigma_bt_residual": float(np.std(d_bt)),
            "median_abs_bt_residual": float(np.median(np.abs(d_bt))),
            "median_rel_re_error": float(np.median(rel_re)),
            "median_rel_flux_error": float(np.median(rel_f)),
            "r2_bt": r2(pred[:, 0], truth[:, 0]),
            "r2_log_re": r2(np.log10(pred[:, 1]), np.log10(truth[:, 1])),
            "r2_log_flux": r2(np.log10(pred[:, 2]), np.log10(truth[:, 2])),
            "n": int(len(pred))}


def _coverages(samples, names, truth) -> dict:
    """``{name: {level: fraction of truths inside the HPD interval}}`` for the report."""
    covered = coverage(samples, truth)
    return {name: {f"{level:.4f}": float(covered[i, j]) for i, level in enumerate(LEVELS)}
            for j, name in enumerate(names)}


def binned_coverage(samples, names, truth, values, edges) -> list[dict]:
    """Coverage per bin of ``values`` (N,) between consecutive ``edges``: one record per bin
    with its range, its number of galaxies and ``_coverages`` of them."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (values >= lo) & (values <= hi if hi == edges[-1] else values < hi)
        out.append({"range": [float(lo), float(hi)], "n": int(m.sum()),
                    "coverage": _coverages(samples[m], names, truth[m]) if m.any() else {}})
    return out


def worst_bin_error(bins: list[dict]) -> float:
    """Largest |coverage - level| over the bins holding at least ``MIN_BIN_GALAXIES``."""
    errors = [abs(v - float(level)) for b in bins if b["n"] >= MIN_BIN_GALAXIES
              for row in b["coverage"].values() for level, v in row.items()]
    return max(errors, default=float("nan"))


def _label_accuracy(summary, truth, labels):
    out = {}
    checks = [("highly disk-dominated", summary["bt_mode"] <= labels["bt_disk_max"],
               truth[:, 0] <= 0.1),
              ("highly bulge-dominated", summary["bt_mode"] >= labels["bt_bulge_min"],
               truth[:, 0] >= 0.85),
              ("R_e < 1 arcsec", summary["re_arcsec_mode"] <= labels["re_small_arcsec"],
               truth[:, 1] < 1.0)]
    for name, labelled, true in checks:
        out[name] = {"labelled": int(labelled.sum()), "truly_in_class": int(true.sum()),
                     "precision": float((labelled & true).sum() / max(labelled.sum(), 1)),
                     "recall": float((labelled & true).sum() / max(true.sum(), 1))}
    return out


def _plots(folder, names, pred, truth, summary, samples_cov):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    logs = {"bt": False, "re_arcsec": True, "flux_njy": True}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for j, (ax, name) in enumerate(zip(axes, names, strict=True)):
        t, p = truth[:, j], pred[:, j]
        ax.hexbin(t, p, gridsize=60, bins="log", cmap="viridis",
                  xscale="log" if logs[name] else "linear",
                  yscale="log" if logs[name] else "linear", mincnt=1)
        lims = [t.min(), t.max()]
        ax.plot(lims, lims, "r--", lw=1)
        ax.set_xlabel(f"true {LABELS[name]}")
        ax.set_ylabel(f"predicted (mode) {LABELS[name]}")
    fig.suptitle("Test set: true vs predicted")
    fig.tight_layout()
    fig.savefig(folder / "true_vs_predicted.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for j, (ax, name) in enumerate(zip(axes, names, strict=True)):
        t, p = truth[:, j], pred[:, j]
        resid = p - t if name == "bt" else (p - t) / t
        ax.hexbin(p, resid, gridsize=60, bins="log", cmap="magma",
                  xscale="log" if logs[name] else "linear", mincnt=1)
        ax.axhline(0, color="c", lw=1)
        ax.set_xlabel(f"predicted {LABELS[name]}")
        ax.set_ylabel("residual" if name == "bt" else "relative residual")
        if name != "bt":
            ax.set_ylim(-1, 1)
        if logs[name]:  # minor-tick labels of a short log axis overlap
            ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle("Test set: residuals vs predicted value")
    fig.tight_layout()
    fig.savefig(folder / "residuals_vs_predicted.png", dpi=90)
    plt.close(fig)

    levels, curves = samples_cov
    fig, ax = plt.subplots(figsize=(5, 5))
    for j, name in enumerate(names):
        ax.plot(levels, curves[:, j], label=LABELS[name])
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for level in LEVELS:
        ax.axvline(level, color="grey", lw=0.5)
    ax.set_xlabel("credible level (HPD)")
    ax.set_ylabel("fraction of test galaxies covered")
    ax.legend()
    ax.set_title("Coverage of HPD intervals")
    fig.tight_layout()
    fig.savefig(folder / "coverage.png", dpi=90)
    plt.close(fig)


def _measure(model, test, n_samples, flux_prior, psf_known=True):
    """Posterior samples, KDE-mode point estimates, summaries and truths for one test draw.

    A seeing-conditioned network is told each stamp's PSF FWHM (with the error a measured
    one has) when ``psf_known``, and that it is unknown otherwise."""
    x, cond = fixed_observations(test, seed=TEST_NOISE_SEED, flux_prior=flux_prior)
    psf = None
    if model.takes_psf and psf_known:
        psf = psf_given(psf_in_stamps(test),
                        np.random.default_rng([TEST_NOISE_SEED, 7]), unknown_fraction=0.0)
    truth = truth_table(test, cond, len(test))
    # As the app reads them: a stamp noisier or deeper than the training range is scaled into
    # it, and its flux samples back (engine.noise_gain; 1 for every stamp of a simulated set).
    stamps = x.numpy()
    gain = noise_gain([stamp_sky_sigma(s) for s in stamps], model.bundle.card)
    pred = model.predict(stamps / gain[:, None, None].astype(np.float32), n_samples=n_samples,
                         seed=5, psf_fwhm=psf)
    if "flux_njy" in model.names:
        pred.samples[..., model.names.index("flux_njy")] *= gain[:, None].astype(np.float32)
    summary = summarize(pred.samples, model.names, model.mode_transforms())
    point = np.stack([summary[f"{n}_mode"] for n in model.names], axis=1)
    return pred.samples, point, summary, truth


def _scores(model, test, samples, point, summary, truth, label_thresholds):
    """Residual figures (overall, per component count, bright), coverage and label accuracy."""
    figures = residual_figures(point, truth)
    one = test.table["components"][:len(test)] == 1
    figures["sigma_bt_residual_one_component"] = float(np.std(point[one, 0] - truth[one, 0]))
    figures["sigma_bt_residual_two_component"] = float(np.std(point[~one, 0] - truth[~one, 0]))
    faint = truth[:, 2] < 1e4
    figures["bright_1e4_njy"] = residual_figures(point[~faint], truth[~faint])
    seeing = psf_in_stamps(test)  # the PSF in the stamps, as the model is told it
    by_seeing = binned_coverage(samples, model.names, truth, seeing, SEEING_EDGES)
    by_flux = binned_coverage(samples, model.names, truth, truth[:, 2], FLUX_EDGES)
    figures["worst_bin_coverage_error"] = worst_bin_error(by_seeing + by_flux)
    axis_ratio = dominant_axis_ratio(test.table, len(test))
    by_axis_ratio = []
    if axis_ratio is not None:  # else no figure: a NaN would not be JSON
        by_axis_ratio = binned_coverage(samples, model.names, truth, axis_ratio,
                                        AXIS_RATIO_EDGES)
        figures["worst_axis_ratio_bin_coverage_error"] = worst_bin_error(by_axis_ratio)
    return {"figures": figures, "coverage": _coverages(samples, model.names, truth),
            "coverage_by_seeing": by_seeing, "coverage_by_flux": by_flux,
            "coverage_by_axis_ratio": by_axis_ratio,
            "by_realism": by_realism(test.table, samples, point, model.names, truth),
            "labels": _label_accuracy(summary, truth, label_thresholds)}


def dominant_axis_ratio(table, n: int) -> np.ndarray | None:
    """Per galaxy, the axis ratio of its brighter component (the bulge's where B/T >= 0.5);
    None for a set without axis ratios. The flux and seeing bins hide a bias with it: small
    round disks' R_e came out 0.71 of the truth, elongated ones' 1.07
    (``benchmarks/axis_ratio_bias.py``)."""
    if not {"q_disk", "q_bulge"} <= set(table):
        return None
    bt = np.asarray(table["bt"][:n])
    return np.where(bt >= 0.5, np.asarray(table["q_bulge"][:n]), np.asarray(table["q_disk"][:n]))


def by_realism(table: dict, samples, point, names, truth) -> list[dict]:
    """Figures and coverage per condition of a realism test set (``REALISM_CONDITIONS``), of
    its stamps with that condition alone, and of those with none ("plain"); empty for a set
    without those columns.

    Stamps are scored as the network reads them: the app would replace neighbours by sky
    first (``neighbours.py``), so "neighbours or stars" is the network's own robustness."""
    rows = {k: np.asarray(v[:len(truth)]) for k, v in table.items()}
    masks = {name: holds(rows) for name, (column, holds) in REALISM_CONDITIONS.items()
             if column in rows}
    if not masks:
        return []
    held = np.array(list(masks.values()))
    alone = ({f"{name} alone": m & (held.sum(axis=0) == 1) for name, m in masks.items()}
             if len(masks) > 1 else {})
    masks = {"plain": ~held.any(axis=0), **masks, **alone}  # conditions overlap; alone: not
    # Figures of fewer than two stamps would be NaN (R^2), which JSON cannot hold.
    return [{"condition": name, "n": int(m.sum()),
             "figures": residual_figures(point[m], truth[m]) if m.sum() > 1 else {},
             "coverage": _coverages(samples[m], names, truth[m]) if m.any() else {}}
            for name, m in masks.items()]


def evaluate(bundle_dir, test_path, n_samples=500, limit=None, progress=None) -> dict:
    """Evaluate on ``test_path``; write ``report/`` into the bundle and figures into the card.

    The headline figures use log-uniform total fluxes (faint galaxies weigh as much as bright
    ones); the same galaxies, sky levels and unit noise draws are also scored with GaMPEN's
    linear-uniform flux draw, the distribution behind the paper's figures, so the two can be
    compared like for like.
    """
    progress = progress or Progress()
    bundle_dir = Path(bundle_dir)
    model = MorphologyModel(bundle_dir, device="cpu")
    card = json.loads((bundle_dir / "card.json").read_text())
    test = load_set(test_path, limit)
    t0 = time.time()
    samples, point, summary, truth = _measure(model, test, n_samples, "log-uniform")
    seconds = time.time() - t0
    scores = _scores(model, test, samples, point, summary, truth, card["labels"])
    gampen = _scores(model, test, *_measure(model, test, n_samples, "uniform"), card["labels"])
    unknown = (_scores(model, test, *_measure(model, test, n_samples, "log-uniform", False),
                       card["labels"]) if model.takes_psf else None)
    curve_levels = np.linspace(0.05, 0.995, 40)
    curves = coverage(samples, truth, curve_levels)
    report_dir = bundle_dir / "report"
    report_dir.mkdir(exist_ok=True)
    _plots(report_dir, model.names, point, truth, summary, (curve_levels, curves))
    report = {"test_file": str(test_path), "test_galaxies": len(test),
              "noise_seed": TEST_NOISE_SEED, "samples_per_galaxy": n_samples, **scores,
              "gampen_flux_prior": gampen, "psf_unknown": unknown,
              "inference_seconds_per_galaxy": seconds / len(test),
              "training": {k: card["training"][k] for k in ("n_train", "time_s")},
              "calibration": card.get("posterior")}
    (report_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (report_dir / "report.md").write_text(_markdown(report, card))
    card["test"] = {**scores, "gampen_flux_prior": gampen, "psf_unknown": unknown,
                    "test_galaxies": len(test)}
    (bundle_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    figures = scores["figures"]
    progress.emit("evaluated", **{k: v for k, v in figures.items() if not isinstance(v, dict)})
    return report


def _score_tables(scores) -> list[str]:
    f = scores["figures"]
    lines = ["| figure | value | target |", "|---|---|---|",
             f"| sigma(B/T residual) | {f['sigma_bt_residual']:.4f} | <= 0.10 |",
             f"| ... one-component galaxies | {f['sigma_bt_residual_one_component']:.4f} | |",
             f"| ... two-component galaxies | {f['sigma_bt_residual_two_component']:.4f} | |",
             f"| median abs(dR_e)/R_e | {f['median_rel_re_error']:.4f} | <= 0.10 |",
             f"| median abs(dF)/F | {f['median_rel_flux_error']:.4f} | <= 0.03 |",
             f"| R^2 B/T, log R_e, log F | {f['r2_bt']:.3f}, {f['r2_log_re']:.3f}, "
             f"{f['r2_log_flux']:.3f} | |",
             f"| sigma(B/T), F > 1e4 nJy | {f['bright_1e4_njy']['sigma_bt_residual']:.4f} | |",
             "", "Coverage of highest-density intervals:", "",
             "| parameter | 68.27 % | 95.45 % | 99.73 % |", "|---|---|---|---|"]
    for name, row in scores["coverage"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f} %" for v in row.values()) + " |")
    lines += _bin_table("PSF FWHM [arcsec]", scores["coverage_by_seeing"], "{:.1f}")
    lines += _bin_table("true flux [nJy]", scores["coverage_by_flux"], "{:.0e}")
    lines += ["", f"Worst per-bin coverage error (bins of at least {MIN_BIN_GALAXIES}): "
                  f"{100 * f['worst_bin_coverage_error']:.1f} points (target: 3)."]
    if scores.get("coverage_by_axis_ratio"):
        lines += _bin_table("axis ratio of the brighter component",
                            scores["coverage_by_axis_ratio"], "{:.2f}")
        lines += ["", "Worst coverage error per bin of axis ratio: "
                      f"{100 * f['worst_axis_ratio_bin_coverage_error']:.1f} points."]
    if scores.get("by_realism"):
        lines += _realism_table(scores["by_realism"])
    lines += ["", "Qualitative labels (GaMPEN §6.4):", "",
              "| label | labelled | truly in class | precision | recall |", "|---|---|---|---|---|"]
    for name, row in scores["labels"].items():
        lines.append(f"| {name} | {row['labelled']} | {row['truly_in_class']} | "
                     f"{row['precision']:.3f} | {row['recall']:.3f} |")
    return lines


def _realism_table(rows) -> list[str]:
    """Markdown rows: per realism condition, its galaxies, residual figures and 68 / 95 %
    coverage of each parameter."""
    names = next((list(r["coverage"]) for r in rows if r["coverage"]), [])
    lines = ["", "Per condition of the realism set (stamps as the network reads them; the app "
                 "replaces neighbours by sky first):", "",
             "| condition | n | sigma(B/T) | median abs(dR_e)/R_e | median abs(dF)/F | "
             + " | ".join(f"{n} 68 / 95 %" for n in names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for r in rows:
        if not r["figures"]:
            lines.append(f"| {r['condition']} | {r['n']} |" + " |" * (3 + len(names)))
            continue
        f = r["figures"]
        cells = [" / ".join(f"{100 * v:.1f}" for v in list(r["coverage"][n].values())[:2])
                 for n in names]
        lines.append(f"| {r['condition']} | {r['n']} | {f['sigma_bt_residual']:.3f} | "
                     f"{f['median_rel_re_error']:.3f} | {f['median_rel_flux_error']:.3f} | "
                     + " | ".join(cells) + " |")
    return lines


def _bin_table(what, bins, fmt) -> list[str]:
    """Markdown rows: per bin, its galaxies and the 68/95/99.7 % coverage of each parameter."""
    names = next((list(b["coverage"]) for b in bins if b["coverage"]), [])
    lines = ["", f"Coverage (68 / 95 / 99.7 %) per bin of {what}:", "",
             "| bin | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for b in bins:
        lo, hi = (fmt.format(v) for v in b["range"])
        cells = [" / ".join(f"{100 * v:.1f}" for v in b["coverage"][n].values())
                 if b["coverage"] else "" for n in names]
        lines.append(f"| {lo}-{hi} | {b['n']} | " + " | ".join(cells) + " |")
    return lines


def _markdown(report, card) -> str:
    lines = [f"# Evaluation of `{card['name']}`", "",
             f"Test set: {report['test_galaxies']} simulated galaxies never seen in training or "
             f"calibration (`{report['test_file']}`, noise seed {report['noise_seed']}), "
             f"{report['samples_per_galaxy']} posterior samples each; point estimate = KDE mode.",
             "", "## Log-uniform total flux (10^3-5x10^6 nJy): the headline figures", "",
             "Faint galaxies weigh as much as bright ones; a third of them are below 10^4 nJy, "
             "where B/T is barely constrained.", "", *_score_tables(report),
             "", "## GaMPEN's flux distribution (uniform in linear flux)", "",
             "The same galaxies, sky levels and unit noise draws (source noise follows the "
             "flux), with total fluxes drawn uniform in "
             "10^3-5x10^6 nJy as GaMPEN (§2) drew them: 80 % are brighter than 10^6 nJy. "
             "Compare these with the paper's figures.", "",
             *_score_tables(report["gampen_flux_prior"]),
             *(["", "## PSF unknown (log-uniform flux)", "",
                "The network reads the PSF's FWHM; here it is told that it is unknown, as for "
                "an image without a PSF in its header, given or measured.", "",
                *_score_tables(report["psf_unknown"])] if report.get("psf_unknown") else []),
             "", f"Label thresholds (chosen on validation data): {card['labels']}", "",
             "## Training", "",
             f"{report['training']['n_train']} simulated galaxies, "
             f"{report['training']['time_s'] / 60:.1f} min on {card['training']['device']}; "
             f"calibration: {report['calibration']}.", "",
             f"Inference: {1000 * report['inference_seconds_per_galaxy']:.1f} ms per galaxy "
             f"({report['samples_per_galaxy']} samples, batched).", "",
             "Figures below are for the log-uniform test draw.", "",
             "![true vs predicted](true_vs_predicted.png)", "",
             "![residuals](residuals_vs_predicted.png)", "", "![coverage](coverage.png)", ""]
    return "\n".join(lines)
