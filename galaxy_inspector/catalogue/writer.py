"""The crash-safe writer: a journal of committed rows, folded into the HDF5 file at checkpoints.

Every state a kill (or a full disk) can leave on disk is a valid catalogue plus, at most, rows
that ``--resume`` recovers, by construction rather than by luck:

- ``CAT.h5`` is only ever replaced whole: a checkpoint copies it to ``CAT.h5.tmp``, appends the
  journal's rows there, fsyncs it and renames it over ``CAT.h5`` (an atomic rename), so the
  catalogue on disk is always a complete earlier checkpoint. The HDF5 file is never written in
  place, so no compressed chunk of committed rows is ever rewritten where it lies.
- ``CAT.h5.journal`` (``catalogue.journal``) receives each chunk of rows as one checksummed
  record, fsync'd before ``append`` returns: a row reported written is on disk. A kill tears at
  most the record being written, which resume cuts off.
- ``CAT.h5.lock`` (``catalogue.lock``) keeps a second writer out for the whole run.

Checkpoints happen when the journal holds as many rows as the file (at least
``CHECKPOINT_ROWS``), at ``finish`` and when a cancelled run closes: the file doubles from one
checkpoint to the next, so copying costs O(rows) over a run, not O(rows^2)
(``benchmarks/catalogue_writer.py`` measures it), and the file holds at least half of the rows
written so far while a run goes on.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import shutil
import uuid
from pathlib import Path

import h5py
import numpy as np

from galaxy_inspector import __version__
from galaxy_inspector.catalogue.journal import encode_record, journal_path, pending_records
from galaxy_inspector.catalogue.lock import WriterLock
from galaxy_inspector.catalogue.schema import (
    GALAXIES,
    META,
    PARAMETER_UNITS,
    PROPERTY_SAMPLES,
    SAMPLES,
    catalogue_dtype,
    columns,
    flag_attributes,
    key_digest,
    meta_lines,
)
from galaxy_inspector.errors import InputError, OutputError

__all__ = ["CatalogueWriter", "ResumeKeys", "CHECKPOINT_ROWS"]

CHUNK_ROWS = 256
CHECKPOINT_ROWS = 256  # the first checkpoint; later ones when the journal holds the file's rows
TMP_SUFFIX = ".tmp"


class ResumeKeys:
    """The input keys a catalogue already holds; ``key in done`` compares exact keys (their
    SHA-256), whatever their length."""

    def __init__(self, digests=()):
        self._digests = set(digests)
        self._failed: set = set()  # keys whose latest rows include an error row
        self._last = None  # the digest of the last row added

    def __contains__(self, key: str) -> bool:
        return key_digest(key) in self._digests

    def __len__(self) -> int:
        return len(self._digests)

    def add_rows(self, rows: np.ndarray) -> None:
        """Add the keys of catalogue rows (the digest column, or the key of files without it),
        in file order: an input's rows are consecutive, and a later run of them (measured again
        by ``--retry-errors``) supersedes an earlier one."""
        digests = _row_digests(rows)
        for digest, status in zip(digests, rows["status"], strict=True):
            if digest != self._last:
                self._failed.discard(digest)
            if status == b"error":
                self._failed.add(digest)
            self._last = digest
        self._digests.update(digests)

    def without_errors(self) -> ResumeKeys:
        """The keys whose latest rows have no error row: what ``--resume --retry-errors``
        skips, measuring the others again."""
        return ResumeKeys(self._digests - self._failed)


def _row_digests(rows: np.ndarray) -> list[str]:
    if "input_key_sha256" in rows.dtype.names:
        return [d.decode("ascii") for d in rows["input_key_sha256"]]
    return [key_digest(k.decode("utf-8", "ignore")) for k in rows["input_key"]]


def superseded_rows(rows: np.ndarray) -> np.ndarray:
    """Which rows a later run of rows of the same input replaces (boolean mask): an input's
    rows are written together, so each key keeps only its last consecutive run."""
    digests = _row_digests(rows)
    run = np.cumsum([True] + [a != b for a, b in zip(digests[1:], digests[:-1], strict=True)]
                    ) if digests else np.zeros(0, int)
    last_run = dict(zip(digests, run, strict=True))  # later runs overwrite earlier ones
    return np.array([r != last_run[d] for d, r in zip(digests, run, strict=True)], dtype=bool)


class CatalogueWriter:
    """Appends rows (and posterior samples) to an HDF5 catalogue through its journal.

    Use ``CatalogueWriter.create`` for a new file and ``CatalogueWriter.resume`` to continue a
    killed run; ``append`` commits a chunk, ``finish`` folds everything and marks the file
    complete, ``close`` (or leaving a ``with`` block) releases the lock. ``parameters`` are the
    morphology parameters (their samples go to ``/posterior_samples``),
    ``property_parameters`` the property models' targets (``/property_samples/NAME``). Rows of
    ``dtype`` are built by ``catalogue.rows``. ``notes`` are things the user should know
    (a stale lock taken over, rows recovered from a killed run).
    """

    def __init__(self, path, parameters, n_samples: int | None, property_parameters=(),
                 dtype=None):
        self.path = Path(path)
        self.parameters = list(parameters)
        self.property_parameters = list(property_parameters)
        self.n_samples = n_samples
        self.dtype = dtype if dtype is not None else catalogue_dtype(self.parameters,
                                                                     self.property_parameters)
        self.notes: list[str] = []
        self._lock: WriterLock | None = None
        self._journal = -1  # file descriptor, opened for appending
        self._catalogue_id = ""
        self._rows_in_file = 0
        self._rows_in_journal = 0
        self._journal_end = 0
        self._attrs_due: dict = {}

    @classmethod
    def create(cls, path, parameters, n_samples: int | None, attrs: dict,
               property_parameters=(), units=None, notes=None,
               lock: WriterLock | None = None) -> CatalogueWriter:
        """A new, empty catalogue (replacing any file at ``path``); ``n_samples`` None means no
        sample datasets.

        ``units`` and ``notes`` (per parameter) describe property columns (unit; e.g. which
        model, and whether it is a demo) in the table's metadata. ``lock``: the one-writer lock
        of ``path`` when the caller took it already.
        """
        writer = cls(path, parameters, n_samples, property_parameters)
        writer._take(lock)
        writer._catalogue_id = uuid.uuid4().hex
        try:
            image = io.BytesIO()  # built in memory, written by Python (see _install)
            with h5py.File(image, "w") as f:
                writer._lay_out(f, attrs, units, notes)
            writer._install(lambda tmp: tmp.write_bytes(image.getvalue()))
            writer._open_journal(truncate_at=0)
        except BaseException:
            writer.close()
            raise
        return writer

    @classmethod
    def resume(cls, path, attrs: dict,
               lock: WriterLock | None = None) -> tuple[CatalogueWriter, ResumeKeys]:
        """Reopen a catalogue to finish it: its writer and the input keys already done.

        Recovers whatever a kill left: a leftover ``.tmp`` is removed, the rows of intact
        journal records are kept (a torn last record is cut off) and folded at the next
        checkpoint. The models (SHA-256), the samples settings and the ``settings`` of
        ``attrs`` (the options that change rows) must match, else ``InputError`` naming them.
        """
        path = Path(path)
        writer = cls(path, [], None)
        writer._take(lock)
        try:
            done = writer._recover(attrs)
        except BaseException:
            writer.close()
            raise
        return writer, done

    def append(self, rows: np.ndarray, samples: np.ndarray | None = None,
               property_samples: dict | None = None) -> None:
        """Commit a chunk of rows (and their samples: morphology ``(n, S, P)``, properties
        ``{NAME: (n, S)}``) to the journal; when this returns, the rows survive a kill."""
        if not len(rows):
            return
        arrays = {GALAXIES: np.asarray(rows, dtype=self.dtype)}
        if self.n_samples and self.parameters:
            arrays[SAMPLES] = np.asarray(samples, dtype="f4")
        for name in self.property_parameters if self.n_samples else ():
            arrays[f"{PROPERTY_SAMPLES}/{name}"] = np.asarray((property_samples or {}).get(
                name, np.full((len(rows), self.n_samples), np.nan, "f4")), dtype="f4")
        record = encode_record(self._catalogue_id, self._rows_in_file + self._rows_in_journal,
                               arrays)
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self._journal, view):]
            os.fsync(self._journal)
        except OSError as exc:
            self._cut_journal()
            raise OutputError(_cannot_write(self.path, exc)) from None
        self._journal_end += len(record)
        self._rows_in_journal += len(rows)
        if self._rows_in_journal >= max(CHECKPOINT_ROWS, self._rows_in_file):
            self.checkpoint()

    def checkpoint(self) -> None:
        """Fold the journal into a new copy of the file and put it in place atomically."""
        if not self._rows_in_journal and not self._attrs_due:
            return
        self._rewrite(self._fold)
        self._rows_in_file += self._rows_in_journal
        self._rows_in_journal = 0
        self._attrs_due = {}
        try:
            os.ftruncate(self._journal, 0)
            os.fsync(self._journal)
        except OSError:
            pass  # records already folded are passed over when the journal is read
        self._journal_end = 0

    def drop_superseded_rows(self) -> int:
        """Keep only the latest rows of each input: the old error rows that ``--resume
        --retry-errors`` measured again (also those of a retry killed before it got here).
        Folds the journal, then replaces the file atomically like a checkpoint; returns how
        many rows were dropped."""
        self.checkpoint()
        try:
            with h5py.File(self.path, "r") as f:
                table = f[GALAXIES]
                key = "input_key_sha256" if "input_key_sha256" in table.dtype.names \
                    else "input_key"
                drop = superseded_rows(table.fields([key])[:]) if len(table) else []
        except OSError as exc:
            raise OutputError(_cannot_write(self.path, exc)) from None
        if not np.any(drop):
            return 0
        self._rewrite(lambda f: _keep_rows(f, ~drop))
        self._rows_in_file -= int(np.sum(drop))
        return int(np.sum(drop))

    def finish(self, summary: dict) -> None:
        """Fold every row, mark the catalogue complete, record the run's summary, unlock."""
        self._attrs_due.update(complete=True, finished=_now(), summary=json.dumps(summary))
        self.checkpoint()
        self.close()

    def close(self) -> None:
        """Release the lock; the journal file goes when it is empty (idempotent)."""
        if self._journal >= 0:
            os.close(self._journal)
            self._journal = -1
            if self._journal_end == 0 and self._rows_in_journal == 0:
                try:
                    os.unlink(journal_path(self.path))
                except OSError:
                    pass
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> CatalogueWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _take(self, lock: WriterLock | None) -> None:
        self._lock = lock or WriterLock.acquire(self.path)
        if self._lock.note:
            self.notes.append(self._lock.note)
        _remove(_tmp_path(self.path))  # a checkpoint a kill interrupted

    def _lay_out(self, f: h5py.File, attrs: dict, units, notes) -> None:
        """The datasets and root attributes of an empty catalogue."""
        n_samples = self.n_samples
        f.create_dataset(GALAXIES, shape=(0,), maxshape=(None,), dtype=self.dtype,
                         chunks=(CHUNK_ROWS,), compression="gzip", compression_opts=4)
        f.create_dataset(META, data=meta_lines(columns(
            self.parameters, self.property_parameters, units, notes)))
        for name in self.property_parameters if n_samples else ():
            data = f.create_dataset(
                f"{PROPERTY_SAMPLES}/{name}", shape=(0, n_samples),
                maxshape=(None, n_samples), dtype="f4",
                chunks=(max(1, min(256, 65536 // n_samples)), n_samples),
                compression="gzip", compression_opts=4, shuffle=True)
            data.attrs["unit"] = (units or {}).get(name, "")
            data.attrs["note"] = (notes or {}).get(name, "")
        if n_samples and self.parameters:
            n_par = len(self.parameters)
            f.create_dataset(SAMPLES, shape=(0, n_samples, n_par),
                             maxshape=(None, n_samples, n_par), dtype="f4",
                             chunks=(max(1, min(64, 65536 // n_samples)), n_samples, n_par),
                             compression="gzip", compression_opts=4, shuffle=True)
            f[SAMPLES].attrs["parameters"] = json.dumps(self.parameters)
            f[SAMPLES].attrs["units"] = json.dumps(
                [PARAMETER_UNITS.get(p, "") for p in self.parameters])
        f.attrs.update(_root_attrs(attrs))
        f.attrs["catalogue_id"] = self._catalogue_id

    def _recover(self, attrs: dict) -> ResumeKeys:
        """Read the checkpoint and the journal of a catalogue to resume (see ``resume``)."""
        path = self.path
        try:
            with h5py.File(path, "r") as f:
                if GALAXIES not in f:
                    raise InputError(f"{path} is not a Galaxy Inspector catalogue; choose "
                                     "another --out")
                _check_same_job(path, f, attrs)
                self.parameters = json.loads(f.attrs["parameters"])
                self.property_parameters = json.loads(f.attrs.get("property_parameters", "[]"))
                self.n_samples = attrs.get("n_samples_saved") or None
                table = f[GALAXIES]
                # h5py marks text fields with metadata, which the journal's .npy cannot carry
                self.dtype = np.dtype([(name, table.dtype[name].str)
                                       for name in table.dtype.names])
                key = "input_key_sha256" if "input_key_sha256" in self.dtype.names else "input_key"
                rows = table.fields(["status", key])[:]
                stored_id = str(f.attrs.get("catalogue_id", ""))
                self._catalogue_id = stored_id or uuid.uuid4().hex
        except InputError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot reopen catalogue {path} to resume: {exc}") from None
        # Files of versions that appended in place may end in rows a kill left blank.
        unfinished = np.flatnonzero(rows["status"] == b"")
        self._rows_in_file = int(unfinished[0]) if len(unfinished) else len(rows)
        done = ResumeKeys()
        done.add_rows(rows[:self._rows_in_file])
        try:
            with open(journal_path(path), "rb") as journal:
                for record in pending_records(journal, self._catalogue_id, self._rows_in_file):
                    done.add_rows(record.arrays()[GALAXIES])
                    self._rows_in_journal += record.n_rows
                    self._journal_end = record.end
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutputError(f"cannot read {journal_path(path)} to resume: {exc}") from None
        if self._rows_in_journal:
            self.notes.append(f"note: {self._rows_in_journal} rows of the interrupted run were "
                              f"recovered from {journal_path(path).name}")
        self._open_journal(truncate_at=self._journal_end)
        self._attrs_due = {"complete": False, "resumed": _now()}
        if not stored_id:  # a file of an older version: it must name the id its journal will carry
            self._attrs_due["catalogue_id"] = self._catalogue_id
            self.checkpoint()
        return done

    def _open_journal(self, truncate_at: int) -> None:
        """Open the journal for appending after its first ``truncate_at`` bytes (the intact
        records), cutting off anything a kill left after them."""
        try:
            self._journal = os.open(journal_path(self.path),
                                    os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.ftruncate(self._journal, truncate_at)
            os.fsync(self._journal)
            _fsync_folder(self.path.parent)
        except OSError as exc:
            raise OutputError(_cannot_write(self.path, exc)) from None

    def _cut_journal(self) -> None:
        """After a failed append: drop its partial record (resume would cut it anyway)."""
        try:
            os.ftruncate(self._journal, self._journal_end)
        except OSError:
            pass

    def _rewrite(self, change) -> None:
        """Replace the file atomically by a copy that ``change(h5py.File)`` alters (a
        checkpoint appends the journal's rows to it). The copy's disk space is reserved
        first, so that a full disk or a file-size limit fails here, in Python, and never
        inside HDF5, whose failed writes crash the process at exit (measured: a segfault)."""

        def copy_and_change(tmp: Path) -> None:
            shutil.copyfile(self.path, tmp)
            fd = os.open(tmp, os.O_WRONLY)
            try:
                os.posix_fallocate(fd, 0, tmp.stat().st_size + self._growth_bound())
            finally:
                os.close(fd)
            # HDF5 gives back the reserved space it did not use when it closes the file
            with h5py.File(tmp, "a", rdcc_nbytes=16 * 2 ** 20) as f:
                change(f)

        self._install(copy_and_change)

    def _growth_bound(self) -> int:
        """Bytes a fold can add to the file, at most: the journal's data (as if gzip could
        not compress it), one rewritten chunk per dataset (the last one, partly filled
        before) and room for HDF5's own metadata."""
        chunks = CHUNK_ROWS * self.dtype.itemsize
        if self.n_samples:
            chunks += 64 * self.n_samples * len(self.parameters) * 4
            chunks += 256 * self.n_samples * 4 * len(self.property_parameters)
        return int(self._journal_end * 1.01) + chunks + 2 ** 16

    def _fold(self, f: h5py.File) -> None:
        """Append the journal's pending records to the copy ``f`` of the file."""
        datasets = [GALAXIES] + [name for name in (SAMPLES, PROPERTY_SAMPLES) if name in f]
        for name in datasets:  # cuts a blank tail of an old-style file
            for data in (f[name].values() if name == PROPERTY_SAMPLES else [f[name]]):
                data.resize(self._rows_in_file, axis=0)
        folded = self._rows_in_file
        with open(journal_path(self.path), "rb") as journal:
            for record in pending_records(journal, self._catalogue_id, self._rows_in_file):
                for name, array in record.arrays().items():
                    data = f[name]
                    data.resize(record.start + record.n_rows, axis=0)
                    data[record.start:] = array
                folded = record.start + record.n_rows
        if folded != self._rows_in_file + self._rows_in_journal:
            raise OSError(f"{journal_path(self.path).name} lost committed rows (the disk "
                          "changed it)")
        for key, value in self._attrs_due.items():
            f.attrs[key] = value

    def _install(self, prepare) -> None:
        """The next state of the file: ``prepare(CAT.h5.tmp)`` writes it, then it is fsync'd
        and renamed over ``CAT.h5`` (atomic), so a kill leaves the old state or the new."""
        tmp = _tmp_path(self.path)
        try:
            prepare(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            _fsync_folder(self.path.parent)
        except (OSError, RuntimeError) as exc:  # h5py reports some write failures as these
            _remove(tmp)
            raise OutputError(_cannot_write(self.path, exc)) from None


def _keep_rows(f: h5py.File, keep: np.ndarray) -> None:
    """Keep only the rows ``keep`` (boolean mask) of every row-aligned dataset of ``f``."""
    datasets = [f[GALAXIES]] + ([f[SAMPLES]] if SAMPLES in f else [])
    if PROPERTY_SAMPLES in f:
        datasets += list(f[PROPERTY_SAMPLES].values())
    for data in datasets:
        kept = data[:][keep]
        data.resize(len(kept), axis=0)
        data[:] = kept


def _check_same_job(path: Path, f: h5py.File, attrs: dict) -> None:
    """``InputError`` unless ``attrs`` describe the job that wrote ``f``: the same models,
    samples setting and row-changing ``settings`` (files without ``settings`` predate them)."""
    old_sha, new_sha = f.attrs.get("model_sha256"), attrs.get("model_sha256")
    old_models = _model_shas(f.attrs.get("models"))
    new_models = _model_shas(attrs.get("models"))
    if old_sha != new_sha or (old_models and new_models and old_models != new_models):
        made = ", ".join(sorted(old_models.values())) or f.attrs.get("model_name")
        raise InputError(f"{path} was made with model(s) {made} ({str(old_sha)[:12]}...); "
                         "resume with the same models or choose a new --out")
    datasets = [f[SAMPLES]] if SAMPLES in f else []
    if PROPERTY_SAMPLES in f:
        datasets += list(f[PROPERTY_SAMPLES].values())
    n_saved = attrs.get("n_samples_saved")
    if bool(datasets) != bool(n_saved) or any(d.shape[1] != n_saved for d in datasets):
        raise InputError(f"{path} was written with different --save-samples/--samples "
                         "settings; resume with the same ones")
    old = json.loads(f.attrs.get("settings", "null"))
    new = attrs.get("settings")
    if old is None or new is None:
        return
    differ = [f"{name} {_setting(old.get(name))} (now {_setting(new.get(name))})"
              for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]
    if differ:
        raise InputError(f"{path} was made with other settings: {', '.join(differ)}; resume "
                         "with the same ones or choose a new --out")


def _setting(value) -> str:
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _cannot_write(path: Path, exc: BaseException) -> str:
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    return (f"cannot write catalogue {path}: {reason}; the rows written so far are kept, "
            "add --resume to finish once it can be written")


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + TMP_SUFFIX)


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (a no-op where folders cannot be
    opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _model_shas(models) -> dict:
    """``{sha256: name}`` of a ``models`` attribute (JSON text or list); empty if absent."""
    if models is None:
        return {}
    try:
        items = json.loads(models) if isinstance(models, (str, bytes)) else models
        return {m["sha256"]: m["name"] for m in items}
    except (TypeError, ValueError, KeyError):
        return {}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _root_attrs(attrs: dict) -> dict:
    """The file's root attributes: the app, the creation time, the flag meanings, then the
    run's own ``attrs`` (lists and dicts as JSON)."""
    out = {"app": "galaxy-inspector", "app_version": __version__, "created": _now(),
           "complete": False, **flag_attributes()}
    for key, value in attrs.items():
        out[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return out
