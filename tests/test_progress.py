"""The one progress model (no Qt): rates and time left for the batch bar, the batch dialog and
training progress."""

import io
import json

import pytest

from galaxy_inspector.batch import BatchProgress
from galaxy_inspector.progress import (
    MIN_ITEMS,
    RateEstimate,
    bar,
    batch_line,
    event_line,
    parse_event,
    time_left,
)
from training.progress import Progress


def test_time_left_ignores_what_came_before_the_first_reading():
    # Issue 14: a 10-input batch whose first reading came after 5 s of model loading (2 inputs)
    # then ran at 1 input/s. The old estimate (elapsed / done) said "about 22 s left" at 6 s.
    estimate = RateEstimate()
    estimate.observe(2, 5.5)
    assert estimate.rate is None and estimate.seconds_left(8) is None
    estimate.observe(4, 7.5)
    assert estimate.seconds_left(6) is None  # too few items since the first reading
    estimate.observe(6, 9.5)
    assert estimate.rate == pytest.approx(1.0)
    assert estimate.seconds_left(4) == pytest.approx(4.0)
    assert estimate.seconds_left(-1) == 0.0


def test_rate_averages_chunky_progress_and_restarts_with_a_new_count():
    estimate = RateEstimate()
    for done, seconds in ((0, 0.0), (10, 1.0), (10, 3.0), (30, 4.0)):
        estimate.observe(done, seconds)
    assert estimate.rate == pytest.approx(7.5)  # 30 items in 4 s, not the last burst's 20/s
    estimate.observe(1, 10.0)  # a new stage counting from zero
    assert estimate.rate is None
    estimate.observe(1 + MIN_ITEMS, 12.0)
    assert estimate.rate == pytest.approx(MIN_ITEMS / 2.0)


def test_formatted_pieces():
    assert bar(0.5, width=10) == "[#####.....]" and bar(2.0, width=4) == "[####]"
    assert time_left(None) == "" and time_left(9.4) == "about 9 s left"
    assert time_left(600) == "about 10 min left"
    p = BatchProgress(done=4, failed=1, inputs=5, skipped=2, elapsed=2.0)
    assert batch_line(p, 10, 6.0) == "7/10 inputs, 1 failed, 2.5 galaxies/s, about 6 s left"
    assert batch_line(p, 10, None) == "7/10 inputs, 1 failed, 2.5 galaxies/s"
    assert batch_line(p, 7, 6.0).endswith("galaxies/s")  # nothing left, no estimate


def test_event_lines_round_trip_and_other_lines_are_not_events():
    line = event_line("epoch", epoch=2, train_loss=1.5)
    assert parse_event(line) == {"event": "epoch", "epoch": 2, "train_loss": 1.5}
    for other in ("not json", "{broken", '{"no_event": 1}', "[1, 2]", ""):
        assert parse_event(other) is None


def test_training_progress_reports_time_left_once_known(monkeypatch):
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0])
    monkeypatch.setattr("training.progress.time.monotonic", lambda: next(clock))
    stream = io.StringIO()
    progress = Progress(json_lines=True, stream=stream)
    for done in (0, 2, 4, 6):
        progress.update(done, 10, stage="simulate")
    progress.update(1, 10, stage="epoch 1/2")  # a new stage: its own rate
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "seconds_left" not in events[0]
    assert events[-2]["done"] == 6 and events[-2]["seconds_left"] == pytest.approx(2.0)
    assert events[-1]["stage"] == "epoch 1/2" and "seconds_left" not in events[-1]


def test_a_cancel_lost_in_a_finaliser_still_ends_a_training_command_at_its_next_report():
    progress = Progress(json_lines=True, stream=io.StringIO())
    with pytest.raises(KeyboardInterrupt):
        progress.cancel()  # the signal handler; say its KeyboardInterrupt was swallowed
    for report in (lambda: progress.emit("epoch"), lambda: progress.update(1, 2, "train"),
                   progress.check_cancelled):
        with pytest.raises(KeyboardInterrupt):
            report()
    assert progress.stream.getvalue() == ""
