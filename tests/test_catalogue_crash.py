"""Nothing lost, nothing twice: the catalogue survives a kill at every write, a full disk and a
file-size limit; one writer at a time; a resume is the same job; resume keys are exact.

The fault injector is strace: ``-e inject=SYSCALL:signal=SIGKILL:when=N`` kills the batch just
before its N-th write-like system call on the catalogue's files (``-P`` keeps the count to
those), for every N the run makes, and ``error=ENOSPC`` makes one write fail instead.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table

from galaxy_inspector.batch import BatchOptions, run_batch
from galaxy_inspector.catalogue import CatalogueWriter, pending_rows, read_catalogue
from galaxy_inspector.catalogue.lock import WriterLock
from galaxy_inspector.catalogue.rows import empty_rows, set_text
from galaxy_inspector.catalogue.schema import key_digest
from galaxy_inspector.cli import main
from galaxy_inspector.errors import InputError, OutputError

PARAMS = ["bt", "re_arcsec", "flux_njy"]
ATTRS = {"model_name": "m", "model_sha256": "abc", "parameters": PARAMS, "n_samples_saved": 4,
         "settings": {"--seed": 0, "--detect": False}}
N_INPUTS = 6
#: The system calls that change the catalogue's files; a kill before each is a write point.
WRITE_CALLS = ("write,pwrite64,pwritev,ftruncate,rename,renameat,renameat2,unlink,unlinkat,"
               "sendfile,copy_file_range")
#: A batch in the real command line, with chunks of 2 rows and a checkpoint every 2 rows at
#: first, so that a 6-input run appends 3 times and checkpoints 3 times.
DRIVER = """
import dataclasses, sys
import torch
torch.set_num_threads(1)  # no thread pool to fork (the zygote below), few cores to share
import galaxy_inspector.batch as batch
import galaxy_inspector.catalogue.writer as writer
writer.CHECKPOINT_ROWS = 2
batch._configure_threads = lambda workers: None
load, loaded = batch.load_models, {}
def load_once(model):
    if repr(model) not in loaded:
        loaded[repr(model)] = load(model)
    return loaded[repr(model)]
batch.load_models = load_once
run = batch.run_batch
batch.run_batch = lambda inputs, out, options, **kw: run(
    inputs, out, dataclasses.replace(options, batch_size=2), **kw)
from galaxy_inspector.cli import main
sys.exit(main(sys.argv[1:]))
"""


#: A process that imports the app and runs a batch once, then forks a ready child for each run
#: (a fresh interpreter costs seconds; a run on 6 inputs a fraction of one). Protocol on stdin/stdout,
#: one JSON line each: argv -> {"pid"}; "go" -> {"status"} (exit code, -signal when killed).
#: The child lets any process trace it (strace -p under Yama's ptrace_scope=1).
ZYGOTE = DRIVER.replace("sys.exit(main(sys.argv[1:]))", """
import ctypes, json, os
main(json.loads(sys.argv[1]))  # a first run here: the children share what it loaded
PR_SET_PTRACER, PR_SET_PTRACER_ANY = 0x59616D61, ctypes.c_ulong(-1)
for line in sys.stdin:
    argv = json.loads(line)
    wait_r, wait_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(wait_w)
        ctypes.CDLL(None).prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0)
        os.read(wait_r, 1)
        code = main(argv)
        sys.stderr.flush()
        os._exit(code)
    os.close(wait_r)
    print(json.dumps({"pid": pid}), flush=True)
    sys.stdin.readline()
    os.write(wait_w, b"x")
    os.close(wait_w)
    print(json.dumps({"status": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}), flush=True)
