"""Bring your own labels: a table of image paths and labels -> a checked ``LabelledSet``.

The table (CSV, ECSV or FITS; column names case-insensitive) names, per galaxy, either one image
(a colour JPEG/PNG cutout -> 3 display channels; a FITS cube -> one channel per plane; a 2-D FITS
image -> one channel) or one FITS image per band (several ``image_columns``). Relative paths are
relative to the table's folder. Every row is checked *before* any training: missing columns stop
at once; rows with an unreadable image, a stamp of another size, or a non-finite (or, for log
targets, non-positive) label, error, redshift or magnitude are collected and reported together
with their row numbers (``BadTableError``), unless ``drop_bad`` asks to train on the rest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from galaxy_inspector.errors import GalaxyInspectorError, InputError, first_line
from galaxy_inspector.io.raster import is_raster_path
from training.properties.data import LabelledSet, TargetSpec
from training.properties.survey import SPLITS

__all__ = ["BadTableError", "read_labelled_table", "read_stamp"]



class BadTableError(InputError):
    """Rows of a training table that cannot be used; ``problems`` lists (row, id, reason)."""

    def __init__(self, table: str, problems: list, total: int, shown: int = 20):
        self.problems = problems
        lines = [f"{len(problems)} of {total} rows of {table} cannot be used (fix them, or pass "
                 "--drop-bad to train without them):"]
        lines += [f"  row {row} ({ident}): {reason}" for row, ident, reason in problems[:shown]]
        if len(problems) > shown:
            lines.append(f"  ... and {len(problems) - shown} more")
        super().__init__("\n".join(lines))


def _read_table(path: Path):
    from astropy.table import Table

    fmt = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}.get(path.suffix.lower())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # any parse failure is the table's problem
        raise InputError(f"cannot read table {path}: {first_line(exc)}") from None


def read_stamp(paths, pixel_scale: float | None = None):
    """Channels ``(C, H, W)`` float32 of one galaxy, its kind, pixel scale and calibration flag.

    One JPEG/PNG path -> RGB channels (0-255, rows flipped so y grows upwards as in FITS); one
    FITS path -> its planes; several paths -> one 2-D FITS plane each.
    """
    from galaxy_inspector.io import read_image
    from galaxy_inspector.io.raster import SDSS_PIXEL_SCALE

    paths = [Path(p) for p in paths]
    if len(paths) == 1 and is_raster_path(paths[0]):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(paths[0]) as img:
                rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise InputError(f"cannot read {paths[0].name} as an image ({exc})") from None
        # SkyServer JPEG cutouts are at the SDSS scale unless told otherwise (docs/design.md).
        scale = pixel_scale or SDSS_PIXEL_SCALE
        return np.flipud(rgb).transpose(2, 0, 1).copy(), "display", scale, False
    planes, scale, calibrated = [], pixel_scale, True
    for p in paths:
        first = read_image(p, pixel_scale=pixel_scale)
        images = [first]
        if len(paths) == 1:
            from astropy.io import fits

            with fits.open(p) as hdul:
                cube = [h for h in hdul if getattr(h, "data", None) is not None
                        and np.ndim(h.data) == 3]
                n_planes = cube[0].data.shape[0] if cube else 1
            images += [read_image(p, plane=k, pixel_scale=pixel_scale)
                       for k in range(1, n_planes)]
        for im in images:
            planes.append(im.data)
            calibrated &= bool(im.calibrated)
            scale = scale or im.pixel_scale
    shapes = {pl.shape for pl in planes}
    if len(shapes) != 1:
        raise InputError(f"band images of {paths[0].name} differ in shape: {sorted(shapes)}")
    return np.stack(planes).astype(np.float32), "flux", scale, calibrated


def _centre(stamp: np.ndarray, size: int) -> np.ndarray | None:
    """Central ``size`` x ``size`` pixels; None when the stamp is smaller (never padded)."""
    h, w = stamp.shape[-2:]
    if h < size or w < size:
        return None
    y0, x0 = (h - size) // 2, (w - size) // 2
    return stamp[..., y0:y0 + size, x0:x0 + size]


def read_labelled_table(table, image_columns, targets, target_errors=(), redshift=None,
                        photometry=(), log_targets=(), aux_targets=(), pixel_scale=None,
                        stamp_size=None, split_column=None, seed: int = 1,
                        drop_bad: bool = False, progress=None) -> LabelledSet:
    """Read and check a user's labelled table; see the module docstring.

    ``target_errors`` are error columns in the order of ``targets`` (fewer -> the rest have none).
    ``split_column`` holds train/val/test per row; otherwise a seeded 80/10/10 split.
    """
    path = Path(table).expanduser()
    if not path.is_file():
        raise InputError(f"{table}: no such table")
    t = _read_table(path)
    lower = {c.lower(): c for c in t.colnames}
    if len(target_errors) > len(targets):
        raise InputError("more --target-err than --target columns")
    wanted = [*image_columns, *targets, *target_errors, *photometry, *aux_targets]
    wanted += [redshift] if redshift else []
    wanted += [split_column] if split_column else []
    missing = [c for c in wanted if c.lower() not in lower]
    if missing:
        raise InputError(f"table {path.name} has no column(s) {', '.join(missing)} "
                         f"(columns: {', '.join(t.colnames)})")
    if not image_columns or not targets:
        raise InputError("give at least one --image-column and one --target")

    def column(name):
        col = t[lower[name.lower()]]
        if col.dtype.kind not in "fiub":
            return None
        return np.ma.filled(np.ma.asarray(col).astype(float), np.nan)

    ident = (np.asarray(t[lower["id"]]).astype(str) if "id" in lower
             else np.array([str(i) for i in range(len(t))]))
    problems = []
    numeric = {}
    for name in [*targets, *target_errors, *photometry, *aux_targets,
                 *([redshift] if redshift else [])]:
        values = column(name)
        if values is None:
            raise InputError(f"column {name} of {path.name} is not numeric")
        numeric[name] = values
    for i in range(len(t)):
        bad = [n for n in numeric if not np.isfinite(numeric[n][i])]
        bad += [f"{n} <= 0 (log target)" for n in log_targets if numeric[n][i] <= 0]
        bad += [f"{n} <= 0 (an error)" for n in target_errors if numeric[n][i] <= 0]
        if bad:
            problems.append((i, ident[i], "non-finite or invalid " + ", ".join(bad)))
    splits = None
    if split_column:
        raw = np.char.lower(np.asarray(t[lower[split_column.lower()]]).astype(str))
        splits = np.full(len(t), -1, dtype=np.int8)
        for key, code in {**SPLITS, "validation": 1}.items():
            splits[raw == key] = code
        for i in np.flatnonzero(splits < 0):
            problems.append((int(i), ident[i], f"{split_column} is {raw[i]!r}, not "
                             "train/val/test"))
    stamps, kinds, scales, calibrated = {}, set(), set(), True
    size = stamp_size
    for i in range(len(t)):
        paths = []
        for c in image_columns:
            value = t[lower[c.lower()]][i]
            value = value.decode() if isinstance(value, bytes) else str(value)
            p = Path(value).expanduser()
            paths.append(p if p.is_absolute() else path.parent / p)
        try:
            stamp, kind, scale, cal = read_stamp(paths, pixel_scale)
        except (GalaxyInspectorError, OSError, ValueError) as exc:
            problems.append((i, ident[i], f"image: {first_line(exc)}"))
            continue
        if size is None:
            size = stamp.shape[-1]
        cut = _centre(stamp, size)
        if cut is None or (stamp_size is None and stamp.shape[-2:] != (size, size)):
            problems.append((i, ident[i], f"image is {stamp.shape[-2]}x{stamp.shape[-1]} px, "
                             f"not {size}x{size} (give --stamp-size to cut all to one size)"))
            continue
        stamps[i] = cut
        kinds.add(kind)
        scales.add(round(float(scale), 4) if scale else None)
        calibrated &= cal
        if progress and i % 200 == 0:
            progress.update(i + 1, len(t), stage="reading images")
    channels = {s.shape[0] for s in stamps.values()}
    if len(kinds) > 1 or len(channels) > 1:
        raise InputError(f"images of {path.name} mix kinds or band counts ({sorted(kinds)}, "
                         f"{sorted(channels)} channels); use one kind for all rows")
    problems.sort()
    if problems and not drop_bad:
        raise BadTableError(path.name, problems, len(t))
    good = np.array(sorted(set(stamps) - {p[0] for p in problems}), dtype=int)
    if len(good) < 10:
        raise InputError(f"only {len(good)} usable rows in {path.name}; need at least 10")
    if None in scales or len(scales) > 1:
        if pixel_scale is None:
            raise InputError(f"pixel scales of the images of {path.name} are unknown or differ "
                             f"({sorted(s for s in scales if s)}); give --pixel-scale")
    kind = kinds.pop()
    images = np.stack([stamps[i] for i in good])
    if kind == "display":
        images = images.astype(np.uint8)
    if splits is None:
        rng = np.random.default_rng([seed, 11])
        order = rng.permutation(len(good))
        split = np.zeros(len(good), dtype=np.int8)
        n_val = max(1, int(0.1 * len(good)))
        split[order[:n_val]] = SPLITS["val"]
        split[order[n_val:2 * n_val]] = SPLITS["test"]
    else:
        split = splits[good]
    n_bands = images.shape[1]
    bands = (["R", "G", "B"] if kind == "display" else
             [c for c in image_columns] if len(image_columns) == n_bands else
             [f"plane{k}" for k in range(n_bands)])
    errors = dict(zip(targets, target_errors, strict=False))
    return LabelledSet(
        images=images,
        targets={n: numeric[n][good] for n in targets},
        errors={n: (numeric[errors[n]][good] if n in errors else np.full(len(good), np.nan))
                for n in targets},
        specs={n: TargetSpec(n, "", "log10" if n in log_targets else "identity",
                             f"column {n} of {path.name}") for n in targets},
        redshift=numeric[redshift][good] if redshift else np.full(len(good), np.nan),
        photometry={c: numeric[c][good] for c in photometry},
        split=split,
        bands=bands,
        kind=kind,
        pixel_scale=float(pixel_scale or next(iter(scales))),
        aux={n: numeric[n][good] for n in aux_targets},
        meta={},
        info={"source": str(path), "kind": "user table", "rows": int(len(t)),
              "rows_used": int(len(good)), "dropped_rows": [int(p[0]) for p in problems],
              "flux_calibrated": bool(calibrated) if kind == "flux" else False,
              "pixel_scale_assumed": pixel_scale is None and kind == "display"},
    )
