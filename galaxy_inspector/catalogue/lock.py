"""One writer per catalogue: an advisory lock on ``CAT.h5.lock``, held for the whole run.

The lock is ``flock`` on the lock file, which the kernel releases when its holder dies, so a
lock file left by a killed run is stale by construction: the next writer takes it over and says
so. The file names its holder (pid, host, start time) for the refusal a second writer gets.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from galaxy_inspector.errors import OutputError

__all__ = ["LOCK_SUFFIX", "WriterLock", "lock_holder"]

LOCK_SUFFIX = ".lock"


def _lock_path(catalogue: Path) -> Path:
    return catalogue.with_name(catalogue.name + LOCK_SUFFIX)


def _describe(holder: dict) -> str:
    return (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"(since {holder.get('started', '?')})")


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _running(holder: dict) -> bool:
    """Whether the process a lock file names may still run (always, for another host)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid")), 0)
    except PermissionError:
        return True
    except (OSError, ValueError, TypeError):
        return False
    return True


class WriterLock:
    """The exclusive right to write one catalogue; ``release`` (or the holder's death) ends it.

    ``note`` says when a stale lock of a dead run was taken over ("" otherwise).
    """

    def __init__(self, path: Path, fd: int, note: str):
        self.path = path
        self._fd = fd
        self.note = note

    @classmethod
    def acquire(cls, catalogue) -> WriterLock:
        """Lock ``catalogue`` for writing, or ``OutputError`` naming the run that holds it."""
        catalogue = Path(catalogue)
        path = _lock_path(catalogue)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot write catalogue {catalogue}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputError(f"{catalogue} is being written by another run, "
                                  f"{_describe(holder)}: wait for it to finish or choose "
                                  "another --out") from None
            try:  # a finishing writer unlinks the file it locked: lock the one at ``path``
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_holder(fd)
        note = ""
        if previous:
            state = "which released it" if _running(previous) else "no longer running"
            note = (f"note: took over the lock of {catalogue.name} left by "
                    f"{_describe(previous)}, {state}")
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
        except OSError:
            pass  # the lock holds without the description; a refusal then names "?"
        return cls(path, fd, note)

    def release(self) -> None:
        """Give the lock up and remove the lock file (idempotent)."""
        if self._fd < 0:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1


def lock_holder(catalogue) -> str:
    """The run that the lock file of ``catalogue`` names, if it may still be writing ("" when
    none). Only reads the file: taking the lock, even shared, could refuse a starting writer."""
    try:
        with open(_lock_path(Path(catalogue)), "rb") as f:
            holder = _read_holder(f.fileno())
    except OSError:
        return ""
    return _describe(holder) if holder and _running(holder) else ""