""")


class _Zygote:
    """Runs batches in children forked from one warm process, optionally under strace."""

    def __init__(self, warm_up: list[str]):
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE, json.dumps(warm_up)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        self.tracer = None

    def start(self, argv: list[str], strace: list[str] = ()) -> int:
        """Fork a child running ``main(argv)`` (traced by ``strace -p`` with ``strace``
        options, if given) and let it go; its pid."""
        self._send(json.dumps(argv))
        pid = json.loads(self.process.stdout.readline())["pid"]
        if strace:
            self.tracer = subprocess.Popen(["strace", "-p", str(pid), *strace],
                                           stderr=subprocess.PIPE, text=True)
            attached = self.tracer.stderr.readline()
            assert "attached" in attached, attached
        self._send("go")
        return pid

    def wait(self) -> int:
        """The exit status of the child started last (-signal number when killed)."""
        status = json.loads(self.process.stdout.readline())["status"]
        if self.tracer:
            self.tracer.wait(timeout=60)
            self.tracer = None
        return status

    def run(self, argv: list[str], strace: list[str] = ()) -> int:
        self.start(argv, strace)
        return self.wait()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)

    def _send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def _rows(writer, keys):
    rows = empty_rows(writer.dtype, len(keys))
    for i, key in enumerate(keys):
        set_text(rows, i, "input_key", key)
        set_text(rows, i, "input_key_sha256", key_digest(key))
        set_text(rows, i, "id", key[-20:])
        set_text(rows, i, "status", "ok")
    return rows


def _samples(n):
    return np.ones((n, 4, 3), np.float32)


def _sidecars(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))


# -- the writer on its own -------------------------------------------------------------------

def test_rows_are_committed_to_the_journal_and_folded_in_at_checkpoints(tmp_path):
    path = tmp_path / "c.h5"
    writer = CatalogueWriter.create(path, PARAMS, 4, ATTRS)
    writer.append(_rows(writer, ["a", "b"]), _samples(2))
    assert len(Table.read(path, path="galaxies")) == 0 and pending_rows(path) == 2
    assert "a batch is writing it" in read_catalogue(path).meta["PENDING"]
    writer.finish({"done": 2})
    assert len(Table.read(path, path="galaxies")) == 2 and pending_rows(path) == 0
    assert _sidecars(path) == []  # journal and lock go with a finished run
    with h5py.File(path) as f:
        assert f.attrs["complete"] and f["posterior_samples"].shape == (2, 4, 3)


def test_resume_recovers_committed_rows_and_cuts_a_torn_record(tmp_path):
    path = tmp_path / "c.h5"
    writer = CatalogueWriter.create(path, PARAMS, 4, ATTRS)
    writer.append(_rows(writer, ["a", "b"]), _samples(2))
    writer.append(_rows(writer, ["c"]), _samples(1))
    writer.close()  # as a kill leaves it: rows in the journal only
    journal = tmp_path / "c.h5.journal"
    whole = journal.read_bytes()
    journal.write_bytes(whole + whole[:len(whole) // 3])  # a record torn by a kill
    assert "--resume" in read_catalogue(path).meta["PENDING"]
    writer, done = CatalogueWriter.resume(path, ATTRS)
    assert len(done) == 3 and "c" in done and "3 rows" in writer.notes[0]
    assert journal.stat().st_size == len(whole)
    writer.append(_rows(writer, ["d"]), _samples(1))
    writer.finish({})
    assert list(Table.read(path, path="galaxies")["id"]) == ["a", "b", "c", "d"]


def test_records_folded_before_a_kill_are_not_folded_twice(tmp_path):
    path = tmp_path / "c.h5"
    writer = CatalogueWriter.create(path, PARAMS, 4, ATTRS)
    writer.append(_rows(writer, ["a", "b"]), _samples(2))
    journal = (tmp_path / "c.h5.journal").read_bytes()
    writer.checkpoint()
    writer.close()
    (tmp_path / "c.h5.journal").write_bytes(journal)  # killed after the rename, before the cut
    writer, done = CatalogueWriter.resume(path, ATTRS)
    assert len(done) == 2 and not writer.notes
    writer.finish({})
    assert len(Table.read(path, path="galaxies")) == 2


def test_a_journal_left_by_a_replaced_catalogue_is_ignored(tmp_path):
    path = tmp_path / "c.h5"
    writer = CatalogueWriter.create(path, PARAMS, 4, ATTRS)
    writer.append(_rows(writer, ["a"]), _samples(1))
    writer.close()
    old_journal = (tmp_path / "c.h5.journal").read_bytes()
    CatalogueWriter.create(path, PARAMS, 4, ATTRS).close()  # --overwrite
    (tmp_path / "c.h5.journal").write_bytes(old_journal)
    writer, done = CatalogueWriter.resume(path, ATTRS)
    assert len(done) == 0
    writer.finish({})
    assert len(Table.read(path, path="galaxies")) == 0


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path):
    path = tmp_path / "c.h5"
    writer = CatalogueWriter.create(path, PARAMS, 4, ATTRS)
    with pytest.raises(OutputError, match=f"another run, process {os.getpid()} on"):
        CatalogueWriter.resume(path, ATTRS)
    writer.close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "c.h5.lock").write_text(
        f'{{"pid": {dead}, "host": "{os.uname().nodename}", "started": "earlier"}}')
    writer, _ = CatalogueWriter.resume(path, ATTRS)
    assert f"left by process {dead}" in writer.notes[0] and "no longer running" in writer.notes[0]
    writer.finish({})


def test_resume_with_other_settings_is_refused_naming_them(tmp_path):
    path = tmp_path / "c.h5"
    CatalogueWriter.create(path, PARAMS, 4, ATTRS).close()
    other = {**ATTRS, "settings": {"--seed": 3, "--detect": True, "--psf-fwhm": None}}
    with pytest.raises(InputError, match=r"--detect off \(now on\), --seed 0 \(now 3\); resume"):
        CatalogueWriter.resume(path, other)


def test_resume_keys_are_exact_for_keys_longer_than_the_column():
    writer = CatalogueWriter("unused.h5", PARAMS, None)
    prefix = "/data/" + "x" * 600
    rows = _rows(writer, [prefix + "/a.fits", prefix + "/b.fits"])
    assert len(set(rows["input_key"])) == 1  # the readable key is cut to its 440 bytes
    from galaxy_inspector.catalogue.writer import ResumeKeys

    done = ResumeKeys()
    done.add_rows(rows)
    assert prefix + "/a.fits" in done and prefix + "/c.fits" not in done and len(done) == 2


# -- the batch and the command line ------------------------------------------------------------

@pytest.mark.slow  # runs batches
def test_a_long_input_path_is_measured_once_after_resume(tmp_path, tiny_bundle, write_galaxies):
    folder = tmp_path
    while len(str(folder)) < 600:
        folder = folder / ("d" * 200)
    write_galaxies(folder, 3)
    out = tmp_path / "cat.h5"
    options = BatchOptions(model=str(tiny_bundle), n_samples=8)
    run_batch([str(folder)], out, options)
    summary = run_batch([str(folder)], out, BatchOptions(model=str(tiny_bundle), n_samples=8,
                                                         resume=True))
    assert summary.skipped == 3 and len(Table.read(out, path="galaxies")) == 3


@pytest.mark.slow  # runs batches
def test_out_that_is_an_input_is_refused_even_with_overwrite(tmp_path, tiny_bundle,
                                                               write_galaxies, capsys):
    (image,) = write_galaxies(tmp_path, 1)
    os.link(image, tmp_path / "same.h5")  # another name, the same file
    before = image.read_bytes()
    for out in (image, tmp_path / "same.h5"):
        assert main(["--batch", str(image), "--out", str(out), "--overwrite",
                     "--model", str(tiny_bundle), "--quiet"]) == 1
        assert "is one of the inputs" in capsys.readouterr().err
    assert image.read_bytes() == before


@pytest.mark.slow  # runs batches
@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_a_second_run_on_a_catalogue_being_written_is_refused(tmp_path, tiny_bundle,
                                                              write_galaxies, capsys, flag):
    write_galaxies(tmp_path / "in", 2)
    out = tmp_path / "cat.h5"
    command = ["--batch", str(tmp_path / "in"), "--out", str(out), "--model", str(tiny_bundle),
               "--samples", "8", "--quiet"]
    assert main(command) == 0
    lock = WriterLock.acquire(out)  # a run in progress
    try:
        assert main([*command, flag]) == 1
    finally:
        lock.release()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "being written by another run" in err
    assert len(Table.read(out, path="galaxies")) == 2


@pytest.mark.slow  # runs batches
def test_resume_with_other_options_names_them(tmp_path, tiny_bundle, write_galaxies, capsys):
    write_galaxies(tmp_path / "in", 2)
    out = tmp_path / "cat.h5"
    command = ["--batch", str(tmp_path / "in"), "--out", str(out), "--model", str(tiny_bundle),
               "--samples", "8", "--quiet"]
    assert main(command) == 0
    assert main([*command, "--resume", "--seed", "3", "--pixel-scale", "0.2"]) == 1
    err = capsys.readouterr().err
    assert "--pixel-scale not given (now 0.2), --seed 0 (now 3)" in err


# -- faults in a child process -----------------------------------------------------------------

def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-qq", "-o", "/dev/null", "true"]).returncode == 0


needs_strace = pytest.mark.skipif(
    not _strace_works(), reason="strace is not installed or may not trace here (apt-get "
                                "install strace; .ci/run installs it)")


def _batch_argv(out: Path, folder: Path, bundle: Path, *extra: str) -> list[str]:
    return ["--batch", str(folder), "--out", str(out), "--model", str(bundle), "--samples", "8",
            "--save-samples", "--quiet", "--workers", "1", *extra]


def _batch(out: Path, folder: Path, bundle: Path, *extra: str, strace=(), **popen):
    """A batch in a child process of its own (stderr captured)."""
    command = [sys.executable, "-c", DRIVER, *_batch_argv(out, folder, bundle, *extra)]
    return subprocess.run([*strace, *command], capture_output=True, text=True, timeout=300,
                          **popen)


def _trace_writes(out: Path, *inject: str) -> list[str]:
    """strace options: the write-like calls on the catalogue and its sidecars (``-P`` keeps
    the count to those files), with ``inject`` options."""
    options = ["-o", "/dev/null", "-e", f"trace={WRITE_CALLS}", *inject]
    for suffix in ("", ".journal", ".tmp", ".lock"):
        options += ["-P", f"{out}{suffix}"]
    return options


def _assert_opens_or_absent(out: Path) -> None:
    """What any state must be: no catalogue yet, or one that astropy opens."""
    if out.exists():
        Table.read(out, path="galaxies")


def _assert_every_input_once(out: Path, folder: Path) -> None:
    table = Table.read(out, path="galaxies")
    assert sorted(table["id"]) == sorted(p.name for p in folder.iterdir())
    assert set(table["status"]) == {"ok"}
    with h5py.File(out) as f:
        assert f.attrs["complete"] and f["posterior_samples"].shape[0] == len(table)
    assert _sidecars(out) == []


def _reset(out: Path, state: dict) -> None:
    for path in out.parent.glob(out.name + "*"):
        path.unlink()
    for name, data in state.items():
        (out.parent / name).write_bytes(data)


@pytest.fixture
def batch_zygote(tmp_path, tiny_bundle, write_galaxies):
    """(zygote, argv(*extra), out, folder) for a 6-input batch into tmp_path / "cat.h5"."""
    folder = tmp_path / "in"
    write_galaxies(folder, N_INPUTS)
    out = tmp_path / "cat.h5"
    zygote = _Zygote(_batch_argv(tmp_path / "warm-up.h5", folder, tiny_bundle))
    yield zygote, lambda *extra: _batch_argv(out, folder, tiny_bundle, *extra), out, folder
    zygote.close()


def _write_points(zygote, argv: list[str], out: Path) -> list[tuple[str, int]]:
    """Every write point of a run: (system call, its n-th call on the catalogue's files), the
    way strace's ``when=`` counts them (per system call)."""
    log = out.with_name("strace.log")
    options = _trace_writes(out)
    options[1] = str(log)
    assert zygote.run(argv, options) == 0
    calls = collections.Counter(match.group(1) for line in log.read_text().splitlines()
                                if (match := re.match(r"(\w+)\(", line)))
    return [(call, n) for call, count in sorted(calls.items()) for n in range(1, count + 1)]


def _kill_at(call: str, n: int) -> str:
    return f"inject={call}:signal=SIGKILL:when={n}"


@pytest.mark.slow
@needs_strace
def test_a_kill_at_every_write_leaves_a_catalogue_resume_finishes(batch_zygote):
    zygote, argv, out, folder = batch_zygote
    fresh_points = _write_points(zygote, argv(), out)
    assert len(fresh_points) > 40  # creation, 3 appends, 3 checkpoints, the cleanup
    # The resume runs start from a run killed before its second checkpoint's rename (the
    # first is the creation's): 2 rows in the file, 2 in the journal, a leftover .tmp.
    _reset(out, {})
    assert zygote.run(argv(), _trace_writes(out, "-e", _kill_at("rename", 3))) \
        == -signal.SIGKILL
    halfway = {p.name: p.read_bytes() for p in out.parent.glob("cat.h5*")}
    assert pending_rows(out) == 2 and len(Table.read(out, path="galaxies")) == 2
    resume_points = _write_points(zygote, argv("--resume"), out)
    assert len(resume_points) > 20
    failures = []
    for extra, state, points in (((), {}, fresh_points),
                                 (("--resume",), halfway, resume_points)):
        for call, n in points:
            _reset(out, state)
            status = zygote.run(argv(*extra), _trace_writes(out, "-e", _kill_at(call, n)))
            try:
                assert status == -signal.SIGKILL, f"exit status {status}"
                _assert_opens_or_absent(out)
                assert zygote.run(argv("--resume")) == 0, "--resume failed"
                _assert_every_input_once(out, folder)
            except (AssertionError, OSError) as exc:
                failures.append(f"{' '.join(extra) or 'fresh'} run killed at {call} #{n}: "
                                f"{exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing(batch_zygote):
    """No strace needed: runs are killed at random moments, each resuming the one before,
    until one finishes the catalogue (then a new chain starts); the last one finishes."""
    zygote, argv, out, folder = batch_zygote
    # Kill moments spread over one whole run as long as it takes on this machine (a fixed
    # window would kill nothing on a fast machine and always the start on a slow one).
    durations = []
    for _ in range(3):
        started = time.monotonic()
        zygote.start(argv("--resume"))
        assert zygote.wait() == 0
        durations.append(time.monotonic() - started)
        _reset(out, {})
    run_seconds = min(durations)
    rng = random.Random(15)
    kills = 0
    for _ in range(90):
        if kills >= 12:
            break
        pid = zygote.start(argv("--resume"))  # a resume of no catalogue starts one
        time.sleep(rng.uniform(0.0, 0.8 * run_seconds))
        with contextlib.suppress(ProcessLookupError):  # it finished (and was waited for)
            os.kill(pid, signal.SIGKILL)
        if zygote.wait() == -signal.SIGKILL:
            kills += 1
            _assert_opens_or_absent(out)
        else:  # this chain of resumes finished the catalogue: check it, start another
            _assert_every_input_once(out, folder)
            _reset(out, {})
    assert kills >= 12
    assert zygote.run(argv("--resume")) == 0
    _assert_every_input_once(out, folder)


@pytest.mark.slow
@needs_strace
def test_a_full_disk_stops_with_one_line_and_resume_finishes(tmp_path, tiny_bundle,
                                                             write_galaxies):
    folder = tmp_path / "in"
    write_galaxies(folder, N_INPUTS)
    out = tmp_path / "cat.h5"
    run = _batch(out, folder, tiny_bundle, strace=[
        "strace", "-f", "-qq", "-o", "/dev/null", "-P", f"{out}.journal", "-e", "trace=write",
        "-e", "inject=write:error=ENOSPC:when=2"])  # the second chunk finds the disk full
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert "No space left on device" in line and "--resume" in line
    assert len(Table.read(out, path="galaxies")) == 2  # the first chunk, checkpointed
    assert _batch(out, folder, tiny_bundle, "--resume").returncode == 0
    _assert_every_input_once(out, folder)


@pytest.mark.slow
@needs_strace
def test_an_unwritable_folder_mid_run_stops_with_one_line_and_resume_finishes(
        tmp_path, tiny_bundle, write_galaxies):
    folder = tmp_path / "in"
    write_galaxies(folder, N_INPUTS)
    out = tmp_path / "cat.h5"
    # cat.h5.tmp is opened 3 times to create the catalogue (h5py's probe, its creation, the
    # fsync); the 4th is the copy of the first checkpoint, after the first chunk.
    run = _batch(out, folder, tiny_bundle, strace=[
        "strace", "-f", "-qq", "-o", "/dev/null", "-P", f"{out}.tmp", "-e", "trace=openat",
        "-e", "inject=openat:error=EACCES:when=4+"])
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert "Permission denied" in line and "--resume" in line
    assert pending_rows(out) == 2
    assert _batch(out, folder, tiny_bundle, "--resume").returncode == 0
    _assert_every_input_once(out, folder)


@pytest.mark.slow
def test_a_file_size_limit_stops_with_one_line_and_resume_finishes(tmp_path, tiny_bundle,
                                                                   write_galaxies):
    folder = tmp_path / "in"
    write_galaxies(folder, N_INPUTS)
    out = tmp_path / "cat.h5"
    limit = 2 ** 18  # the empty catalogue fits; a checkpoint's reserved space does not

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = _batch(out, folder, tiny_bundle, preexec_fn=limit_file_size)
    assert run.returncode == 1, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert "File too large" in line and "--resume" in line
    assert len(Table.read(out, path="galaxies")) + pending_rows(out) > 0
    assert _batch(out, folder, tiny_bundle, "--resume").returncode == 0
    _assert_every_input_once(out, folder)
