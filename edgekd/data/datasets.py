"""Training face datasets: insightface RecordIO shards, folder-per-identity trees, label lists, synthetic identities.

All share the `FaceDataset` protocol; images decode lazily in `__getitem__` (in DataLoader workers), labels are
known up front and remapped to 0..num_classes-1 (after an optional identity filter).
"""

from __future__ import annotations

import math
import os
import re
import struct
from pathlib import Path
from typing import Collection, Protocol

import numpy as np

from tqdm import tqdm

from edgekd.data.image import FACE_SIZE, decode_image, encode_jpeg, fit_size, is_jpeg
from edgekd.data.recordio import MAGIC, RecordReader, write_shard
from edgekd.errors import EdgekdError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class FaceDataset(Protocol):
    source: str
    labels: np.ndarray  # int64 (len,)
    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]: ...


def _remap(raw_labels: list, source: str) -> tuple[np.ndarray, list[str]]:
    if not raw_labels:
        raise EdgekdError(f"{source}: dataset is empty (no images found, or the identity filter matched none)")
    names, labels = np.unique(np.asarray(raw_labels), return_inverse=True)
    return labels.astype(np.int64), [str(n) for n in names]


def _wanted(identities: Collection | None):
    keep = None if identities is None else {str(x) for x in identities}
    return lambda name: keep is None or str(name) in keep


class FileFaces:
    """One image file per sample: folder-per-identity trees and label lists."""

    def __init__(self, source: str, files: list[Path], raw_labels: list, size=FACE_SIZE, resize: bool = False):
        self.source, self.files, self.size, self.resize = source, files, tuple(size), resize
        self.labels, self.class_names = _remap(raw_labels, source)
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        path = self.files[i]
        return fit_size(decode_image(path), self.size, str(path), self.resize), int(self.labels[i])

    def encoded(self, i: int) -> bytes:
        """The original file bytes (lets `pack` copy JPEGs instead of re-encoding them)."""
        return self.files[i].read_bytes()


def folder_dataset(root: Path, identities=None, size=FACE_SIZE, resize=False) -> FileFaces:
    """ImageFolder-like: one sub-folder per identity; hidden files (.DS_Store) ignored; an empty identity is an error."""
    want = _wanted(identities)
    files, labels = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not want(d.name):
            continue
        imgs = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
        if not imgs:
            raise EdgekdError(f"{d}: identity folder has no images")
        files += imgs
        labels += [d.name] * len(imgs)
    return FileFaces(str(root), files, labels, size, resize)


def label_list_dataset(label_txt: Path, identities=None, size=FACE_SIZE, resize=False) -> FileFaces:
    """insightface label list: lines `path.jpg<TAB>label`, relative paths taken from the list's folder.

    A relative path that resolves outside that folder (`../../etc/passwd`, a symlink out) is an error: a list names
    files of its own dataset. An absolute path is the writer's explicit choice and is taken as given (edgekd's own
    training lists point into shared image folders that way, copying nothing). An image listed twice is an error: a
    copy would pair an image with itself as a genuine pair (all-pairs) or weigh it twice. A UTF-8 BOM is skipped."""
    want = _wanted(identities)
    files, labels = [], []
    seen: dict[Path, int] = {}
    root = label_txt.parent.resolve()
    try:
        lines = label_txt.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EdgekdError(f"{label_txt}: cannot read label list ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.rsplit("\t", 1) if "\t" in line else line.rsplit(None, 1)
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1].strip()):
            raise EdgekdError(f"{label_txt}:{n}: malformed line {line[:80]!r} (expected 'path<TAB>integer label')")
        label = int(parts[1])
        if not want(label):
            continue
        listed = Path(parts[0].strip())
        path = label_txt.parent / listed
        real = resolved(path, f"{label_txt}:{n}") if listed.is_absolute() else inside(root, path, f"{label_txt}:{n}")
        if real in seen:
            raise EdgekdError(f"{label_txt}:{n}: image {parts[0].strip()} is listed again (first on line {seen[real]})")
        seen[real] = n
        if not path.is_file():
            raise EdgekdError(f"{label_txt}:{n}: image {path} does not exist")
        files.append(path)
        labels.append(label)
    return FileFaces(str(label_txt), files, labels, size, resize)


