"""End-to-end batch throughput: FITS files -> HDF5 catalogue with full posteriors.

Writes HSC-like cutouts (160x160 px at 0.168″/px, counts with FLUXMAG0) of GalSim galaxies to a
temporary folder, then runs ``run_batch`` with the shipped model, ``--save-samples`` and the
model's calibrated number of samples, for 10 and 1000 inputs and 1 and 2 workers. Each run is
a separate process, so its peak memory (max RSS of the process plus its worker processes) is
its own. Prints galaxies/s and peak memory.

    nice -n 10 python benchmarks/batch_throughput.py [--sizes 10 1000] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_inputs(folder: Path, n: int, seed: int = 0, side: int = 160,
                 headers_from: Path | None = None) -> None:
    """``n`` HSC-like cutouts of GalSim bulge+disk galaxies, ``side`` px at 0.168″/px, in
    counts with FLUXMAG0 (zp 27), with MASK and VARIANCE planes. ``headers_from``: a FITS file
    (an HSC coadd cutout of ``side`` px) whose HDUs' headers (WCS, mask planes) each copies."""
    import galsim
    from astropy.io import fits

    templates = [None] * 4
    if headers_from is not None:
        with fits.open(headers_from) as hdul:
            templates = [h.header.copy() for h in hdul]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        gal = galsim.Convolve(
            galsim.Add([galsim.Exponential(half_light_radius=rng.uniform(0.5, 3.0),
                                           flux=rng.uniform(0.3, 1.0)),
                        galsim.DeVaucouleurs(half_light_radius=rng.uniform(0.2, 1.5),
                                             flux=rng.uniform(0.0, 0.7))]).withFlux(
                10 ** rng.uniform(3.5, 5.5)),
            galsim.Moffat(beta=3.0, fwhm=rng.uniform(0.6, 1.1)))
        counts = gal.drawImage(nx=side, ny=side, scale=0.168).array / 10 ** (4.4 / 2.5)
        counts += rng.normal(0, 0.05, counts.shape)
        primary = fits.PrimaryHDU(header=templates[0])
        primary.header["FLUXMAG0"] = 10 ** (0.4 * 27.0)
        fits.HDUList([primary,
                      fits.ImageHDU(counts.astype(np.float32), templates[1], name="IMAGE"),
                      fits.ImageHDU(np.zeros(counts.shape, np.int32), templates[2],
                                    name="MASK"),
                      fits.ImageHDU(np.full(counts.shape, 0.0025, np.float32), templates[3],
                                    name="VARIANCE")]).writeto(folder / f"g{i:05d}.fits")


def child(folder: str, out: str, workers: int) -> None:
    """One measured run (in its own process)."""
    from galaxy_inspector.batch import BatchOptions, run_batch

    t0 = time.perf_counter()
    result = run_batch([folder], out, BatchOptions(save_samples=True, workers=workers))
    wall = time.perf_counter() - t0  # includes loading the model
    peak_kib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"done": result.done, "failed": result.failed, "wall_s": wall,
                      "rate": result.done / wall, "peak_mib": peak_kib / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'inputs':>7} {'workers':>7} {'galaxies/s':>10} {'wall s':>8} {'peak MiB':>9}")
        for n in args.sizes:
            folder = tmp / f"in{n}"
            write_inputs(folder, n)
            for workers in args.workers:
                out = tmp / f"cat{n}_{workers}.h5"
                run = subprocess.run([sys.executable, __file__, "--child", str(folder),
                                      str(out), str(workers)], capture_output=True, text=True,
                                     check=True)
                r = json.loads(run.stdout.strip().splitlines()[-1])
                assert r["failed"] == 0 and r["done"] == n, r
                print(f"{n:7d} {workers:7d} {r['rate']:10.1f} {r['wall_s']:8.1f} "
                      f"{r['peak_mib']:9.0f}", flush=True)


if __name__ == "__main__":
    main()
