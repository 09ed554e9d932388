"""End-to-end property pipelines: train, evaluate on held-out data, write a bundle and a report.

* ``run_cnn_pipeline`` — Wu & Boada (2019): residual CNN on all bands, TTA, calibrated Gaussian
  uncertainties; with ``studies``: random-forest and LightGBM baselines on integrated photometry
  and the resolution study (same field of view re-binned to fewer pixels, one CNN per size).
* ``run_gbm_pipeline`` — Dobbels et al. (2019): CNN on adaptively log-scaled stamps (plus
  auxiliary morphology targets when the data have them), its penultimate features + luminosity
  statistics + redshift + pixel size -> uncertainty-weighted L1 LightGBM, conformalised quantile
  intervals; with ``studies``: the feature-group ablation (incl. colour-only and colour+morphology,
  split by edge-on disks when known) and permutation importances.

Each stage leaves its result in the run folder (CNN checkpoints per epoch, ``*.json`` per
finished study), so an interrupted run resumes where it stopped. Everything is seeded.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.stats import mad_std

import galaxy_inspector
from galaxy_inspector.models.bundle import OutputSpec, save_bundle
from galaxy_inspector.physical_properties.model import booster_to_tensor
from galaxy_inspector.physical_properties.predict import (
    QUANTILE_LEVELS,
    build_gbm_features,
    gaussian_prediction,
    gbm_prediction,
    gbm_tensor_name,
    network_passes,
    photometry_features,
)
from galaxy_inspector.physical_properties.scaling import rebin_stamps
from galaxy_inspector.seeding import galaxy_seeds
from training.distributed import world_size
from training.progress import Progress
from training.properties import evaluate as ev
from training.properties import gbm
from training.properties.cnn import CNNConfig, calibrate_sigma_scale, scale_in_chunks, train_cnn
from training.properties.data import LabelledSet

__all__ = ["PipelineOptions", "run_cnn_pipeline", "run_gbm_pipeline", "estimate_sky_sigma"]

ARCHITECTURE = "property-resnet"


@dataclass
class PipelineOptions:
    """Where and how a pipeline runs."""

    work_dir: Path
    bundle_dir: Path | None = None
    name: str = "properties"
    cnn: CNNConfig = field(default_factory=CNNConfig)
    studies: bool = False
    resolutions: list = field(default_factory=list)  # image sides (pixels) for the study
    photometry: list = field(default_factory=list)  # magnitude columns for the GBM
    ablation_photometry: list = field(default_factory=list)  # colours for the ablation rows
    demo: bool = False
    seed: int = 1
    threads: int = 0
    n_samples: int = 300
    stop_after: int | None = None  # epochs per CNN in this invocation (session-sized pieces)


def estimate_sky_sigma(images) -> float:
    """Median over stamps of the robust (MAD) noise of the outer pixel frame, all bands."""
    x = np.asarray(images[:2000], dtype=np.float64)
    w = max(1, x.shape[-1] // 8)
    frame = np.concatenate([x[..., :w, :].reshape(len(x), -1),
                            x[..., -w:, :].reshape(len(x), -1)], axis=1)
    return float(np.median(mad_std(frame, axis=1)))


def _output_specs(train: LabelledSet) -> list[OutputSpec]:
    specs = []
    for name, t in train.specs.items():
        values = np.asarray(train.targets[name], dtype=np.float64)
        net = np.log10(values) if t.transform == "log10" else values
        specs.append(OutputSpec(name=name, unit=t.unit, transform=t.transform,
                                scaler_mean=float(net.mean()),
                                scaler_std=float(net.std() or 1.0), description=t.description))
    return specs


def _network_targets(part: LabelledSet, specs, aux_stats=None) -> np.ndarray:
    cols = [s.forward(part.targets[s.name]) for s in specs]
    if aux_stats:
        cols += [(part.aux[k] - m) / sd for k, (m, sd) in aux_stats.items()]
    return np.stack(cols, axis=1).astype(np.float32)


def _preprocessing(data: LabelledSet, method: str) -> dict:
    if data.kind == "display":
        return {"kind": "display", "description": "0-255 colour cutout divided by 255"}
    if method == "cnn":
        soft = estimate_sky_sigma(data.images)
        return {"kind": "arsinh", "softening": round(soft, 4),
                "description": f"arsinh(F / {soft:.4g} nJy) per band (softening = typical "
                               "sky noise of the training stamps)"}
    return {"kind": "adaptive_log", "noise_target": 0.2,
            "description": "Dobbels et al. 2019 adaptive log scaling: per stamp rescaled to "
                           "[0, 1], F' = log(aF + 1)/log(a + 1) with a fitted so the noise "
                           "level (clipped mean + 2 sd) maps to 0.2"}


def _truth(part: LabelledSet, name: str):
    """Noise-free truth when the data have it (simulations), else the catalogue label."""
    return part.meta.get(f"{name}_true", part.targets[name])


def _train_cnn_on(part_x, parts, y, opts: PipelineOptions, folder, progress, label):
    config = CNNConfig(**{**asdict(opts.cnn), "seed": opts.seed,
                          "threads": opts.threads or opts.cnn.threads})
    return train_cnn(part_x["train"], y["train"], part_x["val"], y["val"], folder, config,
                     progress, stop_after=opts.stop_after, label=label)


def _log_space(spec: OutputSpec) -> bool:
    return spec.transform == "log10"


def _card_common(data: LabelledSet, opts: PipelineOptions, method, pre, specs, hyper,
                 needs_redshift, photometry, description) -> dict:
    synthetic = bool(data.info.get("relations", {}).get("synthetic", False))
    return {
        "name": opts.name,
        "task": "properties",
        "method": method,
        "description": description + (" TRAINED ON A SIMULATED SURVEY WITH SYNTHETIC LABELS: a "
                                       "demonstration, not a model for real galaxies."
                                       if synthetic else ""),
        "demo": bool(opts.demo),
        "synthetic_training_data": synthetic,
        "architecture": ARCHITECTURE,
        "hyperparameters": hyper,
        "input": {"bands": list(data.bands), "kind": data.kind,
                  "unit": "nJy per pixel" if data.kind == "flux" else "display value 0-255",
                  "pixel_scale_arcsec": float(data.pixel_scale),
                  "stamp_size": int(data.images.shape[-1]), "preprocessing": pre,
                  "centring": "galaxy at the stamp centre", "needs_redshift": needs_redshift,
                  "photometry": list(photometry)},
        "outputs": [s.to_card() for s in specs],
        "training_ranges": {s.name: [float(np.min(data.targets[s.name])),
                                     float(np.max(data.targets[s.name]))] for s in specs},
        "training": {"data": {k: v for k, v in data.info.items()},
                     "n": {p: int(np.sum(data.split == i)) for p, i in
                           (("train", 0), ("val", 1), ("test", 2))},
                     "seed": opts.seed, "world_size": world_size()},
        "package_version": galaxy_inspector.__version__,
    }


def _start(data: LabelledSet, opts: PipelineOptions, method: str, progress):
    """What both pipelines start from: the progress sink, the work and report folders, the
    train/validation/test parts, the card's pixel preprocessing and the output specs."""
    work = Path(opts.work_dir)
    report = work / "report"
    report.mkdir(parents=True, exist_ok=True)
    parts = {p: data.part(p) for p in ("train", "val", "test")}
    return (progress or Progress(), work, report, parts, _preprocessing(data, method),
            _output_specs(parts["train"]))