def resolved(path: Path, where: str) -> Path:
    """`path` with symlinks followed (how duplicates are recognised); a loop or an over-long name is one line."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as e:
        raise EdgekdError(f"{where}: cannot resolve {path} ({getattr(e, 'strerror', None) or e})") from None


def inside(root: Path, path: Path, where: str) -> Path:
    """`path` resolved, refused unless it lies inside the already resolved `root`: a relative entry of a dataset
    file names files of its own dataset, never others of the machine."""
    real = resolved(path, where)
    if real != root and root not in real.parents:
        raise EdgekdError(f"{where}: {path} lies outside the dataset folder {root} (refused)")
    return real


class RecordFaces:
    """insightface MXNet RecordIO shard: with header record 0 (flag 2, no image; images 1..label[0]-1, identity
    records label[0]..label[1]-1 after them, as arcface_torch reads it) or the plain im2rec layout (every key an
    image, any order)."""

    def __init__(self, rec: Path, identities=None, size=None, resize: bool = False):
        self.reader = RecordReader(rec)
        self.source, self.resize = str(rec), resize
        prop = rec.parent / "property"
        self.size = tuple(size or (_read_property(prop)[1:] if prop.is_file() else FACE_SIZE))
        keys, raw = self._index()
        want = _wanted(identities)
        sel = [i for i, lab in enumerate(raw) if want(lab)]
        self.keys = np.asarray([keys[i] for i in sel], np.int64)
        self.labels, self.class_names = _remap([raw[i] for i in sel], self.source)
        self.num_classes = len(self.class_names)

    def _index(self) -> tuple[list[int], list[int]]:
        r = self.reader
        if 0 in r.offsets:
            flag, label, _, _, data = r.unpack(0)
            if flag >= 2 and not data:  # a header carries no image; a multi-label image record at key 0 does
                first_id, end_id = (_key(v, f"{r.rec} record 0 (header)") for v in label[:2])
                if not 1 <= first_id <= end_id or first_id > max(r.offsets) + 1:
                    raise EdgekdError(f"{r.rec}: header record 0 announces image keys 1..{first_id - 1} and identity "
                                      f"keys {first_id}..{end_id - 1}, but the index ends at key {max(r.offsets)}")
                keys = list(range(1, first_id))
                labels = np.full(len(keys), -1, np.int64)
                for k in sorted(k for k in r.offsets if first_id <= k < end_id):  # identity records present
                    lo, hi = self._identity_range(k, first_id)  # label = (first, end) image keys of class k - first_id
                    labels[lo - 1 : hi - 1] = k - first_id
                missing = [k for k in keys if k not in r.offsets]
                if missing:
                    raise EdgekdError(f"{r.idx}: header record says images 1..{first_id - 1} but key {missing[0]} is missing")
                if (labels < 0).any():  # no identity records: read each image's own header
                    labels = np.asarray([self._head_label(k) for k in keys])
                return keys, labels.tolist()
        return r.keys, [self._head_label(k) for k in r.keys]

    def _identity_range(self, key: int, first_id: int) -> tuple[int, int]:
        """An identity record's label: the (first, end) image keys of its class, inside the image key range."""
        where = f"{self.reader.rec} record {key} (identity)"
        flag, rng, *_ = self.reader.unpack(key)
        if flag < 2:
            raise EdgekdError(f"{where}: expected a (first, end) image-key label, found a single label")
        lo, hi = _key(rng[0], where), _key(rng[1], where)
        if not 1 <= lo <= hi <= first_id:
            raise EdgekdError(f"{where}: image keys {lo}..{hi - 1} are outside the images 1..{first_id - 1}")
        return lo, hi

    def _head_label(self, key: int) -> int:
        """An image record's label from its first bytes only (scanning must not read every JPEG)."""
        where = f"{self.reader.rec} record {key}"
        f = self.reader._file()
        f.seek(self.reader.offsets[key])
        head = f.read(8 + 28)
        magic, lrec = struct.unpack_from("<II", head) if len(head) == 36 else (None, 0)
        if magic == MAGIC and lrec >> 29 == 0 and lrec & ((1 << 29) - 1) >= 28:  # whole record, room for a label
            flag, label = struct.unpack_from("<If", head, 8)
            return _key(struct.unpack_from("<f", head, 32)[0] if flag > 0 else label, where, "label")
        flag, label, *_ = self.reader.unpack(key)  # split or short record: full read (also reports corruption)
        return _key(label[0] if flag > 0 else label, where, "label")

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        key = int(self.keys[i])
        *_, data = self.reader.unpack(key)
        where = f"{self.reader.rec} record {key}"
        return fit_size(decode_image(data, where), self.size, where, self.resize), int(self.labels[i])

    def encoded(self, i: int) -> bytes:
        return self.reader.unpack(int(self.keys[i]))[-1]


