"""The corner plot reads quantitatively: labelled ticks on every parameter axis, the one naming
of parameters, a legend of the HPD levels, and an exported figure that says what it shows
without cutting anything off. Matplotlib only (no Qt)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from galaxy_inspector.errors import InputError
from galaxy_inspector.models.bundle import OutputSpec
from galaxy_inspector.models.morphology import MorphologyModel
from galaxy_inspector.posterior import summarize
from galaxy_inspector.viewer.corner_plot import draw_analysis, export_analysis

NAMES = ["bt", "re_arcsec", "flux_njy"]
UNITS = ["", "arcsec", "nJy"]
#: The shipped model's outputs, whose mode transforms give the summaries.
OUTPUTS = [OutputSpec("bt", "", "logit", 0.0, 2.8, clip=(0.01, 0.99)),
           OutputSpec("re_arcsec", "arcsec", "log10", 0.26, 0.32),
           OutputSpec("flux_njy", "nJy", "log10", 4.85, 1.07)]
HUMAN = ["B/T", "R_e [arcsec]", "flux [nJy]"]


def _analysis(samples, names=NAMES, source="/data/deep/hsc_coadd_cutout.fits", error=""):
    """What the panel gets from the engine (``tasks.GalaxyAnalysis``), for the plot's needs."""
    transforms = MorphologyModel.mode_transforms(SimpleNamespace(outputs=OUTPUTS))
    summary = {k: float(v[0]) for k, v in summarize(samples[None], names, transforms).items()}
    stamp = SimpleNamespace(x=63.5, y=63.5, ra=150.11916, dec=2.20583)
    measurement = SimpleNamespace(samples=samples, names=names, summary=summary, error=error,
                                  units=[UNITS[NAMES.index(n)] for n in names], stamp=stamp)
    return SimpleNamespace(measurement=measurement, source=source, hdu=1, plane=0,
                           model_name="morphology-hsc-g", model_sha256="5bf6c16a3a2a" * 5,
                           log_parameters=("re_arcsec", "flux_njy"))


def _samples(rng, flux_decades: float, re_decades: float, n=500):
    """B/T piled at 1, R_e and flux lognormal with the given spread (in decades)."""
    bt = np.clip(1 - np.abs(rng.normal(0, 0.05, n)), 0, 1)
    re = 10 ** rng.uniform(-0.1, -0.1 + re_decades, n)
    flux = 10 ** rng.uniform(5.2, 5.2 + flux_decades, n)
    return np.stack([bt, re, flux], axis=1)


SPREADS = {"a bright galaxy (2 % in flux)": (0.01, 0.3), "one to two decades": (1.5, 1.2),
           "a faint galaxy over four decades": (4.0, 2.5)}


def _drawn(analysis, size=(6.5, 4.5)) -> Figure:
    figure = Figure(figsize=size, dpi=90)
    FigureCanvasAgg(figure)
    draw_analysis(figure, analysis)
    figure.canvas.draw()
    return figure


def _labels_in_view(axis) -> list[str]:
    lo, hi = sorted(axis.get_view_interval())
    return [t.get_text() for t, loc in zip(axis.get_majorticklabels(), axis.get_majorticklocs(),
                                           strict=False)
            if t.get_visible() and t.get_text() and lo <= loc <= hi]


@pytest.mark.parametrize("spread", list(SPREADS))
def test_every_parameter_axis_has_at_least_two_labelled_ticks(spread):
    figure = _drawn(_analysis(_samples(np.random.default_rng(1), *SPREADS[spread])))
    axes = np.array(figure.axes).reshape(3, 3)
    for j in range(3):  # the bottom row carries each parameter's x axis
        assert len(_labels_in_view(axes[2, j].xaxis)) >= 2, (spread, NAMES[j])
    for i in (1, 2):  # the first column the y axes of R_e and flux
        assert len(_labels_in_view(axes[i, 0].yaxis)) >= 2, (spread, NAMES[i])


