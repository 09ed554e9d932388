"""Labelled image sets for the property pipelines, from a simulated survey or a user's table.

A ``LabelledSet`` holds everything both pipelines need, in memory: stamps ``(N, C, H, W)`` (float32,
nJy/pixel for FITS bands or 0-255 for colour JPEGs), target values and their errors, redshifts,
catalogue photometry, optional auxiliary morphology labels, a train/validation/test split, and
the input contract (bands, kind, pixel scale) that ends up in the bundle's card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import h5py
import numpy as np

from training.properties.survey import SPLITS

__all__ = ["LabelledSet", "TargetSpec", "load_survey", "SURVEY_TARGETS", "SURVEY_AUX"]


@dataclass(frozen=True)
class TargetSpec:
    """A target column: its name, unit, transform in network space (identity or log10)."""

    name: str
    unit: str = ""
    transform: str = "identity"
    description: str = ""


#: Targets of the simulated survey (catalogue values; truth in ``<name>_true``).
SURVEY_TARGETS = {
    "metallicity": TargetSpec("metallicity", "dex", "identity",
                              "gas-phase metallicity 12 + log(O/H) (synthetic relation)"),
    "log_mstar": TargetSpec("log_mstar", "dex (M_sun)", "identity",
                            "log10 stellar mass (synthetic)"),
    "ml_g": TargetSpec("ml_g", "M_sun / L_sun,g", "log10",
                       "stellar mass-to-light ratio in g, dust-attenuated luminosity "
                       "(synthetic relation)"),
}
#: Morphology truths used as auxiliary CNN targets (the role of Galaxy Zoo answers in Dobbels).
SURVEY_AUX = ("bt_light_g", "cos_i", "log_hlr_disk_arcsec")


@dataclass
class LabelledSet:
    """Stamps, labels and metadata of one labelled set.

    Attributes
    ----------
    images : ndarray (N, C, H, W) float32
    targets : dict name -> ndarray (N,)
    errors : dict name -> ndarray (N,) (NaN where unknown)
    specs : dict name -> TargetSpec
    redshift : ndarray (N,) (NaN when unknown)
    photometry : dict column -> ndarray (N,) (magnitudes, for baselines and the GBM)
    aux : dict name -> ndarray (N,) (auxiliary CNN targets; may be empty)
    split : ndarray (N,) int8 (0 train, 1 validation, 2 test)
    bands : list of str; kind : "flux" or "display"; pixel_scale : arcsec/pixel
    meta : dict (extra per-object columns for analysis, e.g. ``edge_on``) ; info : dict (provenance)
    """

    images: np.ndarray
    targets: dict
    errors: dict
    specs: dict
    redshift: np.ndarray
    photometry: dict
    split: np.ndarray
    bands: list
    kind: str
    pixel_scale: float
    aux: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> LabelledSet:
        """Rows ``index`` (boolean mask or integer array) as a new set (arrays copied)."""
        def pick(columns):
            return {k: v[index] for k, v in columns.items()}

        return replace(self, images=self.images[index], targets=pick(self.targets),
                       errors=pick(self.errors), redshift=self.redshift[index],
                       photometry=pick(self.photometry), split=self.split[index],
                       aux=pick(self.aux), meta=pick(self.meta))

    def part(self, name: str) -> LabelledSet:
        """The ``train``, ``val`` or ``test`` part."""
        return self.subset(self.split == SPLITS[name])

    def target_matrix(self, names) -> np.ndarray:
        return np.stack([self.targets[n] for n in names], axis=1)


def load_survey(path, targets=("metallicity", "log_mstar", "ml_g"), limit: int | None = None,
                bands=None) -> LabelledSet:
    """Read a survey written by ``training.properties.survey.simulate_survey``.

    ``limit`` keeps the first rows of each split in proportion (small dev runs); ``bands``
    selects channels by name (e.g. ``["g"]`` for Dobbels' single-band pipeline).
    """
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"cannot open survey {path}: {exc}") from None
    with f:
        if not f.attrs.get("complete", False):
            raise ValueError(f"survey {path} is incomplete; run 'properties-survey' again with "
                             "the same arguments to finish it")
        all_bands = json.loads(f.attrs["bands"])
        unknown = [t for t in targets if t not in SURVEY_TARGETS]
        if unknown:
            raise ValueError(f"unknown survey target(s) {unknown}; known: "
                             f"{', '.join(SURVEY_TARGETS)}")
        split = f["split"][:]
        rows = np.arange(len(split))
        if limit is not None and limit < len(split):
            keep = []
            for s in SPLITS.values():
                idx = rows[split == s]
                keep.append(idx[:max(1, int(round(limit * len(idx) / len(split))))])
            rows = np.sort(np.concatenate(keep))
        band_index = list(range(len(all_bands))) if bands is None else [
            all_bands.index(b) for b in bands]
        images = f["images"][rows[0]:rows[-1] + 1][rows - rows[0]][:, band_index]

        def col(name):
            return f[name][:][rows]

        data = LabelledSet(
            images=np.ascontiguousarray(images, dtype=np.float32),
            targets={t: col(t) for t in targets},
            errors={t: col(f"{t}_err") for t in targets},
            specs={t: SURVEY_TARGETS[t] for t in targets},
            redshift=col("redshift"),
            photometry={f"mag_{b}": col(f"mag_{b}") for b in all_bands},
            split=split[rows],
            bands=[all_bands[i] for i in band_index],
            kind="flux",
            pixel_scale=float(f.attrs["pixel_scale"]),
            aux={"bt_light_g": col("bt_light_g"), "cos_i": col("cos_i"),
                 "log_hlr_disk_arcsec": np.log10(col("hlr_disk_arcsec"))},
            meta={k: col(k) for k in ("edge_on", "bulge_mass_fraction", "cos_i",
                                      "metallicity_true", "log_mstar_true", "ml_g_true")},
            info={"source": str(path), "kind": "simulated survey (synthetic labels)",
                  "seed": int(f.attrs["seed"]), "n_file": int(len(split)),
                  "relations": json.loads(f.attrs["relations"]),
                  "sky_sigma_njy": {b: float(np.median(f[f"sky_sigma_{b}"][:]))
                                    for b in all_bands}},
        )
    return data
