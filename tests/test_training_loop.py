"""What the training loops share: checkpoints (what a resumed run gets back, old files still
resume, bad ones refused; the property CNN resumed from one equals an uninterrupted run) and the
optimisation step."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from training.loop import (
    CHECKPOINT_NAME,
    MAX_GRAD_NORM,
    optimisation_step,
    resume_checkpoint,
    save_checkpoint,
)
from training.progress import Progress
from training.properties.cnn import CNNConfig, train_cnn


def _run(in_features=3, seed=0):
    """A model, its optimizer and scheduler after one step, as a training loop holds them."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(in_features, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model(torch.ones(4, in_features)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_an_optimisation_step_clips_the_gradient_and_advances_the_schedule():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    loss = (model(torch.ones(1, 1)) - 1000.0).pow(2).sum()  # gradient -2000
    assert optimisation_step(loss, model, optimizer, scheduler) == 1e6
    assert model.weight.item() == pytest.approx(MAX_GRAD_NORM)  # lr x the clipped gradient
    assert optimizer.param_groups[0]["lr"] == 0.5


def test_a_resumed_run_gets_back_every_state_and_its_history(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    model, optimizer, scheduler = _run()
    history = [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}]
    save_checkpoint(path, model, optimizer, scheduler, 2, 12.5, history, config="{}")
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temporary file left
    assert torch.load(path, weights_only=True)["config"] == "{}"

    fresh = _run(seed=1)
    assert resume_checkpoint(path, *fresh) == (2, 12.5, history)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(fresh[0].state_dict()[name], value)
    assert fresh[1].state_dict()["state"][0]["step"] == 1
    assert fresh[2].last_epoch == scheduler.last_epoch == 1
    assert resume_checkpoint(tmp_path / "none.pt", *fresh) is None


def test_checkpoints_written_before_the_helper_still_resume(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    model, optimizer, scheduler = _run()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": 3, "elapsed": 7.0,
                "history": json.dumps([{"epoch": 3}])}, path)
    assert resume_checkpoint(path, *_run(seed=1)) == (3, 7.0, [{"epoch": 3}])


def test_a_damaged_or_foreign_checkpoint_is_refused_by_name(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, *_run(), 1, 1.0, [])
    with pytest.raises(ValueError, match=r"cannot resume from checkpoint .*checkpoint\.pt.*"
                                         r"delete it to start again"):
        resume_checkpoint(path, *_run(in_features=5))  # another network's shapes
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot resume from checkpoint"):
        resume_checkpoint(path, *_run())


def _straight_paused_and_resumed(folder):
    """In a child: a two-epoch property CNN run straight, and one paused after an epoch and
    resumed; the weights of both, the paused run's history and the resumed one's events."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3, 16, 16)).astype(np.float16)
    y = rng.normal(size=(32, 2)).astype(np.float32)
    config = CNNConfig(epochs=2, batch_size=8, widths=[4, 4, 8, 8], hidden=8, threads=1)
    straight, _ = train_cnn(x, y, x[:8], y[:8], folder / "a", config)
    paused, paused_history = train_cnn(x, y, x[:8], y[:8], folder / "b", config, stop_after=1)
    log = io.StringIO()
    resumed, history = train_cnn(x, y, x[:8], y[:8], folder / "b", config,
                                 progress=Progress(json_lines=True, stream=log))
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    return (straight.state_dict(), paused, paused_history, resumed.state_dict(), history,
            events)


@pytest.mark.slow
def test_property_cnn_resumed_from_its_checkpoint_equals_an_uninterrupted_run(
        tmp_path, run_isolated):
    straight, paused, paused_history, resumed, history, events = run_isolated(
        _straight_paused_and_resumed, tmp_path)
    assert paused is None and [h["epoch"] for h in paused_history] == [1]
    # The second invocation carried on from epoch 1 and trained only the second epoch.
    assert [(e["event"], e["epoch"]) for e in events if e["event"] != "progress"] == [
        ("resumed", 1), ("epoch", 2)]
    assert [h["epoch"] for h in history] == [1, 2]
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)
