"""How the viewer names and describes model bundles: display names with the demo label,
the property bundles a menu offers, and a bundle's card as a summary for people (HTML) and as
JSON, all read from the bundle's card without loading its weights."""

from __future__ import annotations

import html
import json
from pathlib import Path

from galaxy_inspector.errors import BundleError
from galaxy_inspector.labels import thresholds_from_card
from galaxy_inspector.models.bundle import CARD_NAME, resolve_bundle_path, shipped_bundles
from galaxy_inspector.viewer.wording import format_value, parameter_label, property_label

__all__ = ["card_html", "card_json", "read_card", "is_demo_card", "bundle_display_name",
           "known_property_bundles", "DEMO_LABEL", "DEMO_COLOUR"]

#: How a demo bundle (card ``demo`` or ``synthetic_training_data``) is labelled everywhere.
DEMO_LABEL = "demo — trained on a simulated survey"
DEMO_COLOUR = "#b35900"
DEMO_EXPLANATION = ("its training labels are synthetic, so its numbers demonstrate the method "
                    "and are not measurements of real galaxies")


def read_card(path_or_name) -> dict | None:
    """The model card of a bundle (folder or shipped name) without reading its weights, or
    None when there is no readable card (``load_bundle`` then says why)."""
    try:
        folder = resolve_bundle_path(path_or_name)
        card = json.loads((folder / CARD_NAME).read_text())
    except (BundleError, OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return card if isinstance(card, dict) else None


def is_demo_card(card: dict | None) -> bool:
    """Whether a card says its bundle is a demonstration trained on synthetic labels."""
    return bool(card) and bool(card.get("demo") or card.get("synthetic_training_data"))


def bundle_display_name(path_or_name) -> str:
    """A bundle's name for menus and labels, with the demo label when it is one."""
    card = read_card(path_or_name)
    name = (card or {}).get("name") or Path(str(path_or_name)).name
    return f"{name} ({DEMO_LABEL})" if is_demo_card(card) else str(name)


def known_property_bundles(active=()) -> list[tuple[str, str]]:
    """``(shipped name or folder, label)`` of the shipped property bundles and of the active
    ones that are not shipped, for menus."""
    out = []
    for name, path in shipped_bundles().items():
        card = read_card(path)
        if card is not None and card.get("task") == "properties":
            out.append((name, f"{bundle_display_name(path)} (shipped)"))
    known = {p for p, _ in out}
    for path in active:
        if path not in known:
            out.append((path, f"{bundle_display_name(path)} (folder {path})"))
    return out


#: Names of the figures a card's evaluation record holds, as a reader writes them.
FIGURE_NAMES = {
    "sigma_bt_residual": "σ(B/T residual)", "median_abs_bt_residual": "median |ΔB/T|",
    "median_rel_re_error": "median |ΔR_e| / R_e", "median_rel_flux_error": "median |Δflux| / flux",
    "r2_bt": "R² of B/T", "r2_log_re": "R² of log R_e", "r2_log_flux": "R² of log flux",
    "n": "galaxies", "sigma_bt_residual_one_component": "σ(B/T residual), one-component",
    "sigma_bt_residual_two_component": "σ(B/T residual), two-component",
    "rmse": "RMS error", "nmad": "NMAD", "bias": "bias", "l1": "L1 loss",
    "best_iteration": "boosting rounds", "rmsle_dex": "RMS error [dex]",
    "within_0.15_dex": "fraction within 0.15 dex",
}
#: Names of the groups of figures (nested records) in a card.
GROUP_NAMES = {"bright_1e4_njy": "flux > 10⁴ nJy",
               "gampen_flux_prior": "GaMPEN's flux distribution",
               "tta": "with test-time augmentation", "no_tta": "without test-time augmentation",
               "tta_vs_truth": "with test-time augmentation, against the noiseless truth"}
#: Simulation parameters of a card's training ranges, in words.
RANGE_NAMES = {"sky_sigma_njy": "sky noise σ [nJy]", "psf_fwhm_arcsec": "PSF FWHM [arcsec]",
               "hlr_disk_arcsec": "disk half-light radius [arcsec]",
               "hlr_bulge_arcsec": "bulge half-light radius [arcsec]",
               "n_disk": "disk Sérsic index", "n_bulge": "bulge Sérsic index",
               "axis_ratio": "axis ratio b/a"}
#: The card fields whose text the summary quotes as the trainer wrote it.
QUOTED_FIELDS = ("description", "training.data", "calibration.rule", "uncertainty.kind")
TABLE = "<table border=1 cellspacing=0 cellpadding=3>"


def _esc(value) -> str:
    return html.escape(str(value))


def _number(value) -> str:
    """A card's number as the viewer writes numbers (4 significant digits); other values as
    text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _esc(value)
    return _esc(format_value(value))


def _percent(fraction) -> str:
    return f"{100 * float(fraction):.1f} %" if isinstance(fraction, (int, float)) else "—"


def _level(level) -> str:
    """A credible level (a card writes them as keys, "0.6827") as '68.27 %'."""
    return f"{100 * float(level):.4g} %"


def _words(key: str) -> str:
    return FIGURE_NAMES.get(key) or GROUP_NAMES.get(key) or RANGE_NAMES.get(key) or \
        key.replace("_", " ")


def _table(header, rows) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"{TABLE}<tr>{head}</tr>{body}</table>"


def _range(pair) -> str:
    if isinstance(pair, (list, tuple)) and len(pair) == 2:
        return f"{_number(pair[0])} – {_number(pair[1])}"
    return "—"


def _output_name(card: dict, output: dict) -> str:
    label = parameter_label if card.get("task") == "morphology" else property_label
    return _esc(label(output["name"], output.get("unit", "")))


def _measures(card: dict) -> str:
    """What the model measures: each output with its unit, meaning and training range."""
    ranges = card.get("training_ranges", {})
    rows = [(_output_name(card, o), _esc(o.get("description", "")), _range(ranges.get(o["name"])))
            for o in card.get("outputs", [])]
    others = [(_esc(_words(k)), _range(v)) for k, v in ranges.items()
              if k not in {o["name"] for o in card.get("outputs", [])}]
    text = "<h3>What it measures</h3>" + _table(["quantity", "meaning", "training range"], rows)
    if others:
        text += ("<p>The simulated training set also spanned (outside these ranges the "
                 "model extrapolates):</p>"
                 + _table(["quantity", "range"], others))
    return text


def _input(card: dict) -> str:
    inp = card.get("input", {})
    kind = ("calibrated flux, " + _esc(inp.get("unit", "nJy")) if inp.get("kind") == "flux"
            else "display image (0–255 colour channels)")
    size, scale = inp.get("stamp_size"), inp.get("pixel_scale_arcsec")
    items = [f"bands: {_esc(', '.join(inp.get('bands', [])))} ({kind})"]
    if isinstance(size, int) and isinstance(scale, (int, float)):
        items.append(f"{size} × {size} pixel stamps of {_number(scale)}″ per pixel "
                     f"({_number(size * scale)}″ across), centred on the galaxy")
    if "sky_sigma_njy" in inp:
        items.append(f"nominal sky noise σ = {_number(inp['sky_sigma_njy'])} nJy per pixel")
    if card.get("task") == "properties":
        items.append("needs a redshift per galaxy: "
                     + ("yes" if inp.get("needs_redshift") else "no"))
        if inp.get("photometry"):
            items.append("needs catalogue photometry: " + _esc(", ".join(inp["photometry"])))
    preprocessing = inp.get("preprocessing")
    if isinstance(preprocessing, dict):
        items += ([f"pixels: {_esc(preprocessing['description'])}"]
                  if "description" in preprocessing else
                  [_esc(f"{k}: {v}") for k, v in preprocessing.items() if isinstance(v, str)])
    return "<h3>What it reads</h3><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _scenarios(title: str, figures: dict) -> list[tuple[str, dict]]:
    """``(title, {figure: number})`` of a record and of each record nested in it (such as
    the bright galaxies of a test set)."""
    flat = {k: v for k, v in figures.items() if not isinstance(v, (dict, list))}
    out = [(title, flat)] if flat else []
    for key, value in figures.items():
        if isinstance(value, dict):
            out += _scenarios(f"{title}, {_words(key)}", value)
    return out


def _figures_table(scenarios: list[tuple[str, dict]]) -> str:
    """One table of test figures: a row per figure, a column per scenario."""
    names = []
    for _, figures in scenarios:
        names += [k for k in figures if k not in names]
    rows = [(_esc(_words(name)), *(_number(f[name]) if name in f else "" for _, f in scenarios))
            for name in names]
    return _table(["figure", *(_esc(title) for title, _ in scenarios)], rows)


def _coverage_table(title: str, coverage: dict, card: dict) -> str:
    """Fraction of test galaxies inside their HPD intervals, per parameter and level."""
    outputs = {o["name"]: o for o in card.get("outputs", [])}
    levels = sorted({level for per in coverage.values() for level in per}, key=float)
    rows = [(_output_name(card, outputs[name]) if name in outputs else _esc(name),
             *(_percent(per.get(level)) for level in levels)) for name, per in coverage.items()]
    return (f"<p><b>{_esc(title)}</b> (fraction of test galaxies whose truth lies in the "
            "interval; calibrated, it equals the level)</p>"
            + _table(["parameter", *(f"{_level(level)} HPD" for level in levels)], rows))


def _metrics_table(metrics: dict, card: dict) -> str:
    """A property model's test metrics: one row per target (and variant, where the card
    records several, e.g. with and without test-time augmentation)."""
    outputs = {o["name"]: o for o in card.get("outputs", [])}
    rows, columns = [], []
    for target, record in metrics.items():
        variants = {k: v for k, v in record.items() if isinstance(v, dict)} or {"": record}
        for variant, values in variants.items():
            columns += [k for k in values if k not in columns]
            name = _output_name(card, outputs[target]) if target in outputs else _esc(target)
            rows.append(((name, _esc(_words(variant))) if variant else (name,), values))
    varied = any(len(lead) == 2 for lead, _ in rows)
    header = ["target", *(["variant"] if varied else []), *(_esc(_words(c)) for c in columns)]
    body = [(*lead, *([""] if varied and len(lead) == 1 else []),
             *(_number(values[c]) if c in values else "" for c in columns))
            for lead, values in rows]
    return _table(header, body)


def _evaluation(card: dict) -> str:
    """The test figures and coverage tables of the card's evaluation record."""
    parts = []
    test = card.get("test", {})
    n = test.get("test_galaxies")
    if n:
        parts.append(f"<p>On {_number(n)} simulated test galaxies the model never saw in "
                     "training or calibration (the evaluation report below says more):</p>")
    scenarios = _scenarios("test set", test.get("figures", {}))
    for key, record in test.items():
        if isinstance(record, dict) and "figures" in record:
            scenarios += _scenarios(_words(key), record["figures"])
    if scenarios:
        parts.append(_figures_table(scenarios))
    if test.get("coverage"):
        parts.append(_coverage_table("Coverage on the test set", test["coverage"], card))
    for key, record in test.items():
        if isinstance(record, dict) and record.get("coverage"):
            parts.append(_coverage_table(f"Coverage: {_words(key)}", record["coverage"], card))
    if card.get("test_metrics"):
        parts.append("<p><b>Test set</b></p>" + _metrics_table(card["test_metrics"], card))
    coverage = card.get("uncertainty", {}).get("test_coverage")
    if coverage:
        parts.append(_coverage_table("Coverage on the test set", coverage, card))
    if not parts:
        return "<h3>How well it does</h3><p>The card has no test figures.</p>"
    return "<h3>How well it does</h3>" + "".join(parts)


