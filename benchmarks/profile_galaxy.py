"""Where one galaxy's time goes, start-up included, and how a batch scales (issue 13).

Writes HSC-like coadd cutouts (128x128 px at 0.168″/px with the WCS, MASK planes and FLUXMAG0
of ``resources/samples/hsc_coadd_cutout.fits``; GalSim bulge+disk galaxies, no position given,
so each is measured at its central source) and measures, each part in a process of its own:

1. the steady-state profile of ``run_batch`` (shipped model, ``--save-samples``, 500 samples,
   ``--workers 1``) on one core (the process pinned to it, so torch runs one thread): the
   exclusive wall time of the real pipeline functions, wrapped in place with
   ``time.perf_counter``, in ms per galaxy and share;
2. start-up: ``galaxy-inspector --batch one.fits --out x.h5`` from command to exit (its one row
   written), and the same run broken down (interpreter, imports, model load, first row);
3. steady-state throughput of ``--workers 1`` and ``2`` (all cores) and, when dask is installed
   and ``BatchOptions`` has a ``cluster`` field, ``--cluster local:1`` and ``local:2``, with the
   scheduler's own cost per task (no-op tasks on a ``LocalCluster``);
4. a projection from the measured per-galaxy and per-task costs to 100 nodes x 32 cores.

    nice -n 10 python benchmarks/profile_galaxy.py [--galaxies 300] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from batch_throughput import write_inputs

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "resources" / "samples" / "hsc_coadd_cutout.fits"

#: (module, owner, attribute, stage): the functions whose exclusive time makes each stage.
#: Owners are named where the pipeline looks them up (``batch`` imports its helpers by name).
LOAD_STAGE = "model load (once per run)"
STAGES = [
    ("galaxy_inspector.batch", None, "load_models", LOAD_STAGE),
    ("galaxy_inspector.batch", None, "read_image", "read FITS (open, headers, pixels)"),
    ("galaxy_inspector.io.fits", None, "_celestial_wcs", "read FITS: WCS (astropy.wcs)"),
    ("galaxy_inspector.io.fits", None, "calibration_from_header", "calibrate (zero point)"),
    ("galaxy_inspector.batch", None, "central_galaxy", "search: segments, centroids"),
    ("galaxy_inspector.segmentation", None, "_sigma_clipped", "search: sky and noise (clipped)"),
    ("galaxy_inspector.preprocessing", None, "_could_split", "search: blend test"),
    ("galaxy_inspector.neighbours", None, "other_sources", "stamp: neighbours"),
    ("galaxy_inspector.preprocessing", None, "_deblended_sources",
     "search: deblending (photutils)"),
    ("galaxy_inspector.io.image", "SkyImage", "cutout", "cutout"),
    ("galaxy_inspector.preprocessing", None, "_resample", "resample"),
    ("galaxy_inspector.preprocessing", None, "_check_resampled", "resample"),
    ("galaxy_inspector.engine", None, "make_stamp", "stamp: fill, sky noise, flags"),
    ("galaxy_inspector.batch", None, "prepare_unit", "other preparation"),
    ("galaxy_inspector.models.morphology", "MorphologyModel", "_trunk", "trunk (STN+CNN)"),
    ("galaxy_inspector.models.morphology", "MorphologyModel", "_draws", "seeded draws"),
    ("galaxy_inspector.models.morphology_network", "MorphologyNet", "head",
     "head sampling (dropout, LDL)"),
    ("galaxy_inspector.models.morphology", None, "sample_ldl", "head sampling (dropout, LDL)"),
    ("galaxy_inspector.models.morphology", "MorphologyModel", "_row_spread",
     "head sampling (dropout, LDL)"),
    ("galaxy_inspector.models.morphology", "MorphologyModel", "_sample",
     "head sampling (dropout, LDL)"),
    ("galaxy_inspector.models.morphology", "MorphologyModel", "predict",
     "predict: checks, transforms"),
    ("galaxy_inspector.engine", None, "summarize", "summaries (KDE mode, HPD)"),
    ("galaxy_inspector.engine", None, "_posteriors", "S/N, flags, labels"),
    ("galaxy_inspector.catalogue.rows", "RowBuilder", "build", "row building"),
    ("galaxy_inspector.catalogue.writer", "CatalogueWriter", "append", "writing"),
    ("galaxy_inspector.catalogue.writer", "CatalogueWriter", "checkpoint", "writing"),
    ("galaxy_inspector.catalogue.writer", "CatalogueWriter", "finish", "writing"),
]
#: What the pipeline imports at the first galaxy that needs it (a blend to split, a stamp to
#: fill, pixels to resample): imported before the steady-state profile, which would otherwise
#: charge a second of imports to whichever galaxy came first.
LAZY_IMPORTS = ("photutils.segmentation", "photutils.aperture", "skimage.segmentation",
                "reproject", "matplotlib")
#: Stages the single writer of a cluster run does (the rest runs on the workers).
WRITER_STAGES = ("row building", "writing")
#: distributed's documented overhead: "each task suffers about 1ms of overhead"
#: (https://distributed.dask.org/en/stable/efficiency.html); measured here when possible.
DOCUMENTED_TASK_OVERHEAD_S = 1e-3
NODES, CORES_PER_NODE = 100, 32


class StageClock:
    """Exclusive time per stage of functions wrapped in place (nested calls are charged to the
    innermost wrapped one), by ``clock``: ``time.perf_counter`` (wall) or ``time.process_time``
    (CPU of this process: on one pinned core with one torch thread, what the core spent,
    whatever else the machine runs)."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.seconds: dict[str, float] = defaultdict(float)
        self.missing: list[str] = []
        self._children: list[float] = []

    def wrap_all(self, stages=STAGES) -> None:
        for module_name, owner_name, attribute, stage in stages:
            module = importlib.import_module(module_name)
            owner = getattr(module, owner_name) if owner_name else module
            if not hasattr(owner, attribute):
                self.missing.append(f"{module_name}.{owner_name or ''}.{attribute}")
                continue
            setattr(owner, attribute, self._timed(getattr(owner, attribute), stage))

    def _timed(self, function, stage):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self._children.append(0.0)
            t0 = self.clock()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = self.clock() - t0
                self.seconds[stage] += elapsed - self._children.pop()
                if self._children:
                    self._children[-1] += elapsed

        return timed