def _finish_report(report_dir: Path, opts: PipelineOptions, card: dict, tensors: dict,
                   progress: Progress):
    if opts.bundle_dir is None:
        return None
    folder = save_bundle(opts.bundle_dir, card, tensors)
    target = Path(folder) / "report"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(report_dir, target)
    progress.emit("bundle", path=str(folder))
    return Path(folder)


# --------------------------------------------------------------------------- Wu & Boada


def run_cnn_pipeline(data: LabelledSet, opts: PipelineOptions,
                     progress: Progress | None = None):
    """Wu & Boada pipeline; returns the bundle folder (or the metrics dict without one), or
    ``None`` when a CNN paused after ``stop_after`` epochs."""
    t0 = time.time()
    progress, work, report, parts, pre, specs = _start(data, opts, "cnn", progress)
    names = [s.name for s in specs]
    y = {p: _network_targets(parts[p], specs) for p in parts}
    x = {p: scale_in_chunks(parts[p].images, pre)[0] for p in ("train", "val")}
    model, history = _train_cnn_on(x, parts, y, opts, work / "cnn", progress, "cnn")
    if model is None:
        return None
    # Evaluated as the app predicts: raw stamps through physical_properties.predict, with the
    # sigma scale as the card rounds it.
    mu_val, sig_val = network_passes(model, parts["val"].images, pre).gaussian()
    sigma_scale = [round(float(v), 4) for v in calibrate_sigma_scale(mu_val, sig_val, y["val"])]
    test = parts["test"]
    passes = network_passes(model, test.images, pre)
    prediction = gaussian_prediction(passes, specs, sigma_scale, opts.n_samples,
                                     galaxy_seeds(opts.seed, test.images))  # as the app
    metrics, coverage, point, point_no_tta = {}, {}, {}, {}
    for j, s in enumerate(specs):
        point[s.name] = prediction.point[:, j]
        point_no_tta[s.name] = s.inverse(passes.means[:, 0, j])
        metrics[s.name] = {
            "tta": ev.regression_metrics(test.targets[s.name], point[s.name], _log_space(s)),
            "no_tta": ev.regression_metrics(test.targets[s.name], point_no_tta[s.name],
                                            _log_space(s)),
            "tta_vs_truth": ev.regression_metrics(_truth(test, s.name), point[s.name],
                                                  _log_space(s))}
        coverage[s.name] = ev.interval_coverage(prediction.samples[..., j],
                                                test.targets[s.name])
    results = {"metrics": metrics, "coverage": coverage, "sigma_scale": sigma_scale}
    units = {s.name: s.unit for s in specs}
    ev.plot_predictions(report / "predictions.png", {n: test.targets[n] for n in names},
                        point, units, f"{opts.name}: CNN with TTA, test set")
    lines = [f"# {opts.name}: Wu & Boada-style residual CNN", "",
             _data_sentence(data), "",
             "## Test set (CNN, 8-fold test-time augmentation)", "",
             ev.markdown_table(
                 ["target", "RMSE", "NMAD", "bias", "RMSE no TTA", "RMSE vs noise-free truth"],
                 [[n, metrics[n]["tta"]["rmse"], metrics[n]["tta"]["nmad"],
                   metrics[n]["tta"]["bias"], metrics[n]["no_tta"]["rmse"],
                   metrics[n]["tta_vs_truth"]["rmse"]] for n in names]),
             "", "Residuals of log10-transformed targets are in dex.", "",
             "## Uncertainty coverage (test set)", "",
             ev.markdown_table(["target", "68.27 %", "95.45 %", "99.73 %", "sigma scale"],
                               [[n, *coverage[n].values(), results["sigma_scale"][j]]
                                for j, n in enumerate(names)]),
             "", "![predictions](predictions.png)", ""]
    if opts.studies:
        lines += _cnn_studies(data, parts, specs, y, opts, work, report, metrics, progress)
        if lines[-1] is None:
            return None
    results["time_s"] = round(time.time() - t0, 1)
    ev.write_json(report / "metrics.json", results)
    (report / "report.md").write_text("\n".join(lines) + "\n")
    hyper = CNNConfig(**asdict(opts.cnn)).hyperparameters(data.images.shape[1], len(specs))
    card = _card_common(data, opts, "cnn", pre, specs, hyper, False, [],
                        "Residual CNN (Wu & Boada 2019 recipe) predicting "
                        f"{', '.join(names)} from {''.join(data.bands)} stamps, with "
                        "test-time augmentation and calibrated Gaussian uncertainties.")
    card["uncertainty"] = {
        "kind": "Gaussian in the scaled target space: mean of 8 dihedral TTA passes; variance = "
                "mean predicted variance + TTA spread, times sigma_scale^2 (fitted on "
                "validation so 68.27 % intervals hold 68.27 %)",
        "sigma_scale": results["sigma_scale"], "test_coverage": coverage}
    card["test_metrics"] = metrics
    card["training"].update(config=asdict(opts.cnn), history=history,
                            time_s=results["time_s"])
    tensors = {f"cnn.{k}": v.detach().contiguous().numpy()
               for k, v in model.state_dict().items()}
    folder = _finish_report(report, opts, card, tensors, progress)
    return folder if folder is not None else results


