"""Training under torchrun (``training/distributed.py``): two gloo processes on the CPU train,
resume and write a bundle the app measures with; only rank 0 writes; a rank's failure ends the
run with a one-line message; and the arithmetic that makes N processes one process's optimiser.

The torchrun tests start ``python -m torch.distributed.run --standalone`` (the venv's torchrun),
whose rendezvous takes a free port, so they can run beside each other.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from galaxy_inspector.engine import analyse_position, load_models
from galaxy_inspector.io import SkyImage
from galaxy_inspector.physical_properties.model import PropertyModel
from training.distributed import Ranks
from training.simulate import SimulationConfig, simulate

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m", "training"]


@pytest.fixture(scope="module")
def tiny_set(simulated_set):
    return simulated_set(simulate, SimulationConfig(stamp_size=64, chunk=12), n=24, seed=11)


def _train_args(tiny_set, out, *extra) -> list[str]:
    return ["--json", "train", "--train", str(tiny_set), "--val", str(tiny_set), "--out",
            str(out), "--batch-size", "8", *extra]


def _torchrun(args, prefix=(), timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *TORCHRUN, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def _events(stdout: str) -> list[tuple]:
    """``(event, epoch)`` of the JSON lines other than progress updates."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [(e["event"], e.get("epoch")) for e in lines if e["event"] != "progress"]


def _galaxy(n=100, scale=0.168):
    yy, xx = np.indices((n, n)) - (n - 1) / 2
    profile = np.exp(-np.hypot(yy, xx) * scale / 0.5)
    return 3e4 * profile / profile.sum() + np.random.default_rng(0).normal(0, 2.0, (n, n))


@pytest.mark.slow
def test_two_processes_train_resume_and_write_a_bundle_the_app_measures(tiny_set, tmp_path):
    out = tmp_path / "run"
    first = _torchrun(_train_args(tiny_set, out, "--epochs", "2", "--stop-after-epochs", "1"))
    assert first.returncode == 0, first.stderr
    # One report, from rank 0: the other rank trains silently.
    assert _events(first.stdout) == [("start", None), ("epoch", 1), ("paused", 1)]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1

    second = _torchrun(_train_args(tiny_set, out, "--epochs", "2"))
    assert second.returncode == 0, second.stderr
    assert _events(second.stdout) == [("resumed", 1), ("start", None), ("epoch", 2),
                                      ("bundle", None)]
    assert sorted(p.name for p in out.iterdir()) == ["bundle", "checkpoint.pt"]
    morphology, _ = load_models([str(out / "bundle")])
    training = morphology.bundle.card["training"]
    assert training["world_size"] == 2 and training["config"]["batch_size"] == 8
    assert [h["epoch"] for h in training["history"]] == [1, 2]
    measured = analyse_position(SkyImage.from_array(_galaxy(), 0.168), 49.5, 49.5, morphology,
                                n_samples=20)
    assert not measured.error and np.isfinite(measured.samples).all()
    assert 0 <= measured.summary["bt_median"] <= 1


def _strace_works() -> bool:
    return (shutil.which("strace") is not None and subprocess.run(
        ["strace", "-qq", "-o", "/dev/null", "true"]).returncode == 0)


@pytest.mark.slow
@pytest.mark.skipif(not _strace_works(), reason="strace is not installed or may not trace here")
def test_only_one_process_writes_the_checkpoint_and_the_bundle(tiny_set, tmp_path):
    out, log = tmp_path / "run", tmp_path / "strace.log"
    run = _torchrun(_train_args(tiny_set, out, "--epochs", "1"),
                    prefix=["strace", "-f", "-qq", "--seccomp-bpf", "-o", str(log), "-e",
                            "trace=openat,rename,renameat,renameat2"])
    assert run.returncode == 0, run.stderr
    writes = [line for line in log.read_text().splitlines()
              if f'"{out}/' in line and ("rename" in line or "O_WRONLY" in line
                                         or "O_RDWR" in line)]
    assert any("checkpoint.pt" in w for w in writes) and any("card.json" in w for w in writes)
    assert len({w.split()[0] for w in writes}) == 1, writes  # the pids that wrote