def _clean(out: Path) -> None:
    for path in out.parent.glob(out.name + "*"):
        path.unlink()


def child_profile(folder: str, out: str) -> dict:
    """Stage CPU times of a one-core ``--workers 1`` run over ``folder`` after a warm-up run."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from galaxy_inspector.batch import BatchOptions, run_batch

    clock = StageClock(time.process_time)
    clock.wrap_all()
    options = BatchOptions(save_samples=True, workers=1)
    warm = Path(out).with_suffix(".warm.h5")
    run_batch([str(next(Path(folder).iterdir()))], warm, options)  # imports, caches
    for name in LAZY_IMPORTS:  # once per process, at the first galaxy that needs them
        importlib.import_module(name)
    clock.seconds.clear()
    _clean(Path(out))
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_batch([folder], out, options)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"galaxies": result.done + result.failed, "failed": result.failed, "wall": wall,
            "cpu": cpu,
            "seconds": dict(clock.seconds), "missing": clock.missing,
            "out_bytes": Path(out).stat().st_size,
            "in_bytes": sum(p.stat().st_size for p in Path(folder).iterdir())}


def child_startup(one: str, out: str) -> dict:
    """The one-galaxy CLI run, broken down: imports, model load, the first row."""
    t0 = time.perf_counter()
    import galaxy_inspector.batch  # noqa: F401
    from galaxy_inspector import cli

    t_import = time.perf_counter() - t0
    clock = StageClock()
    clock.wrap_all([("galaxy_inspector.batch", None, "load_models", "model load")])
    clock.wrap_all([("galaxy_inspector.batch", None, "prepare_unit", "first row: read, cut")])
    _clean(Path(out))
    t1 = time.perf_counter()
    status = cli.main(["--batch", one, "--out", out, "--quiet"])
    run = time.perf_counter() - t1
    assert status == 0, status
    loaded = sorted({name.split(".")[0] for name in sys.modules} & {
        "galsim", "matplotlib", "PySide6", "pyqtgraph", "lightgbm", "reproject", "photutils",
        "skimage", "scipy", "pandas", "dask", "distributed"})
    return {"import": t_import, "run": run, **clock.seconds, "loaded": loaded}


def child_throughput(folder: str, out: str, workers: int, cluster: str | None) -> dict:
    """Steady-state rows/s of one run: between its first and last progress report."""
    from galaxy_inspector.batch import BatchOptions, run_batch

    reports = []
    extra = {"cluster": cluster} if cluster else {}
    options = BatchOptions(save_samples=True, workers=workers, **extra)
    t0 = time.perf_counter()
    result = run_batch([folder], out, options,
                       progress=lambda p: reports.append((p.done + p.failed, p.elapsed)))
    wall = time.perf_counter() - t0
    (n0, t_first), (n1, t_last) = reports[0], reports[-1]
    rate = (n1 - n0) / (t_last - t_first) if t_last > t_first else float("nan")
    return {"rows": result.done + result.failed, "failed": result.failed, "wall": wall,
            "rate": rate}


def child_scheduler(workers: int, tasks: int) -> dict:
    """Seconds per no-op task through a ``LocalCluster`` of ``workers`` processes."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.gather(client.map(_noop, range(workers * 4)))  # workers up, functions cached
        t0 = time.perf_counter()
        client.gather(client.map(_noop, range(tasks), pure=False))
        return {"per_task": (time.perf_counter() - t0) / tasks}


