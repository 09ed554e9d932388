"""How the viewer writes numbers, parameter names and reasons for the user (plain text or
HTML-escaped strings, no widgets), so every panel says them the same way."""

from __future__ import annotations

import html
import math

from galaxy_inspector.flags import Flag

__all__ = ["format_value", "parameter_label", "property_label", "psf_in_words",
           "reason_in_words"]

#: Morphology parameters as astronomers write them.
PRETTY_PARAMETERS = {"bt": "B/T", "re_arcsec": "R_e", "flux_njy": "flux"}
#: Names of common targets as astronomers write them (anything else is shown as named).
PRETTY_PROPERTIES = {"metallicity": "12 + log(O/H)", "oh12": "12 + log(O/H)",
                     "log_mstar": "log M*", "logmstar": "log M*", "mstar": "M*",
                     "ml_g": "M*/L_g", "log_ml_g": "log M*/L_g"}


def format_value(value) -> str:
    """Four significant digits, or '—' for a missing or non-finite value; written out in full
    below 10^7 (a flux of '199700', not '1.997e+05')."""
    if value is None or not math.isfinite(value):
        return "—"
    text = f"{value:.4g}"
    if "e+" in text and abs(value) < 1e7:
        return f"{float(text):.0f}"
    return text


def parameter_label(name: str, unit: str) -> str:
    """'R_e [arcsec]' style label of a morphology parameter with its unit (the one naming of
    plots, tables and dialogs)."""
    pretty = PRETTY_PARAMETERS.get(name, name)
    return f"{pretty} [{unit}]" if unit else pretty


def property_label(name: str, unit: str) -> str:
    """'12 + log(O/H) [dex]' style label of a target with its unit."""
    pretty = PRETTY_PROPERTIES.get(name, name)
    if pretty != name:
        pretty = f"{pretty} ({name})"
    return f"{pretty} [{unit}]" if unit else pretty


def reason_in_words(error: str, in_catalogue: bool = False) -> str:
    """The engine's reason a model could not predict (HTML-escaped), with what the user can do
    about it: in the main window, or in a catalogue (``in_catalogue``)."""
    text = html.escape(error.strip())
    if "needs a redshift" in text:
        if in_catalogue:
            return (f"{text} — give the input table a redshift column (batch option "
                    "<i>--redshift-column</i>) and run the batch again")
        return (f"{text} — type the galaxy's redshift in the toolbar's <i>Redshift</i> field "
                "to predict it")
    return text


def psf_in_words(measurement) -> str:
    """The image's PSF and, for a seeing-conditioned model, what it was told: which posterior
    the user sees (for that seeing, or marginalised over the training seeing), and whether the
    stamp's PSF lay beyond the training range and was clipped to it."""
    s = measurement.stamp
    text = (f"FWHM {format_value(s.psf_fwhm)}″ ({s.psf_source})" if math.isfinite(s.psf_fwhm)
            else "unknown (no header keyword; give one in Image ▸ Settings…)")
    told = measurement.psf_told
    if told is None:  # a model that does not read the PSF
        return text
    if not math.isfinite(told):
        return (text + "; the model was told it is unknown, so its posterior is marginalised "
                "over the seeing it was trained on")
    text += (f"; the model was told {format_value(told)}″ in its frame, and its posterior is "
             "for that seeing")
    in_frame = s.psf_fwhm / s.binning
    if (math.isfinite(in_frame) and not measurement.flags & Flag.PSF_MATCHED
            and not math.isclose(told, in_frame, rel_tol=1e-3)):
        text += (f" (the stamp's {format_value(in_frame)}″ lies beyond the seeing it was "
                 "trained on and was clipped to its edge)")
    return text