def _data_sentence(data: LabelledSet) -> str:
    n = {p: int(np.sum(data.split == i)) for p, i in (("train", 0), ("val", 1), ("test", 2))}
    kind = data.info.get("kind", "labelled table")
    return (f"Data: {kind} ({data.info.get('source', '')}); {n['train']} train / {n['val']} "
            f"validation / {n['test']} test objects; bands {', '.join(data.bands)}; "
            f"{data.images.shape[-1]} px stamps at {data.pixel_scale}\"/px.")


def _photometry_matrix(part: LabelledSet, with_redshift: bool):
    cols = sorted(part.photometry)
    mags = np.stack([part.photometry[c] for c in cols], axis=1)
    colours = mags[:, :-1] - mags[:, 1:]
    x = np.concatenate([mags, colours], axis=1)
    if with_redshift:
        x = np.concatenate([x, part.redshift[:, None]], axis=1)
    return x


def _cnn_studies(data, parts, specs, y, opts, work, report, metrics, progress):
    """Photometry baselines and the resolution study; returns report lines (None = paused)."""
    lines, names = [], [s.name for s in specs]
    baseline_rows, baseline = [], {}
    if parts["train"].photometry:
        variants = [("gri photometry", False)]
        if np.isfinite(data.redshift).all():
            variants.append(("gri photometry + redshift", True))
        for label, with_z in variants:
            xs = {p: _photometry_matrix(parts[p], with_z) for p in parts}
            for j, s in enumerate(specs):
                preds = gbm.photometry_baselines(xs["train"], y["train"][:, j], xs["val"],
                                                 y["val"][:, j], xs["test"], seed=opts.seed,
                                                 threads=opts.threads)
                for method, p in preds.items():
                    m = ev.regression_metrics(parts["test"].targets[s.name], s.inverse(p),
                                              _log_space(s))
                    baseline[(s.name, f"{method} on {label}")] = m
                    baseline_rows.append([s.name, f"{method} on {label}", m["rmse"],
                                          m["nmad"]])
        for s in specs:
            t = parts["test"].targets[s.name]
            mean_pred = np.full(len(t), s.inverse(0.0))
            m = ev.regression_metrics(t, mean_pred, _log_space(s))
            baseline[(s.name, "constant (training mean)")] = m
            baseline_rows.append([s.name, "constant (training mean)", m["rmse"], m["nmad"]])
        rows = [[n, "CNN on images (TTA)", metrics[n]["tta"]["rmse"], metrics[n]["tta"]["nmad"]]
                for n in names] + baseline_rows
        rows.sort(key=lambda r: names.index(r[0]))
        lines += ["## Image CNN against photometry-only baselines (same test objects)", "",
                  ev.markdown_table(["target", "method", "RMSE", "NMAD"], rows), ""]
        ev.write_json(report / "baselines.json",
                      {f"{k[0]} | {k[1]}": v for k, v in baseline.items()})
    side = data.images.shape[-1]
    res_rows = [{"size": side, "pixel_scale": data.pixel_scale,
                 **{n: metrics[n]["tta"] for n in names}}]
    for size in sorted({int(s) for s in opts.resolutions if int(s) < side}, reverse=True):
        factor = side // size
        if side % size:
            raise ValueError(f"resolution {size} px does not divide the stamp side {side} px")
        folder = work / f"resolution-{size}"
        done = folder / "result.json"
        if done.exists():
            res_rows.append(json.loads(done.read_text()))
            continue
        pre = _preprocessing(data, "cnn")
        xr = {p: scale_in_chunks(rebin_stamps(parts[p].images, factor), pre)[0]
              for p in ("train", "val")}
        model, _ = _train_cnn_on(xr, parts, y, opts, folder, progress, f"resolution {size}px")
        if model is None:
            return [*lines, None]
        passes = network_passes(model, rebin_stamps(parts["test"].images, factor), pre)
        point = gaussian_prediction(passes, specs, None, 1, opts.seed).point
        row = {"size": size, "pixel_scale": data.pixel_scale * factor}
        for j, s in enumerate(specs):
            row[s.name] = ev.regression_metrics(parts["test"].targets[s.name], point[:, j],
                                                _log_space(s))
        ev.write_json(done, row)
        res_rows.append(row)
    if len(res_rows) > 1:
        res_rows.sort(key=lambda r: -r["size"])
        ev.write_json(report / "resolution.json", res_rows)
        lines += ["## Resolution study (same field of view, re-binned; one CNN per size)", "",
                  ev.markdown_table(
                      ["side [px]", "pixel [\"]", *[f"{n} RMSE" for n in names],
                       *[f"{n} NMAD" for n in names]],
                      [[r["size"], round(r["pixel_scale"], 3),
                        *[r[n]["rmse"] for n in names], *[r[n]["nmad"] for n in names]]
                       for r in res_rows]), ""]
        for n in names:
            curve = [{"size": r["size"], **r[n]} for r in res_rows]
            lines_base = {k[1]: v["rmse"] for k, v in baseline.items() if k[0] == n}
            ev.plot_resolution(report / f"resolution_{n}.png", curve, n, lines_base)
            lines.append(f"![resolution {n}](resolution_{n}.png)")
        lines.append("")
    return lines