def _key(value: float, where: str, what: str = "key") -> int:
    """A record key or class label stored as float32: finite, whole and non-negative, or the record is corrupt."""
    v = float(value)
    if not (math.isfinite(v) and v >= 0 and v == int(v) and v < 2**31):
        raise EdgekdError(f"{where}: {what} {v!r} is not a non-negative whole number (corrupt record)")
    return int(v)


def _read_property(path: Path) -> tuple[int, int, int]:
    try:
        n, h, w = (int(x) for x in path.read_text().strip().split(","))
    except (OSError, UnicodeDecodeError, ValueError):
        raise EdgekdError(f"{path}: expected 'num_classes,height,width'") from None
    if n < 0 or not (0 < h <= 4096 and 0 < w <= 4096):
        raise EdgekdError(f"{path}: num_classes {n} and image size {h}x{w} are not plausible")
    return n, h, w


_SYNTH = re.compile(r"synthetic:(\d+)x(\d+)(?::(\d+))?")


def open_dataset(path_or_spec: str | os.PathLike, resize: bool = False, identities: Collection | None = None,
                 size: tuple[int, int] | None = None) -> FaceDataset:
    """RecordIO (.rec/.idx or a folder with train.rec), label list (label.txt or a folder with one),
    folder-per-identity, or `synthetic:<ids>x<per_id>[:seed]`."""
    spec = str(path_or_spec)
    if spec.startswith("synthetic:"):
        from edgekd.data.synthetic import SyntheticFaces

        m = _SYNTH.fullmatch(spec)
        if not m:
            raise EdgekdError(f"{spec}: expected synthetic:<identities>x<images per identity>[:seed]")
        ds = SyntheticFaces(int(m[1]), int(m[2]), int(m[3] or 0))
        if identities is not None:
            raise EdgekdError(f"{spec}: an identity filter does not apply to synthetic data")
        return ds
    path = Path(spec)
    if not path.exists():
        raise EdgekdError(f"{path}: no such file or folder")
    if path.suffix in (".rec", ".idx"):
        return RecordFaces(path.with_suffix(".rec"), identities, size, resize)
    if path.is_file() and path.suffix == ".txt":
        return label_list_dataset(path, identities, size or FACE_SIZE, resize)
    if path.is_dir():
        if (path / "train.rec").is_file():
            return RecordFaces(path / "train.rec", identities, size, resize)
        if (path / "label.txt").is_file():
            return label_list_dataset(path / "label.txt", identities, size or FACE_SIZE, resize)
        return folder_dataset(path, identities, size or FACE_SIZE, resize)
    raise EdgekdError(f"{path}: not a dataset (expected a .rec/.idx, label.txt, a folder per identity or synthetic:AxB)")


SCAN_LIMIT = 20_000  # `data info` decodes every image of a set up to this many, else this many evenly spaced


def scan_images(n: int, load, limit: int = SCAN_LIMIT) -> tuple[list[str], int]:
    """Decode images 0..n-1 through `load(i)` (every one, or `limit` evenly spaced): a description is only as true
    as what was read, so an empty file or a 1x1 image among them is found here. -> (distinct HxW, number read)."""
    picks = range(n) if n <= limit else np.linspace(0, n - 1, limit).astype(np.int64)
    sizes = {tuple(load(int(i)).shape[:2]) for i in picks}
    return [f"{h}x{w}" for h, w in sorted(sizes)], len(picks)


def encoded_image(ds: FaceDataset, i: int, img: np.ndarray) -> bytes:
    """JPEG bytes for sample i: the stored bytes when they are a JPEG of the decoded image, else a fresh encode."""
    enc = getattr(ds, "encoded", None)
    if enc is not None and not getattr(ds, "resize", False):
        raw = enc(i)
        if is_jpeg(raw):
            return raw
    return encode_jpeg(img)


def pack_dataset(ds: FaceDataset, out_dir: str | os.PathLike, overwrite: bool = False, progress: bool = True) -> Path:
    """Any FaceDataset -> insightface train.rec/train.idx/property; every image is decoded (size-checked) on the way."""
    order = np.argsort(ds.labels, kind="stable")
    size = getattr(ds, "size", FACE_SIZE)

    def images():
        for i in tqdm(order, desc="pack", unit="img", disable=not progress):
            img, _ = ds[int(i)]
            yield encoded_image(ds, int(i), img)

    return write_shard(out_dir, ds.labels[order], images(), size, overwrite)