@pytest.mark.slow
def test_a_damaged_checkpoint_fails_every_rank_with_one_line(tiny_set, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    run = _torchrun(_train_args(tiny_set, out, "--epochs", "1"))
    assert run.returncode == 1
    for rank in (0, 1):
        assert (f"galaxy-inspector-train: error: rank {rank}/2: cannot resume from checkpoint "
                f"{out / 'checkpoint.pt'}") in run.stderr
    # torchrun's summary names the message as the cause; no traceback of ours.
    assert "traceback : galaxy-inspector-train: error: rank" in run.stderr
    assert f'File "{REPO / "training"}' not in run.stderr


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_without_a_hang_and_keeps_the_checkpoint(tiny_set,
                                                                             tmp_path):
    out = tmp_path / "run"
    launcher = subprocess.Popen([*TORCHRUN, *_train_args(tiny_set, out, "--epochs", "500")],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (out / "checkpoint.pt").exists(), "no epoch finished"
        workers = psutil.Process(launcher.pid).children()
        next(w for w in workers if w.environ().get("RANK") == "1").send_signal(signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode != 0
    assert "Signal 9 (SIGKILL)" in stderr  # torchrun's summary: the root cause
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] >= 1


@pytest.mark.slow
def test_property_cnn_trains_on_two_processes(labelled_table, tiny_cnn_args, tmp_path):
    table = labelled_table(tmp_path / "data")
    out = tmp_path / "bundle"
    run = _torchrun(["--json", "properties", "--table", str(table), "--image-column", "g",
                     "--image-column", "r", "--image-column", "i", "--target", "log_mstar",
                     "--method", "cnn", "--out", str(out), *tiny_cnn_args])
    assert run.returncode == 0, run.stderr
    assert [e for e, _ in _events(run.stdout)].count("done") == 1  # rank 0 alone reports
    model = PropertyModel(out)
    assert model.bundle.card["training"]["world_size"] == 2
    stamps = np.stack([np.stack([np.asarray(plane) for plane in
                                 _planes(tmp_path / "data", k)]) for k in range(2)])
    prediction = model.predict(stamps, n_samples=20)
    assert prediction.samples.shape == (2, 20, 1) and np.isfinite(prediction.samples).all()


def _planes(folder, k):
    from astropy.io import fits

    return [fits.getdata(folder / f"{band}{k}.fits") for band in "gri"]


def test_commands_that_run_in_one_process_are_refused_under_torchrun(monkeypatch, capsys,
                                                                    tmp_path):
    from training.cli import main

    monkeypatch.setattr("training.distributed.exit_process", lambda code: None)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "never.h5"
    assert main(["simulate", "--n", "2", "--seed", "1", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (
        "galaxy-inspector-train: error: rank 1/2: 'simulate' runs in one process: start it "
        "without torchrun (only 'train' and 'properties' train on several)")
    assert not out.exists()


def test_the_ranks_averaged_gradient_is_the_global_batch_mean_gradient():
    """What DistributedDataParallel averages over ranks equals one process's gradient of the
    whole batch, also for parts of unequal size (7 galaxies on 2 ranks)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x, y = torch.randn(7, 4), torch.randn(7, 1)

    def gradient(processes: Ranks) -> torch.Tensor:
        part = processes.shard(len(x))
        model.zero_grad()
        local = ((model(x[part]) - y[part]) ** 2).mean()
        processes.batch_loss(local, len(x[part]), len(x)).backward()
        return model.weight.grad.clone()

    cpu = torch.device("cpu")
    ranks = [Ranks(r, 2, cpu) for r in range(2)]
    assert [len(range(7)[r.shard(7)]) for r in ranks] == [4, 3]
    averaged = (gradient(ranks[0]) + gradient(ranks[1])) / 2
    torch.testing.assert_close(averaged, gradient(Ranks(0, 1, cpu)))


def test_batches_are_shared_without_a_starved_rank_and_seeds_differ_by_rank():
    cpu = torch.device("cpu")
    one, two = Ranks(0, 1, cpu), Ranks(1, 2, cpu)
    assert one.steps(25, 8) == 4  # one process keeps its ragged last batch of 1
    assert two.steps(25, 8) == 3 and two.steps(28, 8) == 4  # 1 galaxy cannot feed 2 ranks
    with pytest.raises(ValueError, match=r"--batch-size 3 is the batch of all 2 processes"):
        two.check_batch(3)
    assert Ranks(0, 2, cpu).seed(12345) == one.seed(12345) == 12345  # rank 0 draws as before
    assert two.seed(12345) != 12345 and two.seed(12345) != two.seed(12346)