# --------------------------------------------------------------------------- Dobbels


def run_gbm_pipeline(data: LabelledSet, opts: PipelineOptions,
                     progress: Progress | None = None):
    """Dobbels pipeline; returns the bundle folder (or the results without one), or ``None``
    when the CNN paused after ``stop_after`` epochs."""
    t0 = time.time()
    progress, work, report, parts, pre, specs = _start(data, opts, "cnn+gbm", progress)
    names = [s.name for s in specs]
    aux_stats = {k: (float(np.mean(v)), float(np.std(v) or 1.0))
                 for k, v in parts["train"].aux.items()}
    y = {p: _network_targets(parts[p], specs, aux_stats) for p in parts}
    scaled = {p: scale_in_chunks(parts[p].images, pre)[0] for p in ("train", "val")}
    model, history = _train_cnn_on(scaled, parts, y, opts, work / "cnn", progress, "cnn")
    if model is None:
        return None
    # The LightGBM models learn from, and are evaluated on, the features the app computes.
    passes = {p: network_passes(model, parts[p].images, pre) for p in parts}
    live = np.flatnonzero(passes["train"].features.std(axis=0) > 1e-6).tolist()  # dead neurons
    spec = {"cnn_keep": live, "luminosity_band": 0, "pixel_scale": data.pixel_scale,
            "photometry": list(opts.photometry)}
    needs_redshift = bool(np.isfinite(data.redshift).all())
    xf = {p: build_gbm_features(parts[p].images, passes[p].scaled, passes[p].scaling_value,
                                passes[p].features,
                                parts[p].redshift if needs_redshift else None,
                                parts[p].photometry, spec)
          for p in parts}
    del passes
    feature_names, groups = xf["train"][1], xf["train"][2]
    x = {p: xf[p][0] for p in parts}
    tensors = {f"cnn.{k}": v.detach().contiguous().numpy()
               for k, v in model.state_dict().items()}
    offsets, boosters, errors = {}, {}, {}
    for s in specs:
        err = {p: gbm.floored_errors(parts[p].targets[s.name], parts[p].errors[s.name])
               for p in parts}
        yv = {p: parts[p].targets[s.name] for p in parts}
        point = gbm.train_point_model(x["train"], yv["train"], err["train"], x["val"],
                                      yv["val"], err["val"], seed=opts.seed,
                                      threads=opts.threads, feature_names=feature_names)
        quantiles = gbm.train_quantile_models(x["train"], yv["train"], x["val"], yv["val"],
                                              seed=opts.seed, threads=opts.threads,
                                              feature_names=feature_names)
        q_val = np.stack([quantiles[lv].predict(x["val"]) for lv in QUANTILE_LEVELS], axis=1)
        offsets[s.name] = gbm.conformal_offsets(q_val, yv["val"])
        boosters[gbm_tensor_name(s.name, "point")] = point
        for lv in QUANTILE_LEVELS:
            boosters[gbm_tensor_name(s.name, f"q{lv}")] = quantiles[lv]
        errors[s.name] = err
    tensors.update({k: booster_to_tensor(b) for k, b in boosters.items()})
    test = parts["test"]
    prediction = gbm_prediction(boosters, specs, x["test"], offsets, opts.n_samples,
                                galaxy_seeds(opts.seed, test.images))  # seeded as the app
    results, coverage, points = {}, {}, {}
    for j, s in enumerate(specs):
        truth, err, pred = test.targets[s.name], errors[s.name]["test"], prediction.point[:, j]
        points[s.name] = pred
        r = {"l1": round(gbm.dobbels_l1(truth, pred, err), 4),
             **ev.regression_metrics(truth, pred, _log_space(s)),
             "best_iteration": int(boosters[gbm_tensor_name(s.name, "point")].best_iteration)}
        if _log_space(s):
            r["rmsle_dex"] = round(ev.rmsle(truth, pred), 4)
            r["within_0.15_dex"] = round(ev.within_dex(truth, pred), 4)
        results[s.name] = r
        coverage[s.name] = ev.interval_coverage(prediction.samples[..., j], truth)
    main_point = boosters[gbm_tensor_name(specs[0].name, "point")]
    main_err = errors[specs[0].name]
    units = {s.name: s.unit for s in specs}
    ev.plot_predictions(report / "predictions.png", {n: test.targets[n] for n in names},
                        points, units, f"{opts.name}: CNN features + LightGBM, test set")
    lines = [f"# {opts.name}: Dobbels-style CNN features + LightGBM", "", _data_sentence(data),
             "", f"CNN input: {pre['description']}. LightGBM features: {len(feature_names)} "
             f"({len(live)} live CNN features, {len(feature_names) - len(live)} luminosity/"
             "distance/colour features).", "",
             "## Test set (uncertainty-weighted L1 model)", "",
             ev.markdown_table(["target", "L1 (Dobbels eq. 2)", "RMSE", "NMAD", "RMSLE [dex]",
                                "within 0.15 dex"],
                               [[n, results[n]["l1"], results[n]["rmse"], results[n]["nmad"],
                                 results[n].get("rmsle_dex", "-"),
                                 results[n].get("within_0.15_dex", "-")] for n in names]),
             "", "RMSE/NMAD of log10-transformed targets are in dex.", "",
             "## Interval coverage (test set; HPD intervals of the predictive samples, as in "
             "the catalogue, from quantile LightGBM conformalised on validation)",
             "", ev.markdown_table(["target", "68.27 %", "95.45 %", "99.73 %"],
                                   [[n, *coverage[n].values()] for n in names]), "",
             "![predictions](predictions.png)", ""]
    if opts.studies:
        lines += _gbm_studies(parts, specs[0], x, feature_names, groups, main_point, main_err,
                              opts, report)
    ev.write_json(report / "metrics.json", {"test": results, "coverage": coverage,
                                             "conformal_offsets": offsets,
                                             "time_s": round(time.time() - t0, 1)})
    (report / "report.md").write_text("\n".join(lines) + "\n")
    hyper = CNNConfig(**asdict(opts.cnn)).hyperparameters(data.images.shape[1],
                                                          len(specs) + len(aux_stats))
    card = _card_common(data, opts, "cnn+gbm", pre, specs, hyper, needs_redshift,
                        opts.photometry,
                        f"Dobbels et al. (2019)-style pipeline predicting {', '.join(names)}: "
                        "CNN features of adaptively log-scaled "
                        f"{''.join(data.bands)} stamps + luminosity statistics + redshift + pixel "
                        "size -> LightGBM (uncertainty-weighted L1), conformalised quantile "
                        "intervals.")
    card["gbm"] = {**spec, "features": feature_names, "feature_groups": groups,
                   "relative_error_floor": gbm.RELATIVE_ERROR_FLOOR,
                   "format": "LightGBM text models stored as uint8 tensors gbm.<target>.<model>"}
    card["auxiliary_targets"] = {k: list(v) for k, v in aux_stats.items()}
    card["uncertainty"] = {"kind": "LightGBM quantile models at " + ", ".join(
        str(q) for q in QUANTILE_LEVELS) + " widened by split-conformal offsets from the "
        "validation set; median from the L1 model", "conformal_offsets": offsets,
        "test_coverage": coverage}
    card["test_metrics"] = results
    card["training"].update(config=asdict(opts.cnn), history=history,
                            time_s=round(time.time() - t0, 1))
    folder = _finish_report(report, opts, card, tensors, progress)
    return folder if folder is not None else {"test": results, "coverage": coverage}


