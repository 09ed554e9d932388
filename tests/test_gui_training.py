"""Training dialog: a real child process started and cancelled; events drive the curves."""

import pytest
from PySide6.QtCore import QProcess

from galaxy_inspector.gui.training_dialog import TrainingDialog
from galaxy_inspector.progress import parse_event

pytestmark = pytest.mark.gui


@pytest.mark.slow
def test_start_and_cancel_a_tiny_simulation(qtbot, gui_settings, tmp_path):
    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    dialog.set_field("simulate", "n", 20)
    dialog.set_field("simulate", "workers", 1)
    dialog.set_field("simulate", "out", str(tmp_path / "sim.h5"))
    assert dialog.arguments()[:4] == ["-m", "training", "--json", "simulate"]
    assert "--n" in dialog.arguments() and "20" in dialog.arguments()
    dialog.start()
    qtbot.waitUntil(lambda: dialog.process is not None and
                    dialog.process.state() == QProcess.ProcessState.Running, timeout=10_000)
    assert not dialog.buttons.start.isEnabled()
    with qtbot.waitSignal(dialog.process_finished, timeout=15_000):
        dialog.buttons.cancel.click()
    assert dialog.process is None and dialog.cancelled
    assert "Cancelled" in dialog.progress_label.text()
    assert dialog.buttons.start.isEnabled() and not dialog.buttons.result.isEnabled()


def test_events_draw_loss_curves_and_offer_the_bundle(qtbot, gui_settings):
    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    accepted = []
    dialog.bundle_accepted.connect(accepted.append)
    dialog.handle_event(parse_event(
        '{"event": "progress", "stage": "epoch 1/2", "done": 4, "total": 10, "seconds_left": 12}'))
    assert dialog.progress_label.text() == "epoch 1/2: 4/10, about 12 s left"
    for line in ('{"event": "progress", "stage": "epoch 1/2", "done": 5, "total": 10}',
                 '{"event": "epoch", "epoch": 1, "train_loss": 2.0, "val_loss": 2.5}',
                 '{"event": "epoch", "epoch": 2, "train_loss": 1.0, "val_loss": 1.5}',
                 '{"event": "bundle", "path": "/tmp/run/bundle"}'):
        dialog.handle_event(parse_event(line))
    assert list(dialog.train_curve.getData()[1]) == [2.0, 1.0]
    assert list(dialog.val_curve.getData()[0]) == [1, 2]
    dialog._on_finished(0, None)
    assert dialog.buttons.result.isEnabled()
    dialog.buttons.result.click()
    assert accepted == ["/tmp/run/bundle"]


def test_main_window_adopts_trained_bundle(qtbot, make_main_window):
    window = make_main_window()
    dialog = window.open_training_dialog()
    dialog.bundle_accepted.emit("/some/new/bundle")
    assert window.state.model == "/some/new/bundle"


def _labels(dialog, stage):
    from PySide6.QtWidgets import QFormLayout

    form = dialog.pages[list(dialog.fields).index(stage)].layout()
    return [form.itemAt(row, QFormLayout.ItemRole.LabelRole).widget().text()
            for row in range(form.rowCount())]


def test_fields_are_labelled_in_words_with_the_flag_in_the_tooltip_and_outputs_absolute(
        qtbot, gui_settings):
    from pathlib import Path

    from PySide6.QtWidgets import QLineEdit

    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    for stage, fields in dialog.fields.items():
        labels = _labels(dialog, stage)
        assert len(labels) == len(fields) and not any("--" in label for label in labels)
        for field in fields:
            assert f"(--{field.flag})" in field.widget.toolTip()
            if isinstance(field.widget, QLineEdit) and field.value():  # "": not given
                assert Path(field.value()).is_absolute(), (stage, field.flag, field.value())
    assert dialog.arguments()[3:6] == ["simulate", "--n", "6000"]
    dialog.set_field("train", "epochs", 3)
    assert dialog.arguments()[3] == "train" and dialog.loss_plot.isVisibleTo(dialog)
    dialog.set_field("evaluate", "samples", 20)
    assert not dialog.loss_plot.isVisibleTo(dialog)


def test_log_shows_events_in_words_with_time_left_and_the_json_behind_a_toggle(
        qtbot, gui_settings):
    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    lines = ['{"event": "start", "n_train": 36000, "epochs": 10, "device": "cpu"}'] + [
        f'{{"event": "epoch", "stage": 1, "epoch": {e}, "train_loss": {1 / e}, '
        f'"val_loss": {1.5 / e}, "elapsed_s": {60 * e}}}' for e in range(1, 6)] + [
        '{"event": "bundle", "path": "/tmp/run/bundle"}']
    for line in lines:
        dialog.handle_event(parse_event(line))
    log = dialog.log.toPlainText().splitlines()
    assert log[0] == "training on 36000 galaxies for 10 epochs (cpu)"
    assert log[1] == "stage 1: epoch 1/10: training loss 1, validation loss 1.5"
    # Five epochs of 60 s leave five more: the run's rate, as progress.py measures it.
    assert log[5] == ("stage 1: epoch 5/10: training loss 0.2, validation loss 0.3; "
                      "about 5 min left")
    assert log[6] == "model bundle written: /tmp/run/bundle"
    assert not any("{" in line for line in log)
    assert not dialog.raw_log.isVisibleTo(dialog)
    dialog.show_raw.setChecked(True)
    assert dialog.raw_log.isVisibleTo(dialog)
