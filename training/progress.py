"""Progress reporting for training commands: JSON lines for the GUI, a bar on a terminal."""

from __future__ import annotations

import json
import sys
import time

__all__ = ["Progress"]


class Progress:
    """Report progress as JSON lines (``json_lines=True``, read by the GUI) or a one-line bar."""

    def __init__(self, json_lines: bool = False, stream=None):
        self.json_lines = json_lines
        self.stream = stream or sys.stdout
        self._last = 0.0

    def emit(self, event: str, **fields) -> None:
        """A discrete event (epoch finished, file written, ...)."""
        if self.json_lines:
            self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        else:
            text = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            self.stream.write(f"\r\033[K{event}: {text}\n")
        self.stream.flush()

    def update(self, done: int, total: int, stage: str, **fields) -> None:
        """Throttled progress within a stage."""
        now = time.time()
        if done < total and now - self._last < 0.5:
            return
        self._last = now
        if self.json_lines:
            self.stream.write(json.dumps({"event": "progress", "stage": stage, "done": done,
                                          "total": total, **fields}) + "\n")
        else:
            width = 30
            filled = int(width * done / max(total, 1))
            extra = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            self.stream.write(f"\r{stage} [{'#' * filled}{'.' * (width - filled)}] "
                              f"{done}/{total} {extra}")
            if done >= total:
                self.stream.write("\n")
        self.stream.flush()


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
