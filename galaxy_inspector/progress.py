"""How far a long job is and how long it has left, in one place for every progress display:
the ``--batch`` bar, the GUI's batch dialog, and the training commands (their terminal bar and
the JSON-lines events the GUI's training dialog reads).

The time left comes from the rate measured *since the first reading*: what happened before it
(loading a model, warming it up, the first chunk) says nothing about the rate of the rest, and
counting it made the old estimate several times too long at the start ("about 22 s left" for a
batch that ended 10 s later). The average since that reading smooths chunky progress, and there
is no estimate until ``MIN_ITEMS`` items and ``MIN_SECONDS`` seconds have passed since it.
"""

from __future__ import annotations

import json

__all__ = ["RateEstimate", "bar", "time_left", "batch_line", "event_line", "parse_event",
           "MIN_ITEMS", "MIN_SECONDS", "BAR_WIDTH"]

#: No time left is estimated before this many items were done after the first reading ...
MIN_ITEMS = 3
#: ... nor before this many seconds passed after it.
MIN_SECONDS = 1.0
BAR_WIDTH = 30


class RateEstimate:
    """Items per second and seconds left from readings of (items done, clock in seconds).

    The first reading is the baseline; a reading with fewer items than the one before (a new
    stage that counts from zero again) becomes the new baseline.
    """

    def __init__(self):
        self._first: tuple[int, float] | None = None
        self._last: tuple[int, float] | None = None

    def observe(self, done: int, seconds: float) -> None:
        """Record that ``done`` items were finished at clock time ``seconds``."""
        if self._last is None or done < self._last[0]:
            self._first = (done, seconds)
        self._last = (done, seconds)

    @property
    def rate(self) -> float | None:
        """Items per second since the first reading, or None while too little is known."""
        if self._first is None:
            return None
        items = self._last[0] - self._first[0]
        seconds = self._last[1] - self._first[1]
        if items < MIN_ITEMS or seconds < MIN_SECONDS:
            return None
        return items / seconds

    def seconds_left(self, remaining: int) -> float | None:
        """Seconds the ``remaining`` items will take at the measured rate, or None."""
        rate = self.rate
        return None if rate is None else max(remaining, 0) / rate


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """'[#########.....................]' filled to ``fraction`` (clipped to 0..1)."""
    filled = int(width * min(max(fraction, 0.0), 1.0))
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def time_left(seconds: float | None) -> str:
    """'about 9 s left' / 'about 4 min left', or '' when there is no estimate."""
    if seconds is None:
        return ""
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    return f"about {seconds / 60:.0f} min left"


def batch_line(progress, total: int, seconds_left: float | None) -> str:
    """'12/40 inputs, 1 failed, 3.2 galaxies/s, about 9 s left' for a batch's
    ``BatchProgress`` (inputs answered, skipped included, against ``total``)."""
    answered = progress.inputs + progress.skipped
    text = (f"{answered}/{total or '?'} inputs, {progress.failed} failed, "
            f"{progress.rate:.1f} galaxies/s")
    left = time_left(seconds_left) if total and answered < total else ""
    return f"{text}, {left}" if left else text


def event_line(event: str, **fields) -> str:
    """One JSON-lines progress event (what ``galaxy-inspector-train --json`` prints)."""
    return json.dumps({"event": event, **fields})


def parse_event(line: str) -> dict | None:
    """A JSON-lines progress event, or None for any other output line."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