def _gbm_studies(parts, spec, x, names, groups, point_model, err, opts, report):
    """Dobbels' ablation table (first target) and permutation importances."""
    name = spec.name
    y = {p: parts[p].targets[name] for p in parts}
    edge = parts["test"].meta.get("edge_on")
    lines = []
    imp = gbm.permutation_importance(point_model.predict, x["val"], y["val"], err["val"],
                                     names, seed=opts.seed)
    imp_groups = gbm.permutation_importance(point_model.predict, x["val"], y["val"],
                                            err["val"], names, groups=groups, seed=opts.seed)
    ev.plot_importances(report / "importances.png", imp,
                        f"{name}: permutation importances (validation)")
    ev.write_json(report / "importances.json", {"features": imp, "groups": imp_groups})
    lines += ["## Permutation importances (validation L1 increase)", "",
              ev.markdown_table(["feature group", "L1 increase"],
                                [[g, round(v, 4)] for g, v in imp_groups]), "",
              "![importances](importances.png)", ""]
    # Ablation: LightGBM on feature groups (Dobbels Table 1 and Sect. 4.3).
    phot_cols = list(opts.ablation_photometry)
    phot = {}
    if phot_cols:
        for p in parts:
            phot[p], phot_names = photometry_features(parts[p].photometry, phot_cols,
                                                      parts[p].redshift)
    col = {g: [i for i, gg in enumerate(groups) if gg == g] for g in set(groups)}
    rows_def = [("reference: catalogue L_g + redshift (no morphology)", "ref")] if (
        parts["train"].photometry and np.isfinite(parts["train"].redshift).all()) else []
    rows_def += [("luminosity statistics + distance (no CNN)", ["luminosity", "distance"]),
                ("CNN features only", ["cnn"]),
                ("CNN features + distance", ["cnn", "distance"]),
                ("CNN + luminosity + distance (single band, full)",
                 ["cnn", "luminosity", "distance"])]
    if phot_cols:
        rows_def += [(f"colours ({', '.join(phot_names)}) + redshift", "colour"),
                     ("colours + CNN + luminosity + distance", "colour+all")]
    rows, out = [], {}
    for label, which in rows_def:
        def matrix(p, which=which):
            if which == "ref":
                lg, _ = photometry_features(parts[p].photometry, [_g_column(parts[p])],
                                            parts[p].redshift)
                return np.concatenate([lg[:, :1], parts[p].redshift[:, None]], axis=1)
            if which == "colour":
                return np.concatenate([phot[p], parts[p].redshift[:, None]], axis=1)
            if which == "colour+all":
                return np.concatenate([x[p], phot[p]], axis=1)
            idx = sorted(i for g in which for i in col.get(g, []))
            return x[p][:, idx]

        xs = {p: np.ascontiguousarray(matrix(p)) for p in parts}
        if xs["train"].shape[1] == 0:
            continue
        model = gbm.train_point_model(xs["train"], y["train"], err["train"], xs["val"],
                                      y["val"], err["val"], seed=opts.seed, threads=opts.threads)
        pred = model.predict(xs["test"])
        r = {"l1": gbm.dobbels_l1(y["test"], pred, err["test"])}
        if spec.transform == "log10":
            r["rmsle_dex"] = ev.rmsle(y["test"], pred)
            r["within_0.15_dex"] = ev.within_dex(y["test"], pred)
        if edge is not None and edge.any():
            e = edge > 0
            r["l1_edge_on"] = gbm.dobbels_l1(y["test"][e], pred[e], err["test"][e])
            r["l1_not_edge_on"] = gbm.dobbels_l1(y["test"][~e], pred[~e], err["test"][~e])
        out[label] = r
        rows.append([label, *[round(float(r.get(k, np.nan)), 4) for k in
                              ("l1", "rmsle_dex", "within_0.15_dex", "l1_edge_on",
                               "l1_not_edge_on")]])
    ev.write_json(report / "ablation.json", out)
    n_edge = int((edge > 0).sum()) if edge is not None else 0
    lines += [f"## Ablation ({name}, test set; LightGBM retrained on each feature set)", "",
              ev.markdown_table(["features", "L1", "RMSLE [dex]", "within 0.15 dex",
                                 f"L1 edge-on disks (n={n_edge})", "L1 others"], rows), ""]
    return lines


def _g_column(part: LabelledSet) -> str:
    """The catalogue magnitude used as the reference method's L_g (first photometry column)."""
    cols = sorted(part.photometry)
    return "mag_g" if "mag_g" in cols else cols[0]
