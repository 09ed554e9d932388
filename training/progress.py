"""Progress reporting for training commands: JSON lines for the GUI, a bar on a terminal.

Rates and time left come from ``galaxy_inspector.progress``, the model the app's batch
displays use too; a ``progress`` event carries ``seconds_left`` once it is known.
"""

from __future__ import annotations

import sys
import time

from galaxy_inspector.progress import RateEstimate, bar, event_line, time_left

__all__ = ["Progress"]


class Progress:
    """Report progress as JSON lines (``json_lines=True``, read by the GUI) or a one-line bar."""

    def __init__(self, json_lines: bool = False, stream=None):
        self.json_lines = json_lines
        self.stream = stream or sys.stdout
        self._last = 0.0
        self._stage = None
        self._estimate = RateEstimate()
        self.cancelled = False

    def cancel(self, *_signal) -> None:
        """A signal handler: end the command with ``KeyboardInterrupt`` now, and at its next
        report should that one be lost (raised while Python ran a finaliser, which ignores
        it, the command would otherwise run to its end)."""
        self.cancelled = True
        raise KeyboardInterrupt

    def check_cancelled(self) -> None:
        """Raise ``KeyboardInterrupt`` if ``cancel`` was called."""
        if self.cancelled:
            raise KeyboardInterrupt

    def emit(self, event: str, **fields) -> None:
        """A discrete event (epoch finished, file written, ...)."""
        self.check_cancelled()
        if self.json_lines:
            self.stream.write(event_line(event, **fields) + "\n")
        else:
            text = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            self.stream.write(f"\r\033[K{event}: {text}\n")
        self.stream.flush()

    def update(self, done: int, total: int, stage: str, **fields) -> None:
        """Throttled progress within a stage (each stage has its own rate)."""
        self.check_cancelled()
        now = time.monotonic()
        if stage != self._stage:
            self._stage, self._estimate = stage, RateEstimate()
        self._estimate.observe(done, now)
        if done < total and now - self._last < 0.5:
            return
        self._last = now
        left = self._estimate.seconds_left(total - done)
        if self.json_lines:
            if left is not None:
                fields = {**fields, "seconds_left": round(left, 1)}
            self.stream.write(event_line("progress", stage=stage, done=done, total=total,
                                         **fields) + "\n")
        else:
            extra = " ".join([f"{k}={_fmt(v)}" for k, v in fields.items()]
                             + ([time_left(left)] if left is not None else []))
            self.stream.write(f"\r{stage} {bar(done / max(total, 1))} {done}/{total} {extra}")
            if done >= total:
                self.stream.write("\n")
        self.stream.flush()


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
