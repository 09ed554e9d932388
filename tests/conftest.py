"""Shared fixtures and markers. Qt runs offscreen: this is set before anything can import Qt.

Markers (registered in ``pyproject.toml``): ``gui`` on every test that drives Qt (a test using
``qtbot`` without it is a collection error), ``slow`` on tests that train, simulate with GalSim,
spawn processes or take more than about two seconds. ``pytest -m "not slow and not gui"`` is the
fast subset. The GUI fixtures (``make_main_window`` ...) are the ``gui_fixtures`` plugin.

Fixtures
--------
run_isolated
    ``run(func, *args, env=None, timeout=600, **kwargs)`` -> ``func(*args, **kwargs)`` computed
    in a child process (a fork of a fork server that has imported torch; spawned when ``env``
    is given), so a native crash there (SIGABRT from heap corruption, SIGSEGV) fails one test, naming the signal, instead of killing pytest. Every test that
    trains a convolutional network goes through it.
tiny_bundle_factory
    ``factory(folder=None, **card_overrides)`` -> folder of a small *untrained* morphology bundle
    with the shipped model's contract (g band, nJy, 0.168″/px, 128 px stamps, outputs bt /
    re_arcsec / flux_njy); top-level card keys can be overridden. Session-scoped.
tiny_bundle
    Folder of such a bundle in ``tmp_path``.
train_property_bundle
    ``train(root, name, ...)`` -> folder of a tiny physical-property bundle trained in seconds
    (isolated) through the bring-your-own-labels command on 16x16 g, r, i nJy images.
tiny_cnn_args
    Command-line options that make ``galaxy-inspector-train properties`` train a tiny CNN.
labelled_table
    ``write(root, target="log_mstar", n=14)`` -> the labelled table (and gri images) the
    bundles of ``train_property_bundle`` are trained on.
simulated_set
    ``simulate_once(simulate, config, n, seed)`` -> HDF5 file written (isolated) by a training
    simulator.
write_galaxies
    ``write(folder, n)`` -> paths of ``n`` HSC-like FITS cutouts of exponential galaxies.
sample_paths
    ``{file name: Path}`` of every file in ``resources/samples`` (located like the app does).
sample_truth
    Rows of ``resources/samples/truth.csv`` as dicts (floats where numeric).
"""

from __future__ import annotations

import os

# Before any test module (or pytest-qt) imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTEST_QT_API", "pyside6")

import copy  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import multiprocessing.forkserver  # noqa: E402
import pickle  # noqa: E402
import signal  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest_plugins = ["gui_fixtures"]

TINY_HYPERPARAMETERS = {
    "stamp_size": 128, "crop_size": 64, "n_params": 3, "dropout": 0.1, "arsinh_scale": 2.0,
    "aperture_radii": [2, 4, 8, 16, 32, 60], "aperture_scale": 10.0,
    "channels": [4, 4, 8, 8], "hidden": 16,
}


def _tiny_card() -> dict:
    """A complete morphology model card (without ``format``/``weights``, which save adds)."""
    from galaxy_inspector import __version__
    from galaxy_inspector.models.bundle import OutputSpec

    specs = [
        OutputSpec("bt", "", "logit", 0.0, 2.0, clip=(0.01, 0.99),
                   description="bulge-to-total flux ratio"),
        OutputSpec("re_arcsec", "arcsec", "log10", 0.0, 0.4,
                   description="circular half-light radius of the intrinsic light"),
        OutputSpec("flux_njy", "nJy", "log10", 4.5, 0.8, description="total intrinsic flux"),
    ]
    return {
        "name": "tiny-test-morphology",
        "task": "morphology",
        "description": "untrained test fixture (tests/conftest.py); predictions are meaningless",
        "architecture": "gampen-stn-mcdropout-head",
        "hyperparameters": dict(TINY_HYPERPARAMETERS),
        "input": {
            "bands": ["g"], "kind": "flux", "unit": "nJy", "pixel_scale_arcsec": 0.168,
            "stamp_size": 128,
            "preprocessing": {
                "pixels": "arsinh(x / 2.0 nJy) inside the network",
                "centring": "galaxy at the stamp centre ((size-1)/2, 0-based)",
                "fill": "masked or non-finite pixels replaced before the network",
            },
        },
        "outputs": [s.to_card() for s in specs],
        "training_ranges": {"bt": [0.0, 1.0], "re_arcsec": [0.1, 6.0], "flux_njy": [1e3, 5e6]},
        "posterior": {"dropout": 0.1, "n_samples": 64, "sigma_scale": [1.0, 1.0, 1.0],
                      "calibrated": False},
        "training": {"data": "none (random initialisation)", "seed": 0},
        "package_version": __version__,
    }