def _labels(card: dict) -> str:
    labels = card.get("labels")
    if not isinstance(labels, dict):
        return ""
    thresholds = thresholds_from_card(card)
    rules = {"highly disk-dominated": f"B/T mode ≤ {_number(thresholds['bt_disk_max'])}",
             "highly bulge-dominated": f"B/T mode ≥ {_number(thresholds['bt_bulge_min'])}",
             "R_e < 1 arcsec": f"R_e mode < {_number(thresholds['re_small_arcsec'])}″"}
    accuracy = labels.get("validation_accuracy", {})
    truth = labels.get("definitions", {})
    rows = [(_esc(name), _esc(rule), _esc(truth.get(name, "")),  # "<" would open a tag
             _number(accuracy.get(name, {}).get("precision", "—")),
             _number(accuracy.get(name, {}).get("recall", "—"))) for name, rule in rules.items()]
    return ("<h3>Qualitative labels</h3>"
            + _table(["label", "given when", "meant to find", "precision", "recall"], rows)
            + "<p><small>precision and recall on the validation set</small></p>")


def _posterior(card: dict) -> str:
    """How the posterior is sampled and how it was calibrated."""
    items = []
    posterior = card.get("posterior", {})
    if posterior:
        calibrated = "calibrated" if posterior.get("calibrated") else "not calibrated"
        items.append(f"{_number(posterior.get('n_samples', 500))} samples per galaxy by "
                     f"default ({calibrated} for that number), Monte Carlo dropout rate "
                     f"{_number(posterior.get('dropout', '—'))}, "
                     f"{_number(posterior.get('orientations', 1))} orientation(s) of the stamp")
        spread = posterior.get("sigma_scale")
        if isinstance(spread, dict):
            items.append("spread factors fitted in "
                         f"{len(spread.get('flux_knots', []))} bins of predicted flux")
        elif isinstance(spread, list):
            items.append("spread factors " + ", ".join(_number(v) for v in spread))
    calibration = card.get("calibration", {})
    if calibration:
        items.append(f"calibrated on {_number(calibration.get('validation_galaxies', '—'))} "
                     f"validation galaxies with {_number(calibration.get('samples_per_galaxy', '—'))}"
                     " samples each")
        if calibration.get("rule"):
            items.append(f"rule: {_esc(calibration['rule'])}")
    uncertainty = card.get("uncertainty", {})
    if uncertainty.get("kind"):
        items.append(f"uncertainty: {_esc(uncertainty['kind'])}")
    if isinstance(uncertainty.get("sigma_scale"), list):
        items.append("spread factors " + ", ".join(_number(v) for v in uncertainty["sigma_scale"]))
    if not items:
        return ""
    return "<h3>Posterior</h3><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _training(card: dict) -> str:
    """The training record: data, size, seed, epochs, processes, time, version."""
    training = card.get("training", {})
    config = training.get("config", {}) if isinstance(training.get("config"), dict) else {}
    data = training.get("data")
    items = []
    if isinstance(data, dict):
        items.append("data: " + _esc(", ".join(str(data[k]) for k in ("kind", "source")
                                                  if k in data)))
        if "n_file" in data:
            items.append(f"{_number(data['n_file'])} galaxies in the data file"
                         + (f", simulated with seed {_esc(data['seed'])}" if "seed" in data
                            else ""))
    elif data:
        items.append(f"data: {_esc(data)}")
    sizes = training.get("n")
    if isinstance(sizes, dict):
        items.append("galaxies: " + ", ".join(f"{_number(v)} {_esc(k)}" for k, v in sizes.items()))
    elif "n_train" in training:
        items.append(f"{_number(training['n_train'])} training galaxies")
    seed = training.get("seed", config.get("seed"))
    seeds = [f"training seed {_esc(seed)}"] if seed is not None else []
    if "simulation_seed" in training:
        seeds.append(f"simulation seed {_esc(training['simulation_seed'])}")
    if seeds:
        items.append(", ".join(seeds))
    run = []
    if "epochs" in config:
        run.append(f"{_number(config['epochs'])} epochs")
        if training.get("previous_stages"):
            run[-1] += f" (after {len(training['previous_stages'])} earlier stage(s))"
    if "batch_size" in config:
        run.append(f"batches of {_number(config['batch_size'])}")
    if "lr" in config:
        run.append(f"learning rate {_number(config['lr'])}")
    if run:
        items.append(", ".join(run))
    world_size = training.get("world_size", config.get("world_size"))
    if world_size:
        items.append(f"trained by {_number(world_size)} process(es) (DistributedDataParallel)"
                     if world_size > 1 else "trained by one process")
    where = ", ".join(t for t in (_duration(training.get("time_s")),
                                  f"on {_esc(training['device'])}" if training.get("device")
                                  else "") if t)
    if where:
        items.append(f"took {where}")
    if card.get("package_version"):
        items.append(f"Galaxy Inspector {_esc(card['package_version'])}")
    if not items:
        return ""
    return "<h3>Training</h3><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def card_html(card: dict) -> str:
    """The model card as a summary for people: what the model measures (with units and
    training ranges), what it reads, how well it does (test figures and coverage from its
    evaluation record), its labels, posterior and training. Numbers are written with at most
    four significant digits; the card's own JSON is for ``card_json``."""
    parts = [f"<h2>{_esc(card.get('name', '?'))}</h2>"]
    if is_demo_card(card):
        parts.append(f"<p style='color:{DEMO_COLOUR}'><b>⚠ {DEMO_LABEL}</b>: "
                     f"{DEMO_EXPLANATION}.</p>")
    parts.append(f"<p>{_esc(card.get('description', ''))}</p>")
    parts += [_measures(card), _input(card), _evaluation(card), _labels(card), _posterior(card),
              _training(card)]
    sha = card.get("weights", {}).get("sha256", "")
    method = f", method {_esc(card['method'])}" if card.get("method") else ""
    parts.append(f"<p><small>architecture {_esc(card.get('architecture', ''))}{method}; "
                 f"weights SHA-256 {_esc(sha[:16])}…</small></p>")
    return "".join(p for p in parts if p)


def card_json(card: dict) -> str:
    """The whole card as indented JSON (the dialog's details)."""
    return json.dumps(card, indent=2, ensure_ascii=False)
