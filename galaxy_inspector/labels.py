"""Qualitative labels where the numbers are least reliable (GaMPEN §6.4).

GaMPEN's residuals are largest for extreme bulge-to-total ratios and small radii, so there a word
is more honest than a number: "highly bulge-dominated" (B/T >= 0.85), "highly disk-dominated"
(B/T <= 0.1), "R_e < 1″" (R_e < 1 arcsec). A model card may tune the thresholds in its
``labels`` entry (``bt_disk_max``, ``bt_bulge_min``, ``re_small_arcsec``).

A label is a claim, so a row flagged as untrustworthy (``UNLABELLED_FLAGS``: low S/N, a display
image's non-linear stretch, outside the training range) gets none; its posterior stays. A display
model (card ``input.kind`` "display"), whose labels were chosen on display images, labels them.
"""

from __future__ import annotations

import math

from galaxy_inspector.flags import Flag

__all__ = ["DEFAULT_THRESHOLDS", "UNLABELLED_FLAGS", "thresholds_from_card", "qualitative_label"]

DEFAULT_THRESHOLDS = {"bt_disk_max": 0.1, "bt_bulge_min": 0.85, "re_small_arcsec": 1.0}
#: Flags under which the point estimates are too uncertain to be put into words.
UNLABELLED_FLAGS = Flag.LOW_SNR | Flag.NONLINEAR_IMAGE | Flag.OUTSIDE_TRAINING


def thresholds_from_card(card: dict) -> dict:
    """The card's ``labels`` thresholds over the GaMPEN defaults."""
    given = card.get("labels") or {}
    return {k: float(given.get(k, v)) for k, v in DEFAULT_THRESHOLDS.items()}


def qualitative_label(bt: float, re_arcsec: float, thresholds: dict = DEFAULT_THRESHOLDS,
                      flags: int = 0) -> str:
    """Label for a galaxy's point estimates (the posterior modes); "" when none applies or when
    ``flags`` holds any of ``UNLABELLED_FLAGS``.

    Two labels are joined with "; ", e.g. ``"highly bulge-dominated; R_e < 1″"``.
    """
    if int(flags) & UNLABELLED_FLAGS:
        return ""
    words = []
    if math.isfinite(bt):
        if bt >= thresholds["bt_bulge_min"]:
            words.append("highly bulge-dominated")
        elif bt <= thresholds["bt_disk_max"]:
            words.append("highly disk-dominated")
    if math.isfinite(re_arcsec) and re_arcsec < thresholds["re_small_arcsec"]:
        words.append(f"R_e < {thresholds['re_small_arcsec']:g}″")
    return "; ".join(words)