def _write_tiny_bundle(folder, **card_overrides) -> Path:
    import torch

    from galaxy_inspector.models.bundle import save_bundle
    from galaxy_inspector.models.morphology_network import MorphologyNet

    card = copy.deepcopy(_tiny_card())
    card.update(card_overrides)
    torch.manual_seed(0)
    net = MorphologyNet(**card["hyperparameters"])
    tensors = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return save_bundle(folder, card, tensors)


class IsolatedTraceback(Exception):
    """The traceback of an exception raised in an isolated child (its cause, when re-raised)."""


def _isolated_child(connection, func, args, kwargs) -> None:
    """In the child: send back ``func``'s result, or the exception it raised and its traceback."""
    import faulthandler

    faulthandler.enable()  # a native crash prints the Python stack to the test's stderr
    try:
        outcome = ("returned", func(*args, **kwargs))
    except BaseException as exc:  # every failure, assertions and exits too, goes back
        outcome = ("raised", exc, traceback.format_exc())
    # Plain pickle: multiprocessing's own would pass tensors as shared memory that vanishes with
    # the child.
    try:
        message = pickle.dumps(outcome)
    except Exception:  # an unpicklable result or exception
        message = pickle.dumps(("raised", RuntimeError(f"{func.__qualname__}: unpicklable "
                                                       "outcome"), traceback.format_exc()))
    connection.send_bytes(message)


#: What the fork server imports once, so that its children start in milliseconds, not seconds.
FORKSERVER_PRELOAD = ["torch", "torch._dynamo",  # the second is what a first optimizer imports
                      "galsim", "training.cli", "training.train", "training.properties.pipelines"]


def _child_context(env: dict | None):
    """A fork server's context, or a spawning one for a child with its own environment.

    Never a fork of this process: forking a process whose torch threads run can deadlock. The
    fork server is a fresh interpreter that only imports (no thread runs there), so its forks
    are safe and start with torch loaded; they share its environment, so a child that needs
    other variables (oneDNN and OpenMP read theirs once, at start) is spawned instead.
    """
    if env or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)  # no effect once the server runs
    return context


def run_isolated(func, *args, env: dict | None = None, timeout: float = 600, **kwargs):
    """``func(*args, **kwargs)`` computed in a child process; returns its result.

    ``func`` must be importable (module level) and its arguments and result picklable; ``env``
    adds environment variables for the child alone. An exception in the child is raised here
    again, caused by its traceback there; a child killed by a signal or running past
    ``timeout`` seconds fails the test.
    """
    context = _child_context(env)
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_isolated_child, args=(sender, func, args, kwargs))
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    try:
        child.start()
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
    sender.close()
    outcome = None
    try:
        if receiver.poll(timeout):
            outcome = pickle.loads(receiver.recv_bytes())
    except EOFError:  # the child died without sending anything
        pass
    child.join(30)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail(f"{func.__qualname__} ran in a child process for over {timeout} s"
                    if outcome is None else f"{func.__qualname__}'s child process hung on exit",
                    pytrace=False)
    if child.exitcode < 0:
        pytest.fail(f"{func.__qualname__} crashed its child process: "
                    f"{signal.Signals(-child.exitcode).name}", pytrace=False)
    if outcome is None:
        pytest.fail(f"{func.__qualname__}: its child process exited with status "
                    f"{child.exitcode} and no result", pytrace=False)
    if outcome[0] == "raised":
        raise outcome[1] from IsolatedTraceback(outcome[2])
    return outcome[1]


@pytest.fixture(scope="session", name="run_isolated")
def run_isolated_fixture():
    # The fork server starts now, before a test's monkeypatching can change the environment
    # it would keep for every child.
    if _child_context(None).get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()
    return run_isolated


@pytest.fixture(scope="session")
def tiny_bundle_factory(tmp_path_factory):
    def factory(folder=None, **card_overrides) -> Path:
        folder = folder or tmp_path_factory.mktemp("bundle") / "tiny"
        return _write_tiny_bundle(folder, **card_overrides)

    return factory


@pytest.fixture
def tiny_bundle(tiny_bundle_factory, tmp_path) -> Path:
    return tiny_bundle_factory(tmp_path / "tiny-bundle")


@pytest.fixture(scope="session")
def tiny_cnn_args() -> list[str]:
    return ["--epochs", "1", "--batch-size", "16", "--widths", "4", "4", "8", "8",
            "--hidden", "8", "--threads", "1"]


