"""MXNet RecordIO (insightface `train.rec` + `train.idx` + `property`) read and written in pure Python, no mxnet.

Record framing (dmlc-core): uint32 magic 0xced7230a, uint32 `cflag << 29 | length`, payload padded to 4 bytes.
A payload containing the magic word at a 4-byte boundary is split into parts (cflag 1 start, 2 middle, 3 end) with
that word removed; the reader puts it back. Payload = IRHeader `<IfQQ` (flag, label, id, id2), then `flag` float32
labels when flag > 0, then the encoded image.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterable

import numpy as np

from edgekd.io import atomic_dir
from edgekd.errors import EdgekdError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")
_LEN_MASK = (1 << 29) - 1


def unpack(payload: bytes, source: str = "") -> tuple[int, float | np.ndarray, int, int, bytes]:
    """Payload -> (flag, label, id, id2, image bytes); label is a float32 array when flag > 0 (multi-label records)."""
    if len(payload) < _HEADER.size:
        raise EdgekdError(f"{source}: record payload of {len(payload)} bytes is shorter than its 24-byte header")
    flag, label, id1, id2 = _HEADER.unpack_from(payload)
    rest = payload[_HEADER.size :]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise EdgekdError(f"{source}: record header announces {flag} labels but the payload is too short")
        label = np.frombuffer(rest, np.float32, flag).copy()
        rest = rest[4 * flag :]
    return flag, label, id1, id2, rest


def pack(label: float | tuple | list | np.ndarray, data: bytes, id1: int = 0, id2: int = 0) -> bytes:
    """Inverse of `unpack`: a scalar label gives flag 0, a sequence gives flag = its length."""
    if np.ndim(label) == 0:
        return _HEADER.pack(0, float(label), id1, id2) + data
    arr = np.asarray(label, np.float32).ravel()
    return _HEADER.pack(arr.size, 0.0, id1, id2) + arr.tobytes() + data


class RecordReader:
    """Random access to records by key through the .idx; opens its file lazily per process (DataLoader workers fork)."""

    def __init__(self, rec: str | os.PathLike, idx: str | os.PathLike | None = None):
        self.rec = Path(rec)
        self.idx = Path(idx) if idx is not None else self.rec.with_suffix(".idx")
        for p in (self.rec, self.idx):
            if not p.is_file():
                raise EdgekdError(f"{p}: no such file (a RecordIO shard needs both .rec and .idx)")
        self.size = self.rec.stat().st_size
        self.offsets: dict[int, int] = {}
        try:
            lines = self.idx.read_text(errors="replace").splitlines()
        except OSError as e:
            raise EdgekdError(f"{self.idx}: cannot read ({e.strerror or e})") from e
        first_line: dict[int, int] = {}
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                key, off = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                raise EdgekdError(f"{self.idx}:{n}: malformed index line {line[:60]!r} (expected 'key<TAB>offset')") from None
            if key in self.offsets:  # a dict would keep the last offset and drop a record without a word
                raise EdgekdError(f"{self.idx}:{n}: key {key} is listed again (first on line {first_line[key]})")
            first_line[key] = n
            if off < 0 or off + 8 > self.size:
                raise EdgekdError(f"{self.idx}:{n}: key {key} points to offset {off}, past the end of {self.rec.name} ({self.size} bytes)")
            self.offsets[key] = off
        if not self.offsets:
            raise EdgekdError(f"{self.idx}: index is empty")
        self.keys = sorted(self.offsets)
        self._fh: BinaryIO | None = None
        self._pid = -1
        self._check_last_record()

    def _check_last_record(self) -> None:
        """A .rec cut short loses its last record: read that record's frames (not every record: shards hold
        millions) so `data info` and training find the damage when opening, not hours later."""
        last = max(self.offsets, key=self.offsets.get)
        self.read(last)

    def __getstate__(self):
        return {**self.__dict__, "_fh": None, "_pid": -1}

    def _file(self) -> BinaryIO:
        if self._fh is None or self._pid != os.getpid():
            self._fh = open(self.rec, "rb")
            self._pid = os.getpid()
        return self._fh

    def read(self, key: int) -> bytes:
        """The payload of record `key`, reassembling multi-part records."""
        if key not in self.offsets:
            raise EdgekdError(f"{self.idx}: no record with key {key}")
        f = self._file()
        pos = self.offsets[key]
        try:
            f.seek(pos)
        except (OSError, OverflowError, ValueError) as e:
            raise EdgekdError(f"{self.rec}: cannot seek to offset {pos} (record {key}: {e})") from None
        parts = []
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise EdgekdError(f"{self.rec}: truncated at offset {pos} (record {key} header cut off)")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise EdgekdError(f"{self.rec}: bad magic 0x{magic:08x} at offset {pos} (record {key}; corrupt file or wrong .idx)")
            cflag, length = lrec >> 29, lrec & _LEN_MASK
            data = f.read((length + 3) & ~3)
            if len(data) < length:
                raise EdgekdError(f"{self.rec}: truncated at offset {pos} (record {key} needs {length} bytes, {len(data)} left)")
            parts.append(data[:length])
            pos += 8 + len(data)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)
            if cflag not in (1, 2):
                raise EdgekdError(f"{self.rec}: invalid continuation flag {cflag} at offset {pos} (record {key})")

    def unpack(self, key: int) -> tuple[int, float | np.ndarray, int, int, bytes]:
        return unpack(self.read(key), f"{self.rec} record {key}")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class RecordWriter:
    """Appends records and writes the matching .idx; used through `write_shard` (which makes the output atomic)."""

    def __init__(self, rec: str | os.PathLike, idx: str | os.PathLike):
        self._rec = open(rec, "wb")
        self._idx = open(idx, "w")

    def write(self, key: int, payload: bytes) -> None:
        self._idx.write(f"{key}\t{self._rec.tell()}\n")
        start = 0
        i = payload.find(_MAGIC_BYTES)
        while i != -1:  # split where the magic word sits at a 4-byte boundary, as dmlc-core does
            if i % 4 == 0:
                self._frame(1 if start == 0 else 2, payload[start:i])
                start = i + 4
                i = payload.find(_MAGIC_BYTES, start)
            else:
                i = payload.find(_MAGIC_BYTES, i + 1)
        self._frame(3 if start else 0, payload[start:])

    def _frame(self, cflag: int, part: bytes) -> None:
        self._rec.write(struct.pack("<II", MAGIC, cflag << 29 | len(part)) + part + b"\0" * (-len(part) % 4))

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_shard(out_dir: str | os.PathLike, labels: np.ndarray, images: Iterable[bytes], size: tuple[int, int],
                overwrite: bool = False) -> Path:
    """insightface layout into `out_dir` (atomic): record 0 = (flag 2, label (N+1, N+1+C)), images at keys 1..N
    grouped by label 0..C-1, then one identity record per class with label (first key, end key), then `property`."""
    labels = np.asarray(labels, np.int64)
    if len(labels) and (np.diff(labels) < 0).any():
        raise ValueError("write_shard needs images grouped by ascending label")
    n, c = len(labels), int(labels.max()) + 1 if len(labels) else 0
    starts = 1 + np.searchsorted(labels, np.arange(c + 1))
    with atomic_dir(out_dir, overwrite) as tmp:
        with RecordWriter(tmp / "train.rec", tmp / "train.idx") as w:
            w.write(0, pack((n + 1, n + 1 + c), b""))
            count = 0
            for key, (label, data) in enumerate(zip(labels, images), 1):
                w.write(key, pack(float(label), data, id1=key))
                count += 1
            if count != n:
                raise EdgekdError(f"{out_dir}: got {count} images for {n} labels")
            for cls in range(c):
                w.write(n + 1 + cls, pack((int(starts[cls]), int(starts[cls + 1])), b"", id1=n + 1 + cls))
        (tmp / "property").write_text(f"{c},{size[0]},{size[1]}\n")
    return Path(out_dir)
