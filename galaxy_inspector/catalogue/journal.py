"""The catalogue's journal: an append-only sidecar ``CAT.h5.journal`` of checksummed records.

Each chunk of rows is one record, appended and fsync'd before it is reported written; the
writer folds the records into a new copy of the HDF5 file at checkpoints. A record is::

    MAGIC (4 bytes) | payload length (u64, little-endian) | CRC-32 of the payload (u32)
    payload = JSON header line (catalogue id, first row index, row count, array names)
              + one .npy-format array per name (numpy's own format, never pickle)

The array names are the HDF5 dataset paths the arrays are appended to (``galaxies``,
``posterior_samples``, ``property_samples/NAME``). A kill can leave at most one torn record at
the end; reading stops at the first record that is short, fails its checksum, belongs to another
catalogue (a journal left by a replaced file) or does not continue the rows before it.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["JOURNAL_SUFFIX", "journal_path", "encode_record", "Record", "pending_records"]

JOURNAL_SUFFIX = ".journal"
MAGIC = b"GIJ1"
_HEAD = struct.Struct("<4sQI")


def journal_path(catalogue) -> Path:
    """``CAT.h5.journal`` beside ``CAT.h5``."""
    catalogue = Path(catalogue)
    return catalogue.with_name(catalogue.name + JOURNAL_SUFFIX)


def encode_record(catalogue_id: str, start: int, arrays: dict) -> bytes:
    """One record: ``arrays`` (dataset path -> rows ``start`` ... of that dataset) as bytes."""
    n_rows = len(next(iter(arrays.values())))
    header = {"catalogue": catalogue_id, "start": start, "rows": n_rows,
              "arrays": list(arrays)}
    body = io.BytesIO()
    body.write(json.dumps(header).encode("utf-8") + b"\n")
    for array in arrays.values():
        np.lib.format.write_array(body, np.ascontiguousarray(array), allow_pickle=False)
    payload = body.getvalue()
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True)
class Record:
    """An intact record: rows ``start`` to ``start + n_rows`` and its byte ``end`` in the file."""

    start: int
    n_rows: int
    end: int
    payload: bytes

    def arrays(self) -> dict:
        """Dataset path -> array, as appended."""
        body = io.BytesIO(self.payload)
        header = json.loads(body.readline())
        return {name: np.lib.format.read_array(body, allow_pickle=False)
                for name in header["arrays"]}


def _intact_records(f, catalogue_id: str) -> Iterator[Record]:
    """The records of ``catalogue_id`` from the start of ``f``, up to the first bad one."""
    f.seek(0)
    end = 0
    while True:
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size:
            return
        magic, length, crc = _HEAD.unpack(head)
        if magic != MAGIC:
            return
        payload = f.read(length)
        if len(payload) < length or zlib.crc32(payload) != crc:
            return
        try:
            header = json.loads(payload[:payload.index(b"\n")])
            start, n_rows = int(header["start"]), int(header["rows"])
        except (ValueError, KeyError, TypeError):
            return
        if header.get("catalogue") != catalogue_id:
            return
        end += _HEAD.size + length
        yield Record(start, n_rows, end, payload)


def pending_records(f, catalogue_id: str, rows_in_file: int) -> Iterator[Record]:
    """The records not yet folded into a checkpoint of ``rows_in_file`` rows, in row order.

    Records already folded (a kill between the checkpoint's rename and the journal's
    truncation leaves them) are passed over; reading stops where the journal stops continuing
    the rows, so everything after the last record yielded may be cut off.
    """
    expected = rows_in_file
    for record in _intact_records(f, catalogue_id):
        if record.start + record.n_rows <= rows_in_file:
            continue
        if record.start != expected:
            return
        expected += record.n_rows
        yield record