def _write_labelled_table(root, target: str = "log_mstar", n: int = 14):
    """``root/train.csv`` labelling ``n`` gri 16x16 nJy images (columns g, r, i,
    ``target``, ``target``_err, z): an elliptical blob, brighter towards i, with noise."""
    from astropy.io import fits

    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:16, :16] - 7.5
    blob = np.exp(-0.5 * (xx ** 2 / 9 + yy ** 2 / 4))
    rng = np.random.default_rng(0)
    rows = [f"g,r,i,{target},{target}_err,z"]
    for k in range(n):
        for band, colour in zip("gri", (1.0, 1.6, 2.2), strict=True):
            plane = (40.0 + 10 * k) * colour * blob + rng.normal(0, 2.0, blob.shape)
            header = fits.Header({"BUNIT": "nJy", "PIXSCALE": 0.168, "FILTER": band})
            fits.PrimaryHDU(plane.astype(np.float32), header).writeto(
                root / f"{band}{k}.fits", overwrite=True)
        rows.append(f"g{k}.fits,r{k}.fits,i{k}.fits,{9 + 0.1 * k},0.1,{0.05 + 0.01 * k}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root / "train.csv"


@pytest.fixture(scope="session")
def labelled_table():
    """``write(root, target="log_mstar", n=14)`` -> a table for ``galaxy-inspector-train
    properties`` (columns g, r, i, ``target``, ``target``_err, z) and its images in ``root``."""
    return _write_labelled_table


@pytest.fixture(scope="session")
def train_property_bundle(tiny_cnn_args, run_isolated):
    """Trains in seconds: the planes are an elliptical blob, brighter towards i, with noise."""
    def train(root, name: str, method: str = "cnn", redshift: bool = False, demo: bool = False,
              target: str = "log_mstar", n: int = 14) -> str:
        """Bundle ``name`` of ``method`` predicting ``target`` (with a redshift input if asked,
        marked as a demo bundle if asked), trained on ``n`` images at 0.168"/px (the scale of
        ``cube_gri.fits``) written into ``root``; returns its folder."""
        from training.cli import main as train_properties

        _write_labelled_table(root, target, n)
        out = root / name
        args = ["properties", "--table", str(root / "train.csv"), "--image-column", "g",
                "--image-column", "r", "--image-column", "i", "--target", target,
                "--target-err", f"{target}_err", "--method", method, "--out", str(out),
                *tiny_cnn_args]
        if redshift:
            args += ["--redshift", "z"]
        assert run_isolated(train_properties, args) == 0
        card_path = out / "card.json"
        card = json.loads(card_path.read_text())
        card["name"] = name
        if demo:
            card.update(demo=True, synthetic_training_data=True)
        card_path.write_text(json.dumps(card, indent=1))
        return str(out)

    return train


@pytest.fixture(scope="session")
def simulated_set(tmp_path_factory, run_isolated):
    """One worker, so a module fixture can make its set once, in a fresh folder."""
    def simulate_once(simulate, config, n: int, seed: int) -> Path:
        """The file ``simulate`` (``training.simulate.simulate`` or
        ``training.properties.survey.simulate_survey``) writes for ``n`` galaxies."""
        path = tmp_path_factory.mktemp("simulated") / "set.h5"
        run_isolated(simulate, path, n=n, seed=seed, workers=1, config=config)
        return path

    return simulate_once


@pytest.fixture(scope="session")
def write_galaxies():
    def write(folder, n: int, size: int = 100, seed: int = 0) -> list[Path]:
        """``n`` HSC-like cutouts (counts, FLUXMAG0 = zp 27) of exponential galaxies with
        noise, ``size`` px square, written into ``folder``."""
        import galsim
        from astropy.io import fits

        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        paths = []
        for i in range(n):
            gal = galsim.Exponential(half_light_radius=0.5 + 0.1 * (i % 10), flux=2e4)
            counts = gal.drawImage(nx=size, ny=size, scale=0.168).array / 10 ** (4.4 / 2.5)
            counts += rng.normal(0, 0.04, counts.shape)
            primary = fits.PrimaryHDU()
            primary.header["FLUXMAG0"] = 10 ** (0.4 * 27.0)
            path = folder / f"gal{i:04d}.fits"
            fits.HDUList([primary, fits.ImageHDU(counts.astype(np.float32), name="IMAGE")]
                         ).writeto(path)
            paths.append(path)
        return paths

    return write


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    from galaxy_inspector.shipped import samples_dir as shipped_samples

    return shipped_samples()


@pytest.fixture(scope="session")
def sample_paths(samples_dir) -> dict[str, Path]:
    paths = {p.name: p for p in sorted(samples_dir.iterdir()) if p.is_file()}
    if not paths:
        pytest.fail(f"no sample files in {samples_dir}; run python -m training.make_samples")
    return paths


@pytest.fixture(scope="session")
def sample_truth(samples_dir) -> list[dict]:
    rows = []
    with open(samples_dir / "truth.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                try:
                    row[key] = float(value)
                except ValueError:
                    pass
            rows.append(row)
    return rows


def pytest_collection_modifyitems(items):
    """``-m "not gui"`` must never start Qt: a test using ``qtbot`` has to be marked ``gui``."""
    unmarked = [item.nodeid for item in items
                if "qtbot" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("gui")]
    if unmarked:
        raise pytest.UsageError("Qt tests without the gui marker (add pytestmark = "
                                "pytest.mark.gui): " + ", ".join(unmarked))
