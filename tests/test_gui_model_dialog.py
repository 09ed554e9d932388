"""The model dialog summarises a card for people: what the model measures (units, ranges),
how well it does (test figures, coverage), its posterior and training record; the JSON is
behind a toggle, and the report's plots fit the dialog."""

from __future__ import annotations

import re

import pytest

from galaxy_inspector.models.bundle import shipped_bundles
from galaxy_inspector.viewer.model_cards import QUOTED_FIELDS, read_card
from galaxy_inspector.viewer.wording import format_value

pytestmark = pytest.mark.gui

#: A number standing alone (not part of a word, a hash or a file name).
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])")


def _significant_digits(number: str) -> int:
    digits = number.lstrip("+-").replace(".", "")
    digits = digits.lstrip("0")
    if "." not in number:
        digits = digits.rstrip("0")
    return len(digits)


def _quoted(card: dict) -> list[str]:
    """The card's own prose the summary quotes verbatim (its numbers are the trainer's)."""
    out = []
    for field in QUOTED_FIELDS:
        value = card
        for key in field.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            out.append(value)
    return out


def _dialog(qtbot, current="morphology-hsc-g"):
    from galaxy_inspector.gui.model_dialog import ModelDialog

    dialog = ModelDialog(current)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def _select(dialog, name: str) -> dict:
    for view in (dialog.bundles, dialog.property_list):
        for i in range(view.count()):
            if view.item(i).text().startswith(name):
                view.setCurrentRow(i)
                dialog._on_selected(view.item(i))
                return read_card(name)
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(shipped_bundles()))
def test_the_summary_writes_numbers_for_people(qtbot, name):
    dialog = _dialog(qtbot)
    card = _select(dialog, name)
    text = dialog.card_view.toPlainText()
    summary = text.split("Evaluation of")[0]  # the report below is its own document
    for prose in _quoted(card):
        summary = summary.replace(prose, "")
    long = [n for n in NUMBER.findall(summary) if _significant_digits(n) > 4]
    assert long == [], long
    for heading in ("What it measures", "What it reads", "How well it does", "Training"):
        assert heading in summary
    assert "68.27 % HPD" in summary and "training range" in summary
    assert '"scaler_mean"' not in summary  # no JSON


def test_the_morphology_summary_names_parameters_and_the_calibrated_samples(qtbot):
    dialog = _dialog(qtbot)
    summary = dialog.card_view.toPlainText()
    thresholds = read_card("morphology-hsc-g")["labels"]  # chosen anew by each calibration
    for expected in ("B/T", "R_e [arcsec]", "flux [nJy]", "0.1002 – 6.125",
                     "500 samples per galaxy", "σ(B/T residual)", "training seed 6",
                     "highly bulge-dominated",
                     f"B/T mode ≥ {format_value(thresholds['bt_bulge_min'])}",
                     f"R_e mode < {format_value(thresholds['re_small_arcsec'])}″"):
        assert expected in summary, expected  # "<" is escaped, not the start of a tag


def test_the_card_json_is_behind_a_toggle_and_the_plots_fit(qtbot):
    dialog = _dialog(qtbot)
    assert dialog.details.isHidden()
    dialog.details_button.click()
    assert dialog.details.isVisible() and '"scaler_mean"' in dialog.details.toPlainText()
    dialog.details_button.click()
    assert dialog.details.isHidden()
    for width in (1000, 700):
        dialog.resize(width, 640)
        qtbot.wait(50)
        images = dialog.card_view.image_formats()
        assert len(images) >= 3  # the report's plots
        room = dialog.card_view.viewport().width()
        assert all(0 < image.width() <= room for _, image in images), \
            [image.width() for _, image in images]
