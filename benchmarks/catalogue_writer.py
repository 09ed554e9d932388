"""What crash safety costs: the catalogue writer on 100k rows, with and without samples.

Appends chunks of ``--chunk`` rows (a batch's default is 32) through ``CatalogueWriter``: each
chunk is one fsync'd journal record, and checkpoints copy the file and fold the journal in
(``catalogue.writer``: when the journal holds as many rows as the file). Prints the time per
row, how many checkpoints ran and what they cost, how many bytes they copied compared with
the final file (a doubling schedule copies each byte about twice; one checkpoint per chunk would
copy the file rows/chunk/2 times), and the largest journal. Samples are random float32 draws,
which gzip barely compresses, so the sizes are the worst case.

    nice -n 10 python benchmarks/catalogue_writer.py [--rows 100000] [--samples 0 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from galaxy_inspector.catalogue import CatalogueWriter
from galaxy_inspector.catalogue.journal import journal_path
from galaxy_inspector.catalogue.rows import empty_rows, set_text
from galaxy_inspector.catalogue.schema import key_digest

PARAMS = ["bt", "re_arcsec", "flux_njy"]


def run(folder: Path, n_rows: int, n_samples: int, chunk: int) -> dict:
    path = folder / f"bench-{n_samples}.h5"
    attrs = {"model_name": "bench", "model_sha256": "0" * 64, "parameters": PARAMS,
             "n_samples_saved": n_samples}
    writer = CatalogueWriter.create(path, PARAMS, n_samples or None, attrs)
    rng = np.random.default_rng(0)
    checkpoints, checkpoint_s, copied, journal_peak = 0, 0.0, 0, 0
    fold = writer.checkpoint

    def timed_checkpoint():
        nonlocal checkpoints, checkpoint_s, copied
        size = path.stat().st_size
        t = time.perf_counter()
        fold()
        checkpoint_s += time.perf_counter() - t
        checkpoints += 1
        copied += size

    writer.checkpoint = timed_checkpoint
    t0 = time.perf_counter()
    for start in range(0, n_rows, chunk):
        n = min(chunk, n_rows - start)
        rows = empty_rows(writer.dtype, n)
        for i in range(n):
            key = f"/survey/cutouts/{start + i:09d}.fits"
            set_text(rows, i, "input_key", key)
            set_text(rows, i, "input_key_sha256", key_digest(key))
            set_text(rows, i, "id", f"{start + i:09d}.fits")
            set_text(rows, i, "status", "ok")
        rows["bt_median"] = rng.random(n)
        samples = (rng.random((n, n_samples, len(PARAMS)), dtype=np.float32)
                   if n_samples else None)
        writer.append(rows, samples)
        if journal_path(path).exists():
            journal_peak = max(journal_peak, journal_path(path).stat().st_size)
    writer.finish({})
    total = time.perf_counter() - t0
    size = path.stat().st_size
    path.unlink()
    return {"samples": n_samples, "seconds": total, "us_per_row": 1e6 * total / n_rows,
            "checkpoints": checkpoints, "checkpoint_s": checkpoint_s,
            "copied_over_final": copied / size, "final_mb": size / 2 ** 20,
            "journal_peak_mb": journal_peak / 2 ** 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--samples", type=int, nargs="+", default=[0, 500])
    parser.add_argument("--chunk", type=int, default=32)
    args = parser.parse_args()
    print(f"{args.rows} rows in chunks of {args.chunk}")
    print(f"{'samples':>8} {'total s':>8} {'us/row':>7} {'ckpts':>6} {'ckpt s':>7} "
          f"{'copied/final':>12} {'final MB':>9} {'journal peak MB':>15}")
    with tempfile.TemporaryDirectory() as folder:
        for n_samples in args.samples:
            r = run(Path(folder), args.rows, n_samples, args.chunk)
            print(f"{r['samples']:>8} {r['seconds']:>8.1f} {r['us_per_row']:>7.0f} "
                  f"{r['checkpoints']:>6} {r['checkpoint_s']:>7.1f} "
                  f"{r['copied_over_final']:>12.2f} {r['final_mb']:>9.1f} "
                  f"{r['journal_peak_mb']:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
