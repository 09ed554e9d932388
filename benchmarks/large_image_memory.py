"""Peak memory of a batch over a large field: stamps read only their window.

Writes, in a temporary folder, a 20000x20000 float32 image in nJy with a TAN WCS and four
galaxies plus a table of their x/y positions, and 20000x20000 8-bit images of zeros as a plain
``.fits``, a gzip'd ``.fits.gz`` and a tile-compressed ``.fz``, and a 30000x30000 gzip "bomb"
(zeros, a few MB on disk). Each batch runs in its own process with the shipped model; prints its
peak memory (max RSS), wall time and the first row's status or error, beside a one-galaxy
baseline (a 128x128 sample cutout: the interpreter, torch and the model).

    python benchmarks/large_image_memory.py [--side 20000] [--folder DIR]

Needs about 2.5 GB of disk for the default side.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POSITIONS = ((0.25, 0.25), (0.5, 0.5), (0.75, 0.6), (0.15, 0.85))  # fractions of the side
ROWS_PER_WRITE = 2000


def _write_streamed(path: Path, header, dtype, fill_rows) -> None:
    """A primary HDU written row block by row block, never holding the whole array."""
    from astropy.io import fits

    ny, nx = header["NAXIS2"], header["NAXIS1"]
    with fits.StreamingHDU(path, header) as hdu:
        for y0 in range(0, ny, ROWS_PER_WRITE):
            rows = min(ROWS_PER_WRITE, ny - y0)
            hdu.write(fill_rows(y0, rows, nx).astype(dtype))


def write_inputs(folder: Path, side: int) -> dict:
    from astropy.io import fits
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.cdelt = [-0.168 / 3600.0, 0.168 / 3600.0]
    w.wcs.crpix = [side / 2, side / 2]
    header = fits.Header({"SIMPLE": True, "BITPIX": -32, "NAXIS": 2, "NAXIS1": side,
                          "NAXIS2": side})
    header.update(w.to_header())
    header["BUNIT"] = "nJy"
    centres = [(int(fx * side), int(fy * side)) for fx, fy in POSITIONS]
    yy, xx = np.mgrid[-64:64, -64:64]
    galaxy = 300.0 * np.exp(-np.hypot(xx, yy) / 4.0)
    rng = np.random.default_rng(1)

    def field_rows(y0, rows, nx):
        block = rng.normal(0.0, 2.0, (rows, nx))
        for x, y in centres:
            lo, hi = max(y - 64, y0), min(y + 64, y0 + rows)
            if lo < hi:
                block[lo - y0:hi - y0, x - 64:x + 64] += galaxy[lo - y + 64:hi - y + 64]
        return block

    inputs = {"field.fits": folder / "field.fits"}
    _write_streamed(inputs["field.fits"], header, ">f4", field_rows)
    table = folder / "positions.csv"
    table.write_text("path,x,y\n" + "".join(f"{inputs['field.fits']},{x},{y}\n"
                                             for x, y in centres))
    inputs["positions.csv"] = table

    zeros_header = header.copy()
    zeros_header["BITPIX"] = 8
    inputs["zeros.fits"] = folder / "zeros.fits"
    _write_streamed(inputs["zeros.fits"], zeros_header, np.uint8,
                    lambda y0, rows, nx: np.zeros((rows, nx)))
    inputs["zeros.fits.gz"] = folder / "zeros.fits.gz"
    with open(inputs["zeros.fits"], "rb") as raw, gzip.open(inputs["zeros.fits.gz"], "wb",
                                                            compresslevel=1) as out:
        shutil.copyfileobj(raw, out, 1 << 24)
    inputs["zeros.fz"] = folder / "zeros.fz"
    with fits.open(inputs["zeros.fits"], memmap=True) as hdul:
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(hdul[0].data, header=header,
                                                           tile_shape=(256, 256))]).writeto(
            inputs["zeros.fz"])
    bomb_side = int(side * 1.5)
    bomb = fits.PrimaryHDU(np.zeros((2, 2), np.uint8)).header
    bomb.update(NAXIS1=bomb_side, NAXIS2=bomb_side)
    inputs["bomb.fits.gz"] = folder / "bomb.fits.gz"
    with gzip.open(inputs["bomb.fits.gz"], "wb") as out:
        out.write(bomb.tostring().encode())
        row = bytes(bomb_side)
        for _ in range(bomb_side):
            out.write(row)
        out.write(bytes(-bomb_side ** 2 % 2880))
    return inputs


#: Runs the batch as its child and prints that child's peak RSS: ``RUSAGE_CHILDREN`` reports
#: the largest child a process ever had, so each batch gets a fresh parent.
MEASURE = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "galaxy_inspector.cli", *sys.argv[1:]], check=False)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
#: ``ru_maxrss`` is in kB on Linux, in bytes on macOS.
MAXRSS_BYTES = 1 if sys.platform == "darwin" else 1024


def run(path: Path, out: Path) -> tuple[float, float, str]:
    """Peak RSS (GB) and wall time (s) of a batch in a child process, and its first row."""
    start = time.perf_counter()
    measured = subprocess.run([sys.executable, "-c", MEASURE, "--batch", str(path), "--out",
                               str(out), "--quiet"], cwd=ROOT, check=True, text=True,
                              capture_output=True)
    wall = time.perf_counter() - start
    peak = int(measured.stdout.split()[-1]) * MAXRSS_BYTES
    import h5py

    with h5py.File(out, "r") as f:
        rows = f["galaxies"][:]
    first = rows[0]
    status = first["status"].decode()
    what = f"{len(rows)} rows, first {status}" + (
        f": {first['error'].decode()}" if status != "ok" else "")
    return peak / 1e9, wall, what


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--folder", type=Path, help="where to write the images (default: temp)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        inputs = write_inputs(folder, args.side)
        cases = [("baseline (128x128 sample)",
                  ROOT / "resources/samples/hsc_coadd_cutout.fits")]
        cases += [(name, inputs[name]) for name in
                  ("positions.csv", "zeros.fits", "zeros.fits.gz", "zeros.fz", "bomb.fits.gz")]
        print(f"{'input':28s} {'peak RSS':>9s} {'wall':>7s}  result")
        for name, path in cases:
            peak, wall, what = run(path, folder / f"{Path(name).stem}.h5")
            print(f"{name:28s} {peak:7.2f} GB {wall:6.1f} s  {what}")


if __name__ == "__main__":
    main()
