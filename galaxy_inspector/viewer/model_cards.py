"""How the viewer names and describes model bundles: display names with the demo label,
the property bundles a menu offers, and a bundle's card as HTML, all read from the bundle's
card without loading its weights."""

from __future__ import annotations

import html
import json
from pathlib import Path

from galaxy_inspector.errors import BundleError
from galaxy_inspector.models.bundle import CARD_NAME, resolve_bundle_path, shipped_bundles

__all__ = ["card_html", "read_card", "is_demo_card", "bundle_display_name",
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


def _json_block(value) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=1))}</pre>"


def card_html(card: dict) -> str:
    """The model card as readable HTML: what the model expects, predicts and how well."""
    parts = [f"<h2>{html.escape(card.get('name', '?'))}</h2>"]
    if is_demo_card(card):
        parts.append(f"<p style='color:{DEMO_COLOUR}'><b>⚠ {DEMO_LABEL}</b>: "
                     f"{DEMO_EXPLANATION}.</p>")
    parts.append(f"<p>{html.escape(card.get('description', ''))}</p>")
    inp = card.get("input", {})
    task = card.get("task", "")
    items = [f"<li>task: {html.escape(str(task))}"
             + (f", method {html.escape(str(card['method']))}" if card.get("method") else "")
             + "</li>",
             f"<li>bands: {html.escape(', '.join(inp.get('bands', [])))}</li>",
             f"<li>kind: {html.escape(str(inp.get('kind', '')))} "
             f"({html.escape(str(inp.get('unit', '')))})</li>",
             f"<li>pixel scale: {inp.get('pixel_scale_arcsec')}″/px, "
             f"stamp {inp.get('stamp_size')}×{inp.get('stamp_size')} px</li>"]
    if task == "properties":
        items.append("<li>needs a redshift per galaxy: "
                     f"{'yes' if inp.get('needs_redshift') else 'no'}</li>")
        if inp.get("photometry"):
            items.append("<li>needs catalogue photometry: "
                         f"{html.escape(', '.join(inp['photometry']))}</li>")
    parts.append(f"<h3>Input contract</h3><ul>{''.join(items)}</ul>")
    rows = "".join(f"<tr><td>{html.escape(o['name'])}</td><td>{html.escape(o.get('unit', ''))}"
                   f"</td><td>{html.escape(o.get('description', ''))}</td></tr>"
                   for o in card.get("outputs", []))
    parts.append("<h3>Outputs</h3><table border=1 cellpadding=3>"
                 f"<tr><th>name</th><th>unit</th><th>meaning</th></tr>{rows}</table>")
    for key, title in (("posterior", "Posterior settings"), ("uncertainty", "Uncertainty"),
                       ("calibration", "Calibration"), ("test", "Test figures"),
                       ("training_ranges", "Training ranges"), ("training", "Training")):
        if key in card:
            parts.append(f"<h3>{title}</h3>{_json_block(card[key])}")
    sha = card.get("weights", {}).get("sha256", "")
    parts.append(f"<p><small>architecture {html.escape(card.get('architecture', ''))}; "
                 f"weights SHA-256 {html.escape(sha)}</small></p>")
    return "".join(parts)