def _noop(i):
    return i


def _run_child(*args, timeout=1800) -> dict:
    run = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if run.returncode:
        raise SystemExit(f"child {args[0]} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _cli_seconds(one: Path, out: Path) -> float:
    """Wall seconds of the real command, from its start to its exit (the row is written)."""
    script = Path(sys.executable).with_name("galaxy-inspector")
    command = ([str(script)] if script.exists()
               else [sys.executable, "-m", "galaxy_inspector.cli"])
    _clean(out)
    t0 = time.perf_counter()
    subprocess.run([*command, "--batch", str(one), "--out", str(out), "--quiet"], check=True,
                   cwd=ROOT)
    return time.perf_counter() - t0


def _interpreter_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def print_profile(p: dict) -> dict:
    n = p["galaxies"]
    seconds = dict(p["seconds"])
    load = seconds.pop(LOAD_STAGE, 0.0)
    cpu = p["cpu"] - load
    seconds["batch loop, other"] = cpu - sum(seconds.values())
    total_ms = 1e3 * cpu / n
    print(f"\nSteady state, one core, --workers 1, {n} galaxies ({p['failed']} failed), "
          f"--save-samples, 500 samples: {total_ms:.2f} ms of CPU per galaxy "
          f"({1e3 * (p['wall'] - load) / n:.2f} ms wall; the model load, {load:.2f} s once "
          "per run, aside)")
    print(f"  {'stage (CPU time)':<34} {'ms/galaxy':>9} {'share':>6}")
    for stage, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<34} {1e3 * s / n:9.3f} {s / cpu:6.1%}")
    if p["missing"]:
        print(f"  (not found, not timed: {', '.join(p['missing'])})")
    writer_ms = sum(1e3 * s / n for k, s in seconds.items() if k in WRITER_STAGES)
    return {"total_ms": total_ms, "writer_ms": writer_ms, "worker_ms": total_ms - writer_ms,
            "in_bytes": p["in_bytes"] / n, "out_bytes": p["out_bytes"] / n}


def print_startup(one: Path, out: Path, repeats: int) -> None:
    walls = [_cli_seconds(one, out) for _ in range(repeats)]
    s = _run_child("startup", one, out)
    interpreter = _interpreter_seconds()
    print(f"\nStart-up: galaxy-inspector --batch one.fits --out x.h5: median "
          f"{statistics.median(walls):.2f} s of {repeats} (min {min(walls):.2f} s), command "
          "to exit with its row written")
    print(f"  {'part':<44} {'s':>6}")
    first_row = s["run"] - s.get("model load", 0) - s.get("first row: read, cut", 0)
    for part, value in (("python interpreter", interpreter),
                        ("import galaxy_inspector.cli, .batch", s["import"]),
                        ("model load (torch import, bundle checks)", s.get("model load", 0)),
                        ("read, find the central source, cut",
                         s.get("first row: read, cut", 0)),
                        ("measure, write, close the catalogue", first_row)):
        print(f"  {part:<44} {value:6.2f}")
    print(f"  optional packages imported: {', '.join(s['loaded']) or 'none'}")