def test_titles_and_axis_labels_use_the_human_names():
    figure = _drawn(_analysis(_samples(np.random.default_rng(2), 0.01, 0.3)))
    axes = np.array(figure.axes).reshape(3, 3)
    titles = [axes[i, i].get_title(loc="right" if i == 2 else "center") for i in range(3)]
    for title, human, name in zip(titles, HUMAN, NAMES, strict=True):
        assert title.startswith(f"{human} = ") and "68 %" in title and name not in title
    assert [axes[2, j].get_xlabel() for j in range(3)] == HUMAN
    assert [axes[i, 0].get_ylabel() for i in (1, 2)] == HUMAN[1:]


def test_the_legend_names_the_three_levels_and_the_mode():
    figure = _drawn(_analysis(_samples(np.random.default_rng(3), 0.01, 0.3)))
    (legend,) = [a.get_legend() for a in figure.axes if a.get_legend() is not None]
    assert [t.get_text() for t in legend.get_texts()] == ["68.27 %", "95.45 %", "99.73 %",
                                                         "mode (KDE)"]
    assert legend.get_title().get_text() == "HPD intervals"


def _drawn_texts(figure: Figure) -> list[Text]:
    """The texts a renderer draws: tick labels only of ticks in view (matplotlib keeps the
    others, undrawn)."""
    ticks, shown = set(), []
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick, loc in zip(axis.get_major_ticks(), axis.get_majorticklocs(), strict=False):
                ticks.update((tick.label1, tick.label2))
                if lo <= loc <= hi and ax.axison:
                    shown += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    others = [t for t in figure.findobj(Text) if t not in ticks and t.get_visible()]
    return [t for t in others + shown if t.get_text()]


def _texts_outside(figure: Figure) -> list[str]:
    """Every drawn text whose extent leaves the figure (by more than a pixel)."""
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    bounds = figure.bbox
    out = []
    for text in _drawn_texts(figure):
        box = text.get_window_extent(renderer)
        if (box.x0 < bounds.x0 - 1 or box.y0 < bounds.y0 - 1 or box.x1 > bounds.x1 + 1
                or box.y1 > bounds.y1 + 1):
            out.append(text.get_text())
    return out


@pytest.mark.parametrize("spread", list(SPREADS))
def test_the_exported_figure_says_what_it_shows_and_cuts_nothing_off(spread, tmp_path):
    long_name = "/data/" + "a_very_long_survey_tract_patch_name_" * 3 + "cutout.fits"
    analysis = _analysis(_samples(np.random.default_rng(4), *SPREADS[spread]), source=long_name)
    path = tmp_path / "posterior.png"
    figure = export_analysis(path, analysis, pixel_origin=1)
    assert path.stat().st_size > 10_000
    texts = "\n".join(t.get_text() for t in figure.findobj(Text))
    for expected in ("x = 64.5, y = 64.5 (1-based pixels)", "RA = 150.119160°",
                     "model morphology-hsc-g, weights 5bf6c16a3a2a", "UTC", "(HDU 1)"):
        assert expected in texts
    assert "a_very_long_survey" in texts and "cutout.fits" in texts
    assert _texts_outside(figure) == []
    # The panel's small canvas cuts nothing off either.
    assert _texts_outside(_drawn(analysis, size=(4.6, 300 / 90))) == []


def test_a_two_parameter_model_and_a_refused_galaxy(tmp_path):
    rng = np.random.default_rng(5)
    analysis = _analysis(_samples(rng, 0.01, 0.3)[:, :2], names=NAMES[:2])
    figure = _drawn(analysis)
    assert any(a.get_legend() is not None for a in figure.axes)
    assert _texts_outside(export_analysis(tmp_path / "two.png", analysis)) == []
    refused = _analysis(_samples(rng, 0.01, 0.3), error="no galaxy detected: S/N 1.2")
    with pytest.raises(InputError, match="no posterior to plot: no galaxy detected"):
        export_analysis(tmp_path / "refused.png", refused)