def print_throughput(folder: Path, tmp: Path, configurations) -> dict:
    print(f"\nThroughput over {sum(1 for _ in folder.iterdir())} inputs, all cores "
          f"({len(os.sched_getaffinity(0))}), --save-samples, steady state (between the first "
          "and last chunk written):")
    print(f"  {'run':<18} {'galaxies/s':>10} {'wall s':>7}")
    rates = {}
    for label, workers, cluster in configurations:
        out = tmp / f"{label.replace(' ', '_').replace(':', '')}.h5"
        _clean(out)
        r = _run_child("throughput", folder, out, workers, cluster or "")
        rates[label] = r["rate"]
        failed = f" ({r['failed']} failed)" if r["failed"] else ""
        print(f"  {label:<18} {r['rate']:10.1f} {r['wall']:7.1f}{failed}")
    return rates


def print_projection(costs: dict, task_overhead: float, measured: bool, unit: int) -> None:
    cores = NODES * CORES_PER_NODE
    compute = cores * 1e3 / costs["worker_ms"]
    writer = 1e3 / costs["writer_ms"] if costs["writer_ms"] > 0 else float("inf")
    scheduler = unit / task_overhead
    read = compute * costs["in_bytes"]
    write = writer * costs["out_bytes"]
    where = "measured here" if measured else "distributed's documented figure"
    print(f"\nProjection to {NODES} nodes x {CORES_PER_NODE} cores ({cores} worker cores), "
          "from the per-galaxy costs measured above:")
    limits = [
        (f"workers: {cores} cores x 1 / {costs['worker_ms']:.2f} ms", compute),
        (f"the one writer: rows built and written at {costs['writer_ms']:.3f} ms/row", writer),
        (f"the scheduler: {task_overhead * 1e3:.2f} ms/task ({where}) x {unit} inputs/task",
         scheduler),
    ]
    for text, rate in limits:
        print(f"  {text:<74} {rate:12,.0f} galaxies/s")
    print(f"  input I/O at the workers' rate: {read / 1e9:.2f} GB/s of cutouts "
          f"({costs['in_bytes'] / 1e3:.0f} kB each) from the shared file system")
    print(f"  output at the writer's rate: {write / 1e6:.0f} MB/s into one HDF5 file "
          f"({costs['out_bytes'] / 1e3:.1f} kB per row with samples)")
    bottleneck, rate = min(limits, key=lambda item: item[1])
    print(f"  -> saturates first at {rate:,.0f} galaxies/s: {bottleneck.split(':')[0]}; "
          f"10^9 galaxies take {1e9 / rate / 3600:.1f} h there")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=300)
    parser.add_argument("--startup-repeats", type=int, default=3)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "throughput":
            rest[2], rest[3] = int(rest[2]), rest[3] if len(rest) > 3 and rest[3] else None
        function = {"profile": child_profile, "startup": child_startup,
                    "throughput": child_throughput, "scheduler": child_scheduler}[kind]
        if kind == "scheduler":
            rest = [int(v) for v in rest]
        print(json.dumps(function(*rest)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, one = tmp / "cutouts", tmp / "one"
        write_inputs(folder, args.galaxies, side=128, headers_from=TEMPLATE)
        one.mkdir()
        shutil.copy(next(folder.iterdir()), one / "one.fits")
        costs = print_profile(_run_child("profile", folder, tmp / "profile.h5"))
        print_startup(one / "one.fits", tmp / "one.h5", args.startup_repeats)
        from galaxy_inspector import batch

        configurations = [("--workers 1", 1, None), ("--workers 2", 2, None)]
        task_overhead, measured = DOCUMENTED_TASK_OVERHEAD_S, False
        try:
            import distributed  # noqa: F401
        except ImportError:
            print("\n(dask.distributed is not installed: no cluster runs; "
                  "pip install galaxy-inspector[cluster])")
        else:
            if "cluster" in {f.name for f in dataclasses.fields(batch.BatchOptions)}:
                configurations += [("--cluster local:1", 1, "local:1"),
                                   ("--cluster local:2", 2, "local:2")]
            else:
                print("\n(BatchOptions has no 'cluster' field yet: no --cluster runs)")
            task_overhead = statistics.median(
                _run_child("scheduler", 2, 2000)["per_task"] for _ in range(3))
            measured = True
            print(f"\nScheduler: {task_overhead * 1e3:.2f} ms per no-op task through a "
                  f"local:2 LocalCluster ({1 / task_overhead:,.0f} tasks/s)")
        if not args.skip_throughput:
            print_throughput(folder, tmp, configurations)
        print_projection(costs, task_overhead, measured, batch.UNIT_SIZE)


if __name__ == "__main__":
    main()
